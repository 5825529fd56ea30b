// The C++ standard library's threads (on pthreads underneath): std::thread, std::mutex,
// std::condition_variable (producer/consumer, wait_for timeouts, predicates), thread_local
// objects with constructors and destructors that count, std::async and futures (values and
// exceptions crossing threads), std::call_once, std::shared_mutex, exceptions thrown and
// caught on every thread's own stack.
#include "check.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// ---- thread_local with a constructor and a destructor ----

std::atomic<int> tl_ctors{0}, tl_dtors{0};
std::atomic<long> tl_dtor_sum{0};

struct Counted {
    long value = 0;
    std::vector<int> data; // owns heap memory: the destructor must really run
    Counted() : data(100, 1) { tl_ctors++; }
    ~Counted()
    {
        tl_dtors++;
        tl_dtor_sum += value + static_cast<long>(data.size());
    }
};

thread_local Counted counted;

uint64_t test_threads_and_tls(uint64_t h)
{
    constexpr int n = 32;
    std::vector<std::thread> ts;
    std::vector<long> results(n);
    std::vector<std::thread::id> ids(n);
    for (int i = 0; i < n; i++)
        ts.emplace_back([i, &results, &ids] {
            ids[i] = std::this_thread::get_id();
            counted.value = i * 10; // constructs this thread's object
            long s = 0;
            for (int k = 0; k < 1000; k++) {
                try {
                    if (k % 100 == 0)
                        throw std::runtime_error(std::to_string(k));
                    s += k;
                } catch (const std::runtime_error &e) {
                    s += std::stol(e.what()) * 2; // unwinding on this thread's stack
                }
            }
            std::this_thread::yield();
            CHECK(counted.value == i * 10, "thread_local changed under thread %d", i);
            results[i] = s + i;
        });
    CHECK(ts[0].joinable(), "joinable");
    std::vector<std::thread::id> handle_ids;
    for (auto &t : ts)
        handle_ids.push_back(t.get_id());
    for (auto &t : ts)
        t.join();
    long sum = 0;
    for (int i = 0; i < n; i++) {
        CHECK(ids[i] == handle_ids[i], "get_id inside thread %d != its handle's", i);
        CHECK(ids[i] != std::this_thread::get_id(), "thread %d has main's id", i);
        // 0..999 minus the multiples of 100 (which throw), plus twice each multiple
        CHECK(results[i] == 499500 - 4500 + 9000 + i, "thread %d computed %ld", i, results[i]);
        sum += results[i];
    }
    CHECK(tl_ctors == n && tl_dtors == n, "thread_local: %d constructed, %d destroyed",
          tl_ctors.load(), tl_dtors.load());
    CHECK(tl_dtor_sum == 10 * (n * (n - 1) / 2) + 100L * n, "thread_local destructor sum %ld",
          tl_dtor_sum.load());
    std::printf("threads %d sum %ld thread_local dtors %d\n", n, sum, tl_dtors.load());
    return mix(mix(h, static_cast<uint64_t>(sum)), static_cast<uint64_t>(tl_dtor_sum.load()));
}

// ---- std::mutex ----

uint64_t test_mutex(uint64_t h)
{
    std::mutex m;
    long counter = 0;
    std::vector<std::thread> ts;
    for (int i = 0; i < 8; i++)
        ts.emplace_back([&] {
            for (int k = 0; k < 50000; k++) {
                std::lock_guard<std::mutex> g(m);
                long v = counter;
                if (k % 5000 == 0)
                    std::this_thread::yield();
                counter = v + 1;
            }
        });
    for (auto &t : ts)
        t.join();
    CHECK(counter == 400000, "mutex counter %ld", counter);
    std::unique_lock<std::mutex> l(m, std::try_to_lock);
    CHECK(l.owns_lock(), "try_lock of a free mutex");
    std::thread([&] { CHECK(!m.try_lock(), "try_lock of a held mutex succeeded"); }).join();
    std::printf("mutex counter %ld\n", counter);
    return mix(h, static_cast<uint64_t>(counter));
}

// ---- std::condition_variable ----

