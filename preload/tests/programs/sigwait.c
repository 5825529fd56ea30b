/* sigwait in a dedicated thread, for signals sent to it with pthread_kill and to the process
 * with kill(getpid()), blocked everywhere so that only the sigwait takes them. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>

/* ---- sigwait in a dedicated thread ---- */

static sem_t sw_got;
static int sw_hups, sw_terms;

static void *sigwaiter(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    for (;;) {
        int sig = 0;
        CHECK_RC(sigwait(&set, &sig));
        if (sig == SIGHUP) {
            sw_hups++;
            CHECK_SYS(sem_post(&sw_got));
        } else {
            CHECK(sig == SIGTERM, "sigwait returned signal %d", sig);
            sw_terms++;
            return NULL;
        }
    }
}

static uint64_t test_sigwait(uint64_t h)
{
    CHECK_SYS(sem_init(&sw_got, 0, 0));
    /* blocked in main before the thread exists: every thread inherits the mask */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    CHECK_RC(pthread_sigmask(SIG_BLOCK, &set, &old));
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, sigwaiter, NULL));
    for (int i = 0; i < 3; i++) {
        CHECK_RC(pthread_kill(t, SIGHUP));
        while (sem_wait(&sw_got) == -1 && errno == EINTR) {
        }
    }
    /* process-directed: blocked everywhere, so only the sigwait takes it */
    CHECK_SYS(kill(getpid(), SIGHUP));
    while (sem_wait(&sw_got) == -1 && errno == EINTR) {
    }
    CHECK_RC(pthread_kill(t, SIGTERM));
    CHECK_RC(pthread_join(t, NULL));
    CHECK(sw_hups == 4 && sw_terms == 1, "sigwait: %d SIGHUP, %d SIGTERM", sw_hups, sw_terms);
    sigset_t pend;
    CHECK_SYS(sigpending(&pend));
    CHECK(!sigismember(&pend, SIGHUP) && !sigismember(&pend, SIGTERM),
          "a signal meant for sigwait is pending in main");
    CHECK_RC(pthread_sigmask(SIG_SETMASK, &old, NULL));
    CHECK_SYS(sem_destroy(&sw_got));
    printf("sigwait hup %d term %d\n", sw_hups, sw_terms);
    return mix(h, (uint64_t)sw_hups * 10 + (uint64_t)sw_terms);
}

int main(void)
{
    uint64_t h = MIX_INIT;
    h = test_sigwait(h);
    finish(h);
    return 0;
}
