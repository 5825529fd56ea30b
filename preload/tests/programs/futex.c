/* syscall(SYS_futex) from application code, as InnoDB does it: a mutex built on a raw futex
 * word, shared by the main thread and 16 threads, with sleeps inside the critical section so
 * that both kinds of waiter (under the preload: green threads in the futex table, the main
 * thread in the kernel) are woken by both kinds of waker. Also a plain syscall() that is not a
 * futex. */
#include "check.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#define THREADS 16
#define ROUNDS 20000

static atomic_int word; /* 0 free, 1 locked, 2 contended */
static long counter;

static void lock(void) {
    int c = 0;
    if (atomic_compare_exchange_strong(&word, &c, 1))
        return;
    if (c != 2)
        c = atomic_exchange(&word, 2);
    while (c != 0) {
        syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        c = atomic_exchange(&word, 2);
    }
}

static void unlock(void) {
    if (atomic_fetch_sub(&word, 1) != 1) {
        atomic_store(&word, 0);
        long r = syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        CHECK(r >= 0, "futex wake: %s", strerror(errno));
    }
}

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        lock();
        counter++;
        if (i % 2000 == 0)
            usleep(50);
        unlock();
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK_RC(pthread_create(&t[i], NULL, worker, NULL));
    for (int i = 0; i < ROUNDS; i++) {
        lock();
        counter++;
        unlock();
    }
    for (int i = 0; i < THREADS; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    CHECK(counter == (long)(THREADS + 1) * ROUNDS, "counter %ld", counter);
    CHECK(syscall(SYS_getppid) == getppid(), "syscall(SYS_getppid)");
    errno = 0;
    CHECK(syscall(SYS_close, -1) == -1 && errno == EBADF, "syscall(SYS_close, -1): errno %d",
          errno);
    printf("ok %ld\n", counter);
    return 0;
}
