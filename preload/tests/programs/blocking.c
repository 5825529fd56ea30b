/* Many concurrent blocking calls: 500 threads blocked in read on their own pipes at once,
 * released by one writer; poll on pipes (readiness, timeout, hang-up, many pollers at once);
 * nanosleep/usleep/clock_nanosleep in many threads at once (they overlap: the total is far
 * below the sum); write/read (and writev/readv) streams through socketpairs. */
#define _GNU_SOURCE
#include "check.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

static pthread_attr_t small_stack; /* 256 KiB stacks for the crowds of threads */

static void create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    CHECK_RC(pthread_create(t, &small_stack, fn, arg));
}

/* ---------------- 500 readers blocked at once ---------------- */

#define READERS 500

static int rpipe[READERS][2];
static int about_to_read, reads_returned;
static uint64_t reader_got[READERS];

static void *blocked_reader(void *arg)
{
    int i = (int)(intptr_t)arg;
    uint64_t v = 0;
    __atomic_fetch_add(&about_to_read, 1, __ATOMIC_SEQ_CST);
    ssize_t n = read(rpipe[i][0], &v, sizeof v);
    __atomic_fetch_add(&reads_returned, 1, __ATOMIC_SEQ_CST);
    CHECK(n == (ssize_t)sizeof v, "reader %d: read returned %zd (%s)", i, n, strerror(errno));
    CHECK(v == (uint64_t)i * 0x9e3779b97f4a7c15ULL, "reader %d got another reader's value", i);
    /* the writer closed its end after writing: the next read is end of file */
    n = read(rpipe[i][0], &v, sizeof v);
    CHECK(n == 0, "reader %d: read after the writer closed returned %zd", i, n);
    reader_got[i] = v;
    return NULL;
}

static void *release_writer(void *arg)
{
    (void)arg;
    /* in reverse order of creation, so that no reader is released by accident of scheduling */
    for (int i = READERS - 1; i >= 0; i--) {
        uint64_t v = (uint64_t)i * 0x9e3779b97f4a7c15ULL;
        CHECK(write(rpipe[i][1], &v, sizeof v) == (ssize_t)sizeof v, "writer: pipe %d", i);
        CHECK_SYS(close(rpipe[i][1]));
    }
    return NULL;
}

static uint64_t test_blocked_readers(uint64_t h)
{
    pthread_t t[READERS], w;
    for (int i = 0; i < READERS; i++)
        CHECK_SYS(pipe(rpipe[i]));
    for (intptr_t i = 0; i < READERS; i++)
        create(&t[i], blocked_reader, (void *)i);
    /* every reader is on its way into read (or in it); give the last ones time to block */
    while (__atomic_load_n(&about_to_read, __ATOMIC_SEQ_CST) < READERS)
        sleep_ms(1);
    sleep_ms(100);
    CHECK(__atomic_load_n(&reads_returned, __ATOMIC_SEQ_CST) == 0,
          "%d reads returned before any data was written", reads_returned);
    create(&w, release_writer, NULL);
    CHECK_RC(pthread_join(w, NULL));
    uint64_t sum = 0;
    for (int i = 0; i < READERS; i++) {
        CHECK_RC(pthread_join(t[i], NULL));
        sum += reader_got[i];
        CHECK_SYS(close(rpipe[i][0]));
    }
    printf("blocked readers %d released\n", reads_returned);
    return mix(h, sum);
}

/* ---------------- poll ---------------- */

#define POLLED 8

static int ppipe[POLLED][2];
static int pack[2]; /* poller -> writer: pipe k's byte was consumed */

static void *poll_writer(void *arg)
{
    (void)arg;
    for (int k = 0; k < POLLED; k++) {
        sleep_ms(5); /* the poller is (most likely) already blocked in poll */
        char c = (char)('a' + k);
        CHECK(write(ppipe[k][1], &c, 1) == 1, "poll writer");
        /* pipe k+1 gets data only once the poller has consumed pipe k's */
        CHECK(read(pack[0], &c, 1) == 1 && c == 'a' + k, "poll writer: ack");
    }
    return NULL;
}

