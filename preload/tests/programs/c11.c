/* C11 <threads.h>: thrd_create/join with int results (returned or passed to thrd_exit), nested
 * creation, detach, identity (thrd_current, thrd_equal), mutexes (plain under contention from 8
 * threads, recursive, timed: mtx_timedlock timing out and succeeding, mtx_trylock busy),
 * condition variables (producer/consumer with cnd_signal, cnd_broadcast, cnd_timedwait timing
 * out and signalled), thread-specific storage with destructors at thread exit, call_once from
 * many threads, thrd_sleep (interrupted by a signal too) and thrd_yield.
 *
 * glibc's C11 functions call its pthread implementation directly, not through the PLT: under
 * the preload they must be the library's own, or threads are native and waits block carriers.
 * The first section runs before any thread exists (before the preload's runtime starts); the
 * main thread, a glibc thread, shares objects with the created ones afterwards. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <threads.h>

/* CHECK_THRD(call): a C11 call that must return thrd_success. */
#define CHECK_THRD(call)                                                                       \
    do {                                                                                       \
        int r_ = (call);                                                                       \
        if (r_ != thrd_success)                                                                \
            fail_at(__FILE__, __LINE__, "%s returned %d, not thrd_success", #call, r_);        \
    } while (0)

static int64_t elapsed_ms(int64_t t0)
{
    return (now_ns() - t0) / 1000000;
}

/* An absolute TIME_UTC (CLOCK_REALTIME) deadline ms from now. */
static struct timespec utc_in(long ms)
{
    return deadline_ms(CLOCK_REALTIME, ms);
}

static uint64_t work_value(uint64_t i)
{
    uint64_t v = i * 2654435761u;
    for (int k = 0; k < 1000; k++)
        v = v * 6364136223846793005ULL + 1442695040888963407ULL;
    return v;
}

/* ---- before any thread: every family on the main thread alone ---- */

static int pre_once_runs;
static once_flag pre_once = ONCE_FLAG_INIT;

static void pre_once_init(void)
{
    pre_once_runs++;
}

static uint64_t test_before_threads(uint64_t h)
{
    thrd_t me = thrd_current();
    CHECK(thrd_equal(me, thrd_current()), "thrd_current unstable");
    CHECK(pthread_equal(me, pthread_self()), "thrd_current is not pthread_self");

    mtx_t m;
    CHECK_THRD(mtx_init(&m, mtx_plain));
    CHECK_THRD(mtx_lock(&m));
    CHECK(mtx_trylock(&m) == thrd_busy, "trylock of a held plain mutex by its holder");
    CHECK_THRD(mtx_unlock(&m));
    CHECK_THRD(mtx_trylock(&m));
    CHECK_THRD(mtx_unlock(&m));
    struct timespec past = {1, 0};
    CHECK_THRD(mtx_timedlock(&m, &past)); /* free: no need to wait, the deadline is not read */
    CHECK_THRD(mtx_unlock(&m));
    mtx_destroy(&m);

    /* Any other type is a plain mutex (glibc checks nothing). */
    CHECK_THRD(mtx_init(&m, 42));
    CHECK_THRD(mtx_lock(&m));
    CHECK(mtx_trylock(&m) == thrd_busy, "a type-42 mutex is not plain");
    CHECK_THRD(mtx_unlock(&m));
    mtx_destroy(&m);

    CHECK_THRD(mtx_init(&m, mtx_plain | mtx_recursive));
    for (int i = 0; i < 3; i++)
        CHECK_THRD(mtx_lock(&m));
    CHECK_THRD(mtx_trylock(&m));
    for (int i = 0; i < 4; i++)
        CHECK_THRD(mtx_unlock(&m));
    CHECK(mtx_unlock(&m) == thrd_error, "unlocking a recursive mutex not held");
    mtx_destroy(&m);

    cnd_t c;
    CHECK_THRD(mtx_init(&m, mtx_timed));
    CHECK_THRD(cnd_init(&c));
    CHECK_THRD(mtx_lock(&m));
    int64_t t0 = now_ns();
    struct timespec d = utc_in(20);
    CHECK(cnd_timedwait(&c, &m, &d) == thrd_timedout, "cnd_timedwait on main did not time out");
    CHECK(elapsed_ms(t0) >= 15, "cnd_timedwait returned after %" PRId64 " ms", elapsed_ms(t0));
    CHECK(cnd_timedwait(&c, &m, &past) == thrd_timedout, "a past deadline did not time out");
    CHECK_THRD(cnd_signal(&c));
    CHECK_THRD(cnd_broadcast(&c));
    CHECK_THRD(mtx_unlock(&m));
    cnd_destroy(&c);
    mtx_destroy(&m);

    tss_t k;
    CHECK_THRD(tss_create(&k, NULL));
    CHECK(tss_get(k) == NULL, "a new key has a value");
    CHECK_THRD(tss_set(k, (void *)5));
    CHECK(tss_get(k) == (void *)5, "tss_get after tss_set");
    tss_delete(k);

    call_once(&pre_once, pre_once_init);
    call_once(&pre_once, pre_once_init);
    CHECK(pre_once_runs == 1, "call_once ran %d times", pre_once_runs);

    struct timespec nap = {0, 10 * 1000000L};
    t0 = now_ns();
    CHECK(thrd_sleep(&nap, NULL) == 0, "thrd_sleep on main");
    CHECK(elapsed_ms(t0) >= 10, "thrd_sleep slept %" PRId64 " ms", elapsed_ms(t0));
    struct timespec bad = {0, 1000000000L};
    int r = thrd_sleep(&bad, NULL);
    CHECK(r == -2, "thrd_sleep of an invalid time returned %d", r);
    thrd_yield();

    printf("before threads: once %d\n", pre_once_runs);
    return mix(h, (uint64_t)pre_once_runs);
}

/* ---- create/join: 100 threads alive at once, int results returned or from thrd_exit ---- */

#define JOINED 100

static mtx_t gate_mu;
static cnd_t gate_cv;
static int gate_arrived, gate_open;
static thrd_t self_of[JOINED];

static void gate_wait(void)
{
    CHECK_THRD(mtx_lock(&gate_mu));
    gate_arrived++;
    CHECK_THRD(cnd_broadcast(&gate_cv));
    while (!gate_open)
        CHECK_THRD(cnd_wait(&gate_cv, &gate_mu));
    CHECK_THRD(mtx_unlock(&gate_mu));
}

/* A thread's result: negative for a third of them (the int must survive as itself). */
static int result_of(int i)
{
    int v = (int)(work_value((uint64_t)i) & 0x3fffffff);
    return i % 3 == 0 ? -v : v;
}

__attribute__((noinline)) static void exit_nested(int v)
{
    char pad[256]; /* a real frame to leave */
    memset(pad, v, sizeof pad);
    __asm__ volatile("" : : "r"(pad) : "memory");
    thrd_exit(v);
}

static int after_exit_ran;

static int joined_main(void *arg)
{
    int i = (int)(intptr_t)arg;
    self_of[i] = thrd_current();
    gate_wait();
    if (i % 2 == 1) {
        exit_nested(result_of(i));
        __atomic_store_n(&after_exit_ran, 1, __ATOMIC_SEQ_CST);
    }
    return result_of(i);
}

static uint64_t test_create_join(uint64_t h)
{
    thrd_t t[JOINED];
    thrd_t main_self = thrd_current();
    CHECK_THRD(mtx_init(&gate_mu, mtx_plain));
    CHECK_THRD(cnd_init(&gate_cv));
    for (int i = 0; i < JOINED; i++)
        CHECK_THRD(thrd_create(&t[i], joined_main, (void *)(intptr_t)i));
    CHECK_THRD(mtx_lock(&gate_mu));
    while (gate_arrived < JOINED)
        CHECK_THRD(cnd_wait(&gate_cv, &gate_mu));
    gate_open = 1;
    CHECK_THRD(cnd_broadcast(&gate_cv));
    CHECK_THRD(mtx_unlock(&gate_mu));
    int64_t sum = 0;
    int negative = 0;
    for (int i = 0; i < JOINED; i++) {
        int res = 12345;
        CHECK_THRD(thrd_join(t[i], &res));
        CHECK(res == result_of(i), "thread %d: thrd_join gave %d, expected %d", i, res,
              result_of(i));
        sum += res;
        negative += res < 0;
    }
    CHECK(!__atomic_load_n(&after_exit_ran, __ATOMIC_SEQ_CST), "code after thrd_exit ran");
    /* the 100 were alive together: their identities differ, and are what thrd_create gave */
    for (int i = 0; i < JOINED; i++) {
        CHECK(thrd_equal(self_of[i], t[i]), "thrd_current of thread %d != its thrd_t", i);
        CHECK(!thrd_equal(self_of[i], main_self), "thread %d has main's identity", i);
        for (int j = 0; j < i; j++)
            CHECK(!thrd_equal(self_of[i], self_of[j]), "threads %d and %d share an id", i, j);
    }
    CHECK(thrd_equal(main_self, thrd_current()), "main's identity changed");
    cnd_destroy(&gate_cv);
    mtx_destroy(&gate_mu);
    printf("create_join %d threads, %d negative, sum %" PRId64 "\n", JOINED, negative, sum);
    return mix(h, (uint64_t)sum);
}

/* ---- nested: threads create and join threads; a thread cannot join itself ---- */

static int grandchild(void *arg)
{
    return (int)(intptr_t)arg * 3 + 1;
}

static int parent_main(void *arg)
{
    int base = (int)(intptr_t)arg * 10;
    CHECK(thrd_join(thrd_current(), NULL) == thrd_error, "a thread joined itself");
    thrd_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK_THRD(thrd_create(&t[i], grandchild, (void *)(intptr_t)(base + i)));
    int sum = 0;
    for (int i = 0; i < 4; i++) {
        int r = 0;
        CHECK_THRD(thrd_join(t[i], &r));
        CHECK(r == (base + i) * 3 + 1, "grandchild %d returned %d", base + i, r);
        sum += r;
    }
    thrd_t nores;
    CHECK_THRD(thrd_create(&nores, grandchild, NULL));
    CHECK_THRD(thrd_join(nores, NULL)); /* a null result pointer */
    return sum;
}

static uint64_t test_nested(uint64_t h)
{
    thrd_t t[8];
    for (int i = 0; i < 8; i++)
        CHECK_THRD(thrd_create(&t[i], parent_main, (void *)(intptr_t)i));
    int sum = 0;
    for (int i = 0; i < 8; i++) {
        int r = 0;
        CHECK_THRD(thrd_join(t[i], &r));
        sum += r;
    }
    printf("nested sum %d\n", sum);
    return mix(h, (uint64_t)sum);
}

/* ---- detached threads report through a mutex and condition variable ---- */

#define DETACHED 32

static mtx_t det_mu;
static cnd_t det_cv;
static int det_done;
static uint64_t det_mask;

static int detached_main(void *arg)
{
    int i = (int)(intptr_t)arg;
    if (i % 4 == 0)
        thrd_yield(); /* some are detached while running, some after they finished */
    CHECK_THRD(mtx_lock(&det_mu));
    CHECK(!(det_mask & (1ULL << i)), "detached thread %d ran twice", i);
    det_mask |= 1ULL << i;
    det_done++;
    CHECK_THRD(cnd_signal(&det_cv));
    CHECK_THRD(mtx_unlock(&det_mu));
    return i;
}

static uint64_t test_detach(uint64_t h)
{
    CHECK_THRD(mtx_init(&det_mu, mtx_plain));
    CHECK_THRD(cnd_init(&det_cv));
    for (int i = 0; i < DETACHED; i++) {
        thrd_t t;
        CHECK_THRD(thrd_create(&t, detached_main, (void *)(intptr_t)i));
        CHECK_THRD(thrd_detach(t));
    }
    CHECK_THRD(mtx_lock(&det_mu));
    while (det_done < DETACHED)
        CHECK_THRD(cnd_wait(&det_cv, &det_mu));
    CHECK(det_mask == (1ULL << DETACHED) - 1, "detached threads missing: %016" PRIx64,
          det_mask);
    CHECK_THRD(mtx_unlock(&det_mu));
    printf("detached %d\n", det_done);
    return mix(h, (uint64_t)det_done);
}

/* ---- mtx_plain: a counter under contention from 8 threads (half lock, half trylock) ---- */

#define COUNTERS 8
#define ROUNDS 50000

static mtx_t count_mu;
static uint64_t counter; /* deliberately not atomic: the mutex protects it */

static int counter_main(void *arg)
{
    int i = (int)(intptr_t)arg;
    for (int k = 0; k < ROUNDS; k++) {
        if (i % 2 == 0) {
            CHECK_THRD(mtx_lock(&count_mu));
        } else {
            int r;
            while ((r = mtx_trylock(&count_mu)) == thrd_busy)
                thrd_yield();
            CHECK(r == thrd_success, "mtx_trylock returned %d", r);
        }
        uint64_t v = counter;
        if (k % 1000 == 0)
            thrd_yield(); /* inside the critical section: the others must wait */
        counter = v + 1;
        CHECK_THRD(mtx_unlock(&count_mu));
    }
    return 0;
}

static uint64_t test_counter(uint64_t h)
{
    thrd_t t[COUNTERS];
    CHECK_THRD(mtx_init(&count_mu, mtx_plain));
    for (int i = 0; i < COUNTERS; i++)
        CHECK_THRD(thrd_create(&t[i], counter_main, (void *)(intptr_t)i));
    for (int i = 0; i < COUNTERS; i++)
        CHECK_THRD(thrd_join(t[i], NULL));
    CHECK(counter == (uint64_t)COUNTERS * ROUNDS, "counter %" PRIu64, counter);
    mtx_destroy(&count_mu);
    printf("counter %" PRIu64 "\n", counter);
    return mix(h, counter);
}

/* ---- mtx_recursive: depth, ownership, release only at depth 0 ---- */

static mtx_t rec_mu;
static int rec_held, rec_checked, rec_released;

static int rec_owner(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        CHECK_THRD(mtx_lock(&rec_mu));
    __atomic_store_n(&rec_held, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&rec_checked, __ATOMIC_SEQ_CST))
        thrd_yield();
    CHECK_THRD(mtx_unlock(&rec_mu));
    CHECK_THRD(mtx_unlock(&rec_mu));
    struct timespec nap = {0, 20 * 1000000L};
    CHECK(thrd_sleep(&nap, NULL) == 0, "thrd_sleep");
    __atomic_store_n(&rec_released, 1, __ATOMIC_SEQ_CST);
    CHECK_THRD(mtx_unlock(&rec_mu));
    return 0;
}

