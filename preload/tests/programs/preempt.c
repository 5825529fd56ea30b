/* Threads that never make a call while they wait: natively the kernel preempts them; under the
 * preload the harness runs this on one carrier, where only preemption (FLEXSC_PREEMPT) lets the
 * thread they wait for run at all.
 *
 * 1. A thread spins on a flag (no call, no sched_yield) that a thread created after it sets.
 * 2. Two threads pass a turn back and forth by spinning alone, ROUNDS times.
 * 3. While both spin, each computes a long integer and floating-point chain in registers, with
 *    errno set: every preemption lands in the middle of it, and the results must be the native
 *    ones (registers, flags, SSE state and errno survive the switches).
 */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>

#define ROUNDS 20
#define STEPS 20000000

static int flag;
static int turn;

static void pause_cpu(void)
{
    __builtin_ia32_pause();
}

static void *spinner(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&flag, __ATOMIC_ACQUIRE))
        pause_cpu();
    return NULL;
}

static void *setter(void *arg)
{
    (void)arg;
    __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *player(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        while (__atomic_load_n(&turn, __ATOMIC_ACQUIRE) != me)
            pause_cpu();
        __atomic_store_n(&turn, 1 - me, __ATOMIC_RELEASE);
    }
    return NULL;
}

struct chain {
    uint64_t seed;
    uint64_t x;
    double d;
};

static void *compute(void *arg)
{
    struct chain *c = arg;
    errno = 1000 + (int)c->seed;
    uint64_t x = c->seed;
    double d = (double)c->seed;
    for (long i = 0; i < STEPS; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        d = d * 0.999999 + (double)(x >> 40) * 1e-9;
    }
    CHECK(errno == 1000 + (int)c->seed, "errno %d after the chain", errno);
    c->x = x;
    c->d = d;
    return NULL;
}

int main(void)
{
    pthread_t a, b;

    CHECK_RC(pthread_create(&a, NULL, spinner, NULL));
    /* Let the spinner start spinning first (under the preload this sleep parks main). */
    usleep(20000);
    CHECK_RC(pthread_create(&b, NULL, setter, NULL));
    CHECK_RC(pthread_join(b, NULL));
    CHECK_RC(pthread_join(a, NULL));
    printf("spinner released\n");

    CHECK_RC(pthread_create(&a, NULL, player, (void *)0));
    CHECK_RC(pthread_create(&b, NULL, player, (void *)1));
    CHECK_RC(pthread_join(a, NULL));
    CHECK_RC(pthread_join(b, NULL));
    printf("turns passed %d times\n", 2 * ROUNDS);

    struct chain c[2] = {{.seed = 1}, {.seed = 2}};
    CHECK_RC(pthread_create(&a, NULL, compute, &c[0]));
    CHECK_RC(pthread_create(&b, NULL, compute, &c[1]));
    CHECK_RC(pthread_join(a, NULL));
    CHECK_RC(pthread_join(b, NULL));
    uint64_t h = MIX_INIT;
    for (int i = 0; i < 2; i++) {
        uint64_t bits;
        memcpy(&bits, &c[i].d, sizeof bits);
        h = mix(mix(h, c[i].x), bits);
    }
    printf("ok %016" PRIx64 "\n", h);
    return 0;
}
