/* Thread identity and scheduling: gettid is distinct per thread, stable, equal to
 * syscall(SYS_gettid), the main thread's is the pid; affinity set on oneself and on another
 * thread (by pthread_t and by tid) is reported back, inherited by threads created afterwards,
 * and a mask with no online CPU is refused with EINVAL; policies and priorities set and read
 * back (thread, attribute with PTHREAD_EXPLICIT_SCHED, pthread_getattr_np), invalid ones refused;
 * real-time refused with EPERM without the privilege; a CPU-time clock either unsupported or
 * counting only its own thread. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define N 8

static pthread_barrier_t all_up, all_checked;
static pid_t tids[N];

static void *identity(void *arg)
{
    int i = (int)(intptr_t)arg;
    pid_t t = gettid();
    CHECK(t > 0, "gettid %d", (int)t);
    CHECK(t != getpid(), "a thread's tid is the pid");
    CHECK((pid_t)syscall(SYS_gettid) == t, "syscall(SYS_gettid) %ld != gettid %d",
          (long)syscall(SYS_gettid), (int)t);
    tids[i] = t;
    pthread_barrier_wait(&all_up);
    sched_yield();
    CHECK(gettid() == t, "gettid changed");
    pthread_barrier_wait(&all_checked);
    return NULL;
}

static uint64_t check_identity(uint64_t h)
{
    CHECK(gettid() == getpid(), "the main thread's tid is not the pid");
    pthread_t th[N];
    CHECK_RC(pthread_barrier_init(&all_up, NULL, N + 1));
    CHECK_RC(pthread_barrier_init(&all_checked, NULL, N + 1));
    for (int i = 0; i < N; i++)
        CHECK_RC(pthread_create(&th[i], NULL, identity, (void *)(intptr_t)i));
    pthread_barrier_wait(&all_up);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            CHECK(tids[i] != tids[j], "threads %d and %d share tid %d", i, j, (int)tids[i]);
    pthread_barrier_wait(&all_checked);
    for (int i = 0; i < N; i++)
        CHECK_RC(pthread_join(th[i], NULL));
    pthread_barrier_destroy(&all_up);
    pthread_barrier_destroy(&all_checked);
    printf("identity: %d threads, distinct stable tids\n", N);
    return mix(h, N);
}

/* ---- affinity ---- */

static cpu_set_t process_mask; /* the main thread's at start */
static int first_cpu, last_cpu;

static void one_cpu(cpu_set_t *s, int cpu)
{
    CPU_ZERO(s);
    CPU_SET(cpu, s);
}

static int only(const cpu_set_t *s, int cpu)
{
    return CPU_COUNT(s) == 1 && CPU_ISSET(cpu, s);
}

