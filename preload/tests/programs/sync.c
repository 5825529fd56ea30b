/* Every synchronisation primitive: mutexes (normal, recursive, errorcheck, static initialisers,
 * timed and clock locks), condvars (bounded-buffer producer/consumer, timed waits on
 * CLOCK_MONOTONIC), rwlocks, spinlocks, barriers, semaphores, and C11 <threads.h>. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdlib.h>
#include <threads.h>

/* Starts n threads running fn(i) and joins them. */
static void run_threads(int n, void *(*fn)(void *))
{
    pthread_t t[64];
    CHECK(n <= 64, "too many threads");
    for (intptr_t i = 0; i < n; i++)
        CHECK_RC(pthread_create(&t[i], NULL, fn, (void *)i));
    for (int i = 0; i < n; i++)
        CHECK_RC(pthread_join(t[i], NULL));
}

/* Runs fn(arg) on a new thread and joins it (checks from "another thread"). */
static void on_other_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, fn, arg));
    CHECK_RC(pthread_join(t, NULL));
}

static int64_t elapsed_ms_since(int64_t t0) { return (now_ns() - t0) / 1000000; }

/* ---------------- mutexes ---------------- */

static pthread_mutex_t static_normal = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t static_recursive = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static pthread_mutex_t static_errorcheck = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
static uint64_t plain_counter; /* protected by static_normal; incremented non-atomically */

#define MUTEX_THREADS 4
#define MUTEX_ITERS 50000

static void *count_normal(void *arg)
{
    (void)arg;
    for (int i = 0; i < MUTEX_ITERS; i++) {
        CHECK_RC(pthread_mutex_lock(&static_normal));
        uint64_t v = plain_counter;
        if (i % 1000 == 0)
            sched_yield(); /* holding the lock: nobody else may get in */
        plain_counter = v + 1;
        CHECK_RC(pthread_mutex_unlock(&static_normal));
    }
    return NULL;
}

static void *expect_busy(void *arg)
{
    int rc = pthread_mutex_trylock(arg);
    CHECK(rc == EBUSY, "trylock of a mutex held by another thread returned %d", rc);
    return NULL;
}

static void *expect_free(void *arg)
{
    CHECK_RC(pthread_mutex_trylock(arg));
    CHECK_RC(pthread_mutex_unlock(arg));
    return NULL;
}

static void *expect_eperm_unlock(void *arg)
{
    int rc = pthread_mutex_unlock(arg);
    CHECK(rc == EPERM, "errorcheck unlock by a non-owner returned %d", rc);
    return NULL;
}

static void recursive_checks(pthread_mutex_t *m)
{
    CHECK_RC(pthread_mutex_lock(m));
    CHECK_RC(pthread_mutex_lock(m));
    CHECK_RC(pthread_mutex_trylock(m));
    on_other_thread(expect_busy, m);
    CHECK_RC(pthread_mutex_unlock(m));
    CHECK_RC(pthread_mutex_unlock(m));
    on_other_thread(expect_busy, m); /* still held once */
    CHECK_RC(pthread_mutex_unlock(m));
    on_other_thread(expect_free, m);
}

static void errorcheck_checks(pthread_mutex_t *m)
{
    CHECK_RC(pthread_mutex_lock(m));
    int rc = pthread_mutex_lock(m);
    CHECK(rc == EDEADLK, "errorcheck relock returned %d", rc);
    rc = pthread_mutex_trylock(m);
    CHECK(rc == EBUSY, "errorcheck trylock by the owner returned %d", rc);
    on_other_thread(expect_eperm_unlock, m);
    on_other_thread(expect_busy, m);
    CHECK_RC(pthread_mutex_unlock(m));
    rc = pthread_mutex_unlock(m);
    CHECK(rc == EPERM, "errorcheck unlock of an unlocked mutex returned %d", rc);
    on_other_thread(expect_free, m);
}

/* Timed locks: a holder keeps the mutex 300 ms. */
static pthread_mutex_t timed_mu = PTHREAD_MUTEX_INITIALIZER;
static sem_t timed_held, timed_release;