#define POLLERS 64

static int qpipe[POLLERS][2];
static int pollers_ready;

static void *many_poller(void *arg)
{
    int i = (int)(intptr_t)arg;
    struct pollfd p = {qpipe[i][0], POLLIN, 0};
    __atomic_fetch_add(&pollers_ready, 1, __ATOMIC_SEQ_CST);
    int n = poll(&p, 1, 20000);
    CHECK(n == 1 && (p.revents & POLLIN), "poller %d: poll %d revents %x", i, n, p.revents);
    char c;
    CHECK(read(qpipe[i][0], &c, 1) == 1 && c == (char)i, "poller %d: data", i);
    return NULL;
}

static uint64_t test_poll(uint64_t h)
{
    for (int k = 0; k < POLLED; k++)
        CHECK_SYS(pipe(ppipe[k]));
    CHECK_SYS(pipe(pack));
    struct pollfd fds[POLLED];

    /* no data: times out after ~50 ms with 0 */
    for (int k = 0; k < POLLED; k++)
        fds[k] = (struct pollfd){ppipe[k][0], POLLIN, 0};
    int64_t t0 = now_ns();
    int n = poll(fds, POLLED, 50);
    int64_t ms = (now_ns() - t0) / 1000000;
    CHECK(n == 0 && ms >= 49 && ms < 5000, "empty poll returned %d after %" PRId64 " ms", n, ms);

    /* each pipe in turn becomes readable; poll reports exactly that one */
    pthread_t w;
    create(&w, poll_writer, NULL);
    uint64_t order = 0;
    for (int k = 0; k < POLLED; k++) {
        for (int j = 0; j < POLLED; j++)
            fds[j].revents = 0;
        n = poll(fds, POLLED, 20000);
        CHECK(n == 1, "poll returned %d, expected one ready pipe (round %d)", n, k);
        for (int j = 0; j < POLLED; j++)
            CHECK(fds[j].revents == (j == k ? POLLIN : 0), "round %d: pipe %d revents %x", k, j,
                  fds[j].revents);
        char c;
        CHECK(read(ppipe[k][0], &c, 1) == 1 && c == 'a' + k, "poll: data of pipe %d", k);
        order = order * 31 + (uint64_t)c;
        CHECK(write(pack[1], &c, 1) == 1, "poll: ack");
    }
    CHECK_RC(pthread_join(w, NULL));
    CHECK_SYS(close(pack[0]));
    CHECK_SYS(close(pack[1]));

    /* the write end closed: POLLHUP */
    CHECK_SYS(close(ppipe[0][1]));
    fds[0] = (struct pollfd){ppipe[0][0], POLLIN, 0};
    n = poll(fds, 1, 20000);
    CHECK(n == 1 && (fds[0].revents & POLLHUP), "poll after close: %d revents %x", n,
          fds[0].revents);
    for (int k = 0; k < POLLED; k++) {
        CHECK_SYS(close(ppipe[k][0]));
        if (k > 0)
            CHECK_SYS(close(ppipe[k][1]));
    }

    /* 64 threads in poll at once, released in reverse order */
    pthread_t t[POLLERS];
    for (int i = 0; i < POLLERS; i++)
        CHECK_SYS(pipe(qpipe[i]));
    for (intptr_t i = 0; i < POLLERS; i++)
        create(&t[i], many_poller, (void *)i);
    while (__atomic_load_n(&pollers_ready, __ATOMIC_SEQ_CST) < POLLERS)
        sleep_ms(1);
    sleep_ms(20);
    for (int i = POLLERS - 1; i >= 0; i--) {
        char c = (char)i;
        CHECK(write(qpipe[i][1], &c, 1) == 1, "release poller %d", i);
    }
    for (int i = 0; i < POLLERS; i++) {
        CHECK_RC(pthread_join(t[i], NULL));
        CHECK_SYS(close(qpipe[i][0]));
        CHECK_SYS(close(qpipe[i][1]));
    }
    printf("poll order %" PRIu64 " pollers %d\n", order, POLLERS);
    return mix(h, order);
}

