/* Cancellation: pthread_cancel of threads blocked at cancellation points (read, poll,
 * nanosleep, pthread_cond_wait), with cleanup handlers that run in LIFO order (the condvar one
 * unlocks the re-acquired mutex) and thread-specific data destructors; PTHREAD_CANCEL_DISABLE
 * honoured through blocking calls until re-enabled; pthread_join returns PTHREAD_CANCELED;
 * pthread_cleanup_pop(1) and (0) outside cancellation. */
#define _GNU_SOURCE
#include "check.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

static char cleanup_log[256];
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t key;
static int key_dtor_runs;

static void log_str(const char *s)
{
    CHECK_RC(pthread_mutex_lock(&log_mu));
    CHECK(strlen(cleanup_log) + strlen(s) < sizeof cleanup_log, "log overflow");
    strcat(cleanup_log, s);
    CHECK_RC(pthread_mutex_unlock(&log_mu));
}

static void cleanup(void *arg) { log_str(arg); }

static void key_dtor(void *v)
{
    (void)v;
    __atomic_fetch_add(&key_dtor_runs, 1, __ATOMIC_SEQ_CST);
}

static int reached_after; /* set if code after a cancelled call ran */
static int started;

static void wait_started(int n)
{
    while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < n)
        sleep_ms(1);
    sleep_ms(30); /* let it get into the blocking call */
}

/* Cancels t, joins it and checks it was cancelled. */
static void cancel_join(pthread_t t, const char *what)
{
    void *ret = NULL;
    CHECK_RC(pthread_cancel(t));
    CHECK_RC(pthread_join(t, &ret));
    CHECK(ret == PTHREAD_CANCELED, "%s: join returned %p, not PTHREAD_CANCELED", what, ret);
}

/* ---- blocked in read ---- */

static int rpipe[2];

static void *in_read(void *arg)
{
    (void)arg;
    char c;
    CHECK_RC(pthread_setspecific(key, (void *)1));
    pthread_cleanup_push(cleanup, "[read outer]");
    pthread_cleanup_push(cleanup, "[read inner]");
    __atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
    ssize_t n = read(rpipe[0], &c, 1); /* nobody writes */
    __atomic_store_n(&reached_after, 1, __ATOMIC_SEQ_CST);
    CHECK(0, "read returned %zd in a cancelled thread", n);
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(0);
    return NULL;
}

/* ---- blocked in poll, and in nanosleep ---- */

static void *in_poll(void *arg)
{
    (void)arg;
    struct pollfd p = {rpipe[0], POLLIN, 0};
    pthread_cleanup_push(cleanup, "[poll]");
    __atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
    int n = poll(&p, 1, -1);
    __atomic_store_n(&reached_after, 1, __ATOMIC_SEQ_CST);
    CHECK(0, "poll returned %d in a cancelled thread", n);
    pthread_cleanup_pop(0);
    return NULL;
}

static void *in_sleep(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cleanup, "[sleep]");
    __atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
    struct timespec ts = {3600, 0};
    nanosleep(&ts, NULL);
    __atomic_store_n(&reached_after, 1, __ATOMIC_SEQ_CST);
    CHECK(0, "nanosleep returned in a cancelled thread");
    pthread_cleanup_pop(0);
    return NULL;
}

/* ---- blocked in pthread_cond_wait: the mutex is re-acquired before the handlers run ---- */

static pthread_mutex_t cv_mu = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cv_mutex_held_in_cleanup;

static void cv_cleanup(void *arg)
{
    (void)arg;
    /* the cancelled waiter owns the (errorcheck) mutex again: relocking is EDEADLK, and
     * unlocking succeeds (a non-owner's unlock would be EPERM), so main can lock it after */
    cv_mutex_held_in_cleanup = pthread_mutex_lock(&cv_mu) == EDEADLK;
    CHECK_RC(pthread_mutex_unlock(&cv_mu));
    log_str("[condwait]");
}

static void *in_cond_wait(void *arg)
{
    (void)arg;
    CHECK_RC(pthread_mutex_lock(&cv_mu));
    pthread_cleanup_push(cv_cleanup, NULL);
    __atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pthread_cond_wait(&cv, &cv_mu); /* never signalled */
    pthread_cleanup_pop(0);
    return NULL;
}