static int rec_other(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&rec_held, __ATOMIC_SEQ_CST))
        thrd_yield();
    CHECK(mtx_trylock(&rec_mu) == thrd_busy, "trylock of another thread's recursive mutex");
    CHECK(mtx_unlock(&rec_mu) == thrd_error, "unlock of another thread's recursive mutex");
    struct timespec soon = utc_in(10);
    CHECK(mtx_timedlock(&rec_mu, &soon) == thrd_timedout, "timedlock while held 3 deep");
    __atomic_store_n(&rec_checked, 1, __ATOMIC_SEQ_CST);
    CHECK_THRD(mtx_lock(&rec_mu)); /* only once the owner is back at depth 0 */
    CHECK(__atomic_load_n(&rec_released, __ATOMIC_SEQ_CST), "locked before the last unlock");
    CHECK_THRD(mtx_lock(&rec_mu));
    CHECK_THRD(mtx_trylock(&rec_mu));
    for (int i = 0; i < 3; i++)
        CHECK_THRD(mtx_unlock(&rec_mu));
    CHECK(mtx_unlock(&rec_mu) == thrd_error, "unlock beyond depth 0");
    return 0;
}

static uint64_t test_recursive(uint64_t h)
{
    CHECK_THRD(mtx_init(&rec_mu, mtx_timed | mtx_recursive));
    thrd_t a, b;
    CHECK_THRD(thrd_create(&a, rec_owner, NULL));
    CHECK_THRD(thrd_create(&b, rec_other, NULL));
    CHECK_THRD(thrd_join(a, NULL));
    CHECK_THRD(thrd_join(b, NULL));
    mtx_destroy(&rec_mu);
    printf("recursive ok\n");
    return mix(h, 3);
}