uint64_t test_condvar(uint64_t h)
{
    std::mutex m;
    std::condition_variable not_empty, not_full;
    std::deque<int> q;
    constexpr int per_producer = 25000, producers = 2, consumers = 2;
    int producers_left = producers;
    std::vector<long> got(consumers), count(consumers);
    std::vector<std::thread> ts;
    for (int c = 0; c < consumers; c++)
        ts.emplace_back([&, c] {
            for (;;) {
                std::unique_lock<std::mutex> l(m);
                not_empty.wait(l, [&] { return !q.empty() || producers_left == 0; });
                if (q.empty())
                    return;
                int v = q.front();
                q.pop_front();
                not_full.notify_one();
                l.unlock();
                got[c] += v;
                count[c]++;
            }
        });
    for (int p = 0; p < producers; p++)
        ts.emplace_back([&, p] {
            for (int k = 0; k < per_producer; k++) {
                std::unique_lock<std::mutex> l(m);
                not_full.wait(l, [&] { return q.size() < 32; });
                q.push_back(p * per_producer + k);
                not_empty.notify_one();
            }
            std::lock_guard<std::mutex> g(m);
            if (--producers_left == 0)
                not_empty.notify_all();
        });
    for (auto &t : ts)
        t.join();
    long total = 0, n = 0;
    for (int c = 0; c < consumers; c++) {
        total += got[c];
        n += count[c];
    }
    long all = producers * per_producer;
    CHECK(n == all && total == all * (all - 1) / 2, "condvar: %ld items, sum %ld", n, total);

    // wait_for with nobody notifying times out; a notified wait_for does not
    std::unique_lock<std::mutex> l(m);
    auto t0 = std::chrono::steady_clock::now();
    bool flag = false;
    bool ok = not_empty.wait_for(l, std::chrono::milliseconds(50), [&] { return flag; });
    auto waited = std::chrono::steady_clock::now() - t0;
    CHECK(!ok && waited >= std::chrono::milliseconds(49) && waited < std::chrono::seconds(5),
          "wait_for without a notification");
    std::thread notifier([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::lock_guard<std::mutex> g(m);
        flag = true;
        not_empty.notify_all();
    });
    ok = not_empty.wait_for(l, std::chrono::seconds(10), [&] { return flag; });
    CHECK(ok, "notified wait_for timed out");
    l.unlock();
    notifier.join();
    std::printf("condvar items %ld sum %ld\n", n, total);
    return mix(h, static_cast<uint64_t>(total));
}

// ---- std::async, futures, exceptions across threads, call_once, shared_mutex ----

long slow_square(long x)
{
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (x < 0)
        throw std::invalid_argument("negative " + std::to_string(x));
    return x * x;
}

uint64_t test_async(uint64_t h)
{
    std::vector<std::future<long>> fs;
    for (long i = 0; i < 16; i++)
        fs.push_back(std::async(std::launch::async, slow_square, i));
    long sum = 0;
    for (auto &f : fs)
        sum += f.get();
    CHECK(sum == 1240, "async sum %ld", sum);

    auto bad = std::async(std::launch::async, slow_square, -3);
    std::string what;
    try {
        bad.get();
    } catch (const std::invalid_argument &e) {
        what = e.what();
    }
    CHECK(what == "negative -3", "the async exception did not arrive (\"%s\")", what.c_str());

    std::promise<int> p;
    std::future<int> pf = p.get_future();
    std::thread setter([&p] {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        p.set_value(77);
    });
    CHECK(pf.wait_for(std::chrono::seconds(10)) == std::future_status::ready, "promise");
    int pv = pf.get();
    setter.join();
    CHECK(pv == 77, "promise value %d", pv);

    std::once_flag once;
    std::atomic<int> once_runs{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < 8; i++)
        ts.emplace_back([&] { std::call_once(once, [&] { once_runs++; }); });
    for (auto &t : ts)
        t.join();
    CHECK(once_runs == 1, "call_once ran %d times", once_runs.load());

    std::shared_mutex sm;
    long a = 0, b = 0;
    std::atomic<int> readers_inside{0}, max_readers{0};
    ts.clear();
    for (int i = 0; i < 4; i++)
        ts.emplace_back([&, i] {
            for (int k = 0; k < 5000; k++) {
                if ((k + i) % 5 == 0) {
                    std::unique_lock<std::shared_mutex> w(sm);
                    a++;
                    std::this_thread::yield();
                    b++;
                } else {
                    std::shared_lock<std::shared_mutex> r(sm);
                    int inside = ++readers_inside;
                    int m = max_readers.load();
                    while (inside > m && !max_readers.compare_exchange_weak(m, inside)) {
                    }
                    CHECK(a == b, "reader saw a half-done write");
                    readers_inside--;
                }
            }
        });
    for (auto &t : ts)
        t.join();
    CHECK(a == 4000 && b == 4000, "shared_mutex writes %ld/%ld", a, b);
    std::printf("async sum %ld promise %d once %d shared writes %ld\n", sum, pv, once_runs.load(),
                a);
    return mix(mix(mix(h, static_cast<uint64_t>(sum)), static_cast<uint64_t>(pv)),
               static_cast<uint64_t>(a));
}

} // namespace

int main()
{
    uint64_t h = MIX_INIT;
    h = test_threads_and_tls(h);
    h = test_mutex(h);
    h = test_condvar(h);
    h = test_async(h);
    finish(h);
    return 0;
}
