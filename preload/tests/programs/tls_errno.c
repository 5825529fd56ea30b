/* TLS and errno: 64 reader threads, each with its own __thread array, its own errno value and
 * an initialised static __thread, block in read 20 times on their own pipe (a partner thread
 * writes each message after an acknowledgement, so every read waits); after each read the
 * thread checks that errno, strerror(errno), the array and the counter are still its own. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <stdlib.h>

#define PAIRS 64
#define ROUNDS 20
#define ARR 256

__thread uint32_t arr[ARR];
static __thread int counter = 1000; /* initialised TLS: every thread starts at 1000 */
static __thread uint64_t received;

static char *expected_msg[PAIRS + 2]; /* strerror texts, computed by main before any thread */
static pthread_barrier_t start;
static uintptr_t errno_addr[2 * PAIRS], arr_addr[2 * PAIRS];
static uint64_t total_received[PAIRS];

struct pair {
    int id;
    int data[2]; /* partner -> reader */
    int ack[2];  /* reader -> partner */
};
static struct pair pairs[PAIRS];

/* Thread id -> its own errno value (1..PAIRS: every one a real errno with its own message). */
static int own_errno(int id) { return id + 1; }

static void check_own(int id, int slot, int round)
{
    int e = errno;
    CHECK(e == own_errno(id), "thread %d round %d: errno %d, expected its own %d", id, round, e,
          own_errno(id));
    CHECK(strcmp(strerror(e), expected_msg[e]) == 0, "thread %d: strerror(%d) = \"%s\"", id, e,
          strerror(e));
    for (int j = 0; j < ARR; j++)
        CHECK(arr[j] == (uint32_t)(slot * 100000 + j + round), "thread %d round %d: arr[%d] = %u",
              id, round, j, arr[j]);
    CHECK(counter == 1000 + round, "thread %d round %d: counter %d", id, round, counter);
    /* errno is restored before returning to the caller's view (the checks above may not
     * change it, but be explicit) */
    errno = own_errno(id);
}

static void setup_tls(int id, int slot)
{
    CHECK(counter == 1000, "thread %d: initialised __thread starts at %d", id, counter);
    for (int j = 0; j < ARR; j++)
        CHECK(arr[j] == 0, "thread %d: __thread array not zero at start", id);
    for (int j = 0; j < ARR; j++)
        arr[j] = (uint32_t)(slot * 100000 + j);
    errno_addr[slot] = (uintptr_t)&errno;
    arr_addr[slot] = (uintptr_t)arr;
    errno = own_errno(id);
}

/* One step of every thread's TLS state: round r -> r + 1. */
static void advance(void)
{
    for (int j = 0; j < ARR; j++)
        arr[j]++;
    counter++;
}

/* A failing call sets errno to its own error; then the thread's value is put back. */
static void failing_call(int id, int round)
{
    char c;
    CHECK(read(-1, &c, 1) == -1 && errno == EBADF, "thread %d round %d: read(-1) errno %d", id,
          round, errno);
    errno = own_errno(id);
}

static void *reader_main(void *arg)
{
    struct pair *p = arg;
    int id = p->id;
    setup_tls(id, id);
    int r = pthread_barrier_wait(&start);
    CHECK(r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD, "barrier %d", r);
    errno = own_errno(id);
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t msg[2];
        check_own(id, id, round);
        ssize_t n = read(p->data[0], msg, sizeof msg); /* blocks until the partner writes */
        CHECK(n == (ssize_t)sizeof msg, "thread %d round %d: read returned %zd (%s)", id, round,
              n, strerror(errno));
        CHECK(msg[0] == (uint64_t)id && msg[1] == (uint64_t)(id * 1000 + round),
              "thread %d round %d: message of another thread (%" PRIu64 ", %" PRIu64 ")", id,
              round, msg[0], msg[1]);
        check_own(id, id, round);
        failing_call(id, round);
        received += msg[1];
        advance();
        char ack = (char)round;
        CHECK(write(p->ack[1], &ack, 1) == 1, "thread %d: ack write", id);
        check_own(id, id, round + 1);
    }
    total_received[id] = received;
    return NULL;
}

static void *partner_main(void *arg)
{
    struct pair *p = arg;
    int id = p->id;
    int slot = PAIRS + id;
    /* The partner's errno is the reader's + 1 (mod PAIRS): every thread's value differs from
     * its neighbour's. */
    int peer = (id + 1) % PAIRS;
    setup_tls(peer, slot);
    int r = pthread_barrier_wait(&start);
    CHECK(r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD, "barrier %d", r);
    errno = own_errno(peer);
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t msg[2] = {(uint64_t)id, (uint64_t)(id * 1000 + round)};
        check_own(peer, slot, round);
        CHECK(write(p->data[1], msg, sizeof msg) == (ssize_t)sizeof msg, "partner %d write", id);
        char ack;
        ssize_t n = read(p->ack[0], &ack, 1); /* blocks until the reader took the message */
        CHECK(n == 1 && ack == (char)round, "partner %d round %d: ack %zd", id, round, n);
        check_own(peer, slot, round);
        failing_call(peer, round);
        advance();
    }
    return NULL;
}

int main(void)
{
    uint64_t h = MIX_INIT;
    pthread_t readers[PAIRS], partners[PAIRS];
    for (int e = 1; e <= PAIRS; e++) {
        expected_msg[e] = strdup(strerror(e));
        CHECK(expected_msg[e] != NULL, "strdup");
    }
    CHECK_RC(pthread_barrier_init(&start, NULL, 2 * PAIRS));
    for (int i = 0; i < PAIRS; i++) {
        pairs[i].id = i;
        CHECK_SYS(pipe(pairs[i].data));
        CHECK_SYS(pipe(pairs[i].ack));
    }
    counter = 5; /* main's own copy: threads must start from the initialiser, not from this */
    errno = 0;
    for (int i = 0; i < PAIRS; i++) {
        CHECK_RC(pthread_create(&readers[i], NULL, reader_main, &pairs[i]));
        CHECK_RC(pthread_create(&partners[i], NULL, partner_main, &pairs[i]));
    }
    for (int i = 0; i < PAIRS; i++) {
        CHECK_RC(pthread_join(readers[i], NULL));
        CHECK_RC(pthread_join(partners[i], NULL));
    }
    CHECK(counter == 5, "main's __thread counter changed to %d", counter);
    CHECK(arr[0] == 0 && arr[ARR - 1] == 0, "main's __thread array changed");
    /* The threads were all alive together (barrier): their errno and arrays were distinct. */
    for (int i = 0; i < 2 * PAIRS; i++)
        for (int j = 0; j < i; j++) {
            CHECK(errno_addr[i] != errno_addr[j], "threads %d and %d share errno", i, j);
            CHECK(arr_addr[i] != arr_addr[j], "threads %d and %d share a __thread array", i, j);
        }
    CHECK(errno_addr[0] != (uintptr_t)&errno, "a thread shares main's errno");
    uint64_t all = 0;
    for (int i = 0; i < PAIRS; i++) {
        uint64_t expect = 0;
        for (int r = 0; r < ROUNDS; r++)
            expect += (uint64_t)(i * 1000 + r);
        CHECK(total_received[i] == expect, "reader %d received %" PRIu64, i, total_received[i]);
        all += total_received[i];
        h = mix(h, total_received[i]);
    }
    printf("pairs %d rounds %d received %" PRIu64 "\n", PAIRS, ROUNDS, all);
    finish(h);
    return 0;
}