/* ---- mtx_timed: mtx_timedlock times out, fails on a bad time, succeeds when released ---- */

static mtx_t timed_mu;
static int timed_go;

static int timed_waiter(void *arg)
{
    (void)arg;
    CHECK(mtx_trylock(&timed_mu) == thrd_busy, "trylock of a held timed mutex");
    int64_t t0 = now_ns();
    struct timespec d = utc_in(50);
    int r = mtx_timedlock(&timed_mu, &d);
    CHECK(r == thrd_timedout, "mtx_timedlock returned %d, not thrd_timedout", r);
    CHECK(elapsed_ms(t0) >= 45, "mtx_timedlock gave up after %" PRId64 " ms", elapsed_ms(t0));
    struct timespec past = {1, 0};
    r = mtx_timedlock(&timed_mu, &past);
    CHECK(r == thrd_timedout, "mtx_timedlock with a past deadline returned %d", r);
    struct timespec bad = utc_in(1000);
    bad.tv_nsec = 1000000000L + 5;
    r = mtx_timedlock(&timed_mu, &bad);
    CHECK(r == thrd_error, "mtx_timedlock with a bad tv_nsec returned %d", r);
    __atomic_store_n(&timed_go, 1, __ATOMIC_SEQ_CST);
    struct timespec later = utc_in(20000);
    CHECK_THRD(mtx_timedlock(&timed_mu, &later)); /* the holder unlocks in ~20 ms */
    CHECK_THRD(mtx_unlock(&timed_mu));
    return 0;
}

