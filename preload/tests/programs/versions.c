/* glibc's symbol versions and __pthread_* names: functions found with dlvsym at the versions
 * glibc 2.36 defines, and references this program links to old versions (.symver), behave as
 * those versions do and work together with the unversioned calls: condition variables and
 * mutexes through dlvsym'd pointers with more waiters than CPUs, thread-specific data through
 * the __pthread_* names, pthread_kill@GLIBC_2.2.5 (ESRCH for an exited thread, where 2.34's
 * returns 0), and the GLIBC_2.3.3 affinity calls (no size argument). */
#define _GNU_SOURCE
#include "check.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>

/* References bound at link time to old versions. */
extern int old_kill(pthread_t, int);
__asm__(".symver old_kill, pthread_kill@GLIBC_2.2.5");
extern int old_getaffinity(pid_t, cpu_set_t *);
__asm__(".symver old_getaffinity, sched_getaffinity@GLIBC_2.3.3");
extern int old_mutex_lock(pthread_mutex_t *);
__asm__(".symver old_mutex_lock, __pthread_mutex_lock@GLIBC_2.2.5");
extern int old_mutex_unlock(pthread_mutex_t *);
__asm__(".symver old_mutex_unlock, __pthread_mutex_unlock@GLIBC_2.2.5");

static void *must(const char *name, const char *version)
{
    void *p = dlvsym(RTLD_DEFAULT, name, version);
    CHECK(p != NULL, "dlvsym(%s, %s): %s", name, version, dlerror());
    return p;
}

/* ---- a condition variable through dlvsym'd functions ---- */

#define CONSUMERS 6
#define ITEMS 3000

static int (*cond_wait)(pthread_cond_t *, pthread_mutex_t *);
static int (*cond_signal)(pthread_cond_t *);
static int (*cond_broadcast)(pthread_cond_t *);
static int (*mutex_lock)(pthread_mutex_t *);
static int (*mutex_unlock)(pthread_mutex_t *);

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t nonempty = PTHREAD_COND_INITIALIZER;
static int queued, done;
static uint64_t taken_sum;

static void *consumer(void *arg)
{
    (void)arg;
    for (;;) {
        CHECK_RC(mutex_lock(&mu));
        while (queued == 0 && !done)
            CHECK_RC(cond_wait(&nonempty, &mu));
        if (queued == 0 && done) {
            CHECK_RC(mutex_unlock(&mu));
            return NULL;
        }
        taken_sum += (uint64_t)queued--;
        CHECK_RC(mutex_unlock(&mu));
    }
}

static uint64_t check_cond(uint64_t h)
{
    cond_wait = must("pthread_cond_wait", "GLIBC_2.3.2");
    cond_signal = must("pthread_cond_signal", "GLIBC_2.3.2");
    cond_broadcast = must("pthread_cond_broadcast", "GLIBC_2.3.2");
    mutex_lock = must("__pthread_mutex_lock", "GLIBC_2.2.5");
    mutex_unlock = must("__pthread_mutex_unlock", "GLIBC_2.2.5");
    pthread_t th[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        CHECK_RC(pthread_create(&th[i], NULL, consumer, NULL));
    uint64_t expect = 0;
    for (int i = 0; i < ITEMS; i++) {
        /* Mixed with the unversioned and link-time-versioned names of the same functions. */
        CHECK_RC(i % 2 ? pthread_mutex_lock(&mu) : old_mutex_lock(&mu));
        expect += (uint64_t)++queued;
        CHECK_RC(cond_signal(&nonempty));
        CHECK_RC(i % 3 ? pthread_mutex_unlock(&mu) : old_mutex_unlock(&mu));
        if (i % 64 == 0)
            sched_yield();
    }
    CHECK_RC(mutex_lock(&mu));
    done = 1;
    CHECK_RC(cond_broadcast(&nonempty));
    CHECK_RC(mutex_unlock(&mu));
    for (int i = 0; i < CONSUMERS; i++)
        CHECK_RC(pthread_join(th[i], NULL));
    CHECK(taken_sum == expect, "taken %llu, queued %llu", (unsigned long long)taken_sum,
          (unsigned long long)expect);
    printf("cond: %d items through dlvsym'd GLIBC_2.3.2 functions\n", ITEMS);
    return mix(h, ITEMS);
}

/* ---- thread-specific data through __pthread_* ---- */

static void *tsd(void *arg)
{
    int (*key_create)(pthread_key_t *, void (*)(void *)) =
        must("__pthread_key_create", "GLIBC_2.34");
    int (*setspecific)(pthread_key_t, const void *) = must("__pthread_setspecific", "GLIBC_2.2.5");
    void *(*getspecific)(pthread_key_t) = must("__pthread_getspecific", "GLIBC_2.2.5");
    pthread_key_t k;
    CHECK_RC(key_create(&k, NULL));
    CHECK_RC(setspecific(k, arg));
    CHECK(pthread_getspecific(k) == arg, "__pthread_setspecific not seen by pthread_getspecific");
    CHECK_RC(pthread_setspecific(k, (char *)arg + 1));
    CHECK(getspecific(k) == (char *)arg + 1, "pthread_setspecific not seen by __pthread_getspecific");
    CHECK_RC(pthread_key_delete(k));
    return NULL;
}

static uint64_t check_tsd(uint64_t h)
{
    static char cookie[2];
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, tsd, cookie));
    CHECK_RC(pthread_join(t, NULL));
    printf("tsd: __pthread_key_create, __pthread_{get,set}specific\n");
    return mix(h, 7);
}

