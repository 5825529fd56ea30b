/* The main thread as a thread like the others (under the preload: green thread 0). Its
 * pthread_self is the same before and after the first pthread_create; its errno and __thread
 * variables are its own; its blocking reads of a pipe wait while the writer runs (the harness
 * runs this on one carrier: a read that blocked the carrier would never see the data); a
 * condition variable wait in main is woken by another thread; a process-directed signal that
 * only main lets in runs its handler on main; main forks after threads exist (the child has one
 * thread, which creates and joins threads of its own); then main ends with pthread_exit, a
 * thread joins it and gets its value, and the process exits 0 when that last thread ends,
 * running the atexit handler, which prints the final line.
 *
 * Under the preload gettid() of a green thread is a number above any kernel tid: main's is its
 * pid before the first pthread_create and such a number after (natively, its pid throughout).
 * Only booleans that hold in both runs are printed. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#define WORKERS 4
#define MESSAGES 50
/* Green thread numbers start above this (preload/src/sched.rs, GREEN_TID_BASE). */
#define GREEN_TID_BASE (1 << 30)
#define MAIN_VALUE ((void *)0x5a5a)

static __thread int tls_value = 17;
static int preloaded;
static pthread_t main_self;
static uint64_t h = MIX_INIT;
static pthread_mutex_t h_mu = PTHREAD_MUTEX_INITIALIZER;

static void mix_locked(uint64_t v)
{
    CHECK_RC(pthread_mutex_lock(&h_mu));
    h = mix(h, v);
    CHECK_RC(pthread_mutex_unlock(&h_mu));
}

/* ---- workers: their own errno and __thread values, kept across yields and blocking calls ---- */

static void *worker(void *arg)
{
    int me = (int)(uintptr_t)arg;
    CHECK(!pthread_equal(pthread_self(), main_self), "a worker has main's pthread_t");
    CHECK(tls_value == 17, "a worker's __thread starts at its initial value, got %d", tls_value);
    for (int round = 0; round < 100; round++) {
        errno = 1000 + me;
        tls_value = 100 * me + round;
        sched_yield();
        if (round % 10 == 0)
            sleep_ms(1);
        CHECK(errno == 1000 + me, "worker %d's errno changed to %d", me, errno);
        CHECK(tls_value == 100 * me + round, "worker %d's __thread changed to %d", me, tls_value);
    }
    return (void *)(uintptr_t)(me + 1);
}

/* ---- the writer main reads from ---- */

static int pipe_fds[2];

static void *writer(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < MESSAGES; i++) {
        /* main is (most of the time) already waiting in its read */
        if (i % 5 == 0)
            sleep_ms(1);
        CHECK(write_full(pipe_fds[1], &i, sizeof i) == 0, "write: %s", strerror(errno));
    }
    return NULL;
}

/* ---- a condition variable main waits on ---- */

static pthread_mutex_t cv_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cv_flag;

static void *signaller(void *arg)
{
    (void)arg;
    sleep_ms(5);
    CHECK_RC(pthread_mutex_lock(&cv_mu));
    cv_flag = 1;
    CHECK_RC(pthread_cond_signal(&cv));
    CHECK_RC(pthread_mutex_unlock(&cv_mu));
    return NULL;
}

/* ---- a process-directed signal only main lets in ---- */

static volatile sig_atomic_t usr1_seen, usr1_on_main;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_on_main = pthread_equal(pthread_self(), main_self);
    usr1_seen = 1;
}

/* ---- the thread that joins main after main's pthread_exit ---- */

static void *main_joiner(void *arg)
{
    (void)arg;
    void *value = NULL;
    CHECK_RC(pthread_join(main_self, &value));
    CHECK(value == MAIN_VALUE, "main's join value %p", value);
    printf("joined main: 1\n");
    mix_locked(77);
    return NULL;
}

static void at_exit(void)
{
    /* Runs when the last thread ends (main ended with pthread_exit). */
    printf("atexit handler: 1\n");
    finish(h);
}

/* ---- fork from main, threads existing ---- */

static void *child_thread(void *arg)
{
    return (void *)((uintptr_t)arg * 3);
}

static volatile sig_atomic_t child_usr2;

static void on_usr2(int sig)
{
    (void)sig;
    child_usr2 = 1;
}

static void fork_from_main(void)
{
    pid_t pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        /* One thread, the one that forked: itself, with the pid as its tid again. */
        if (!pthread_equal(pthread_self(), main_self))
            _exit(10);
        if (gettid() != getpid())
            _exit(11);
        /* raise reads the tid from the TCB: it must name this thread */
        signal(SIGUSR2, on_usr2);
        if (raise(SIGUSR2) != 0 || !child_usr2)
            _exit(12);
        pthread_t t;
        void *v = NULL;
        if (pthread_create(&t, NULL, child_thread, (void *)7) != 0)
            _exit(13);
        if (pthread_join(t, &v) != 0 || v != (void *)21)
            _exit(14);
        if (!pthread_equal(pthread_self(), main_self))
            _exit(15);
        _exit(0);
    }
    int status = 0;
    CHECK_SYS(waitpid(pid, &status, 0));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the fork child failed: status %#x",
          status);
    printf("fork from main: 1\n");
}