static int timed_locked;

/* Holds the mutex until the waiter has timed out, then ~20 ms more. */
static int timed_holder(void *arg)
{
    (void)arg;
    CHECK_THRD(mtx_lock(&timed_mu));
    __atomic_store_n(&timed_locked, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&timed_go, __ATOMIC_SEQ_CST))
        thrd_yield();
    struct timespec nap = {0, 20 * 1000000L};
    CHECK(thrd_sleep(&nap, NULL) == 0, "thrd_sleep");
    CHECK_THRD(mtx_unlock(&timed_mu));
    return 0;
}

/* The holder is the main thread (a glibc thread), then a created thread. */
static uint64_t test_timed(uint64_t h)
{
    CHECK_THRD(mtx_init(&timed_mu, mtx_timed));
    for (int round = 0; round < 2; round++) {
        __atomic_store_n(&timed_go, 0, __ATOMIC_SEQ_CST);
        thrd_t w, holder;
        if (round == 0) {
            CHECK_THRD(mtx_lock(&timed_mu));
            CHECK_THRD(thrd_create(&w, timed_waiter, NULL));
            while (!__atomic_load_n(&timed_go, __ATOMIC_SEQ_CST))
                thrd_yield();
            sleep_ms(20);
            CHECK_THRD(mtx_unlock(&timed_mu));
        } else {
            CHECK_THRD(thrd_create(&holder, timed_holder, NULL));
            while (!__atomic_load_n(&timed_locked, __ATOMIC_SEQ_CST))
                thrd_yield();
            CHECK_THRD(thrd_create(&w, timed_waiter, NULL));
            CHECK_THRD(thrd_join(holder, NULL));
        }
        CHECK_THRD(thrd_join(w, NULL));
    }
    mtx_destroy(&timed_mu);
    printf("timed ok\n");
    return mix(h, 2);
}

