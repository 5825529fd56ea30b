/* Thread lifecycle: create/join with return values, detached threads, identity, attributes
 * (stack size honoured and usable), pthread_exit from a nested call, pthread_once, thread-
 * specific data destructors, thread names. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <stdlib.h>

/* ---- create/join: 200 threads alive at once, each returning its own value ---- */

#define JOINED 200

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_arrived, gate_open;
static pthread_t self_of[JOINED];

/* Waits until every joined thread has started, so that all are alive together. */
static void gate_wait(void)
{
    CHECK_RC(pthread_mutex_lock(&gate_mu));
    gate_arrived++;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open)
        CHECK_RC(pthread_cond_wait(&gate_cv, &gate_mu));
    CHECK_RC(pthread_mutex_unlock(&gate_mu));
}

static uint64_t work_value(uint64_t i)
{
    uint64_t v = i * 2654435761u;
    for (int k = 0; k < 1000; k++)
        v = v * 6364136223846793005ULL + 1442695040888963407ULL;
    return v;
}

static void *joined_main(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    self_of[i] = pthread_self();
    gate_wait();
    return (void *)(uintptr_t)work_value(i);
}

static uint64_t test_create_join(uint64_t h)
{
    pthread_t t[JOINED];
    pthread_t main_self = pthread_self();
    CHECK(pthread_equal(main_self, pthread_self()), "pthread_self unstable in main");
    for (uintptr_t i = 0; i < JOINED; i++)
        CHECK_RC(pthread_create(&t[i], NULL, joined_main, (void *)i));
    CHECK_RC(pthread_mutex_lock(&gate_mu));
    while (gate_arrived < JOINED)
        CHECK_RC(pthread_cond_wait(&gate_cv, &gate_mu));
    gate_open = 1;
    CHECK_RC(pthread_cond_broadcast(&gate_cv));
    CHECK_RC(pthread_mutex_unlock(&gate_mu));
    uint64_t sum = 0;
    for (uintptr_t i = 0; i < JOINED; i++) {
        void *ret = NULL;
        CHECK_RC(pthread_join(t[i], &ret));
        CHECK((uint64_t)(uintptr_t)ret == work_value(i), "thread %d returned a wrong value",
              (int)i);
        sum += (uint64_t)(uintptr_t)ret;
    }
    uint64_t expect = 0;
    for (uint64_t i = 0; i < JOINED; i++)
        expect += work_value(i);
    CHECK(sum == expect, "join sum");
    /* Identity: what each thread saw as pthread_self is the handle its creator got; the 200
     * were alive together, so all differ, and none is the main thread. */
    for (int i = 0; i < JOINED; i++) {
        CHECK(pthread_equal(self_of[i], t[i]), "pthread_self of thread %d != its handle", i);
        CHECK(!pthread_equal(self_of[i], main_self), "thread %d has main's identity", i);
        for (int j = 0; j < i; j++)
            CHECK(!pthread_equal(self_of[i], self_of[j]), "threads %d and %d share an id", i, j);
    }
    CHECK(pthread_equal(main_self, pthread_self()), "pthread_self of main changed");
    printf("create_join %d threads sum %016" PRIx64 "\n", JOINED, sum);
    return mix(h, sum);
}

/* ---- detached threads signal completion through a mutex + condvar ---- */

#define DETACHED 64 /* one bit each in det_mask */

static pthread_mutex_t det_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t det_cv = PTHREAD_COND_INITIALIZER;
static int det_done;
static uint64_t det_mask;

static void *detached_main(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    int state = -1;
    pthread_attr_t a;
    CHECK_RC(pthread_getattr_np(pthread_self(), &a));
    CHECK_RC(pthread_attr_getdetachstate(&a, &state));
    CHECK_RC(pthread_attr_destroy(&a));
    /* Even threads were created detached; odd ones are detached by their creator after
     * pthread_create, which may happen after this getattr: only the even ones are checked. */
    if (i % 2 == 0)
        CHECK(state == PTHREAD_CREATE_DETACHED, "thread %d created detached reports %d",
              (int)i, state);
    CHECK_RC(pthread_mutex_lock(&det_mu));
    CHECK(!(det_mask & (1ULL << i)), "detached thread %d ran twice", (int)i);
    det_mask |= 1ULL << i;
    det_done++;
    CHECK_RC(pthread_cond_signal(&det_cv));
    CHECK_RC(pthread_mutex_unlock(&det_mu));
    return NULL;
}