static void *inherits(void *arg)
{
    int cpu = (int)(intptr_t)arg;
    cpu_set_t s;
    CHECK_RC(pthread_getaffinity_np(pthread_self(), sizeof s, &s));
    CHECK(only(&s, cpu), "a new thread did not inherit its creator's affinity");
    return NULL;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stage;
static pid_t other_tid;

static void wait_stage(int s)
{
    pthread_mutex_lock(&mu);
    while (stage < s)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void set_stage(int s)
{
    pthread_mutex_lock(&mu);
    stage = s;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* The thread whose affinity another thread sets. */
static void *target(void *arg)
{
    (void)arg;
    other_tid = gettid();
    set_stage(1);
    wait_stage(2);
    cpu_set_t s;
    CHECK_RC(pthread_getaffinity_np(pthread_self(), sizeof s, &s));
    CHECK(only(&s, first_cpu), "affinity set by another thread (pthread_t) not seen");
    set_stage(3);
    wait_stage(4);
    CHECK(sched_getaffinity(0, sizeof s, &s) == 0, "sched_getaffinity: %s", strerror(errno));
    CHECK(only(&s, last_cpu), "affinity set by another thread (tid) not seen");
    return NULL;
}

static void *affinity(void *arg)
{
    (void)arg;
    cpu_set_t s, t;
    /* Unset: some online CPUs, the same through every call. */
    CHECK_RC(pthread_getaffinity_np(pthread_self(), sizeof s, &s));
    CHECK(CPU_COUNT(&s) >= 1, "an empty affinity mask");
    for (int c = 0; c < CPU_SETSIZE; c++)
        CHECK(!CPU_ISSET(c, &s) || c <= last_cpu, "CPU %d reported, not online", c);
    CHECK(sched_getaffinity(0, sizeof t, &t) == 0, "sched_getaffinity: %s", strerror(errno));
    CHECK(CPU_EQUAL(&s, &t), "pthread_getaffinity_np and sched_getaffinity(0) differ");
    CHECK(sched_getaffinity(gettid(), sizeof t, &t) == 0, "sched_getaffinity(gettid()): %s",
          strerror(errno));
    CHECK(CPU_EQUAL(&s, &t), "sched_getaffinity(0) and (gettid()) differ");
    CHECK(syscall(SYS_sched_getaffinity, 0, sizeof t, &t) > 0, "raw sched_getaffinity");

    /* Set on oneself, read back every way. */
    one_cpu(&s, first_cpu);
    CHECK_RC(pthread_setaffinity_np(pthread_self(), sizeof s, &s));
    CHECK_RC(pthread_getaffinity_np(pthread_self(), sizeof t, &t));
    CHECK(only(&t, first_cpu), "pthread_setaffinity_np not reported back");
    one_cpu(&s, last_cpu);
    CHECK_SYS(sched_setaffinity(0, sizeof s, &s));
    CHECK(sched_getaffinity(gettid(), sizeof t, &t) == 0, "sched_getaffinity: %s",
          strerror(errno));
    CHECK(only(&t, last_cpu), "sched_setaffinity(0) not reported back");
    pthread_attr_t a;
    CHECK_RC(pthread_getattr_np(pthread_self(), &a));
    CHECK_RC(pthread_attr_getaffinity_np(&a, sizeof t, &t));
    CHECK(only(&t, last_cpu), "pthread_getattr_np's affinity");
    pthread_attr_destroy(&a);

    /* Inherited by a thread created now; an attribute's mask wins. */
    pthread_t th;
    CHECK_RC(pthread_create(&th, NULL, inherits, (void *)(intptr_t)last_cpu));
    CHECK_RC(pthread_join(th, NULL));
    CHECK_RC(pthread_attr_init(&a));
    one_cpu(&s, first_cpu);
    CHECK_RC(pthread_attr_setaffinity_np(&a, sizeof s, &s));
    CHECK_RC(pthread_create(&th, &a, inherits, (void *)(intptr_t)first_cpu));
    CHECK_RC(pthread_join(th, NULL));
    pthread_attr_destroy(&a);

    /* No online CPU: EINVAL, and the mask unchanged. */
    CPU_ZERO(&s);
    CHECK(pthread_setaffinity_np(pthread_self(), sizeof s, &s) == EINVAL, "empty mask accepted");
    errno = 0;
    CHECK(sched_setaffinity(0, sizeof s, &s) == -1 && errno == EINVAL, "empty mask accepted");
    size_t big = CPU_ALLOC_SIZE(4096);
    cpu_set_t *far = CPU_ALLOC(4096);
    CPU_ZERO_S(big, far);
    CPU_SET_S(4000, big, far);
    CHECK(pthread_setaffinity_np(pthread_self(), big, far) == EINVAL, "offline CPU accepted");
    CPU_FREE(far);
    CHECK_RC(pthread_getaffinity_np(pthread_self(), sizeof t, &t));
    CHECK(only(&t, last_cpu), "a refused mask changed the affinity");
    /* A buffer smaller than the kernel's mask: EINVAL. */
    CHECK(pthread_getaffinity_np(pthread_self(), 1, &t) == EINVAL, "1-byte mask accepted");

    /* Another thread's, by pthread_t and by tid. */
    CHECK_RC(pthread_create(&th, NULL, target, NULL));
    wait_stage(1);
    one_cpu(&s, first_cpu);
    CHECK_RC(pthread_setaffinity_np(th, sizeof s, &s));
    set_stage(2);
    wait_stage(3);
    one_cpu(&s, last_cpu);
    CHECK_SYS(sched_setaffinity(other_tid, sizeof s, &s));
    CHECK(sched_getaffinity(other_tid, sizeof t, &t) == 0, "sched_getaffinity(tid): %s",
          strerror(errno));
    CHECK(only(&t, last_cpu), "sched_getaffinity(tid) after sched_setaffinity(tid)");
    set_stage(4);
    CHECK_RC(pthread_join(th, NULL));
    return NULL;
}

static uint64_t check_affinity(uint64_t h)
{
    CHECK(sched_getaffinity(0, sizeof process_mask, &process_mask) == 0, "sched_getaffinity");
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    first_cpu = 0;
    last_cpu = (int)online - 1;
    pthread_t th;
    CHECK_RC(pthread_create(&th, NULL, affinity, NULL));
    CHECK_RC(pthread_join(th, NULL));
    cpu_set_t now;
    CHECK(sched_getaffinity(0, sizeof now, &now) == 0, "sched_getaffinity");
    CHECK(CPU_EQUAL(&now, &process_mask), "the main thread's affinity changed");
    printf("affinity: set, read back, inherited, refused\n");
    return mix(h, 2);
}

/* ---- policy and priority ---- */

static void expect_policy(pthread_t t, int policy, int prio, const char *what)
{
    int p;
    struct sched_param sp;
    CHECK_RC(pthread_getschedparam(t, &p, &sp));
    CHECK(p == policy && sp.sched_priority == prio, "%s: policy %d prio %d, expected %d %d",
          what, p, sp.sched_priority, policy, prio);
}

static void *batch_child(void *arg)
{
    (void)arg;
    expect_policy(pthread_self(), SCHED_BATCH, 0, "set by another thread, seen by itself");
    pthread_attr_t a;
    int p;
    CHECK_RC(pthread_getattr_np(pthread_self(), &a));
    CHECK_RC(pthread_attr_getschedpolicy(&a, &p));
    CHECK(p == SCHED_BATCH, "pthread_getattr_np's policy %d", p);
    pthread_attr_destroy(&a);
    return NULL;
}

static void *plain(void *arg)
{
    int expected = (int)(intptr_t)arg;
    expect_policy(pthread_self(), expected, 0, "inherited");
    return NULL;
}

static void *policies(void *arg)
{
    (void)arg;
    struct sched_param sp = {0};
    expect_policy(pthread_self(), SCHED_OTHER, 0, "initial");
    CHECK_RC(pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp));
    expect_policy(pthread_self(), SCHED_BATCH, 0, "after setschedparam");
    /* Inherited by default; PTHREAD_EXPLICIT_SCHED takes the attribute's. */
    pthread_t th;
    CHECK_RC(pthread_create(&th, NULL, plain, (void *)(intptr_t)SCHED_BATCH));
    CHECK_RC(pthread_join(th, NULL));
    CHECK_RC(pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp));
    expect_policy(pthread_self(), SCHED_OTHER, 0, "back to SCHED_OTHER");
    CHECK_RC(pthread_setschedprio(pthread_self(), 0));
    CHECK(pthread_setschedprio(pthread_self(), 5) == EINVAL, "SCHED_OTHER priority 5 accepted");
    sp.sched_priority = 5;
    CHECK(pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp) == EINVAL,
          "SCHED_OTHER priority 5 accepted");
    CHECK(pthread_setschedparam(pthread_self(), 77, &sp) == EINVAL, "policy 77 accepted");
    sp.sched_priority = 0;
    CHECK(pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == EINVAL,
          "SCHED_FIFO priority 0 accepted");
    expect_policy(pthread_self(), SCHED_OTHER, 0, "after refusals");
    return NULL;
}

