/* Signals aimed at threads: pthread_kill interrupts a read blocked on the target thread (handler
 * without SA_RESTART: EINTR; with SA_RESTART: the read continues), the handler runs on the
 * target and nowhere else; per-thread masks (pthread_sigmask: a blocked signal stays pending
 * and is delivered when unblocked); queued real-time signals with values (pthread_sigqueue).
 * sigwait and process-directed signals: sigwait.c. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>

/* which thread ran the handler: a per-thread count */
static __thread volatile sig_atomic_t usr1_here, usr2_here;
static volatile int usr1_total, usr2_total;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_here++;
    __atomic_fetch_add(&usr1_total, 1, __ATOMIC_SEQ_CST);
}

static void on_usr2(int sig)
{
    (void)sig;
    usr2_here++;
    __atomic_fetch_add(&usr2_total, 1, __ATOMIC_SEQ_CST);
}

static void install(int sig, void (*fn)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(sig, &sa, NULL));
}

/* ---- EINTR: a read blocked on the target thread fails with EINTR ---- */

static int eintr_pipe[2], bystander_pipe[2];
static int eintr_started, eintr_done;
static int eintr_result, eintr_errno, eintr_handler_here;

static void *eintr_target(void *arg)
{
    (void)arg;
    char c;
    __atomic_store_n(&eintr_started, 1, __ATOMIC_SEQ_CST);
    /* Nobody writes to this pipe. If the signal came before the read started, the handler
     * has run already and the read waits for the next one: main repeats the signal until this
     * thread is done. */
    ssize_t n = read(eintr_pipe[0], &c, 1);
    eintr_result = (int)n;
    eintr_errno = errno;
    eintr_handler_here = usr1_here;
    __atomic_store_n(&eintr_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static int bystander_started;
static int bystander_handler_here;

static void *bystander(void *arg)
{
    (void)arg;
    char c;
    __atomic_store_n(&bystander_started, 1, __ATOMIC_SEQ_CST);
    ssize_t n = read(bystander_pipe[0], &c, 1); /* data comes after the signals */
    CHECK(n == 1 && c == 'x', "bystander: read returned %zd (%s)", n, strerror(errno));
    bystander_handler_here = usr1_here + usr2_here;
    return NULL;
}

static uint64_t test_eintr(uint64_t h)
{
    install(SIGUSR1, on_usr1, 0); /* no SA_RESTART */
    CHECK_SYS(pipe(eintr_pipe));
    CHECK_SYS(pipe(bystander_pipe));
    pthread_t t, b;
    CHECK_RC(pthread_create(&b, NULL, bystander, NULL));
    CHECK_RC(pthread_create(&t, NULL, eintr_target, NULL));
    while (!__atomic_load_n(&eintr_started, __ATOMIC_SEQ_CST) ||
           !__atomic_load_n(&bystander_started, __ATOMIC_SEQ_CST))
        sleep_ms(1);
    sleep_ms(20);
    int sent = 0;
    while (!__atomic_load_n(&eintr_done, __ATOMIC_SEQ_CST)) {
        CHECK(sent < 100, "the target's read was not interrupted by 100 signals");
        CHECK_RC(pthread_kill(t, SIGUSR1));
        sent++;
        sleep_ms(50);
    }
    CHECK_RC(pthread_join(t, NULL));
    CHECK(eintr_result == -1 && eintr_errno == EINTR, "read returned %d errno %d, expected EINTR",
          eintr_result, eintr_errno);
    CHECK(eintr_handler_here >= 1, "the handler did not run on the target thread");
    CHECK(usr1_here == 0, "the handler ran on the main thread");
    /* (two signals sent before the target ran may have merged into one) */
    CHECK(usr1_total >= 1 && usr1_total <= sent, "%d handler runs for %d signals", usr1_total,
          sent);
    char c = 'x';
    CHECK(write(bystander_pipe[1], &c, 1) == 1, "write");
    CHECK_RC(pthread_join(b, NULL));
    CHECK(bystander_handler_here == 0, "the handler ran on a bystander thread");
    printf("eintr ok\n");
    return mix(h, 1);
}

/* ---- SA_RESTART: the interrupted read continues and returns the data ---- */

static int restart_pipe[2];
static int restart_started;
static int restart_handler_here;

static void *restart_target(void *arg)
{
    (void)arg;
    char buf[4];
    __atomic_store_n(&restart_started, 1, __ATOMIC_SEQ_CST);
    ssize_t n = read(restart_pipe[0], buf, sizeof buf);
    CHECK(n == 4 && memcmp(buf, "data", 4) == 0, "SA_RESTART read returned %zd (%s)", n,
          strerror(errno));
    restart_handler_here = usr2_here;
    return NULL;
}

static uint64_t test_restart(uint64_t h)
{
    install(SIGUSR2, on_usr2, SA_RESTART);
    CHECK_SYS(pipe(restart_pipe));
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, restart_target, NULL));
    while (!__atomic_load_n(&restart_started, __ATOMIC_SEQ_CST))
        sleep_ms(1);
    sleep_ms(20);
    /* the handler runs (at least once) while the read waits; the read keeps waiting */
    while (__atomic_load_n(&usr2_total, __ATOMIC_SEQ_CST) == 0) {
        CHECK_RC(pthread_kill(t, SIGUSR2));
        sleep_ms(20);
    }
    sleep_ms(20);
    CHECK(write(restart_pipe[1], "data", 4) == 4, "write");
    CHECK_RC(pthread_join(t, NULL));
    CHECK(restart_handler_here >= 1, "the SA_RESTART handler did not run on the target");
    CHECK(usr2_here == 0, "the handler ran on the main thread");
    printf("restart ok\n");
    return mix(h, 2);
}