static uint64_t test_detached(uint64_t h)
{
    pthread_attr_t a;
    CHECK_RC(pthread_attr_init(&a));
    CHECK_RC(pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED));
    for (uintptr_t i = 0; i < DETACHED; i++) {
        pthread_t t;
        if (i % 2 == 0) {
            CHECK_RC(pthread_create(&t, &a, detached_main, (void *)i));
        } else {
            CHECK_RC(pthread_create(&t, NULL, detached_main, (void *)i));
            CHECK_RC(pthread_detach(t));
        }
    }
    CHECK_RC(pthread_attr_destroy(&a));
    CHECK_RC(pthread_mutex_lock(&det_mu));
    while (det_done < DETACHED)
        CHECK_RC(pthread_cond_wait(&det_cv, &det_mu));
    CHECK(det_done == DETACHED, "detached count %d", det_done);
    CHECK(det_mask == ~0ULL, "detached threads missing: mask %016" PRIx64, det_mask);
    CHECK_RC(pthread_mutex_unlock(&det_mu));
    printf("detached %d\n", det_done);
    return mix(h, (uint64_t)det_done);
}

/* ---- attributes: the stack size is honoured and the stack is usable ---- */

struct stack_job {
    size_t requested;
    size_t use;       /* bytes of stack to touch */
    size_t reported;  /* pthread_getattr_np's stack size */
    int inside;       /* a local's address lies in the reported stack */
    uint64_t sum;
};

__attribute__((noinline)) static uint64_t touch_stack(size_t n, unsigned seed)
{
    volatile unsigned char *buf = __builtin_alloca(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * seed + (i >> 8));
    uint64_t s = 0;
    for (size_t i = 0; i < n; i += 1)
        s += buf[i];
    return s;
}

static void *stack_main(void *arg)
{
    struct stack_job *j = arg;
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    int local = 0;
    CHECK_RC(pthread_getattr_np(pthread_self(), &a));
    CHECK_RC(pthread_attr_getstack(&a, &addr, &size));
    CHECK_RC(pthread_attr_destroy(&a));
    j->reported = size;
    j->inside = (uintptr_t)&local > (uintptr_t)addr && (uintptr_t)&local < (uintptr_t)addr + size;
    j->sum = touch_stack(j->use, (unsigned)(j->requested >> 12));
    return NULL;
}

static uint64_t test_stack_attr(uint64_t h)
{
    struct stack_job jobs[] = {
        {256 * 1024, 192 * 1024, 0, 0, 0},
        {4 * 1024 * 1024, 3 * 1024 * 1024, 0, 0, 0},
    };
    for (size_t k = 0; k < sizeof jobs / sizeof jobs[0]; k++) {
        struct stack_job *j = &jobs[k];
        pthread_attr_t a;
        size_t got = 0;
        pthread_t t;
        CHECK_RC(pthread_attr_init(&a));
        CHECK_RC(pthread_attr_setstacksize(&a, j->requested));
        CHECK_RC(pthread_attr_getstacksize(&a, &got));
        CHECK(got == j->requested, "attr stacksize %zu, set %zu", got, j->requested);
        CHECK_RC(pthread_create(&t, &a, stack_main, j));
        CHECK_RC(pthread_attr_destroy(&a));
        CHECK_RC(pthread_join(t, NULL));
        CHECK(j->reported >= j->requested, "pthread_getattr_np stack size %zu < requested %zu",
              j->reported, j->requested);
        CHECK(j->inside, "a local of the thread is outside its reported stack (size %zu)",
              j->reported);
        CHECK(j->sum == touch_stack(j->use, (unsigned)(j->requested >> 12)),
              "stack contents corrupted");
        printf("stack %zu KiB used %zu KiB\n", j->requested / 1024, j->use / 1024);
        h = mix(h, j->sum);
    }
    return h;
}

/* ---- pthread_exit with a value, from a nested function ---- */

static int after_exit_ran;

__attribute__((noinline)) static void exit_level3(uintptr_t v)
{
    pthread_exit((void *)(v * 7 + 3));
}

__attribute__((noinline)) static void exit_level2(uintptr_t v)
{
    char pad[256]; /* a real frame to unwind through */
    memset(pad, (int)v, sizeof pad);
    __asm__ volatile("" : : "r"(pad) : "memory");
    exit_level3(v);
    __atomic_store_n(&after_exit_ran, 1, __ATOMIC_SEQ_CST);
}

__attribute__((noinline)) static void exit_level1(uintptr_t v)
{
    exit_level2(v);
    __atomic_store_n(&after_exit_ran, 1, __ATOMIC_SEQ_CST);
}

static void *exiting_main(void *arg)
{
    exit_level1((uintptr_t)arg);
    __atomic_store_n(&after_exit_ran, 1, __ATOMIC_SEQ_CST);
    return (void *)1;
}