/* ---------------- sleeps ---------------- */

#define SLEEPERS 200

static int64_t slept_ns[SLEEPERS];

static void *sleeper(void *arg)
{
    int i = (int)(intptr_t)arg;
    int64_t t0 = now_ns();
    switch (i % 3) {
    case 0: {
        struct timespec ts = {0, 50 * 1000000L}, rem;
        CHECK(nanosleep(&ts, &rem) == 0, "nanosleep: %s", strerror(errno));
        CHECK(usleep(50000) == 0, "usleep: %s", strerror(errno));
        break;
    }
    case 1: {
        struct timespec ts = {0, 100 * 1000000L};
        int rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        CHECK(rc == 0, "clock_nanosleep: %d", rc);
        break;
    }
    default: {
        struct timespec dl = deadline_ms(CLOCK_MONOTONIC, 100);
        int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL);
        CHECK(rc == 0, "clock_nanosleep(TIMER_ABSTIME): %d", rc);
        break;
    }
    }
    slept_ns[i] = now_ns() - t0;
    return NULL;
}

static uint64_t test_sleeps(uint64_t h)
{
    pthread_t t[SLEEPERS];
    int64_t t0 = now_ns();
    for (intptr_t i = 0; i < SLEEPERS; i++)
        create(&t[i], sleeper, (void *)i);
    for (int i = 0; i < SLEEPERS; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    int64_t total_ms = (now_ns() - t0) / 1000000;
    for (int i = 0; i < SLEEPERS; i++)
        CHECK(slept_ns[i] >= 99 * 1000000LL, "thread %d slept only %" PRId64 " us", i,
              slept_ns[i] / 1000);
    /* 200 threads x 100 ms = 20 s if the sleeps ran one after another */
    CHECK(total_ms >= 100 && total_ms < 5000, "%d threads sleeping 100 ms took %" PRId64 " ms",
          SLEEPERS, total_ms);
    printf("sleepers %d overlapped\n", SLEEPERS);
    return mix(h, SLEEPERS);
}

/* ---------------- socketpair streams ---------------- */

#define STREAMS 8
#define STREAM_BYTES (1 << 20)

struct stream {
    int fwd[2]; /* source -> echoer */
    int back[2]; /* echoer -> sink (the echoer transforms each byte) */
    uint64_t sink_sum;
};
static struct stream streams[STREAMS];

static unsigned char pattern(int s, size_t i) { return (unsigned char)((i * 7 + (size_t)s * 13) ^ (i >> 9)); }

/* deterministic chunk sizes 1..8192 */
static size_t chunk(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return 1 + (size_t)((*state >> 33) % 8192);
}

static void *stream_source(void *arg)
{
    int s = (int)(intptr_t)arg;
    static __thread unsigned char buf[8192 * 2];
    uint64_t st = (uint64_t)s + 1;
    size_t off = 0;
    int k = 0;
    while (off < STREAM_BYTES) {
        size_t n = chunk(&st);
        if (n > STREAM_BYTES - off)
            n = STREAM_BYTES - off;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(s, off + i);
        if (k++ % 2 == 0) {
            CHECK(write_full(streams[s].fwd[0], buf, n) == 0, "stream %d: write", s);
        } else {
            /* the same bytes as two iovecs */
            struct iovec iov[2] = {{buf, n / 2}, {buf + n / 2, n - n / 2}};
            ssize_t w = writev(streams[s].fwd[0], iov, 2);
            CHECK(w > 0, "stream %d: writev: %s", s, strerror(errno));
            if ((size_t)w < n)
                CHECK(write_full(streams[s].fwd[0], buf + w, n - (size_t)w) == 0,
                      "stream %d: write", s);
        }
        off += n;
    }
    CHECK_SYS(shutdown(streams[s].fwd[0], SHUT_WR));
    return NULL;
}

static void *stream_echoer(void *arg)
{
    int s = (int)(intptr_t)arg;
    unsigned char buf[4096];
    uint64_t st = (uint64_t)s * 977 + 5;
    size_t total = 0;
    for (;;) {
        size_t want = chunk(&st) % sizeof buf + 1;
        ssize_t n = read(streams[s].fwd[1], buf, want);
        CHECK(n >= 0, "stream %d: echoer read: %s", s, strerror(errno));
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            buf[i] ^= 0x5a;
        CHECK(write_full(streams[s].back[0], buf, (size_t)n) == 0, "stream %d: echo write", s);
        total += (size_t)n;
    }
    CHECK(total == STREAM_BYTES, "stream %d: echoer got %zu bytes", s, total);
    CHECK_SYS(shutdown(streams[s].back[0], SHUT_WR));
    return NULL;
}

static void *stream_sink(void *arg)
{
    int s = (int)(intptr_t)arg;
    unsigned char a[3000], b[5000];
    size_t off = 0;
    uint64_t sum = 0;
    for (;;) {
        struct iovec iov[2] = {{a, sizeof a}, {b, sizeof b}};
        ssize_t n = off % 2 ? readv(streams[s].back[1], iov, 2)
                            : read(streams[s].back[1], a, sizeof a);
        CHECK(n >= 0, "stream %d: sink read: %s", s, strerror(errno));
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            unsigned char c = i < (ssize_t)sizeof a ? a[i] : b[i - (ssize_t)sizeof a];
            CHECK(c == (pattern(s, off + (size_t)i) ^ 0x5a), "stream %d: byte %zu corrupted", s,
                  off + (size_t)i);
            sum += c;
        }
        off += (size_t)n;
    }
    CHECK(off == STREAM_BYTES, "stream %d: sink got %zu bytes", s, off);
    streams[s].sink_sum = sum;
    return NULL;
}