static void *timed_holder(void *arg)
{
    (void)arg;
    CHECK_RC(pthread_mutex_lock(&timed_mu));
    CHECK_SYS(sem_post(&timed_held));
    CHECK_SYS(sem_wait(&timed_release));
    sleep_ms(30);
    CHECK_RC(pthread_mutex_unlock(&timed_mu));
    return NULL;
}

static uint64_t test_mutexes(uint64_t h)
{
    run_threads(MUTEX_THREADS, count_normal);
    CHECK(plain_counter == (uint64_t)MUTEX_THREADS * MUTEX_ITERS, "mutex counter %" PRIu64,
          plain_counter);
    CHECK_RC(pthread_mutex_lock(&static_normal));
    on_other_thread(expect_busy, &static_normal);
    CHECK_RC(pthread_mutex_unlock(&static_normal));

    pthread_mutexattr_t ma;
    pthread_mutex_t dyn_recursive, dyn_errorcheck;
    int type = -1;
    CHECK_RC(pthread_mutexattr_init(&ma));
    CHECK_RC(pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE));
    CHECK_RC(pthread_mutexattr_gettype(&ma, &type));
    CHECK(type == PTHREAD_MUTEX_RECURSIVE, "mutexattr type %d", type);
    CHECK_RC(pthread_mutex_init(&dyn_recursive, &ma));
    CHECK_RC(pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK));
    CHECK_RC(pthread_mutex_init(&dyn_errorcheck, &ma));
    CHECK_RC(pthread_mutexattr_destroy(&ma));
    recursive_checks(&static_recursive);
    recursive_checks(&dyn_recursive);
    errorcheck_checks(&static_errorcheck);
    errorcheck_checks(&dyn_errorcheck);
    CHECK_RC(pthread_mutex_destroy(&dyn_recursive));
    CHECK_RC(pthread_mutex_destroy(&dyn_errorcheck));

    /* timedlock and clocklock time out while the holder keeps the lock, then succeed once it
     * lets go */
    pthread_t holder;
    CHECK_SYS(sem_init(&timed_held, 0, 0));
    CHECK_SYS(sem_init(&timed_release, 0, 0));
    CHECK_RC(pthread_create(&holder, NULL, timed_holder, NULL));
    CHECK_SYS(sem_wait(&timed_held));
    int64_t t0 = now_ns();
    struct timespec dl = deadline_ms(CLOCK_REALTIME, 100);
    int rc = pthread_mutex_timedlock(&timed_mu, &dl);
    CHECK(rc == ETIMEDOUT, "timedlock on a held mutex returned %d", rc);
    int64_t ms = elapsed_ms_since(t0);
    CHECK(ms >= 95 && ms < 5000, "timedlock timed out after %" PRId64 " ms (deadline 100 ms)", ms);
    t0 = now_ns();
    dl = deadline_ms(CLOCK_MONOTONIC, 100);
    rc = pthread_mutex_clocklock(&timed_mu, CLOCK_MONOTONIC, &dl);
    CHECK(rc == ETIMEDOUT, "clocklock on a held mutex returned %d", rc);
    ms = elapsed_ms_since(t0);
    CHECK(ms >= 99 && ms < 5000, "clocklock timed out after %" PRId64 " ms (deadline 100 ms)", ms);
    CHECK_SYS(sem_post(&timed_release));
    dl = deadline_ms(CLOCK_REALTIME, 10000);
    CHECK_RC(pthread_mutex_timedlock(&timed_mu, &dl)); /* the holder unlocks after ~30 ms */
    CHECK_RC(pthread_mutex_unlock(&timed_mu));
    CHECK_RC(pthread_join(holder, NULL));
    CHECK_SYS(sem_destroy(&timed_held));
    CHECK_SYS(sem_destroy(&timed_release));
    printf("mutex counter %" PRIu64 "\n", plain_counter);
    return mix(h, plain_counter);
}

/* ---------------- condvar: bounded buffer ---------------- */