/* ---- condition variables: producer/consumer with cnd_signal ---- */

#define SLOTS 8
#define PRODUCERS 2
#define CONSUMERS 2
#define ITEMS 10000 /* per producer */

static mtx_t q_mu;
static cnd_t q_not_empty, q_not_full;
static uint64_t q_buf[SLOTS];
static int q_head, q_len, q_producers_left;
static uint64_t q_sum[CONSUMERS];
static int q_count[CONSUMERS];

static int producer(void *arg)
{
    int p = (int)(intptr_t)arg;
    for (int i = 0; i < ITEMS; i++) {
        CHECK_THRD(mtx_lock(&q_mu));
        while (q_len == SLOTS)
            CHECK_THRD(cnd_wait(&q_not_full, &q_mu));
        q_buf[(q_head + q_len) % SLOTS] = work_value((uint64_t)(p * ITEMS + i)) & 0xffffffff;
        q_len++;
        CHECK_THRD(cnd_signal(&q_not_empty));
        CHECK_THRD(mtx_unlock(&q_mu));
    }
    CHECK_THRD(mtx_lock(&q_mu));
    if (--q_producers_left == 0)
        CHECK_THRD(cnd_broadcast(&q_not_empty)); /* the consumers may stop */
    CHECK_THRD(mtx_unlock(&q_mu));
    return 0;
}

static int consumer(void *arg)
{
    int c = (int)(intptr_t)arg;
    for (;;) {
        CHECK_THRD(mtx_lock(&q_mu));
        while (q_len == 0 && q_producers_left > 0)
            CHECK_THRD(cnd_wait(&q_not_empty, &q_mu));
        if (q_len == 0) {
            CHECK_THRD(mtx_unlock(&q_mu));
            return 0;
        }
        q_sum[c] += q_buf[q_head];
        q_count[c]++;
        q_head = (q_head + 1) % SLOTS;
        q_len--;
        CHECK_THRD(cnd_signal(&q_not_full));
        CHECK_THRD(mtx_unlock(&q_mu));
    }
}

static uint64_t test_queue(uint64_t h)
{
    CHECK_THRD(mtx_init(&q_mu, mtx_plain));
    CHECK_THRD(cnd_init(&q_not_empty));
    CHECK_THRD(cnd_init(&q_not_full));
    q_producers_left = PRODUCERS;
    thrd_t t[PRODUCERS + CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        CHECK_THRD(thrd_create(&t[i], consumer, (void *)(intptr_t)i));
    for (int i = 0; i < PRODUCERS; i++)
        CHECK_THRD(thrd_create(&t[CONSUMERS + i], producer, (void *)(intptr_t)i));
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        CHECK_THRD(thrd_join(t[i], NULL));
    uint64_t sum = 0, expect = 0;
    int count = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        sum += q_sum[i];
        count += q_count[i];
    }
    for (int i = 0; i < PRODUCERS * ITEMS; i++)
        expect += work_value((uint64_t)i) & 0xffffffff;
    CHECK(count == PRODUCERS * ITEMS, "consumed %d items", count);
    CHECK(sum == expect, "consumed sum %" PRIu64 ", produced %" PRIu64, sum, expect);
    cnd_destroy(&q_not_empty);
    cnd_destroy(&q_not_full);
    mtx_destroy(&q_mu);
    printf("queue %d items sum %" PRIu64 "\n", count, sum);
    return mix(h, sum);
}

/* ---- cnd_broadcast wakes every waiter; cnd_timedwait times out, or is signalled ---- */

/* More waiters than any machine has carriers: were cnd_wait glibc's, the first waiter on each
 * carrier would block it in the kernel and the rest could never start waiting. */
#define WAITERS 256

static mtx_t bc_mu;
static cnd_t bc_arrived, bc_go_cv;
static int bc_waiting, bc_go, bc_woken;

static int bc_waiter(void *arg)
{
    (void)arg;
    CHECK_THRD(mtx_lock(&bc_mu));
    bc_waiting++;
    CHECK_THRD(cnd_signal(&bc_arrived));
    while (!bc_go)
        CHECK_THRD(cnd_wait(&bc_go_cv, &bc_mu));
    bc_woken++;
    CHECK_THRD(mtx_unlock(&bc_mu));
    return 0;
}

