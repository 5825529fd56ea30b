/* The C API of multi-calls and compound calls (flexsc.h): flexsc_multicall, flexsc_compound_run
 * and syscall(FLEXSC_NR_COMPOUND, &header), first on the main thread before any pthread_create
 * (an OS thread: the compound runs in-process), then on a green thread (posted as one entry).
 * Both must give the same results: the paper's multi-call, a checked failure's stop, rejected
 * programs that run nothing, and the file-copy compound (a read/write loop).
 *
 * Only under libflexsc: natively these functions do not exist (programs.rs runs this program
 * under the preload alone). They are looked up with dlsym, so the binary links without it. */
#define _GNU_SOURCE
#include "check.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "flexsc.h"

static long (*run_compound)(struct flexsc_compound *);
static long (*multicall)(struct flexsc_call *, uint32_t);
static uint64_t sum = MIX_INIT;

#define U(p) ((uint64_t)(uintptr_t)(p))

/* The contents of `path` (at most cap bytes); returns its length. */
static size_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    CHECK_SYS(fd);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        CHECK_SYS(r);
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    return n;
}

/* (a) The paper's multi-call: open, write, pread, close in one go; every result filled in. */
static void paper(const char *tag)
{
    char a[64], b[64], rbuf[32] = {0};
    const char text[] = "exception-less";
    const size_t len = sizeof text - 1;
    snprintf(a, sizeof a, "%s-a", tag);
    snprintf(b, sizeof b, "%s-b", tag);
    int fd = open(a, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK_SYS(fd);
    struct flexsc_call calls[] = {
        {SYS_openat, {(uint64_t)AT_FDCWD, U(b), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600}, 1, 0},
        {SYS_write, {(uint64_t)fd, U(text), len}, 1, 0},
        /* longer than the file: a short read, no failure */
        {SYS_pread64, {(uint64_t)fd, U(rbuf), sizeof rbuf, 0}, 1, 0},
        {SYS_close, {(uint64_t)fd}, 1, 0},
    };
    long r = multicall(calls, 4);
    CHECK(r == 5, "%s: multicall returned %ld, not count + 1", tag, r);
    CHECK(calls[0].result >= 0, "%s: openat %ld", tag, (long)calls[0].result);
    CHECK(calls[1].result == (int64_t)len, "%s: write %ld", tag, (long)calls[1].result);
    CHECK(calls[2].result == (int64_t)len && memcmp(rbuf, text, len) == 0,
          "%s: pread %ld '%.32s'", tag, (long)calls[2].result, rbuf);
    CHECK(calls[3].result == 0, "%s: close %ld", tag, (long)calls[3].result);
    errno = 0;
    CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF, "%s: the multicall did not close fd", tag);
    int opened = (int)calls[0].result;
    CHECK(fcntl(opened, F_GETFD) == FD_CLOEXEC, "%s: the opened fd is not the call's", tag);
    CHECK_SYS(close(opened));
    struct stat st;
    CHECK_SYS(stat(b, &st));
    printf("%s: paper multicall %ld, wrote %ld, read %ld\n", tag, r, (long)calls[1].result,
           (long)calls[2].result);
    sum = mix(mix(sum, (uint64_t)r), (uint64_t)calls[2].result);
}

/* (b) A checked failure stops with its 1-based index; unchecked ones do not; later calls keep
 * -ECANCELED and do not run. */