#define PRODUCERS 4
#define CONSUMERS 4
#define ITEMS 100000 /* in all, ITEMS / PRODUCERS per producer */
#define BUF 16

static pthread_mutex_t buf_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static uint32_t ring[BUF];
static int ring_head, ring_len, producers_left = PRODUCERS;
static unsigned char seen[ITEMS];
static uint64_t consumed_sum[CONSUMERS], consumed_sq[CONSUMERS], consumed_n[CONSUMERS];
static uint32_t last_from[CONSUMERS][PRODUCERS];

static void *producer(void *arg)
{
    uint32_t p = (uint32_t)(intptr_t)arg;
    for (uint32_t k = 0; k < ITEMS / PRODUCERS; k++) {
        uint32_t item = k * PRODUCERS + p; /* every value 0..ITEMS-1 exactly once overall */
        CHECK_RC(pthread_mutex_lock(&buf_mu));
        while (ring_len == BUF)
            CHECK_RC(pthread_cond_wait(&not_full, &buf_mu));
        ring[(ring_head + ring_len) % BUF] = item;
        ring_len++;
        CHECK_RC(pthread_cond_signal(&not_empty));
        CHECK_RC(pthread_mutex_unlock(&buf_mu));
    }
    CHECK_RC(pthread_mutex_lock(&buf_mu));
    if (--producers_left == 0)
        CHECK_RC(pthread_cond_broadcast(&not_empty)); /* wake consumers to see the end */
    CHECK_RC(pthread_mutex_unlock(&buf_mu));
    return NULL;
}

static void *consumer(void *arg)
{
    int c = (int)(intptr_t)arg;
    for (int p = 0; p < PRODUCERS; p++)
        last_from[c][p] = UINT32_MAX;
    for (;;) {
        CHECK_RC(pthread_mutex_lock(&buf_mu));
        while (ring_len == 0 && producers_left > 0)
            CHECK_RC(pthread_cond_wait(&not_empty, &buf_mu));
        if (ring_len == 0) {
            CHECK_RC(pthread_mutex_unlock(&buf_mu));
            return NULL;
        }
        uint32_t item = ring[ring_head];
        ring_head = (ring_head + 1) % BUF;
        ring_len--;
        CHECK(item < ITEMS && !seen[item], "item %u consumed twice or out of range", item);
        seen[item] = 1;
        CHECK_RC(pthread_cond_signal(&not_full));
        CHECK_RC(pthread_mutex_unlock(&buf_mu));
        /* One consumer sees each producer's items in increasing order (the buffer is FIFO). */
        uint32_t p = item % PRODUCERS;
        CHECK(last_from[c][p] == UINT32_MAX || item > last_from[c][p],
              "consumer %d got %u after %u from producer %u", c, item, last_from[c][p], p);
        last_from[c][p] = item;
        consumed_sum[c] += item;
        consumed_sq[c] += (uint64_t)item * item;
        consumed_n[c]++;
    }
}

static uint64_t test_bounded_buffer(uint64_t h)
{
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    for (intptr_t i = 0; i < CONSUMERS; i++)
        CHECK_RC(pthread_create(&ct[i], NULL, consumer, (void *)i));
    for (intptr_t i = 0; i < PRODUCERS; i++)
        CHECK_RC(pthread_create(&pt[i], NULL, producer, (void *)i));
    for (int i = 0; i < PRODUCERS; i++)
        CHECK_RC(pthread_join(pt[i], NULL));
    for (int i = 0; i < CONSUMERS; i++)
        CHECK_RC(pthread_join(ct[i], NULL));
    uint64_t n = 0, sum = 0, sq = 0;
    for (int c = 0; c < CONSUMERS; c++) {
        n += consumed_n[c];
        sum += consumed_sum[c];
        sq += consumed_sq[c];
    }
    uint64_t esum = 0, esq = 0;
    for (uint64_t v = 0; v < ITEMS; v++) {
        CHECK(seen[v], "item %" PRIu64 " never consumed", v);
        esum += v;
        esq += v * v;
    }
    CHECK(n == ITEMS && sum == esum && sq == esq,
          "consumed %" PRIu64 " items, sum %" PRIu64 ", squares %" PRIu64, n, sum, sq);
    printf("bounded buffer items %" PRIu64 " sum %" PRIu64 "\n", n, sum);
    return mix(mix(h, sum), sq);
}