/* ---- pthread_sigmask: per-thread masks, pending while blocked, delivered when unblocked ---- */

static sem_t mask_ready, mask_sent;
static int mask_ok;

static void *masked_thread(void *arg)
{
    (void)arg;
    sigset_t set, old, cur, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    CHECK_RC(pthread_sigmask(SIG_BLOCK, &set, &old));
    CHECK(!sigismember(&old, SIGUSR1), "SIGUSR1 was blocked already");
    CHECK_RC(pthread_sigmask(SIG_SETMASK, NULL, &cur));
    CHECK(sigismember(&cur, SIGUSR1), "pthread_sigmask does not report the blocked signal");
    CHECK_SYS(sem_post(&mask_ready));
    while (sem_wait(&mask_sent) == -1 && errno == EINTR) {
    }
    /* the signal was sent to this thread (pthread_kill returned): pending, not delivered */
    CHECK_SYS(sigpending(&pend));
    CHECK(sigismember(&pend, SIGUSR1), "a blocked signal sent to this thread is not pending");
    CHECK(usr1_here == 0, "a blocked signal was delivered");
    /* unblocking delivers it before pthread_sigmask returns */
    CHECK_RC(pthread_sigmask(SIG_UNBLOCK, &set, NULL));
    CHECK(usr1_here == 1, "unblocking did not deliver the pending signal (%d)", (int)usr1_here);
    CHECK_SYS(sigpending(&pend));
    CHECK(!sigismember(&pend, SIGUSR1), "still pending after delivery");
    mask_ok = 1;
    return NULL;
}

static uint64_t test_sigmask(uint64_t h)
{
    CHECK_SYS(sem_init(&mask_ready, 0, 0));
    CHECK_SYS(sem_init(&mask_sent, 0, 0));
    int before = usr1_total;
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, masked_thread, NULL));
    while (sem_wait(&mask_ready) == -1 && errno == EINTR) {
    }
    /* main's own mask is unaffected by the thread's */
    sigset_t cur;
    CHECK_RC(pthread_sigmask(SIG_SETMASK, NULL, &cur));
    CHECK(!sigismember(&cur, SIGUSR1), "another thread's mask changed main's");
    CHECK_RC(pthread_kill(t, SIGUSR1));
    CHECK_SYS(sem_post(&mask_sent));
    CHECK_RC(pthread_join(t, NULL));
    CHECK(mask_ok, "masked thread");
    CHECK(usr1_total == before + 1, "SIGUSR1 handled %d times", usr1_total - before);
    CHECK(usr1_here == 0, "the handler ran on the main thread");
    printf("sigmask ok\n");
    return mix(h, 3);
}

/* ---- queued real-time signals carry their values, in order ---- */

static __thread int rt_values[16];
static __thread volatile sig_atomic_t rt_count;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    if (rt_count < 16)
        rt_values[rt_count] = si->si_value.sival_int;
    rt_count++;
}

static sem_t rt_ready, rt_sent;
static uint64_t rt_result;

static void *rt_thread(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    CHECK_RC(pthread_sigmask(SIG_BLOCK, &set, NULL));
    CHECK_SYS(sem_post(&rt_ready));
    while (sem_wait(&rt_sent) == -1 && errno == EINTR) {
    }
    CHECK(rt_count == 0, "queued signals delivered while blocked");
    CHECK_RC(pthread_sigmask(SIG_UNBLOCK, &set, NULL));
    CHECK(rt_count == 5, "%d of 5 queued signals delivered", (int)rt_count);
    uint64_t r = 0;
    for (int i = 0; i < 5; i++) {
        CHECK(rt_values[i] == 100 + i, "queued signal %d carried %d", i, rt_values[i]);
        r = r * 1000 + (uint64_t)rt_values[i];
    }
    rt_result = r;
    return NULL;
}

static uint64_t test_rt(uint64_t h)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(SIGRTMIN, &sa, NULL));
    CHECK_SYS(sem_init(&rt_ready, 0, 0));
    CHECK_SYS(sem_init(&rt_sent, 0, 0));
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, rt_thread, NULL));
    while (sem_wait(&rt_ready) == -1 && errno == EINTR) {
    }
    for (int i = 0; i < 5; i++) {
        union sigval v = {.sival_int = 100 + i};
        CHECK_RC(pthread_sigqueue(t, SIGRTMIN, v));
    }
    CHECK_SYS(sem_post(&rt_sent));
    CHECK_RC(pthread_join(t, NULL));
    CHECK(rt_count == 0, "a queued signal ran on the main thread");
    printf("rt values %" PRIu64 "\n", rt_result);
    return mix(h, rt_result);
}

int main(void)
{
    uint64_t h = MIX_INIT;
    h = test_eintr(h);
    h = test_restart(h);
    h = test_sigmask(h);
    h = test_rt(h);
    finish(h);
    return 0;
}
