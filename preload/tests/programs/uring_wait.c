/* Threads that wait for completions on io_uring rings of their own, through liburing
 * (io_uring_wait_cqe, i.e. __io_uring_get_cqe, as MariaDB's InnoDB does), while the thread that
 * completes their reads is created only after all of them wait: under the preload every waiter
 * and the writer are green threads, so a wait that held its carrier would leave the writer
 * nowhere to run (the run would hang). A peek at an empty ring must not wait.
 * liburing.so.2 is loaded at run time, its
 * struct io_uring (216 bytes in liburing 2.x) and the SQE/CQE layouts are the kernel's and
 * liburing's ABI, written here because liburing's headers may not be installed. */
#define _GNU_SOURCE
#include "check.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>

#define WAITERS 8
#define IORING_OP_READ 22

struct ring {
    _Alignas(8) unsigned char bytes[216];
};

static int (*queue_init)(unsigned, struct ring *, unsigned);
static void (*queue_exit)(struct ring *);
static unsigned char *(*get_sqe)(struct ring *);
static int (*submit)(struct ring *);
static int (*get_cqe)(struct ring *, unsigned char **, unsigned, unsigned, void *);

static int pipes[WAITERS][2];
static atomic_int waiting;

/* io_uring_wait_cqe, as liburing.h defines it (a peek first, then the wait). */
static int wait_cqe(struct ring *r, unsigned char **cqe)
{
    return get_cqe(r, cqe, 0, 1, NULL);
}

/* io_uring_cqe_seen: advances the CQ head (struct io_uring_cq's khead, at offset 104). */
static void cqe_seen(struct ring *r)
{
    unsigned *khead = *(unsigned **)(r->bytes + 104);
    __atomic_store_n(khead, *khead + 1, __ATOMIC_RELEASE);
}

static void *waiter(void *arg)
{
    long i = (long)arg;
    struct ring r;
    int rc = queue_init(4, &r, 0);
    CHECK(rc == 0, "io_uring_queue_init: %s", strerror(-rc));
    char buf[32] = {0};
    unsigned char *sqe = get_sqe(&r);
    CHECK(sqe != NULL, "io_uring_get_sqe");
    memset(sqe, 0, 64);
    sqe[0] = IORING_OP_READ;
    *(int *)(sqe + 4) = pipes[i][0];
    *(uint64_t *)(sqe + 8) = (uint64_t)-1; /* the file position: a pipe has none */
    *(uint64_t *)(sqe + 16) = (uint64_t)(uintptr_t)buf;
    *(uint32_t *)(sqe + 24) = sizeof buf - 1;
    *(uint64_t *)(sqe + 32) = (uint64_t)i + 100; /* user_data */
    CHECK(submit(&r) == 1, "io_uring_submit");
    atomic_fetch_add(&waiting, 1);
    unsigned char *cqe = NULL;
    rc = wait_cqe(&r, &cqe);
    CHECK(rc == 0 && cqe != NULL, "io_uring_wait_cqe: %d", rc);
    uint64_t user_data = *(uint64_t *)cqe;
    int res = *(int *)(cqe + 8);
    CHECK(user_data == (uint64_t)i + 100, "waiter %ld: completion of %" PRIu64, i, user_data);
    char want[32];
    snprintf(want, sizeof want, "message %ld", i);
    CHECK(res == (int)strlen(want) && strcmp(buf, want) == 0, "waiter %ld read %d: %s", i, res,
          buf);
    cqe_seen(&r);
    /* The ring is empty now: a peek does not wait. */
    rc = get_cqe(&r, &cqe, 0, 0, NULL);
    CHECK(rc == -EAGAIN, "a peek at an empty ring: %d", rc);
    queue_exit(&r);
    return NULL;
}

static void *writer(void *arg)
{
    (void)arg;
    for (long i = 0; i < WAITERS; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "message %ld", i);
        CHECK(write(pipes[i][1], msg, (size_t)n) == n, "write: %s", strerror(errno));
    }
    return NULL;
}

int main(void)
{
    void *lib = dlopen("liburing.so.2", RTLD_NOW | RTLD_GLOBAL);
    CHECK(lib != NULL, "liburing.so.2 is needed (Debian: apt-get install liburing2): %s",
          dlerror());
    *(void **)&queue_init = dlsym(lib, "io_uring_queue_init");
    *(void **)&queue_exit = dlsym(lib, "io_uring_queue_exit");
    *(void **)&get_sqe = dlsym(lib, "io_uring_get_sqe");
    *(void **)&submit = dlsym(lib, "io_uring_submit");
    /* Looked up as a program linked with -luring binds it: the first definition in the global
     * scope (a preloaded library's, if it has one). */
    *(void **)&get_cqe = dlsym(RTLD_DEFAULT, "__io_uring_get_cqe");
    CHECK(queue_init && queue_exit && get_sqe && submit && get_cqe, "liburing's functions");
    for (int i = 0; i < WAITERS; i++)
        CHECK_SYS(pipe(pipes[i]));
    pthread_t t[WAITERS], w;
    for (long i = 0; i < WAITERS; i++)
        CHECK_RC(pthread_create(&t[i], NULL, waiter, (void *)i));
    while (atomic_load(&waiting) < WAITERS)
        sleep_ms(1);
    sleep_ms(50); /* let them reach the wait */
    CHECK_RC(pthread_create(&w, NULL, writer, NULL));
    CHECK_RC(pthread_join(w, NULL));
    for (int i = 0; i < WAITERS; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    printf("%d threads waited for io_uring completions; a thread created later completed them\n",
           WAITERS);
    finish(MIX_INIT ^ WAITERS);
    return 0;
}
