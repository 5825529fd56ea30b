/* The mapping cache (preload/src/map_cache.rs): read-only shared file mappings the program
 * unmaps are kept for its next mapping of the same range. Whatever the cache does, a program
 * must see what the kernel would show it: the file's current contents (written, truncated,
 * replaced), the errors mmap gives, its own fixed mappings, mremap and mprotect, across threads
 * and fork. With FLEXSC_EXPECT_MAP_CACHE set (the preload run of the test that expects the
 * cache on) an unmapped range must still be mapped until it expires, and unmapped after;
 * without it (natively, or with FLEXSC_MAP_CACHE=0) it must be gone at once. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "check.h"

#define LEN 4096
static char path[256];
static int expect_cache;

static void fill(int fd, char c, size_t n)
{
    char buf[2 * LEN];
    memset(buf, c, sizeof buf);
    CHECK(n <= sizeof buf);
    CHECK(pwrite(fd, buf, n, 0) == (ssize_t)n, "pwrite: %s", strerror(errno));
}

static int is_mapped(void *p)
{
    unsigned char v;
    return mincore(p, LEN, &v) == 0;
}

/* Maps LEN bytes of fd read-only and shared, checks every byte is c, returns the mapping. */
static char *map_expect(int fd, char c)
{
    char *p = mmap(NULL, LEN, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
    for (int i = 0; i < LEN; i++)
        CHECK(p[i] == c, "byte %d is %d, not %d", i, p[i], c);
    return p;
}

struct worker {
    int fd;
    uint64_t sum;
};

static void *worker(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 2000; i++) {
        char *p = mmap(NULL, LEN, PROT_READ, MAP_SHARED, w->fd, 0);
        CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
        w->sum += (unsigned char)p[i % LEN];
        CHECK(munmap(p, LEN) == 0);
    }
    return NULL;
}