/* The same, as a pthread start routine: the C11 objects are shared with pthread threads. */
static void *bc_pthread_waiter(void *arg)
{
    return (void *)(intptr_t)bc_waiter(arg);
}

static int tw_signalled;

/* Gets the mutex only once main waits (cnd_timedwait released it), then signals. */
static int tw_signaller(void *arg)
{
    (void)arg;
    CHECK_THRD(mtx_lock(&bc_mu));
    tw_signalled = 1;
    CHECK_THRD(cnd_signal(&bc_go_cv));
    CHECK_THRD(mtx_unlock(&bc_mu));
    return 0;
}

static int timed_cond_main(void *arg)
{
    (void)arg;
    mtx_t m;
    cnd_t c;
    CHECK_THRD(mtx_init(&m, mtx_plain));
    CHECK_THRD(cnd_init(&c));
    CHECK_THRD(mtx_lock(&m));
    int64_t t0 = now_ns();
    struct timespec d = utc_in(30);
    int r = cnd_timedwait(&c, &m, &d);
    CHECK(r == thrd_timedout, "cnd_timedwait returned %d, not thrd_timedout", r);
    CHECK(elapsed_ms(t0) >= 25, "cnd_timedwait gave up after %" PRId64 " ms", elapsed_ms(t0));
    CHECK(mtx_trylock(&m) == thrd_busy, "the mutex is not held after a timed-out wait");
    struct timespec bad = utc_in(1000);
    bad.tv_nsec = -1;
    r = cnd_timedwait(&c, &m, &bad);
    CHECK(r == thrd_error, "cnd_timedwait with a bad tv_nsec returned %d", r);
    CHECK_THRD(mtx_unlock(&m));
    cnd_destroy(&c);
    mtx_destroy(&m);
    return 0;
}

static uint64_t test_broadcast(uint64_t h)
{
    CHECK_THRD(mtx_init(&bc_mu, mtx_plain));
    CHECK_THRD(cnd_init(&bc_arrived));
    CHECK_THRD(cnd_init(&bc_go_cv));
    thrd_t t[WAITERS], tc;
    pthread_t pt[WAITERS];
    for (int i = 0; i < WAITERS; i++) {
        if (i % 2 == 0)
            CHECK_THRD(thrd_create(&t[i], bc_waiter, NULL));
        else
            CHECK_RC(pthread_create(&pt[i], NULL, bc_pthread_waiter, NULL));
    }
    CHECK_THRD(thrd_create(&tc, timed_cond_main, NULL));
    /* once all are counted (under the mutex), all are inside cnd_wait: one broadcast must
     * wake them all, or the joins below hang */
    CHECK_THRD(mtx_lock(&bc_mu));
    while (bc_waiting < WAITERS)
        CHECK_THRD(cnd_wait(&bc_arrived, &bc_mu));
    bc_go = 1;
    CHECK_THRD(cnd_broadcast(&bc_go_cv));
    CHECK_THRD(mtx_unlock(&bc_mu));
    for (int i = 0; i < WAITERS; i++) {
        if (i % 2 == 0)
            CHECK_THRD(thrd_join(t[i], NULL));
        else
            CHECK_RC(pthread_join(pt[i], NULL));
    }
    CHECK_THRD(thrd_join(tc, NULL));
    CHECK(bc_woken == WAITERS, "broadcast woke %d", bc_woken);

    /* a timed wait that is signalled before its deadline: thrd_success, well before it */
    CHECK_THRD(mtx_lock(&bc_mu));
    int64_t t0 = now_ns();
    struct timespec d = utc_in(20000);
    thrd_t s;
    CHECK_THRD(thrd_create(&s, tw_signaller, NULL));
    while (!tw_signalled)
        CHECK_THRD(cnd_timedwait(&bc_go_cv, &bc_mu, &d));
    CHECK(elapsed_ms(t0) < 15000, "the signalled timed wait took %" PRId64 " ms",
          elapsed_ms(t0));
    CHECK_THRD(mtx_unlock(&bc_mu));
    CHECK_THRD(thrd_join(s, NULL));

    cnd_destroy(&bc_arrived);
    cnd_destroy(&bc_go_cv);
    mtx_destroy(&bc_mu);
    printf("broadcast woke %d\n", bc_woken);
    return mix(h, (uint64_t)bc_woken);
}

/* ---- tss: per-thread values, destructors at thread exit (in rounds) ---- */

#define TSS_THREADS 16

static tss_t tss_key, tss_again;
static uint64_t tss_dtor_sum;
static int tss_dtor_count, tss_again_calls;

static void tss_dtor(void *v)
{
    __atomic_fetch_add(&tss_dtor_sum, (uint64_t)(uintptr_t)v, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&tss_dtor_count, 1, __ATOMIC_SEQ_CST);
}