static void stops(const char *tag)
{
    char path[64], got[8] = {0};
    snprintf(path, sizeof path, "%s-stop", tag);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK_SYS(fd);
    struct flexsc_call calls[] = {
        {SYS_write, {(uint64_t)fd, U("a"), 1}, 1, 0},
        {SYS_close, {(uint64_t)-1}, 0, 0}, /* unchecked: goes on */
        {SYS_read, {(uint64_t)-1, U(got), 1}, 1, 0},
        {SYS_write, {(uint64_t)fd, U("b"), 1}, 1, 0},
    };
    long r = multicall(calls, 4);
    CHECK(r == 3, "%s: multicall returned %ld, not the failed call's index 3", tag, r);
    CHECK(calls[0].result == 1, "%s: write %ld", tag, (long)calls[0].result);
    CHECK(calls[1].result == -EBADF, "%s: close(-1) %ld", tag, (long)calls[1].result);
    CHECK(calls[2].result == -EBADF, "%s: read(-1) %ld", tag, (long)calls[2].result);
    CHECK(calls[3].result == -ECANCELED, "%s: the call after the stop: %ld", tag,
          (long)calls[3].result);
    CHECK_SYS(close(fd));
    char buf[8];
    CHECK(slurp(path, buf, sizeof buf) == 1 && buf[0] == 'a', "%s: the file is not \"a\"", tag);
    printf("%s: checked failure stops at %ld\n", tag, r);
    sum = mix(sum, (uint64_t)r);
}

/* (c) Malformed programs are rejected before anything runs (steps == 0): a valid first op that
 * would write the file leaves it empty. */
static void rejected(const char *tag)
{
    char path[64];
    snprintf(path, sizeof path, "%s-rejected", tag);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK_SYS(fd);

    /* multi-calls: a fork among them, a number no system call has, no calls, too many */
    struct flexsc_call calls[] = {
        {SYS_write, {(uint64_t)fd, U("x"), 1}, 1, 0},
        {SYS_fork, {0}, 1, 0},
    };
    long r = multicall(calls, 2);
    CHECK(r == -EPERM, "%s: a multicall with fork returned %ld", tag, r);
    CHECK(calls[0].result == -ECANCELED && calls[1].result == -ECANCELED,
          "%s: results of a rejected multicall: %ld %ld", tag, (long)calls[0].result,
          (long)calls[1].result);
    calls[1].nr = 70000;
    r = multicall(calls, 2);
    CHECK(r == -EPERM, "%s: a multicall with call 70000 returned %ld", tag, r);
    CHECK(multicall(calls, 0) == -EINVAL, "%s: count 0", tag);
    CHECK(multicall(calls, FLEXSC_COMPOUND_MAX_OPS + 1) == -E2BIG, "%s: count above max", tag);

    /* compounds: a reference to itself, a jump past the end, an unknown version, no header */
    struct flexsc_op ops[2] = {{0}};
    int64_t results[2] = {0};
    ops[0].kind = FLEXSC_OP_CALL;
    ops[0].nr = SYS_write;
    ops[0].args[0] = (uint64_t)fd;
    ops[0].args[1] = U("x");
    ops[0].args[2] = 1;
    ops[1] = ops[0];
    ops[1].src[2] = FLEXSC_SRC_RESULT;
    ops[1].refs[2] = 1; /* itself: not an earlier call */
    struct flexsc_compound h = {0};
    h.version = FLEXSC_COMPOUND_VERSION;
    h.nops = 2;
    h.max_steps = 2;
    h.ops = U(ops);
    h.results = U(results);
    r = run_compound(&h);
    CHECK(r == -EINVAL && h.steps == 0 && h.stop == 1,
          "%s: self reference: %ld, steps %u, stop %u", tag, r, h.steps, h.stop);

    ops[1] = (struct flexsc_op){0};
    ops[1].kind = FLEXSC_OP_JUMP;
    ops[1].cond = FLEXSC_COND_ALWAYS;
    ops[1].target = 3;
    h.steps = 99;
    r = run_compound(&h);
    CHECK(r == -EINVAL && h.steps == 0 && h.stop == 1,
          "%s: jump out of range: %ld, steps %u, stop %u", tag, r, h.steps, h.stop);

    ops[1].target = 2;
    h.version = 2;
    r = run_compound(&h);
    CHECK(r == -EINVAL && h.steps == 0 && h.stop == 0xFFFFFFFFu,
          "%s: version 2: %ld, steps %u, stop %u", tag, r, h.steps, h.stop);
    CHECK(run_compound(NULL) == -EFAULT, "%s: a null header", tag);

    struct stat st;
    CHECK_SYS(fstat(fd, &st));
    CHECK(st.st_size == 0, "%s: a rejected program wrote %lld bytes", tag, (long long)st.st_size);

    /* and the same program, now valid (the jump goes to the end), runs */
    h.version = FLEXSC_COMPOUND_VERSION;
    r = run_compound(&h);
    CHECK(r == 3 && h.steps == 2 && h.stop == 2 && results[0] == 1,
          "%s: the valid program: %ld, steps %u, stop %u, write %ld", tag, r, h.steps, h.stop,
          (long)results[0]);
    CHECK_SYS(close(fd));
    printf("%s: rejected EPERM EPERM EINVAL E2BIG EINVAL EINVAL EINVAL EFAULT, then ran %ld\n",
           tag, r);
    sum = mix(sum, (uint64_t)r);
}

