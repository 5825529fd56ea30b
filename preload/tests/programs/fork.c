/* fork with threads running: pthread_atfork handlers run in POSIX order (prepare in reverse
 * registration order, parent and child in registration order); the child is single-threaded
 * (the parent's threads do not run in it), can use a mutex the handlers protected, create and
 * join a thread, and exits 0; the parent waitpid()s for it. Also: fork from a secondary
 * thread, and a process-shared mutex + condvar in shared memory between parent and child. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* ---- threads that keep running (and taking the mutex) while the parent forks ---- */

#define WORKERS 4

static pthread_mutex_t work_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t work_counter; /* under work_mu */
static int workers_stop;

static void *worker(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&workers_stop, __ATOMIC_SEQ_CST)) {
        CHECK_RC(pthread_mutex_lock(&work_mu));
        work_counter++;
        CHECK_RC(pthread_mutex_unlock(&work_mu));
        sched_yield();
    }
    return NULL;
}

/* ---- atfork handlers: they log their order; the first set also protects work_mu ---- */

static char atfork_log[64];
static int atfork_len;

static void log_ev(char c)
{
    if (atfork_len < (int)sizeof atfork_log - 1)
        atfork_log[atfork_len++] = c;
}

static void prepare1(void) { log_ev('a'); CHECK_RC(pthread_mutex_lock(&work_mu)); }
static void parent1(void) { CHECK_RC(pthread_mutex_unlock(&work_mu)); log_ev('A'); }
static void child1(void) { CHECK_RC(pthread_mutex_unlock(&work_mu)); log_ev('1'); }
static void prepare2(void) { log_ev('b'); }
static void parent2(void) { log_ev('B'); }
static void child2(void) { log_ev('2'); }
static void prepare3(void) { log_ev('c'); }
static void parent3(void) { log_ev('C'); }
static void child3(void) { log_ev('3'); }

/* ---- the child ---- */

static uint64_t child_thread_value;

static void *child_thread(void *arg)
{
    uint64_t v = (uint64_t)(uintptr_t)arg;
    CHECK_RC(pthread_mutex_lock(&work_mu));
    child_thread_value = v * 3;
    CHECK_RC(pthread_mutex_unlock(&work_mu));
    return (void *)(uintptr_t)(v + 1);
}

/* What the child does after fork; its exit status is the verdict (0 = all checks passed,
 * and CHECK's own failure exits 1 with the reason on stderr). */
static void child_body(int round, const char *expect_log)
{
    CHECK(strcmp(atfork_log, expect_log) == 0, "child: atfork order \"%s\", expected \"%s\"",
          atfork_log, expect_log);
    /* the mutex was released by the child handler: usable */
    CHECK_RC(pthread_mutex_lock(&work_mu));
    uint64_t before = work_counter;
    CHECK_RC(pthread_mutex_unlock(&work_mu));
    /* only the forking thread exists here: nobody else increments the counter */
    sleep_ms(30);
    CHECK_RC(pthread_mutex_lock(&work_mu));
    CHECK(work_counter == before, "child: the parent's workers run in the child (%" PRIu64
          " -> %" PRIu64 ")", before, work_counter);
    CHECK_RC(pthread_mutex_unlock(&work_mu));
    pthread_t t;
    void *ret = NULL;
    CHECK_RC(pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)round));
    CHECK_RC(pthread_join(t, &ret));
    CHECK((uintptr_t)ret == (uintptr_t)round + 1 && child_thread_value == (uint64_t)round * 3,
          "child: thread result %p", ret);
    exit(0);
}

static int wait_child(pid_t pid)
{
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, 0)) == -1 && errno == EINTR) {
    }
    CHECK(r == pid, "waitpid returned %d: %s", (int)r, strerror(errno));
    CHECK(WIFEXITED(status), "child killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return WEXITSTATUS(status);
}

static void *forking_thread(void *arg)
{
    (void)arg;
    atfork_len = 0;
    memset(atfork_log, 0, sizeof atfork_log);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork from a thread: %s", strerror(errno));
    if (pid == 0)
        child_body(100, "cba123");
    CHECK(strcmp(atfork_log, "cbaABC") == 0, "parent (thread): atfork order \"%s\"",
          atfork_log);
    int st = wait_child(pid);
    CHECK(st == 0, "child forked from a thread exited %d", st);
    return NULL;
}