int main(void)
{
    uint64_t h = MIX_INIT;
    expect_cache = getenv("FLEXSC_EXPECT_MAP_CACHE") != NULL;
    snprintf(path, sizeof path, "/tmp/flexsc-map-cache-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK_SYS(fd);
    fill(fd, 'A', 2 * LEN);

    /* Unmapped, the range stays mapped under the cache (and is gone natively). */
    char *p = map_expect(fd, 'A');
    CHECK_SYS(munmap(p, LEN));
    CHECK(is_mapped(p) == expect_cache, "mapped after munmap: %d", is_mapped(p));
    printf("unmapped\n");

    /* Writes through the file are seen by the next mapping. */
    fill(fd, 'B', 2 * LEN);
    p = map_expect(fd, 'B');
    /* And by a mapping held meanwhile. */
    fill(fd, 'C', 2 * LEN);
    for (int i = 0; i < LEN; i++)
        CHECK(p[i] == 'C');
    CHECK_SYS(munmap(p, LEN));
    /* Truncated and written again. */
    CHECK_SYS(ftruncate(fd, 0));
    fill(fd, 'D', 2 * LEN);
    CHECK_SYS(munmap(map_expect(fd, 'D'), LEN));
    printf("coherent\n");

    /* A file replaced under its name is another file. */
    CHECK_SYS(unlink(path));
    int fd2 = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK_SYS(fd2);
    fill(fd2, 'E', 2 * LEN);
    CHECK_SYS(munmap(map_expect(fd2, 'E'), LEN));
    CHECK_SYS(munmap(map_expect(fd, 'D'), LEN));
    printf("replaced\n");

    /* mmap's errors are the kernel's, even with an idle mapping of the file. */
    int wronly = open(path, O_WRONLY);
    CHECK_SYS(wronly);
    errno = 0;
    CHECK(mmap(NULL, LEN, PROT_READ, MAP_SHARED, wronly, 0) == MAP_FAILED && errno == EACCES,
          "write-only: %s", strerror(errno));
    int opath = open(path, O_PATH);
    CHECK_SYS(opath);
    errno = 0;
    CHECK(mmap(NULL, LEN, PROT_READ, MAP_SHARED, opath, 0) == MAP_FAILED && errno == EBADF,
          "O_PATH: %s", strerror(errno));
    errno = 0;
    CHECK(mmap(NULL, LEN, PROT_READ, MAP_SHARED, 999, 0) == MAP_FAILED && errno == EBADF);
    errno = 0;
    CHECK(mmap(NULL, LEN, PROT_READ, MAP_SHARED, fd2, 100) == MAP_FAILED && errno == EINVAL);
    errno = 0;
    CHECK(munmap((char *)p + 1, LEN) == -1 && errno == EINVAL);
    close(wronly);
    close(opath);
    printf("errors\n");

    /* A fixed mapping over an unmapped range is the program's own. */
    p = map_expect(fd2, 'E');
    CHECK_SYS(munmap(p, LEN));
    char *q = mmap(p, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(q == p, "MAP_FIXED: %s", strerror(errno));
    memset(q, 'X', LEN);
    CHECK_SYS(munmap(q, LEN));
    CHECK(!is_mapped(q));
    CHECK_SYS(munmap(map_expect(fd2, 'E'), LEN));
    /* MAP_FIXED_NOREPLACE succeeds where the program unmapped. */
    p = map_expect(fd2, 'E');
    CHECK_SYS(munmap(p, LEN));
    q = mmap(p, LEN, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    CHECK(q == p, "MAP_FIXED_NOREPLACE: %s", strerror(errno));
    CHECK(q[0] == 0);
    CHECK_SYS(munmap(q, LEN));
    printf("fixed\n");

    /* mprotect: the mapping is the program's; the next one is read-only again. */
    p = map_expect(fd2, 'E');
    CHECK_SYS(mprotect(p, LEN, PROT_READ | PROT_WRITE));
    p[0] = 'W';
    CHECK_SYS(munmap(p, LEN));
    CHECK(!is_mapped(p), "an mprotected mapping is unmapped for real");
    char c;
    CHECK(pread(fd2, &c, 1, 0) == 1 && c == 'W');
    fill(fd2, 'E', 2 * LEN);
    p = map_expect(fd2, 'E');
    CHECK_SYS(munmap(p, LEN));
    /* mremap: grown and moved, it is the program's too. */
    p = map_expect(fd2, 'E');
    char *r = mremap(p, LEN, 2 * LEN, MREMAP_MAYMOVE);
    CHECK(r != MAP_FAILED, "mremap: %s", strerror(errno));
    CHECK(r[2 * LEN - 1] == 'E');
    CHECK_SYS(munmap(r, 2 * LEN));
    CHECK(!is_mapped(r));
    printf("mprotect mremap\n");

    /* syscall(2) reaches the same mappings. */
    p = (char *)syscall(SYS_mmap, NULL, LEN, PROT_READ, MAP_SHARED, fd2, 0);
    CHECK(p != MAP_FAILED && p[0] == 'E');
    CHECK(syscall(SYS_munmap, p, LEN) == 0);
    CHECK(is_mapped(p) == expect_cache);
    CHECK_SYS(munmap(map_expect(fd2, 'E'), LEN));
    /* So does munmap looked up by glibc's version (dlvsym skips unversioned definitions). */
    int (*versioned_munmap)(void *, size_t) =
        (int (*)(void *, size_t))dlvsym(RTLD_DEFAULT, "munmap", "GLIBC_2.2.5");
    CHECK(versioned_munmap != NULL, "dlvsym: %s", dlerror());
    p = map_expect(fd2, 'E');
    CHECK_SYS(versioned_munmap(p, LEN));
    CHECK(is_mapped(p) == expect_cache);
    CHECK_SYS(munmap(map_expect(fd2, 'E'), LEN));
    printf("syscall\n");

    /* Threads map and unmap the file at once. */
    fill(fd2, 'T', 2 * LEN);
    struct worker w[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){.fd = fd2};
        CHECK_RC(pthread_create(&t[i], NULL, worker, &w[i]));
    }
    for (int i = 0; i < 8; i++) {
        CHECK_RC(pthread_join(t[i], NULL));
        CHECK(w[i].sum == 2000u * 'T');
        h = mix(h, w[i].sum);
    }
    printf("threads\n");

    /* A fork child maps and unmaps as well; the parent's idle mappings are not its own. */
    p = map_expect(fd2, 'T');
    CHECK_SYS(munmap(p, LEN));
    pid_t pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        CHECK(!is_mapped(p), "the parent's idle mapping in the child");
        for (int i = 0; i < 100; i++)
            CHECK_SYS(munmap(map_expect(fd2, 'T'), LEN));
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(is_mapped(p) == expect_cache);
    printf("fork\n");

    /* Idle mappings expire (after a second) even while the program makes no mapping call. */
    p = map_expect(fd2, 'T');
    CHECK_SYS(munmap(p, LEN));
    CHECK(is_mapped(p) == expect_cache);
    sleep_ms(2500);
    CHECK(!is_mapped(p), "still mapped after 2.5 s idle");
    printf("expired\n");

    close(fd);
    close(fd2);
    CHECK_SYS(unlink(path));
    printf("ok %016" PRIx64 "\n", h);
    return 0;
}