static uint64_t test_streams(uint64_t h)
{
    pthread_t t[STREAMS][3];
    for (intptr_t s = 0; s < STREAMS; s++) {
        CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, streams[s].fwd));
        CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, streams[s].back));
        create(&t[s][0], stream_sink, (void *)s);
        create(&t[s][1], stream_echoer, (void *)s);
        create(&t[s][2], stream_source, (void *)s);
    }
    uint64_t total = 0;
    for (int s = 0; s < STREAMS; s++) {
        for (int k = 0; k < 3; k++)
            CHECK_RC(pthread_join(t[s][k], NULL));
        for (int k = 0; k < 2; k++) {
            CHECK_SYS(close(streams[s].fwd[k]));
            CHECK_SYS(close(streams[s].back[k]));
        }
        h = mix(h, streams[s].sink_sum);
        total += streams[s].sink_sum;
    }
    printf("streams %d x %d bytes sum %" PRIu64 "\n", STREAMS, STREAM_BYTES, total);
    return h;
}

int main(void)
{
    /* 500 pipes are 1000 descriptors: raise the soft limit if it is lower */
    struct rlimit rl;
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &rl));
    if (rl.rlim_cur < 2 * READERS + 64) {
        CHECK(rl.rlim_max >= 2 * READERS + 64, "RLIMIT_NOFILE hard limit %lu is too low",
              (unsigned long)rl.rlim_max);
        rl.rlim_cur = 2 * READERS + 64;
        CHECK_SYS(setrlimit(RLIMIT_NOFILE, &rl));
    }
    CHECK_RC(pthread_attr_init(&small_stack));
    CHECK_RC(pthread_attr_setstacksize(&small_stack, 256 * 1024));
    uint64_t h = MIX_INIT;
    h = test_blocked_readers(h);
    h = test_poll(h);
    h = test_sleeps(h);
    h = test_streams(h);
    CHECK_RC(pthread_attr_destroy(&small_stack));
    finish(h);
    return 0;
}