/* ---- cancellation disabled across blocking calls ---- */

static int dpipe[2];
static int disabled_progress;

static void *disabled(void *arg)
{
    (void)arg;
    int old = -1;
    char c;
    CHECK_RC(pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old));
    CHECK(old == PTHREAD_CANCEL_ENABLE, "initial cancel state %d", old);
    pthread_cleanup_push(cleanup, "[disabled]");
    __atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
    /* cancelled while in this read; the read still completes with main's byte */
    ssize_t n = read(dpipe[0], &c, 1);
    CHECK(n == 1 && c == 'd', "read with cancellation disabled returned %zd", n);
    disabled_progress = 1;
    sleep_ms(10); /* nanosleep: a cancellation point, disabled */
    pthread_testcancel();
    disabled_progress = 2;
    CHECK_RC(pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old));
    CHECK(old == PTHREAD_CANCEL_DISABLE, "cancel state was %d", old);
    pthread_testcancel(); /* the pending request acts here */
    disabled_progress = 3;
    pthread_cleanup_pop(0);
    return NULL;
}

/* ---- cleanup_pop(1) runs the handler, pop(0) does not; a plain return is not cancelled ---- */

static void *plain(void *arg)
{
    (void)arg;
    pthread_cleanup_push(cleanup, "[pop1]");
    pthread_cleanup_push(cleanup, "[pop0]");
    pthread_cleanup_pop(0);
    pthread_cleanup_pop(1);
    return (void *)42;
}

int main(void)
{
    uint64_t h = MIX_INIT;
    CHECK_RC(pthread_key_create(&key, key_dtor));
    CHECK_SYS(pipe(rpipe));
    CHECK_SYS(pipe(dpipe));
    pthread_t t;
    int n = 0;

    CHECK_RC(pthread_create(&t, NULL, in_read, NULL));
    wait_started(++n);
    cancel_join(t, "read");
    CHECK(key_dtor_runs == 1, "key destructor of the cancelled thread ran %d times",
          key_dtor_runs);

    CHECK_RC(pthread_create(&t, NULL, in_poll, NULL));
    wait_started(++n);
    cancel_join(t, "poll");

    CHECK_RC(pthread_create(&t, NULL, in_sleep, NULL));
    wait_started(++n);
    cancel_join(t, "nanosleep");

    CHECK_RC(pthread_create(&t, NULL, in_cond_wait, NULL));
    wait_started(++n);
    cancel_join(t, "cond_wait");
    CHECK(cv_mutex_held_in_cleanup, "the cancelled condvar waiter did not hold the mutex");
    CHECK_RC(pthread_mutex_lock(&cv_mu)); /* released by the cleanup handler */
    CHECK_RC(pthread_mutex_unlock(&cv_mu));

    CHECK_RC(pthread_create(&t, NULL, disabled, NULL));
    wait_started(++n);
    CHECK_RC(pthread_cancel(t));
    sleep_ms(20);
    char c = 'd';
    CHECK(write(dpipe[1], &c, 1) == 1, "write");
    void *ret = NULL;
    CHECK_RC(pthread_join(t, &ret));
    CHECK(ret == PTHREAD_CANCELED, "disabled: join returned %p", ret);
    CHECK(disabled_progress == 2, "cancellation acted at step %d, expected after re-enabling",
          disabled_progress);

    CHECK_RC(pthread_create(&t, NULL, plain, NULL));
    CHECK_RC(pthread_join(t, &ret));
    CHECK(ret == (void *)42, "plain thread returned %p", ret);

    CHECK(!reached_after, "code after a cancelled call ran");
    const char *expect =
        "[read inner][read outer][poll][sleep][condwait][disabled][pop1]";
    CHECK(strcmp(cleanup_log, expect) == 0, "cleanup log \"%s\", expected \"%s\"", cleanup_log,
          expect);
    CHECK(key_dtor_runs == 1, "key destructor ran %d times", key_dtor_runs);
    printf("cleanup %s\n", cleanup_log);
    for (const char *p = cleanup_log; *p; p++)
        h = mix(h, (uint64_t)(unsigned char)*p);
    finish(h);
    return 0;
}
