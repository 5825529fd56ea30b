/* Signals sent (pthread_kill) to threads waiting in synchronisation objects run their handlers
 * there, on the waiting thread, and the wait ends as Linux and glibc end it:
 * - pthread_mutex_lock (and pthread_mutex_timedlock) go on waiting: never EINTR, the lock is
 *   taken once its holder lets it go, and the timed one still times out at its deadline;
 * - pthread_cond_wait may return (a spurious wake-up, allowed), or go on; the caller's loop on
 *   its predicate makes both correct; the handler ran on the waiter either way;
 * - sem_wait fails with EINTR after a handler without SA_RESTART, and goes on waiting after one
 *   with SA_RESTART; sem_timedwait fails with EINTR even after an SA_RESTART handler (Linux ends
 *   a timed futex wait with EINTR whenever a handler ran);
 * - a raw syscall(SYS_futex, FUTEX_WAIT_PRIVATE) (as InnoDB makes) fails with EINTR after a
 *   handler without SA_RESTART and goes on waiting, until woken, after one with SA_RESTART. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>

static __thread int me;
static atomic_int ran_on[8];
static atomic_int ran_elsewhere;

static void handler(int sig)
{
    (void)sig;
    int saved = errno;
    if (me <= 0 || me >= 8)
        atomic_fetch_add(&ran_elsewhere, 1);
    else
        atomic_fetch_add(&ran_on[me], 1);
    errno = saved;
}

static void install(int sig, int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(sig, &sa, NULL));
}

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int flag;
static sem_t sem_eintr, sem_restart, sem_timed;
static atomic_int phase[8];

static void *mutex_waiter(void *arg)
{
    (void)arg;
    me = 1;
    atomic_store(&phase[1], 1);
    CHECK_RC(pthread_mutex_lock(&held)); /* interrupted by SIGUSR1, keeps waiting */
    CHECK(atomic_load(&ran_on[1]) == 1, "mutex waiter: handler ran %d times",
          atomic_load(&ran_on[1]));
    CHECK_RC(pthread_mutex_unlock(&held));
    return NULL;
}

static void *timedlock_waiter(void *arg)
{
    (void)arg;
    me = 2;
    /* Long enough for the signal to come first on a loaded machine. */
    struct timespec dl = deadline_ms(CLOCK_REALTIME, 2000);
    int64_t t0 = now_ns();
    atomic_store(&phase[2], 1);
    int rc = pthread_mutex_timedlock(&held, &dl);
    int64_t ms = (now_ns() - t0) / 1000000;
    CHECK(rc == ETIMEDOUT, "timedlock: %d", rc);
    CHECK(ms >= 1950 && ms < 10000, "timedlock took %lld ms for a 2000 ms deadline",
          (long long)ms);
    CHECK(atomic_load(&ran_on[2]) == 1, "timedlock waiter: handler ran %d times",
          atomic_load(&ran_on[2]));
    return NULL;
}

static void *cond_waiter(void *arg)
{
    (void)arg;
    me = 3;
    CHECK_RC(pthread_mutex_lock(&cm));
    atomic_store(&phase[3], 1);
    while (!flag)
        CHECK_RC(pthread_cond_wait(&cv, &cm));
    CHECK_RC(pthread_mutex_unlock(&cm));
    CHECK(atomic_load(&ran_on[3]) == 1, "cond waiter: handler ran %d times",
          atomic_load(&ran_on[3]));
    return NULL;
}

static void *sem_eintr_waiter(void *arg)
{
    (void)arg;
    me = 4;
    atomic_store(&phase[4], 1);
    errno = 0;
    int r = sem_wait(&sem_eintr); /* SIGUSR2: no SA_RESTART */
    CHECK(r == -1 && errno == EINTR, "sem_wait after a handler without SA_RESTART: %d, %d", r,
          errno);
    CHECK(atomic_load(&ran_on[4]) == 1, "sem waiter: handler ran %d times",
          atomic_load(&ran_on[4]));
    return NULL;
}

static void *sem_restart_waiter(void *arg)
{
    (void)arg;
    me = 5;
    atomic_store(&phase[5], 1);
    CHECK_SYS(sem_wait(&sem_restart)); /* SIGUSR1: SA_RESTART, then posted */
    CHECK(atomic_load(&ran_on[5]) == 1, "restart sem waiter: handler ran %d times",
          atomic_load(&ran_on[5]));
    return NULL;
}

static void *sem_timed_waiter(void *arg)
{
    (void)arg;
    me = 6;
    struct timespec dl = deadline_ms(CLOCK_REALTIME, 10000);
    int64_t t0 = now_ns();
    atomic_store(&phase[6], 1);
    int r = sem_timedwait(&sem_timed, &dl); /* SIGUSR1 (SA_RESTART): EINTR all the same */
    int64_t ms = (now_ns() - t0) / 1000000;
    CHECK(r == -1 && errno == EINTR, "sem_timedwait: %d, errno %d", r, errno);
    CHECK(ms < 5000, "sem_timedwait took %lld ms to see the signal", (long long)ms);
    CHECK(atomic_load(&ran_on[6]) == 1, "timed sem waiter: handler ran %d times",
          atomic_load(&ran_on[6]));
    return NULL;
}

static atomic_uint futex_word;