/* ---- pthread_kill@GLIBC_2.2.5 and @GLIBC_2.34 ---- */

static pthread_t handled_on;
static volatile sig_atomic_t handled;

static void on_usr1(int sig)
{
    (void)sig;
    handled_on = pthread_self();
    handled = 1;
}

static void *waits_for_signal(void *arg)
{
    (void)arg;
    int64_t until = now_ns() + 10LL * 1000000000LL;
    while (!handled && now_ns() < until)
        sleep_ms(1);
    return NULL;
}

static void *quick(void *arg)
{
    return arg;
}

static uint64_t check_kill(uint64_t h)
{
    int (*kill_234)(pthread_t, int) = must("pthread_kill", "GLIBC_2.34");
    int (*kill_225)(pthread_t, int) = must("pthread_kill", "GLIBC_2.2.5");
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, waits_for_signal, NULL));
    CHECK_RC(old_kill(t, SIGUSR1));
    CHECK_RC(pthread_join(t, NULL));
    CHECK(handled && pthread_equal(handled_on, t), "the handler did not run on its thread");

    /* An exited, not yet joined thread: 2.34's returns 0, 2.2.5's ESRCH. */
    CHECK_RC(pthread_create(&t, NULL, quick, NULL));
    int64_t until = now_ns() + 10LL * 1000000000LL;
    /* Wait until it has exited without joining it: 2.34's pthread_kill keeps returning 0, so
     * poll with the 2.2.5 one until it says ESRCH (at most 10 s). */
    int r;
    while ((r = kill_225(t, 0)) == 0 && now_ns() < until)
        sleep_ms(1);
    CHECK(r == ESRCH, "pthread_kill@GLIBC_2.2.5 of an exited thread: %d", r);
    CHECK(old_kill(t, 0) == ESRCH, "the linked pthread_kill@GLIBC_2.2.5 of an exited thread");
    CHECK(kill_234(t, 0) == 0, "pthread_kill@GLIBC_2.34 of an exited thread");
    CHECK(pthread_kill(t, 0) == 0, "pthread_kill of an exited thread");
    CHECK_RC(pthread_join(t, NULL));
    printf("kill: GLIBC_2.2.5 and GLIBC_2.34 semantics\n");
    return mix(h, 8);
}

/* ---- the GLIBC_2.3.3 affinity calls ---- */

static void *old_affinity(void *arg)
{
    (void)arg;
    int (*old_set)(pthread_t, const cpu_set_t *) = must("pthread_setaffinity_np", "GLIBC_2.3.3");
    int (*old_get)(pthread_t, cpu_set_t *) = must("pthread_getaffinity_np", "GLIBC_2.3.3");
    cpu_set_t s, t;
    CHECK(sched_getaffinity(0, sizeof s, &s) == 0, "sched_getaffinity");
    CPU_ZERO(&t);
    CHECK(old_getaffinity(gettid(), &t) == 0, "sched_getaffinity@GLIBC_2.3.3(gettid()): %s",
          strerror(errno));
    CHECK(CPU_EQUAL(&s, &t), "sched_getaffinity@GLIBC_2.3.3 differs");
    CPU_ZERO(&s);
    CPU_SET(0, &s);
    CHECK_RC(old_set(pthread_self(), &s));
    CPU_ZERO(&t);
    CHECK_RC(old_get(pthread_self(), &t));
    CHECK(CPU_COUNT(&t) == 1 && CPU_ISSET(0, &t), "pthread_getaffinity_np@GLIBC_2.3.3");
    CHECK_RC(pthread_getaffinity_np(pthread_self(), sizeof t, &t));
    CHECK(CPU_COUNT(&t) == 1 && CPU_ISSET(0, &t), "pthread_getaffinity_np after the old set");
    return NULL;
}

static uint64_t check_affinity(uint64_t h)
{
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, old_affinity, NULL));
    CHECK_RC(pthread_join(t, NULL));
    printf("affinity: GLIBC_2.3.3 calls\n");
    return mix(h, 9);
}

int main(void)
{
    uint64_t h = MIX_INIT;
    h = check_cond(h);
    h = check_tsd(h);
    h = check_kill(h);
    h = check_affinity(h);
    finish(h);
    return 0;
}