/* ---- process-shared mutex and condvar ---- */

struct shared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stage;
    uint64_t value;
};

static uint64_t test_pshared(uint64_t h)
{
    struct shared *s =
        mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(s != MAP_FAILED, "mmap: %s", strerror(errno));
    pthread_mutexattr_t ma;
    pthread_condattr_t ca;
    CHECK_RC(pthread_mutexattr_init(&ma));
    CHECK_RC(pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED));
    CHECK_RC(pthread_mutex_init(&s->mu, &ma));
    CHECK_RC(pthread_condattr_init(&ca));
    CHECK_RC(pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED));
    CHECK_RC(pthread_cond_init(&s->cv, &ca));
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* child: wait for stage 1, answer with stage 2 */
        CHECK_RC(pthread_mutex_lock(&s->mu));
        while (s->stage != 1)
            CHECK_RC(pthread_cond_wait(&s->cv, &s->mu));
        s->value = s->value * 5 + 1;
        s->stage = 2;
        CHECK_RC(pthread_cond_broadcast(&s->cv));
        CHECK_RC(pthread_mutex_unlock(&s->mu));
        _exit(0);
    }
    sleep_ms(20); /* the child is (most likely) already waiting */
    CHECK_RC(pthread_mutex_lock(&s->mu));
    s->value = 8;
    s->stage = 1;
    CHECK_RC(pthread_cond_broadcast(&s->cv));
    while (s->stage != 2)
        CHECK_RC(pthread_cond_wait(&s->cv, &s->mu));
    uint64_t v = s->value;
    CHECK_RC(pthread_mutex_unlock(&s->mu));
    CHECK(wait_child(pid) == 0, "pshared child failed");
    CHECK(v == 41, "pshared value %" PRIu64, v);
    CHECK_RC(pthread_mutex_destroy(&s->mu));
    CHECK_RC(pthread_cond_destroy(&s->cv));
    CHECK_RC(pthread_mutexattr_destroy(&ma));
    CHECK_RC(pthread_condattr_destroy(&ca));
    CHECK_SYS(munmap(s, sizeof *s));
    printf("pshared value %" PRIu64 "\n", v);
    return mix(h, v);
}

int main(void)
{
    uint64_t h = MIX_INIT;
    CHECK_RC(pthread_atfork(prepare1, parent1, child1));
    CHECK_RC(pthread_atfork(prepare2, parent2, child2));
    CHECK_RC(pthread_atfork(prepare3, parent3, child3));

    pthread_t w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        CHECK_RC(pthread_create(&w[i], NULL, worker, NULL));
    /* the workers are running before the first fork */
    for (;;) {
        CHECK_RC(pthread_mutex_lock(&work_mu));
        uint64_t c = work_counter;
        CHECK_RC(pthread_mutex_unlock(&work_mu));
        if (c >= 1000)
            break;
        sleep_ms(1);
    }

    fflush(stdout); /* nothing buffered is duplicated into the children */
    int rounds = 5;
    for (int r = 0; r < rounds; r++) {
        atfork_len = 0;
        memset(atfork_log, 0, sizeof atfork_log);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0)
            child_body(r, "cba123");
        CHECK(strcmp(atfork_log, "cbaABC") == 0, "parent: atfork order \"%s\"", atfork_log);
        int st = wait_child(pid);
        CHECK(st == 0, "child of round %d exited %d", r, st);
        h = mix(h, (uint64_t)r);
    }

    pthread_t f;
    CHECK_RC(pthread_create(&f, NULL, forking_thread, NULL));
    CHECK_RC(pthread_join(f, NULL));

    /* the workers kept running in the parent */
    CHECK_RC(pthread_mutex_lock(&work_mu));
    uint64_t before = work_counter;
    CHECK_RC(pthread_mutex_unlock(&work_mu));
    sleep_ms(20);
    CHECK_RC(pthread_mutex_lock(&work_mu));
    CHECK(work_counter > before, "parent: workers stopped running after fork");
    CHECK_RC(pthread_mutex_unlock(&work_mu));
    __atomic_store_n(&workers_stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < WORKERS; i++)
        CHECK_RC(pthread_join(w[i], NULL));

    h = test_pshared(h);
    printf("fork rounds %d atfork %s\n", rounds + 1, "cbaABC/cba123");
    finish(h);
    return 0;
}