static uint64_t test_exit(uint64_t h)
{
    pthread_t t[16];
    for (uintptr_t i = 0; i < 16; i++)
        CHECK_RC(pthread_create(&t[i], NULL, exiting_main, (void *)i));
    uint64_t sum = 0;
    for (uintptr_t i = 0; i < 16; i++) {
        void *ret = NULL;
        CHECK_RC(pthread_join(t[i], &ret));
        CHECK((uintptr_t)ret == i * 7 + 3, "pthread_exit value %p for thread %d", ret, (int)i);
        sum += (uintptr_t)ret;
    }
    CHECK(!__atomic_load_n(&after_exit_ran, __ATOMIC_SEQ_CST), "code after pthread_exit ran");
    printf("exit sum %" PRIu64 "\n", sum);
    return mix(h, sum);
}

/* ---- pthread_once under contention ---- */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_runs, once_value;

static void once_init(void)
{
    __atomic_fetch_add(&once_runs, 1, __ATOMIC_SEQ_CST);
    sleep_ms(20); /* the other callers must wait for the initialiser to finish */
    __atomic_store_n(&once_value, 4242, __ATOMIC_SEQ_CST);
}

static void *once_main(void *arg)
{
    (void)arg;
    CHECK_RC(pthread_once(&once, once_init));
    CHECK(__atomic_load_n(&once_value, __ATOMIC_SEQ_CST) == 4242,
          "pthread_once returned before the initialiser finished");
    return NULL;
}

static uint64_t test_once(uint64_t h)
{
    pthread_t t[16];
    for (int i = 0; i < 16; i++)
        CHECK_RC(pthread_create(&t[i], NULL, once_main, NULL));
    for (int i = 0; i < 16; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    CHECK_RC(pthread_once(&once, once_init));
    CHECK(once_runs == 1, "the once initialiser ran %d times", once_runs);
    printf("once runs %d\n", once_runs);
    return mix(h, (uint64_t)once_runs * 4242);
}

/* ---- thread-specific data: own values, destructors at exit; thread names ---- */

static pthread_key_t key;
static uint64_t key_dtor_sum;
static int key_dtor_count;

static void key_dtor(void *v)
{
    __atomic_fetch_add(&key_dtor_sum, (uint64_t)(uintptr_t)v, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&key_dtor_count, 1, __ATOMIC_SEQ_CST);
}

static void *key_main(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    char want[16], got[16];
    CHECK(pthread_getspecific(key) == NULL, "a new thread's key value is not NULL");
    CHECK_RC(pthread_setspecific(key, (void *)(1000 + i)));
    snprintf(want, sizeof want, "lc-%d", (int)i);
    CHECK_RC(pthread_setname_np(pthread_self(), want));
    for (int k = 0; k < 100; k++) {
        sched_yield();
        CHECK(pthread_getspecific(key) == (void *)(1000 + i), "key value of thread %d changed",
              (int)i);
    }
    CHECK_RC(pthread_getname_np(pthread_self(), got, sizeof got));
    CHECK(strcmp(want, got) == 0, "thread name %s, set %s", got, want);
    if (i % 2 == 1)
        pthread_exit(NULL); /* destructors run on pthread_exit as on return */
    return NULL;
}

static uint64_t test_keys(uint64_t h)
{
    pthread_t t[32];
    CHECK_RC(pthread_key_create(&key, key_dtor));
    CHECK_RC(pthread_setspecific(key, (void *)7));
    for (uintptr_t i = 0; i < 32; i++)
        CHECK_RC(pthread_create(&t[i], NULL, key_main, (void *)i));
    for (int i = 0; i < 32; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    CHECK(pthread_getspecific(key) == (void *)7, "main's key value changed");
    CHECK(key_dtor_count == 32, "key destructor ran %d times", key_dtor_count);
    uint64_t expect = 0;
    for (int i = 0; i < 32; i++)
        expect += 1000 + (uint64_t)i;
    CHECK(key_dtor_sum == expect, "key destructor sum %" PRIu64, key_dtor_sum);
    CHECK_RC(pthread_key_delete(key));
    printf("keys destructors %d sum %" PRIu64 "\n", key_dtor_count, key_dtor_sum);
    return mix(h, key_dtor_sum);
}

int main(void)
{
    uint64_t h = MIX_INIT;
    h = test_create_join(h);
    h = test_detached(h);
    h = test_stack_attr(h);
    h = test_exit(h);
    h = test_once(h);
    h = test_keys(h);
    finish(h);
    return 0;
}