/* Sets a new value the first time: a second round calls it again. */
static void tss_again_dtor(void *v)
{
    __atomic_fetch_add(&tss_again_calls, 1, __ATOMIC_SEQ_CST);
    if (v == (void *)1)
        CHECK_THRD(tss_set(tss_again, (void *)2));
}

static int tss_main(void *arg)
{
    int i = (int)(intptr_t)arg;
    CHECK(tss_get(tss_key) == NULL, "a new thread's tss value is not NULL");
    CHECK_THRD(tss_set(tss_key, (void *)(uintptr_t)(1000 + i)));
    CHECK_THRD(tss_set(tss_again, (void *)1));
    for (int k = 0; k < 50; k++) {
        thrd_yield();
        CHECK(tss_get(tss_key) == (void *)(uintptr_t)(1000 + i),
              "thread %d's tss value changed", i);
    }
    if (i % 2 == 1)
        thrd_exit(i); /* destructors run on thrd_exit as on return */
    return i;
}

static uint64_t test_tss(uint64_t h)
{
    CHECK_THRD(tss_create(&tss_key, tss_dtor));
    CHECK_THRD(tss_create(&tss_again, tss_again_dtor));
    CHECK_THRD(tss_set(tss_key, (void *)7));
    thrd_t t[TSS_THREADS];
    for (int i = 0; i < TSS_THREADS; i++)
        CHECK_THRD(thrd_create(&t[i], tss_main, (void *)(intptr_t)i));
    for (int i = 0; i < TSS_THREADS; i++) {
        int r = -1;
        CHECK_THRD(thrd_join(t[i], &r));
        CHECK(r == i, "tss thread %d returned %d", i, r);
    }
    CHECK(tss_get(tss_key) == (void *)7, "main's tss value changed");
    CHECK(tss_dtor_count == TSS_THREADS, "the destructor ran %d times", tss_dtor_count);
    uint64_t expect = 0;
    for (int i = 0; i < TSS_THREADS; i++)
        expect += 1000 + (uint64_t)i;
    CHECK(tss_dtor_sum == expect, "destructor sum %" PRIu64, tss_dtor_sum);
    CHECK(tss_again_calls == 2 * TSS_THREADS, "the re-setting destructor ran %d times",
          tss_again_calls);
    tss_delete(tss_key);
    tss_delete(tss_again);
    CHECK(tss_set(tss_key, (void *)8) == thrd_error, "tss_set of a deleted key");
    CHECK(tss_get(tss_key) == NULL, "tss_get of a deleted key");
    CHECK(tss_set(100000, (void *)8) == thrd_error, "tss_set of a key out of range");
    printf("tss destructors %d sum %" PRIu64 ", re-set %d\n", tss_dtor_count, tss_dtor_sum,
           tss_again_calls);
    return mix(mix(h, tss_dtor_sum), (uint64_t)tss_again_calls);
}

/* ---- call_once from many threads: one run, and every caller returns after it ---- */

#define ONCE_THREADS 16

static once_flag once = ONCE_FLAG_INIT;
static int once_runs, once_value;

static void once_init(void)
{
    __atomic_fetch_add(&once_runs, 1, __ATOMIC_SEQ_CST);
    struct timespec nap = {0, 20 * 1000000L}; /* the other callers must wait for it */
    CHECK(thrd_sleep(&nap, NULL) == 0, "thrd_sleep in call_once");
    __atomic_store_n(&once_value, 4242, __ATOMIC_SEQ_CST);
}

static int once_main(void *arg)
{
    (void)arg;
    call_once(&once, once_init);
    CHECK(__atomic_load_n(&once_value, __ATOMIC_SEQ_CST) == 4242,
          "call_once returned before the function finished");
    return 0;
}

static uint64_t test_call_once(uint64_t h)
{
    thrd_t t[ONCE_THREADS];
    for (int i = 0; i < ONCE_THREADS; i++)
        CHECK_THRD(thrd_create(&t[i], once_main, NULL));
    for (int i = 0; i < ONCE_THREADS; i++)
        CHECK_THRD(thrd_join(t[i], NULL));
    call_once(&once, once_init);
    CHECK(once_runs == 1, "call_once ran the function %d times", once_runs);
    printf("call_once runs %d\n", once_runs);
    return mix(h, (uint64_t)once_runs * 4242);
}

/* ---- thrd_sleep on created threads; thrd_yield hands the processor over ---- */

#define SLEEPERS 16

static int sleeper(void *arg)
{
    int i = (int)(intptr_t)arg;
    struct timespec nap = {0, (10 + i) * 1000000L};
    struct timespec rem = {77, 77};
    int64_t t0 = now_ns();
    int r = thrd_sleep(&nap, &rem);
    CHECK(r == 0, "thrd_sleep returned %d", r);
    CHECK(elapsed_ms(t0) >= 10 + i, "thrd_sleep(%d ms) slept %" PRId64 " ms", 10 + i,
          elapsed_ms(t0));
    struct timespec bad = {0, -1};
    r = thrd_sleep(&bad, NULL);
    CHECK(r == -2, "thrd_sleep of a negative time returned %d", r);
    return 10 + i;
}