/* ---------------- condvar: timed waits on CLOCK_MONOTONIC ---------------- */

static pthread_mutex_t tw_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tw_cv;
static int tw_flag;

static void *tw_signaller(void *arg)
{
    (void)arg;
    sleep_ms(30);
    CHECK_RC(pthread_mutex_lock(&tw_mu));
    tw_flag = 1;
    CHECK_RC(pthread_cond_signal(&tw_cv));
    CHECK_RC(pthread_mutex_unlock(&tw_mu));
    return NULL;
}

static uint64_t test_timed_wait(uint64_t h)
{
    pthread_condattr_t ca;
    clockid_t clock = -1;
    CHECK_RC(pthread_condattr_init(&ca));
    CHECK_RC(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    CHECK_RC(pthread_condattr_getclock(&ca, &clock));
    CHECK(clock == CLOCK_MONOTONIC, "condattr clock %d", (int)clock);
    CHECK_RC(pthread_cond_init(&tw_cv, &ca));
    CHECK_RC(pthread_condattr_destroy(&ca));

    /* Nobody signals: ETIMEDOUT after the deadline, the mutex held again on return. */
    int timeouts = 0;
    CHECK_RC(pthread_mutex_lock(&tw_mu));
    int64_t t0 = now_ns();
    struct timespec dl = deadline_ms(CLOCK_MONOTONIC, 100);
    int rc;
    while ((rc = pthread_cond_timedwait(&tw_cv, &tw_mu, &dl)) == 0) {
    }
    CHECK(rc == ETIMEDOUT, "timedwait returned %d", rc);
    timeouts++;
    int64_t ms = elapsed_ms_since(t0);
    CHECK(ms >= 99 && ms < 5000, "timedwait timed out after %" PRId64 " ms (deadline 100 ms)",
          ms);
    rc = pthread_mutex_trylock(&tw_mu);
    CHECK(rc == EBUSY, "the mutex is not held after a timed-out wait (trylock %d)", rc);

    /* pthread_cond_clockwait (MariaDB's) on a condvar of any clock */
    t0 = now_ns();
    dl = deadline_ms(CLOCK_MONOTONIC, 50);
    while ((rc = pthread_cond_clockwait(&tw_cv, &tw_mu, CLOCK_MONOTONIC, &dl)) == 0) {
    }
    CHECK(rc == ETIMEDOUT, "clockwait returned %d", rc);
    timeouts++;
    ms = elapsed_ms_since(t0);
    CHECK(ms >= 49 && ms < 5000, "clockwait timed out after %" PRId64 " ms (deadline 50 ms)", ms);

    /* Signalled before a 10 s deadline: returns 0 with the flag set. */
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, tw_signaller, NULL));
    dl = deadline_ms(CLOCK_MONOTONIC, 10000);
    while (!tw_flag) {
        rc = pthread_cond_timedwait(&tw_cv, &tw_mu, &dl);
        CHECK(rc == 0, "signalled timedwait returned %d", rc);
    }
    CHECK_RC(pthread_mutex_unlock(&tw_mu));
    CHECK_RC(pthread_join(t, NULL));
    CHECK_RC(pthread_cond_destroy(&tw_cv));
    printf("timed waits timeouts %d signalled %d\n", timeouts, tw_flag);
    return mix(h, (uint64_t)timeouts * 10 + (uint64_t)tw_flag);
}

/* ---------------- rwlock ---------------- */

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static uint64_t rw_a, rw_b; /* written together under the write lock */
static int active_readers, active_writers;
static uint64_t reads_done;