static uint64_t check_policies(uint64_t h)
{
    /* A thread made with PTHREAD_EXPLICIT_SCHED gets the attribute's policy (glibc's attribute
     * setter takes only OTHER, FIFO and RR; FIFO is checked in check_realtime). */
    pthread_attr_t a;
    struct sched_param sp = {0};
    CHECK_RC(pthread_attr_init(&a));
    CHECK_RC(pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED));
    CHECK_RC(pthread_attr_setschedpolicy(&a, SCHED_OTHER));
    CHECK_RC(pthread_attr_setschedparam(&a, &sp));
    pthread_t th;
    CHECK_RC(pthread_create(&th, &a, plain, (void *)(intptr_t)SCHED_OTHER));
    CHECK_RC(pthread_join(th, NULL));
    pthread_attr_destroy(&a);

    CHECK_RC(pthread_create(&th, NULL, policies, NULL));
    CHECK_RC(pthread_join(th, NULL));
    printf("policies: set, read back, inherited, refused\n");
    return mix(h, 3);
}

/* A thread whose policy another thread sets: it sees it, and so does its pthread_getattr_np. */
static void *batch_target(void *arg)
{
    (void)arg;
    wait_stage(6);
    batch_child(NULL);
    return NULL;
}

static uint64_t check_other_thread_policy(uint64_t h)
{
    pthread_t th;
    stage = 5;
    CHECK_RC(pthread_create(&th, NULL, batch_target, NULL));
    struct sched_param sp = {0};
    CHECK_RC(pthread_setschedparam(th, SCHED_BATCH, &sp));
    expect_policy(th, SCHED_BATCH, 0, "set by another thread");
    set_stage(6);
    CHECK_RC(pthread_join(th, NULL));
    printf("policies: another thread's\n");
    return mix(h, 4);
}