/* Two threads take turns: each waits for its turn by yielding, so on one processor (or one
 * carrier) the other must run for either to progress. */
#define TURNS 2000

static int turn;

static int taker(void *arg)
{
    int me = (int)(intptr_t)arg;
    int taken = 0;
    for (int k = 0; k < TURNS; k++) {
        while (__atomic_load_n(&turn, __ATOMIC_SEQ_CST) % 2 != me)
            thrd_yield();
        __atomic_fetch_add(&turn, 1, __ATOMIC_SEQ_CST);
        taken++;
    }
    return taken;
}

static uint64_t test_sleep_yield(uint64_t h)
{
    thrd_t t[SLEEPERS];
    for (int i = 0; i < SLEEPERS; i++)
        CHECK_THRD(thrd_create(&t[i], sleeper, (void *)(intptr_t)i));
    int slept = 0;
    for (int i = 0; i < SLEEPERS; i++) {
        int r = 0;
        CHECK_THRD(thrd_join(t[i], &r));
        slept += r;
    }
    thrd_t a, b;
    CHECK_THRD(thrd_create(&a, taker, (void *)0));
    CHECK_THRD(thrd_create(&b, taker, (void *)1));
    int ta = 0, tb = 0;
    CHECK_THRD(thrd_join(a, &ta));
    CHECK_THRD(thrd_join(b, &tb));
    CHECK(turn == 2 * TURNS && ta == TURNS && tb == TURNS, "turns %d: %d + %d", turn, ta, tb);
    printf("sleep %d ms in all, turns %d\n", slept, turn);
    return mix(mix(h, (uint64_t)slept), (uint64_t)turn);
}

/* ---- thrd_sleep interrupted by a signal handler: -1, with the time left ---- */

static volatile sig_atomic_t usr1_count;
static int intr_done;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_count++;
}

/* Signals the target until it says its sleep ended: a signal that comes before the sleep
 * began runs the handler then, and the next one interrupts the sleep. */
static int interrupter(void *arg)
{
    pthread_t target = *(pthread_t *)arg;
    while (!__atomic_load_n(&intr_done, __ATOMIC_SEQ_CST)) {
        CHECK_RC(pthread_kill(target, SIGUSR1));
        sleep_ms(20);
    }
    return 0;
}

static int intr_sleeper(void *arg)
{
    (void)arg;
    struct timespec nap = {30, 0}, rem = {0, 0};
    int r = thrd_sleep(&nap, &rem);
    __atomic_store_n(&intr_done, 1, __ATOMIC_SEQ_CST);
    CHECK(r == -1, "an interrupted thrd_sleep returned %d", r);
    /* (Linux may report a little more than was asked for: the timer's slack.) */
    CHECK(rem.tv_sec > 20 && rem.tv_sec <= 30 && rem.tv_nsec >= 0 && rem.tv_nsec < 1000000000L,
          "remaining time %ld.%09ld of a 30 s sleep", (long)rem.tv_sec, rem.tv_nsec);
    return 0;
}

/* The sleeper is the main thread (a glibc thread), then a created thread. */
static uint64_t test_sleep_interrupted(uint64_t h)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL)); /* no SA_RESTART */
    pthread_t main_self = pthread_self();
    thrd_t k;
    CHECK_THRD(thrd_create(&k, interrupter, &main_self));
    intr_sleeper(NULL);
    CHECK_THRD(thrd_join(k, NULL));

    __atomic_store_n(&intr_done, 0, __ATOMIC_SEQ_CST);
    thrd_t s;
    CHECK_THRD(thrd_create(&s, intr_sleeper, NULL));
    pthread_t target = s;
    CHECK_THRD(thrd_create(&k, interrupter, &target));
    CHECK_THRD(thrd_join(s, NULL));
    CHECK_THRD(thrd_join(k, NULL));
    CHECK(usr1_count >= 2, "the handler ran %d times", (int)usr1_count);
    printf("sleep interrupted twice\n");
    return mix(h, 2);
}

int main(void)
{
    uint64_t h = MIX_INIT;
    h = test_before_threads(h);
    h = test_create_join(h);
    h = test_nested(h);
    h = test_detach(h);
    h = test_counter(h);
    h = test_recursive(h);
    h = test_timed(h);
    h = test_queue(h);
    h = test_broadcast(h);
    h = test_tss(h);
    h = test_call_once(h);
    h = test_sleep_yield(h);
    h = test_sleep_interrupted(h);
    finish(h);
    return 0;
}