static void *rw_reader(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        CHECK_RC(pthread_rwlock_rdlock(&rw));
        __atomic_fetch_add(&active_readers, 1, __ATOMIC_SEQ_CST);
        CHECK(__atomic_load_n(&active_writers, __ATOMIC_SEQ_CST) == 0, "reader beside a writer");
        uint64_t a = rw_a;
        if (i % 500 == 0)
            sched_yield();
        CHECK(rw_b == a, "reader saw a half-done write (%" PRIu64 " vs %" PRIu64 ")", a, rw_b);
        __atomic_fetch_sub(&active_readers, 1, __ATOMIC_SEQ_CST);
        CHECK_RC(pthread_rwlock_unlock(&rw));
        __atomic_fetch_add(&reads_done, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void *rw_writer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5000; i++) {
        CHECK_RC(pthread_rwlock_wrlock(&rw));
        CHECK(__atomic_add_fetch(&active_writers, 1, __ATOMIC_SEQ_CST) == 1, "two writers");
        CHECK(__atomic_load_n(&active_readers, __ATOMIC_SEQ_CST) == 0, "writer beside readers");
        rw_a++;
        if (i % 100 == 0)
            sched_yield();
        rw_b++;
        __atomic_fetch_sub(&active_writers, 1, __ATOMIC_SEQ_CST);
        CHECK_RC(pthread_rwlock_unlock(&rw));
    }
    return NULL;
}

static void *rw_expect(void *arg)
{
    intptr_t want = (intptr_t)arg; /* bit 0: tryrdlock succeeds, bit 1: trywrlock succeeds */
    int rc = pthread_rwlock_tryrdlock(&rw);
    CHECK((rc == 0) == ((want & 1) != 0), "tryrdlock returned %d", rc);
    if (rc == 0)
        CHECK_RC(pthread_rwlock_unlock(&rw));
    else
        CHECK(rc == EBUSY, "tryrdlock failed with %d", rc);
    rc = pthread_rwlock_trywrlock(&rw);
    CHECK((rc == 0) == ((want & 2) != 0), "trywrlock returned %d", rc);
    if (rc == 0)
        CHECK_RC(pthread_rwlock_unlock(&rw));
    else
        CHECK(rc == EBUSY, "trywrlock failed with %d", rc);
    return NULL;
}

static void *rw_timed(void *arg)
{
    (void)arg;
    struct timespec dl = deadline_ms(CLOCK_REALTIME, 50);
    int rc = pthread_rwlock_timedwrlock(&rw, &dl);
    CHECK(rc == ETIMEDOUT, "timedwrlock on a read-held rwlock returned %d", rc);
    return NULL;
}

static uint64_t test_rwlock(uint64_t h)
{
    /* read-held: other readers get in, writers do not; write-held: nobody */
    CHECK_RC(pthread_rwlock_rdlock(&rw));
    on_other_thread(rw_expect, (void *)1);
    on_other_thread(rw_timed, NULL);
    CHECK_RC(pthread_rwlock_unlock(&rw));
    CHECK_RC(pthread_rwlock_wrlock(&rw));
    on_other_thread(rw_expect, (void *)0);
    CHECK_RC(pthread_rwlock_unlock(&rw));
    on_other_thread(rw_expect, (void *)3);

    pthread_t r[4], w[2];
    for (int i = 0; i < 4; i++)
        CHECK_RC(pthread_create(&r[i], NULL, rw_reader, NULL));
    for (int i = 0; i < 2; i++)
        CHECK_RC(pthread_create(&w[i], NULL, rw_writer, NULL));
    for (int i = 0; i < 4; i++)
        CHECK_RC(pthread_join(r[i], NULL));
    for (int i = 0; i < 2; i++)
        CHECK_RC(pthread_join(w[i], NULL));
    CHECK(rw_a == 10000 && rw_b == 10000, "rwlock writes %" PRIu64 "/%" PRIu64, rw_a, rw_b);
    CHECK(reads_done == 80000, "rwlock reads %" PRIu64, reads_done);
    printf("rwlock writes %" PRIu64 " reads %" PRIu64 "\n", rw_a, reads_done);
    return mix(mix(h, rw_a), reads_done);
}