/* Real-time without the privilege: EPERM, in a child that gave up CAP_SYS_NICE and
 * RLIMIT_RTPRIO (the same as an unprivileged user). */
static void *realtime(void *arg)
{
    (void)arg;
    struct sched_param sp = {.sched_priority = 1};
    int r = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    CHECK(r == EPERM, "unprivileged SCHED_FIFO: %d (%s)", r, strerror(r));
    r = pthread_setschedparam(pthread_self(), SCHED_RR, &sp);
    CHECK(r == EPERM, "unprivileged SCHED_RR: %d (%s)", r, strerror(r));
    expect_policy(pthread_self(), SCHED_OTHER, 0, "after EPERM");
    pthread_attr_t a;
    CHECK_RC(pthread_attr_init(&a));
    CHECK_RC(pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED));
    CHECK_RC(pthread_attr_setschedpolicy(&a, SCHED_FIFO));
    CHECK_RC(pthread_attr_setschedparam(&a, &sp));
    pthread_t th;
    r = pthread_create(&th, &a, plain, NULL);
    CHECK(r == EPERM, "pthread_create with unprivileged SCHED_FIFO: %d (%s)", r, strerror(r));
    pthread_attr_destroy(&a);
    return NULL;
}

static uint64_t check_realtime(uint64_t h)
{
    pid_t pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        struct rlimit rl = {0, 0};
        CHECK_SYS(setrlimit(RLIMIT_RTPRIO, &rl));
        /* capset(version 3): drop CAP_SYS_NICE (23) from the effective and permitted sets. */
        uint32_t hdr[2] = {0x20080522, 0};
        uint32_t data[6];
        CHECK_SYS(syscall(SYS_capget, hdr, data));
        data[0] &= ~(1u << 23);
        data[1] &= ~(1u << 23);
        CHECK_SYS(syscall(SYS_capset, hdr, data));
        pthread_t th;
        CHECK_RC(pthread_create(&th, NULL, realtime, NULL));
        CHECK_RC(pthread_join(th, NULL));
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the real-time child failed");
    printf("realtime: EPERM without the privilege\n");
    return mix(h, 5);
}

/* ---- CPU-time clocks ---- */

static volatile int burn_stop;

static void *burner(void *arg)
{
    (void)arg;
    volatile uint64_t x = 0;
    while (!burn_stop)
        x++;
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    set_stage(8);
    wait_stage(9);
    return NULL;
}

static uint64_t check_cpuclock(uint64_t h)
{
    stage = 7;
    pthread_t s, b[4];
    CHECK_RC(pthread_create(&s, NULL, sleeper, NULL));
    wait_stage(8); /* it has run, and now waits */
    clockid_t c;
    int r = pthread_getcpuclockid(s, &c);
    if (r == 0) {
        /* Supported: the waiting thread's clock hardly moves while others burn CPU. */
        struct timespec t0, t1;
        CHECK_SYS(clock_gettime(c, &t0));
        burn_stop = 0;
        for (int i = 0; i < 4; i++)
            CHECK_RC(pthread_create(&b[i], NULL, burner, NULL));
        sleep_ms(300);
        burn_stop = 1;
        for (int i = 0; i < 4; i++)
            CHECK_RC(pthread_join(b[i], NULL));
        CHECK_SYS(clock_gettime(c, &t1));
        int64_t used = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
        CHECK(used < 50000000, "a waiting thread's CPU clock advanced %lld ns", (long long)used);
    } else {
        CHECK(r == ENOTSUP, "pthread_getcpuclockid: %d (%s)", r, strerror(r));
    }
    set_stage(9);
    CHECK_RC(pthread_join(s, NULL));
    printf("cpuclock: honest\n");
    return mix(h, 6);
}

int main(void)
{
    uint64_t h = MIX_INIT;
    h = check_identity(h);
    h = check_affinity(h);
    h = check_policies(h);
    h = check_other_thread_policy(h);
    h = check_realtime(h);
    h = check_cpuclock(h);
    finish(h);
    return 0;
}