int main(void)
{
    preloaded = getenv("LD_PRELOAD") != NULL;
    main_self = pthread_self();
    pid_t tid_before = gettid();
    CHECK(tid_before == getpid(), "main's gettid %d is not its pid %d", tid_before, getpid());
    int *errno_before = &errno;
    int *tls_before = &tls_value;
    CHECK(atexit(at_exit) == 0, "atexit");
    CHECK_SYS(pipe(pipe_fds));

    /* Workers start with SIGUSR1 blocked: main alone lets it in. */
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    CHECK_RC(pthread_sigmask(SIG_BLOCK, &usr1, &old));
    pthread_t workers[WORKERS], w, s;
    for (uintptr_t i = 0; i < WORKERS; i++)
        CHECK_RC(pthread_create(&workers[i], NULL, worker, (void *)i));
    CHECK_RC(pthread_create(&w, NULL, writer, NULL));
    CHECK_RC(pthread_sigmask(SIG_SETMASK, &old, NULL));

    printf("pthread_self unchanged: %d\n", pthread_equal(pthread_self(), main_self) != 0);
    printf("errno and __thread at the same place: %d\n",
           &errno == errno_before && &tls_value == tls_before);
    pid_t tid_after = gettid();
    if (preloaded)
        CHECK(tid_after != tid_before && tid_after > GREEN_TID_BASE,
              "main is not a green thread: gettid %d after, %d before", tid_after, tid_before);
    else
        CHECK(tid_after == tid_before, "main's gettid changed natively");
    printf("gettid as expected: 1\n");

    /* Blocking reads while the workers run; main's errno and __thread stay its own. */
    errno = 4242;
    tls_value = 4343;
    for (uint32_t i = 0; i < MESSAGES; i++) {
        uint32_t got;
        int saved = errno;
        CHECK(read_full(pipe_fds[0], &got, sizeof got) == 0, "read: %s", strerror(errno));
        CHECK(got == i, "read %u, expected %u", got, i);
        h = mix(h, got);
        errno = saved;
        CHECK(errno == 4242 && tls_value == 4343, "main's errno %d / __thread %d changed", errno,
              tls_value);
    }
    printf("blocking reads: %d\n", MESSAGES);
    CHECK_RC(pthread_join(w, NULL));
    for (int i = 0; i < WORKERS; i++) {
        void *v;
        CHECK_RC(pthread_join(workers[i], &v));
        CHECK((uintptr_t)v == (uintptr_t)i + 1, "worker %d returned %p", i, v);
        h = mix(h, (uintptr_t)v);
        CHECK(errno == 4242 && tls_value == 4343, "main's errno %d / __thread %d changed", errno,
              tls_value);
    }
    printf("workers joined: %d\n", WORKERS);

    /* A condition variable wait in main, woken by another thread. */
    CHECK_RC(pthread_create(&s, NULL, signaller, NULL));
    CHECK_RC(pthread_mutex_lock(&cv_mu));
    while (!cv_flag)
        CHECK_RC(pthread_cond_wait(&cv, &cv_mu));
    CHECK_RC(pthread_mutex_unlock(&cv_mu));
    CHECK_RC(pthread_join(s, NULL));
    printf("condvar wait in main woken: 1\n");

    /* A process-directed signal: every other thread blocks it, so main runs the handler. */
    pthread_t blocker;
    CHECK_RC(pthread_sigmask(SIG_BLOCK, &usr1, &old));
    CHECK_RC(pthread_create(&blocker, NULL, signaller, NULL));
    CHECK_RC(pthread_sigmask(SIG_SETMASK, &old, NULL));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
    CHECK_SYS(kill(getpid(), SIGUSR1));
    int64_t give_up = now_ns() + 10LL * 1000000000LL;
    while (!usr1_seen && now_ns() < give_up)
        sleep_ms(1);
    CHECK(usr1_seen, "SIGUSR1 never handled");
    CHECK(usr1_on_main, "SIGUSR1's handler ran on another thread than main");
    CHECK_RC(pthread_join(blocker, NULL));
    printf("process signal on main: 1\n");

    fork_from_main();

    /* main ends; a thread joins it; the process ends with its last thread. */
    pthread_t j;
    CHECK_RC(pthread_create(&j, NULL, main_joiner, NULL));
    CHECK_RC(pthread_detach(j));
    fflush(stdout);
    pthread_exit(MAIN_VALUE);
}