/* ---------------- spinlock ---------------- */

static pthread_spinlock_t spin;
static uint64_t spin_counter;

static void *spin_count(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        CHECK_RC(pthread_spin_lock(&spin));
        uint64_t v = spin_counter;
        __asm__ volatile("" ::: "memory");
        spin_counter = v + 1;
        CHECK_RC(pthread_spin_unlock(&spin));
    }
    return NULL;
}

static void *spin_expect_busy(void *arg)
{
    (void)arg;
    int rc = pthread_spin_trylock(&spin);
    CHECK(rc == EBUSY, "spin_trylock of a held spinlock returned %d", rc);
    return NULL;
}

static uint64_t test_spin(uint64_t h)
{
    CHECK_RC(pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE));
    CHECK_RC(pthread_spin_lock(&spin));
    on_other_thread(spin_expect_busy, NULL);
    CHECK_RC(pthread_spin_unlock(&spin));
    CHECK_RC(pthread_spin_trylock(&spin));
    CHECK_RC(pthread_spin_unlock(&spin));
    run_threads(4, spin_count);
    CHECK(spin_counter == 80000, "spin counter %" PRIu64, spin_counter);
    CHECK_RC(pthread_spin_destroy(&spin));
    printf("spin counter %" PRIu64 "\n", spin_counter);
    return mix(h, spin_counter);
}

/* ---------------- barrier ---------------- */

#define BAR_THREADS 8
#define BAR_CYCLES 200

static pthread_barrier_t bar;
static int serial_count[2 * BAR_CYCLES];
static int slot[BAR_THREADS];

static void *barrier_main(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int c = 0; c < BAR_CYCLES; c++) {
        slot[t] = c * 100 + t;
        int rc = pthread_barrier_wait(&bar);
        CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier_wait returned %d", rc);
        if (rc == PTHREAD_BARRIER_SERIAL_THREAD)
            __atomic_fetch_add(&serial_count[2 * c], 1, __ATOMIC_SEQ_CST);
        /* everyone's write of this cycle is visible, nobody has started the next */
        for (int j = 0; j < BAR_THREADS; j++)
            CHECK(slot[j] == c * 100 + j, "cycle %d: thread %d sees slot %d = %d", c, t, j,
                  slot[j]);
        rc = pthread_barrier_wait(&bar);
        CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier_wait returned %d", rc);
        if (rc == PTHREAD_BARRIER_SERIAL_THREAD)
            __atomic_fetch_add(&serial_count[2 * c + 1], 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static uint64_t test_barrier(uint64_t h)
{
    CHECK_RC(pthread_barrier_init(&bar, NULL, BAR_THREADS));
    run_threads(BAR_THREADS, barrier_main);
    for (int c = 0; c < 2 * BAR_CYCLES; c++)
        CHECK(serial_count[c] == 1, "barrier cycle %d had %d serial threads", c,
              serial_count[c]);
    CHECK_RC(pthread_barrier_destroy(&bar));
    printf("barrier cycles %d\n", 2 * BAR_CYCLES);
    return mix(h, 2 * BAR_CYCLES);
}

/* ---------------- semaphores ---------------- */

static sem_t sem_items, sem_slots;
static int sem_inside, sem_max_inside;
static uint64_t sem_received;

static void *sem_producer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++)
        CHECK_SYS(sem_post(&sem_items));
    return NULL;
}

