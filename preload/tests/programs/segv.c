/* An application's SIGSEGV handler installed after threads exist (under libflexsc: after the
 * runtime put its stack-overflow handler there) still gets the application's faults: a thread
 * recovers from null-page writes with siglongjmp, three times, in two threads. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>

static __thread sigjmp_buf env;
static int caught;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    __atomic_fetch_add(&caught, 1, __ATOMIC_SEQ_CST);
    siglongjmp(env, si->si_addr == (void *)16 ? 1 : 2);
}

static void *faulter(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        int r = sigsetjmp(env, 1);
        if (r == 0) {
            volatile int *p = (int *)16;
            *p = 1;
        }
        CHECK(r == 1, "recovered with %d (the fault address was wrong)", r);
    }
    return NULL;
}

static void *nothing(void *arg)
{
    return arg;
}

int main(void)
{
    uint64_t h = MIX_INIT;
    pthread_t t, u;
    /* a thread first: under libflexsc the runtime (and its SIGSEGV handler) exists from here */
    CHECK_RC(pthread_create(&t, NULL, nothing, NULL));
    CHECK_RC(pthread_join(t, NULL));
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(SIGSEGV, &sa, &old));
    CHECK(old.sa_handler == SIG_DFL, "the previous SIGSEGV action was not the default one");
    CHECK_SYS(sigaction(SIGSEGV, NULL, &old));
    CHECK(old.sa_sigaction == on_segv, "sigaction does not report the handler just installed");
    CHECK_RC(pthread_create(&t, NULL, faulter, NULL));
    CHECK_RC(pthread_create(&u, NULL, faulter, NULL));
    CHECK_RC(pthread_join(t, NULL));
    CHECK_RC(pthread_join(u, NULL));
    CHECK(caught == 6, "%d faults caught", caught);
    printf("caught %d\n", caught);
    h = mix(h, (uint64_t)caught);
    finish(h);
    return 0;
}