static long futex_wait(void)
{
    return syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static atomic_int futex_ran_ok;

static void *futex_waiter(void *arg)
{
    long restart = (long)arg;
    me = restart ? 3 : 2; /* slots of earlier sections, reset before this one */
    atomic_store(&phase[me], 1);
    errno = 0;
    long r = futex_wait();
    if (restart) {
        CHECK(r == 0, "FUTEX_WAIT after an SA_RESTART handler, then a wake: %ld, errno %d", r,
              errno);
    } else {
        CHECK(r == -1 && errno == EINTR, "FUTEX_WAIT after a handler without SA_RESTART: %ld, "
              "errno %d", r, errno);
    }
    CHECK(atomic_load(&ran_on[me]) == 1, "futex waiter: handler ran %d times",
          atomic_load(&ran_on[me]));
    atomic_fetch_add(&futex_ran_ok, 1);
    return NULL;
}

/* Lets thread `i` reach its wait (200 ms after it says it is about to), then signals it: a
 * signal that came before the wait would leave the wait blocked (the run hangs, not passes). */
static void signal_when_waiting(pthread_t t, int i, int sig)
{
    while (atomic_load(&phase[i]) == 0)
        sleep_ms(1);
    sleep_ms(200);
    CHECK_RC(pthread_kill(t, sig));
    while (atomic_load(&ran_on[i]) == 0)
        sleep_ms(1);
}

int main(void)
{
    install(SIGUSR1, SA_RESTART);
    install(SIGUSR2, 0);
    CHECK_SYS(sem_init(&sem_eintr, 0, 0));
    CHECK_SYS(sem_init(&sem_restart, 0, 0));
    CHECK_SYS(sem_init(&sem_timed, 0, 0));
    pthread_t t[7];

    CHECK_RC(pthread_mutex_lock(&held));
    CHECK_RC(pthread_create(&t[1], NULL, mutex_waiter, NULL));
    CHECK_RC(pthread_create(&t[2], NULL, timedlock_waiter, NULL));
    signal_when_waiting(t[1], 1, SIGUSR2); /* no SA_RESTART: still no EINTR for a mutex */
    signal_when_waiting(t[2], 2, SIGUSR1);
    CHECK_RC(pthread_join(t[2], NULL)); /* timed out while the lock stayed held */
    sleep_ms(20);
    CHECK_RC(pthread_mutex_unlock(&held));
    CHECK_RC(pthread_join(t[1], NULL));
    printf("mutex: the handler ran on the waiter, which kept waiting; timedlock kept its "
           "deadline\n");

    CHECK_RC(pthread_create(&t[3], NULL, cond_waiter, NULL));
    signal_when_waiting(t[3], 3, SIGUSR2);
    CHECK_RC(pthread_mutex_lock(&cm));
    flag = 1;
    CHECK_RC(pthread_cond_signal(&cv));
    CHECK_RC(pthread_mutex_unlock(&cm));
    CHECK_RC(pthread_join(t[3], NULL));
    printf("cond: the handler ran on the waiter\n");

    CHECK_RC(pthread_create(&t[4], NULL, sem_eintr_waiter, NULL));
    CHECK_RC(pthread_create(&t[5], NULL, sem_restart_waiter, NULL));
    CHECK_RC(pthread_create(&t[6], NULL, sem_timed_waiter, NULL));
    signal_when_waiting(t[4], 4, SIGUSR2);
    signal_when_waiting(t[5], 5, SIGUSR1);
    signal_when_waiting(t[6], 6, SIGUSR1);
    CHECK_RC(pthread_join(t[4], NULL));
    sleep_ms(20);
    CHECK_SYS(sem_post(&sem_restart));
    CHECK_RC(pthread_join(t[5], NULL));
    CHECK_RC(pthread_join(t[6], NULL));
    printf("sem: EINTR without SA_RESTART, waits on with it; sem_timedwait EINTR\n");

    /* Raw futex waits, in slots 2 and 3 again (their counts reset: those threads have ended). */
    uint64_t h = MIX_INIT;
    for (int i = 1; i < 7; i++)
        h = mix(h, (uint64_t)atomic_load(&ran_on[i]));
    atomic_store(&ran_on[2], 0);
    atomic_store(&ran_on[3], 0);
    atomic_store(&phase[2], 0);
    atomic_store(&phase[3], 0);
    pthread_t f[2];
    CHECK_RC(pthread_create(&f[0], NULL, futex_waiter, (void *)0L));
    CHECK_RC(pthread_create(&f[1], NULL, futex_waiter, (void *)1L));
    signal_when_waiting(f[0], 2, SIGUSR2);
    signal_when_waiting(f[1], 3, SIGUSR1);
    CHECK_RC(pthread_join(f[0], NULL));
    sleep_ms(20);
    CHECK(atomic_load(&futex_ran_ok) == 1, "the SA_RESTART futex waiter did not wait on");
    atomic_store(&futex_word, 1);
    CHECK(syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) == 1,
          "FUTEX_WAKE woke nobody");
    CHECK_RC(pthread_join(f[1], NULL));
    printf("futex: EINTR without SA_RESTART, waits on until woken with it\n");

    CHECK(atomic_load(&ran_elsewhere) == 0, "%d handlers ran on another thread",
          atomic_load(&ran_elsewhere));
    finish(h);
    return 0;
}