static void *sem_consumer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10000; i++) {
        CHECK_SYS(sem_wait(&sem_items));
        __atomic_fetch_add(&sem_received, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void *sem_limited(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        CHECK_SYS(sem_wait(&sem_slots));
        int now = __atomic_add_fetch(&sem_inside, 1, __ATOMIC_SEQ_CST);
        CHECK(now <= 3, "%d threads inside a section guarded by a semaphore of 3", now);
        int m = __atomic_load_n(&sem_max_inside, __ATOMIC_SEQ_CST);
        while (now > m && !__atomic_compare_exchange_n(&sem_max_inside, &m, now, 0,
                                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        }
        if (i % 10 == 0)
            sched_yield();
        __atomic_fetch_sub(&sem_inside, 1, __ATOMIC_SEQ_CST);
        CHECK_SYS(sem_post(&sem_slots));
    }
    return NULL;
}

static sem_t sem_wake;
static int sem_woken;

static void *sem_sleeper(void *arg)
{
    (void)arg;
    CHECK_SYS(sem_wait(&sem_wake)); /* blocks until main posts */
    __atomic_store_n(&sem_woken, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static uint64_t test_semaphores(uint64_t h)
{
    int v = -1;
    CHECK_SYS(sem_init(&sem_items, 0, 0));
    CHECK(sem_trywait(&sem_items) == -1 && errno == EAGAIN, "trywait on 0: errno %d", errno);
    int64_t t0 = now_ns();
    struct timespec dl = deadline_ms(CLOCK_REALTIME, 50);
    CHECK(sem_timedwait(&sem_items, &dl) == -1 && errno == ETIMEDOUT, "timedwait: errno %d",
          errno);
    int64_t ms = elapsed_ms_since(t0);
    CHECK(ms >= 45 && ms < 5000, "sem_timedwait timed out after %" PRId64 " ms", ms);
    dl = deadline_ms(CLOCK_MONOTONIC, 50);
    CHECK(sem_clockwait(&sem_items, CLOCK_MONOTONIC, &dl) == -1 && errno == ETIMEDOUT,
          "clockwait: errno %d", errno);
    CHECK_SYS(sem_post(&sem_items));
    CHECK_SYS(sem_getvalue(&sem_items, &v));
    CHECK(v == 1, "sem value %d after one post", v);
    CHECK_SYS(sem_trywait(&sem_items));
    dl = deadline_ms(CLOCK_REALTIME, 10000);
    CHECK_SYS(sem_post(&sem_items));
    CHECK_SYS(sem_timedwait(&sem_items, &dl));

    /* two posters, two waiters */
    pthread_t t[4];
    CHECK_RC(pthread_create(&t[0], NULL, sem_consumer, NULL));
    CHECK_RC(pthread_create(&t[1], NULL, sem_consumer, NULL));
    CHECK_RC(pthread_create(&t[2], NULL, sem_producer, NULL));
    CHECK_RC(pthread_create(&t[3], NULL, sem_producer, NULL));
    for (int i = 0; i < 4; i++)
        CHECK_RC(pthread_join(t[i], NULL));
    CHECK_SYS(sem_getvalue(&sem_items, &v));
    CHECK(sem_received == 20000 && v == 20000, "semaphore: received %" PRIu64 ", value %d",
          sem_received, v);
    CHECK_SYS(sem_destroy(&sem_items));

    /* a counting semaphore admits at most 3 */
    CHECK_SYS(sem_init(&sem_slots, 0, 3));
    run_threads(8, sem_limited);
    CHECK_SYS(sem_getvalue(&sem_slots, &v));
    CHECK(v == 3 && sem_max_inside >= 1 && sem_max_inside <= 3, "semaphore slots %d max %d", v,
          sem_max_inside);
    CHECK_SYS(sem_destroy(&sem_slots));

    /* a blocked sem_wait is woken by a post */
    pthread_t s;
    CHECK_SYS(sem_init(&sem_wake, 0, 0));
    CHECK_RC(pthread_create(&s, NULL, sem_sleeper, NULL));
    sleep_ms(30);
    CHECK(!__atomic_load_n(&sem_woken, __ATOMIC_SEQ_CST), "sem_wait returned without a post");
    CHECK_SYS(sem_post(&sem_wake));
    CHECK_RC(pthread_join(s, NULL));
    CHECK(sem_woken, "sem_wait did not return");
    CHECK_SYS(sem_destroy(&sem_wake));
    printf("semaphores received %" PRIu64 "\n", sem_received);
    return mix(h, sem_received);
}

/* ---------------- C11 threads ---------------- */

static mtx_t c11_mu;
static cnd_t c11_cv;
static int c11_ready, c11_counter, c11_once_runs;
static once_flag c11_once = ONCE_FLAG_INIT;
static thrd_t c11_self[8];

static void c11_init(void) { c11_once_runs++; }

static int c11_main(void *arg)
{
    int i = (int)(intptr_t)arg;
    call_once(&c11_once, c11_init);
    CHECK(mtx_lock(&c11_mu) == thrd_success, "mtx_lock");
    while (!c11_ready)
        CHECK(cnd_wait(&c11_cv, &c11_mu) == thrd_success, "cnd_wait");
    for (int k = 0; k < 1000; k++)
        c11_counter++;
    CHECK(mtx_unlock(&c11_mu) == thrd_success, "mtx_unlock");
    c11_self[i] = thrd_current();
    return i * 3 + 1;
}

static mtx_t c11_timed;

static int c11_timed_try(void *arg)
{
    (void)arg;
    struct timespec dl = deadline_ms(CLOCK_REALTIME, 50);
    CHECK(mtx_timedlock(&c11_timed, &dl) == thrd_timedout, "mtx_timedlock on a held mutex");
    CHECK(mtx_trylock(&c11_timed) == thrd_busy, "mtx_trylock on a held mutex");
    return 0;
}

static uint64_t test_c11(uint64_t h)
{
    thrd_t t[8];
    CHECK(mtx_init(&c11_mu, mtx_plain) == thrd_success, "mtx_init");
    CHECK(cnd_init(&c11_cv) == thrd_success, "cnd_init");
    for (intptr_t i = 0; i < 8; i++)
        CHECK(thrd_create(&t[i], c11_main, (void *)i) == thrd_success, "thrd_create");
    struct timespec nap = {0, 20 * 1000000L};
    CHECK(thrd_sleep(&nap, NULL) == 0, "thrd_sleep");
    CHECK(mtx_lock(&c11_mu) == thrd_success, "mtx_lock");
    CHECK(c11_counter == 0, "C11 threads ran before the condition");
    c11_ready = 1;
    CHECK(cnd_broadcast(&c11_cv) == thrd_success, "cnd_broadcast");
    CHECK(mtx_unlock(&c11_mu) == thrd_success, "mtx_unlock");
    int sum = 0;
    for (int i = 0; i < 8; i++) {
        int res = -1;
        CHECK(thrd_join(t[i], &res) == thrd_success, "thrd_join");
        CHECK(res == i * 3 + 1, "thread %d returned %d", i, res);
        CHECK(thrd_equal(c11_self[i], t[i]), "thrd_current of thread %d != its handle", i);
        CHECK(!thrd_equal(c11_self[i], thrd_current()), "thread %d is main", i);
        sum += res;
    }
    CHECK(c11_counter == 8000 && c11_once_runs == 1, "C11 counter %d once %d", c11_counter,
          c11_once_runs);
    mtx_destroy(&c11_mu);
    cnd_destroy(&c11_cv);

    thrd_t tt;
    int res = -1;
    CHECK(mtx_init(&c11_timed, mtx_timed) == thrd_success, "mtx_init timed");
    CHECK(mtx_lock(&c11_timed) == thrd_success, "mtx_lock timed");
    CHECK(thrd_create(&tt, c11_timed_try, NULL) == thrd_success, "thrd_create");
    CHECK(thrd_join(tt, &res) == thrd_success && res == 0, "thrd_join");
    CHECK(mtx_unlock(&c11_timed) == thrd_success, "mtx_unlock timed");
    mtx_destroy(&c11_timed);
    printf("c11 counter %d sum %d\n", c11_counter, sum);
    return mix(mix(h, (uint64_t)c11_counter), (uint64_t)sum);
}

int main(void)
{
    uint64_t h = MIX_INIT;
    h = test_mutexes(h);
    h = test_bounded_buffer(h);
    h = test_timed_wait(h);
    h = test_rwlock(h);
    h = test_spin(h);
    h = test_barrier(h);
    h = test_semaphores(h);
    h = test_c11(h);
    finish(h);
    return 0;
}
