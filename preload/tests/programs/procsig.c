/* Process-directed signals reach the thread that lets them in: the main thread and every worker
 * but one block SIGUSR1, SIGALRM, SIGCHLD and SIGINT, so the kernel (natively) or the library
 * (for green threads) must hand each to that one worker, while it waits in a blocking call.
 * Its handler runs on it (its own __thread id, its errno saved and restored), with the kernel's
 * siginfo, and the call it waits in ends as Linux ends it:
 * - kill(getpid(), SIGUSR1), handler without SA_RESTART: its read() fails with EINTR;
 * - SIGALRM from alarm(), handler with SA_RESTART: its read() goes on and returns the data;
 * - SIGCHLD from a child exiting with 7 (siginfo: the child's pid, CLD_EXITED, status 7): its
 *   nanosleep() fails with EINTR (sleeps are never restarted);
 * - SIGINT sent to the process group (as a terminal does): its poll() fails with EINTR. */
#define _GNU_SOURCE
#include "check.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define OTHERS 4

static __thread int who; /* 1 on the receiving worker, 2 on the others */
static atomic_int handled[65], wrong_thread, bad_info;
static atomic_int ready_to_wait;
static pid_t child_pid;
static int pipefd[2];
static pthread_barrier_t done;

static void handler(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    errno = 12345; /* must not leak into the interrupted call's errno */
    if (who != 1)
        atomic_fetch_add(&wrong_thread, 1);
    if (si->si_signo != sig)
        atomic_fetch_add(&bad_info, 1);
    if (sig == SIGUSR1 && (si->si_code != SI_USER || si->si_pid != getpid()))
        atomic_fetch_add(&bad_info, 1);
    if (sig == SIGCHLD &&
        (si->si_pid != child_pid || si->si_code != CLD_EXITED || si->si_status != 7))
        atomic_fetch_add(&bad_info, 1);
    atomic_fetch_add(&handled[sig], 1);
    errno = saved;
}

static void install(int sig, int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    CHECK_SYS(sigaction(sig, &sa, NULL));
}

static sigset_t routed(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGALRM);
    sigaddset(&s, SIGCHLD);
    sigaddset(&s, SIGINT);
    return s;
}

/* Waits until the main thread saw `sig` handled. */
static void announce(int step)
{
    atomic_store(&ready_to_wait, step);
}

static void *receiver(void *arg)
{
    (void)arg;
    who = 1;
    sigset_t s = routed();
    CHECK_RC(pthread_sigmask(SIG_UNBLOCK, &s, NULL));
    char c;

    announce(1);
    errno = 0;
    ssize_t r = read(pipefd[0], &c, 1);
    CHECK(r == -1 && errno == EINTR, "read after SIGUSR1: %zd, errno %d", r, errno);
    CHECK(atomic_load(&handled[SIGUSR1]) == 1, "SIGUSR1 handled %d times",
          atomic_load(&handled[SIGUSR1]));
    printf("SIGUSR1 from kill(getpid()): handled here, read failed with EINTR\n");

    announce(2);
    r = read(pipefd[0], &c, 1);
    CHECK(r == 1 && c == 'x', "read after SIGALRM (SA_RESTART): %zd, errno %d", r, errno);
    CHECK(atomic_load(&handled[SIGALRM]) == 1, "SIGALRM handled %d times",
          atomic_load(&handled[SIGALRM]));
    printf("SIGALRM from alarm(): handled here, read restarted and returned the data\n");

    announce(3);
    struct timespec ts = {30, 0};
    int n = nanosleep(&ts, &ts);
    CHECK(n == -1 && errno == EINTR, "nanosleep after SIGCHLD: %d, errno %d", n, errno);
    CHECK(atomic_load(&handled[SIGCHLD]) == 1, "SIGCHLD handled %d times",
          atomic_load(&handled[SIGCHLD]));
    int status;
    CHECK(waitpid(child_pid, &status, 0) == child_pid && WEXITSTATUS(status) == 7, "waitpid");
    printf("SIGCHLD from an exiting child: handled here with its siginfo, nanosleep EINTR\n");

    announce(4);
    struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
    n = poll(&p, 1, 30000);
    CHECK(n == -1 && errno == EINTR, "poll after SIGINT: %d, errno %d", n, errno);
    CHECK(atomic_load(&handled[SIGINT]) == 1, "SIGINT handled %d times",
          atomic_load(&handled[SIGINT]));
    printf("SIGINT to the process group: handled here, poll failed with EINTR\n");
    pthread_barrier_wait(&done);
    return NULL;
}

static void *other(void *arg)
{
    (void)arg;
    who = 2;
    pthread_barrier_wait(&done);
    return NULL;
}

/* Waits for the receiver to reach step `step`, then a little more so it is blocked in its call
 * (a signal that arrives before the call starts is handled before it too, and the call then
 * blocks: the test would hang, not pass wrongly). */
static void wait_step(int step)
{
    while (atomic_load(&ready_to_wait) != step)
        sleep_ms(1);
    sleep_ms(200);
}

int main(void)
{
    sigset_t s = routed();
    CHECK_RC(pthread_sigmask(SIG_BLOCK, &s, NULL)); /* inherited by every thread */
    install(SIGUSR1, 0);
    install(SIGALRM, SA_RESTART);
    install(SIGCHLD, SA_RESTART);
    install(SIGINT, 0);
    CHECK_SYS(pipe(pipefd));
    CHECK_RC(pthread_barrier_init(&done, NULL, OTHERS + 2));
    pthread_t t[OTHERS + 1];
    for (int i = 0; i < OTHERS; i++)
        CHECK_RC(pthread_create(&t[i], NULL, other, NULL));
    CHECK_RC(pthread_create(&t[OTHERS], NULL, receiver, NULL));

    wait_step(1);
    CHECK_SYS(kill(getpid(), SIGUSR1));
    wait_step(2);
    alarm(1);
    while (atomic_load(&handled[SIGALRM]) == 0)
        sleep_ms(1);
    CHECK(write(pipefd[1], "x", 1) == 1, "write");
    wait_step(3);
    child_pid = fork();
    CHECK(child_pid != -1, "fork: %s", strerror(errno));
    if (child_pid == 0)
        _exit(7);
    wait_step(4);
    CHECK_SYS(kill(0, SIGINT));
    pthread_barrier_wait(&done);
    for (int i = 0; i <= OTHERS; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    CHECK(atomic_load(&wrong_thread) == 0, "%d handlers ran on a thread that blocks the signal",
          atomic_load(&wrong_thread));
    CHECK(atomic_load(&bad_info) == 0, "%d handlers got a wrong siginfo",
          atomic_load(&bad_info));
    uint64_t h = MIX_INIT;
    for (int sig = 1; sig <= 64; sig++)
        h = mix(h, (uint64_t)atomic_load(&handled[sig]));
    finish(h);
    return 0;
}
