/* The stat family from many threads at once: stat, lstat, fstat, fstatat (and their 64 names),
 * statx, and the __xstat family programs built before glibc 2.33 call, on a file, a symbolic
 * link to it, a missing name and a bad descriptor: sizes, types and errors as the kernel gives
 * them. (programs.rs also checks that the preload run posted these calls exception-less.) */
#define _GNU_SOURCE
#include "check.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

/* glibc 2.36 still exports these, no longer declared by <sys/stat.h>. */
extern int __xstat(int, const char *, struct stat *);
extern int __lxstat(int, const char *, struct stat *);
extern int __fxstat(int, int, struct stat *);
extern int __fxstatat(int, int, const char *, struct stat *, int);

#define THREADS 8
#define ROUNDS 50
#define SIZE 12345
#define STAT_VER 1 /* _STAT_VER_LINUX on x86_64 */

static int dirfd_;

static void expect_file(const struct stat *st, const char *what)
{
    CHECK(S_ISREG(st->st_mode) && st->st_size == SIZE, "%s: mode %o size %lld", what,
          (unsigned)st->st_mode, (long long)st->st_size);
}

static void expect_link(const struct stat *st, const char *what)
{
    CHECK(S_ISLNK(st->st_mode), "%s: mode %o, not a link", what, (unsigned)st->st_mode);
}

static void *worker(void *arg)
{
    (void)arg;
    int fd = open("stat-file", O_RDONLY);
    CHECK_SYS(fd);
    for (int r = 0; r < ROUNDS; r++) {
        struct stat st;
        struct stat64 st64;
        CHECK_SYS(stat("stat-file", &st));
        expect_file(&st, "stat");
        CHECK_SYS(stat64("stat-file", &st64));
        CHECK(S_ISREG(st64.st_mode) && st64.st_size == SIZE, "stat64");
        CHECK_SYS(lstat("stat-link", &st));
        expect_link(&st, "lstat");
        CHECK_SYS(lstat64("stat-link", &st64));
        CHECK(S_ISLNK(st64.st_mode), "lstat64");
        CHECK_SYS(stat("stat-link", &st));
        expect_file(&st, "stat of a link");
        CHECK_SYS(fstatat(dirfd_, "stat-file", &st, 0));
        expect_file(&st, "fstatat");
        CHECK_SYS(fstatat(dirfd_, "stat-link", &st, AT_SYMLINK_NOFOLLOW));
        expect_link(&st, "fstatat(AT_SYMLINK_NOFOLLOW)");
        errno = 0;
        CHECK(stat("stat-missing", &st) == -1 && errno == ENOENT, "stat of a missing name: %s",
              strerror(errno));
        CHECK_SYS(__xstat(STAT_VER, "stat-file", &st));
        expect_file(&st, "__xstat");
        CHECK_SYS(__lxstat(STAT_VER, "stat-link", &st));
        expect_link(&st, "__lxstat");
        CHECK_SYS(__fxstatat(STAT_VER, dirfd_, "stat-file", &st, 0));
        expect_file(&st, "__fxstatat");
        errno = 0;
        CHECK(__xstat(99, "stat-file", &st) == -1 && errno == EINVAL, "__xstat version 99");

        CHECK_SYS(fstat(fd, &st));
        expect_file(&st, "fstat");
        CHECK_SYS(fstat64(fd, &st64));
        CHECK(st64.st_size == SIZE, "fstat64");
        CHECK_SYS(__fxstat(STAT_VER, fd, &st));
        expect_file(&st, "__fxstat");
        errno = 0;
        CHECK(fstat(-1, &st) == -1 && errno == EBADF, "fstat(-1): %s", strerror(errno));

        struct statx sx;
        CHECK_SYS(statx(AT_FDCWD, "stat-file", 0, STATX_SIZE | STATX_TYPE, &sx));
        CHECK((sx.stx_mask & STATX_SIZE) && sx.stx_size == SIZE && S_ISREG(sx.stx_mode),
              "statx");
    }
    close(fd);
    return NULL;
}

int main(void)
{
    unlink("stat-link");
    int fd = open("stat-file", O_CREAT | O_TRUNC | O_WRONLY, 0644);
    CHECK_SYS(fd);
    static char buf[SIZE];
    CHECK(write_full(fd, buf, sizeof buf) == 0, "write");
    close(fd);
    CHECK_SYS(symlink("stat-file", "stat-link"));
    dirfd_ = open(".", O_RDONLY | O_DIRECTORY);
    CHECK_SYS(dirfd_);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK_RC(pthread_create(&th[i], NULL, worker, NULL));
    for (int i = 0; i < THREADS; i++)
        CHECK_RC(pthread_join(th[i], NULL));
    unlink("stat-link");
    unlink("stat-file");
    printf("stat: %d threads x %d rounds\n", THREADS, ROUNDS);
    finish(mix(MIX_INIT, THREADS * ROUNDS));
    return 0;
}
