/* Running programs from threads: several threads at once in system() and posix_spawn() +
 * waitpid() on commands that take a while, while another thread keeps running (it must never
 * stall for as long as a command runs); system()'s status, its SIGINT/SIGQUIT ignored while it
 * runs and restored after, the caller's mask restored; the child of posix_spawnp() gets the
 * calling thread's signal mask; vfork() children that close a descriptor and exec, or _exit; _Fork() children
 * that write to a pipe. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>

extern char **environ;
extern pid_t _Fork(void);

#define WAITERS 4         /* more than the carriers a machine of this project has */
#define COMMAND_MS 1500   /* how long each command runs */
/* The longest the ticker may go without running: a carrier held by a command would stall it for
 * the command's whole length (or several, queued); well below that, and well above what a loaded
 * machine's scheduler alone causes (about 0.5 s seen at load average 50). */
#define MAX_STALL_MS 1000

static volatile int ticking = 1;
static int64_t max_gap_ns;
static int saw_sigint_ignored;

static void on_int(int sig) { (void)sig; }

static void *ticker(void *arg)
{
    (void)arg;
    int64_t last = now_ns();
    while (ticking) {
        sleep_ms(2);
        int64_t t = now_ns();
        if (t - last > max_gap_ns)
            max_gap_ns = t - last;
        last = t;
        struct sigaction sa;
        if (sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
            saw_sigint_ignored = 1;
    }
    return NULL;
}

static pthread_barrier_t start;

static void *with_system(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    int st = system("sleep 1.5; exit 3");
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 3, "system status %#x", st);
    return NULL;
}

static void *with_spawn(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    char *argv[] = {"sh", "-c", "sleep 1.5; exit 4", NULL};
    pid_t pid;
    CHECK_RC(posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ));
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 4, "posix_spawn child status %#x", st);
    return NULL;
}

static uint64_t check_concurrent(uint64_t h)
{
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_int;
    CHECK_SYS(sigaction(SIGINT, &sa, NULL));
    pthread_t tick, th[2 * WAITERS];
    CHECK_RC(pthread_barrier_init(&start, NULL, 2 * WAITERS));
    CHECK_RC(pthread_create(&tick, NULL, ticker, NULL));
    sleep_ms(20);
    for (int i = 0; i < WAITERS; i++) {
        CHECK_RC(pthread_create(&th[2 * i], NULL, with_system, NULL));
        CHECK_RC(pthread_create(&th[2 * i + 1], NULL, with_spawn, NULL));
    }
    for (int i = 0; i < 2 * WAITERS; i++)
        CHECK_RC(pthread_join(th[i], NULL));
    ticking = 0;
    CHECK_RC(pthread_join(tick, NULL));
    CHECK(max_gap_ns < MAX_STALL_MS * 1000000LL,
          "a thread stalled %lld ms while others waited for their commands",
          (long long)(max_gap_ns / 1000000));
    CHECK(saw_sigint_ignored, "SIGINT was not ignored while system() ran");
    CHECK_SYS(sigaction(SIGINT, NULL, &old));
    CHECK(old.sa_handler == on_int, "SIGINT's handler not restored after system()");
    pthread_barrier_destroy(&start);
    printf("concurrent: %d system() and %d posix_spawn() of %d ms, no stall\n", WAITERS, WAITERS,
           COMMAND_MS);
    return mix(h, WAITERS);
}

/* ---- statuses and masks ---- */

static void *statuses(void *arg)
{
    (void)arg;
    CHECK(system(NULL) != 0, "system(NULL): no shell");
    int st = system("exit 0");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit 0: %#x", st);
    st = system("kill -9 $$");
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "kill -9: %#x", st);
    st = system("exec /nonexistent-flexsc 2>/dev/null");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 127, "a missing command: %#x", st);

    sigset_t usr1, was;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    CHECK_RC(pthread_sigmask(SIG_SETMASK, &usr1, &was));
    st = system("exit 5");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5, "exit 5: %#x", st);
    /* grep itself, not through sh (dash clears its mask when it starts): its status is 0 when
     * its blocked set is exactly SIGUSR1 (bit 9). */
    char *argv[] = {"grep", "-q", "^SigBlk:[[:space:]]*0*200$", "/proc/self/status", NULL};
    pid_t pid;
    CHECK_RC(posix_spawnp(&pid, "grep", NULL, NULL, argv, environ));
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "posix_spawnp's child mask is not the caller's");
    sigset_t now;
    CHECK_RC(pthread_sigmask(SIG_SETMASK, &was, &now));
    CHECK(sigismember(&now, SIGUSR1) && !sigismember(&now, SIGCHLD),
          "system() left the caller's mask changed");
    return NULL;
}

static uint64_t check_statuses(uint64_t h)
{
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, statuses, NULL));
    CHECK_RC(pthread_join(t, NULL));
    printf("statuses: exit, signal, 127; the caller's mask\n");
    return mix(h, 3);
}

/* ---- vfork and _Fork ---- */

#define FORKS 10

static void *forks(void *arg)
{
    (void)arg;
    for (int i = 0; i < FORKS; i++) {
        /* vfork, close, dup2, exec: what shells and servers' spawners do. */
        int p[2];
        CHECK_SYS(pipe(p));
        pid_t pid = vfork();
        if (pid == 0) {
            close(p[0]);
            dup2(p[1], 1);
            close(p[1]);
            execl("/bin/sh", "sh", "-c", "echo vforked", (char *)NULL);
            _exit(127);
        }
        CHECK_SYS(pid);
        close(p[1]);
        char buf[16] = {0};
        CHECK(read_full(p[0], buf, 8) == 0 && memcmp(buf, "vforked\n", 8) == 0,
              "vfork child's output %.8s", buf);
        close(p[0]);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "vfork+exec child");

        pid = vfork();
        if (pid == 0)
            _exit(7);
        CHECK_SYS(pid);
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 7,
              "vfork+_exit child");

        /* _Fork: no atfork handlers; the child writes before it exits. */
        CHECK_SYS(pipe(p));
        pid = _Fork();
        if (pid == 0) {
            close(p[0]);
            if (write(p[1], "f", 1) != 1)
                _exit(1);
            _exit(9);
        }
        CHECK_SYS(pid);
        close(p[1]);
        CHECK(read_full(p[0], buf, 1) == 0 && buf[0] == 'f', "_Fork child's write");
        close(p[0]);
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 9,
              "_Fork child status %#x", st);
    }
    return NULL;
}

static uint64_t check_forks(uint64_t h)
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        CHECK_RC(pthread_create(&t[i], NULL, forks, NULL));
    for (int i = 0; i < 3; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    printf("forks: 3 threads x %d vfork+exec, vfork+_exit, _Fork\n", FORKS);
    return mix(h, FORKS);
}

int main(void)
{
    uint64_t h = MIX_INIT;
    h = check_concurrent(h);
    h = check_statuses(h);
    h = check_forks(h);
    finish(h);
    return 0;
}