/* (d) Cosy's file copy as one compound: read a chunk into the shared buffer, stop at EOF,
 * write what read returned, loop. */
#define CHUNK 4096
#define COPY_SIZE (3 * CHUNK + 777)

static void file_copy(const char *tag)
{
    static char data[COPY_SIZE], back[COPY_SIZE + 1];
    char src[64], dst[64];
    snprintf(src, sizeof src, "%s-copy-src", tag);
    snprintf(dst, sizeof dst, "%s-copy-dst", tag);
    for (size_t i = 0; i < COPY_SIZE; i++)
        data[i] = (char)(i * 131 + i / 7);
    int in = open(src, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK_SYS(in);
    CHECK(write_full(in, data, COPY_SIZE) == 0, "write the source");
    CHECK_SYS(lseek(in, 0, SEEK_SET));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK_SYS(out);

    static char buf[CHUNK];
    struct flexsc_op ops[4] = {{0}};
    int64_t results[4];
    /* 0: n = read(in, buf, CHUNK), checked */
    ops[0].kind = FLEXSC_OP_CALL;
    ops[0].flags = FLEXSC_OP_CHECK;
    ops[0].nr = SYS_read;
    ops[0].nargs = 3;
    ops[0].args[0] = (uint64_t)in;
    ops[0].src[1] = FLEXSC_SRC_BUF;
    ops[0].args[2] = CHUNK;
    /* 1: if n <= 0 go to the end */
    ops[1].kind = FLEXSC_OP_JUMP;
    ops[1].cond = FLEXSC_COND_LE;
    ops[1].src[0] = FLEXSC_SRC_RESULT;
    ops[1].refs[0] = 0;
    ops[1].target = 4;
    /* 2: write(out, buf, n), checked */
    ops[2].kind = FLEXSC_OP_CALL;
    ops[2].flags = FLEXSC_OP_CHECK;
    ops[2].nr = SYS_write;
    ops[2].nargs = 3;
    ops[2].args[0] = (uint64_t)out;
    ops[2].src[1] = FLEXSC_SRC_BUF;
    ops[2].src[2] = FLEXSC_SRC_RESULT;
    ops[2].refs[2] = 0;
    /* 3: go to 0 */
    ops[3].kind = FLEXSC_OP_JUMP;
    ops[3].cond = FLEXSC_COND_ALWAYS;
    ops[3].target = 0;
    struct flexsc_compound h = {0};
    h.version = FLEXSC_COMPOUND_VERSION;
    h.nops = 4;
    h.max_steps = 1000;
    h.ops = U(ops);
    h.results = U(results);
    h.buf = U(buf);
    h.buf_len = CHUNK;
    long r = run_compound(&h);
    /* 4 chunks of 4 ops, then the read at EOF and the jump out */
    CHECK(r == 5 && h.steps == 18 && h.stop == 4, "%s: copy: %ld, steps %u, stop %u", tag, r,
          h.steps, h.stop);
    CHECK(results[0] == 0 && results[2] == 777, "%s: last read %ld, last write %ld", tag,
          (long)results[0], (long)results[2]);
    CHECK_SYS(close(in));
    CHECK_SYS(close(out));
    CHECK(slurp(dst, back, sizeof back) == COPY_SIZE && memcmp(back, data, COPY_SIZE) == 0,
          "%s: the copy differs", tag);

    /* a destination that cannot be written: the checked write stops the loop at once */
    in = open(src, O_RDONLY);
    CHECK_SYS(in);
    out = open(dst, O_RDONLY);
    CHECK_SYS(out);
    ops[0].args[0] = (uint64_t)in;
    ops[2].args[0] = (uint64_t)out;
    r = run_compound(&h);
    CHECK(r == 3 && h.steps == 3 && results[0] == CHUNK && results[2] == -EBADF,
          "%s: copy to a read-only fd: %ld, steps %u, write %ld", tag, r, h.steps,
          (long)results[2]);
    CHECK_SYS(close(in));
    CHECK_SYS(close(out));
    printf("%s: file copy %d bytes in %u steps, read-only destination stops at %ld\n", tag,
           COPY_SIZE, 18u, r);
    sum = mix(mix(sum, (uint64_t)r), COPY_SIZE);
}

/* (e) syscall(FLEXSC_NR_COMPOUND, &header) with a multi-call built by flexsc_multicall_init. */
static void via_syscall(const char *tag)
{
    char path[64], rbuf[8] = {0};
    snprintf(path, sizeof path, "%s-syscall", tag);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK_SYS(fd);
    const uint16_t nrs[3] = {SYS_pwrite64, SYS_pread64, SYS_read};
    const uint64_t args[3][6] = {
        {(uint64_t)fd, U("hello"), 5, 0},
        {(uint64_t)fd, U(rbuf), 5, 0},
        {(uint64_t)-1, U(rbuf), 1},
    };
    const uint8_t check[3] = {1, 1, 0};
    struct flexsc_op ops[3];
    int64_t results[3];
    struct flexsc_compound h;
    CHECK(flexsc_multicall_init(&h, ops, results, 3, nrs, args, check) == 0, "init");
    long r = syscall(FLEXSC_NR_COMPOUND, &h);
    CHECK(r == 4 && results[0] == 5 && results[1] == 5 && results[2] == -EBADF &&
              memcmp(rbuf, "hello", 5) == 0 && h.steps == 3,
          "%s: syscall(FLEXSC_NR_COMPOUND): %ld, results %ld %ld %ld, steps %u", tag, r,
          (long)results[0], (long)results[1], (long)results[2], h.steps);
    h.max_steps = 0;
    errno = 0;
    r = syscall(FLEXSC_NR_COMPOUND, &h);
    CHECK(r == -1 && errno == EINVAL && h.steps == 0,
          "%s: syscall with no step limit: %ld errno %d steps %u", tag, r, errno, h.steps);
    CHECK_SYS(close(fd));
    printf("%s: syscall(FLEXSC_NR_COMPOUND) %ld, rejected EINVAL\n", tag, 4L);
    sum = mix(sum, 4);
}

static void run_all(const char *tag)
{
    paper(tag);
    stops(tag);
    rejected(tag);
    file_copy(tag);
    via_syscall(tag);
}

static void *green(void *arg)
{
    (void)arg;
    run_all("green");
    return NULL;
}

int main(void)
{
    run_compound = (long (*)(struct flexsc_compound *))dlsym(RTLD_DEFAULT, "flexsc_compound_run");
    multicall = (long (*)(struct flexsc_call *, uint32_t))dlsym(RTLD_DEFAULT, "flexsc_multicall");
    CHECK(run_compound && multicall, "flexsc_compound_run and flexsc_multicall not found: run "
                                     "this program under libflexsc.so");
    /* Before the first pthread_create the runtime is not up: in-process. */
    run_all("main");
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, green, NULL));
    CHECK_RC(pthread_join(t, NULL));
    finish(sum);
    return 0;
}
