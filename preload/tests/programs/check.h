/* Shared helpers of the native-vs-preload programs (preload/tests/programs.rs).
 *
 * Every program is deterministic and self-checking: a failed check prints its reason on stderr
 * and exits 1 at once (_exit: no atexit handlers or stdio flushing while other threads may be
 * stuck); success prints lines that are identical in every correct run, ending with
 * "ok <checksum>". Nothing that legitimately differs between runs (thread ids, addresses,
 * timings) is ever printed. */
#ifndef FLEXSC_PROGRAMS_CHECK_H
#define FLEXSC_PROGRAMS_CHECK_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

__attribute__((noreturn, format(printf, 3, 4))) static inline void
fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: FAILED: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(1);
}

/* stdout is a file in the harness: make it line-buffered, so that the sections a program
 * finished are on record even when it is killed at the timeout (and nothing is buffered when a
 * program forks). */
__attribute__((constructor)) static void check_h_line_buffered_stdout(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* CHECK(cond, fmt, ...): fail with the message unless cond holds. */
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond))                                                                           \
            fail_at(__FILE__, __LINE__, "(" #cond ") " __VA_ARGS__);                           \
    } while (0)

/* CHECK_RC(call): a pthread-style call that must return 0. */
#define CHECK_RC(call)                                                                         \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != 0)                                                                          \
            fail_at(__FILE__, __LINE__, "%s returned %d (%s)", #call, rc_, strerror(rc_));     \
    } while (0)

/* CHECK_SYS(call): a libc call that must not return -1 (reports errno). */
#define CHECK_SYS(call)                                                                        \
    do {                                                                                       \
        if ((call) == -1)                                                                      \
            fail_at(__FILE__, __LINE__, "%s failed: %s", #call, strerror(errno));              \
    } while (0)

/* The running checksum: FNV-1a over 64-bit values, in a deterministic order. */
static inline uint64_t mix(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 0x100000001b3ULL;
    }
    return h;
}
#define MIX_INIT 0xcbf29ce484222325ULL

/* Monotonic time in nanoseconds (for bounds checks, never printed). */
static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* An absolute deadline ms milliseconds from now on the given clock. */
static inline struct timespec deadline_ms(clockid_t clock, long ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Reads exactly n bytes (a short read is continued); returns 0, or -1 on EOF/error. */
static inline int read_full(int fd, void *buf, size_t n)
{
    char *p = (char *)buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Writes all n bytes (a short write is continued); returns 0 or -1. */
static inline int write_full(int fd, const void *buf, size_t n)
{
    const char *p = (const char *)buf;
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Prints the final line. Only ever called once, by the main thread, after every check. */
static inline void finish(uint64_t h)
{
    printf("ok %016" PRIx64 "\n", h);
    fflush(stdout);
}

#ifdef __cplusplus
}
#endif

#endif
