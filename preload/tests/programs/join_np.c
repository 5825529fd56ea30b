/* The non-portable joins and the main thread's pthread_exit: pthread_tryjoin_np answers EBUSY
 * while the thread runs, pthread_timedjoin_np and pthread_clockjoin_np time out with ETIMEDOUT
 * and then join with the thread's value, an unsupported clock is EINVAL; and a main thread that
 * ends with pthread_exit leaves the process running until its last thread ends, which then
 * exits it with status 0. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <time.h>

static void *sleeper(void *arg)
{
    sleep_ms((long)(intptr_t)arg);
    return (void *)(intptr_t)((long)(intptr_t)arg + 1);
}

static uint64_t h = MIX_INIT;

static void *last(void *arg)
{
    (void)arg;
    sleep_ms(100);
    printf("the last thread ends the process\n");
    h = mix(h, 7);
    finish(h);
    return NULL;
}

int main(void)
{
    pthread_t t;
    void *v = NULL;

    CHECK_RC(pthread_create(&t, NULL, sleeper, (void *)(intptr_t)300));
    CHECK(pthread_tryjoin_np(t, &v) == EBUSY, "tryjoin on a running thread");
    struct timespec soon = deadline_ms(CLOCK_REALTIME, 50);
    CHECK(pthread_timedjoin_np(t, &v, &soon) == ETIMEDOUT, "timedjoin before the end");
    struct timespec mono = deadline_ms(CLOCK_MONOTONIC, 30);
    CHECK(pthread_clockjoin_np(t, &v, CLOCK_MONOTONIC, &mono) == ETIMEDOUT,
          "clockjoin before the end");
    CHECK(pthread_clockjoin_np(t, &v, CLOCK_PROCESS_CPUTIME_ID, &mono) == EINVAL,
          "clockjoin on an unsupported clock");
    struct timespec later = deadline_ms(CLOCK_MONOTONIC, 10000);
    CHECK_RC(pthread_clockjoin_np(t, &v, CLOCK_MONOTONIC, &later));
    CHECK((intptr_t)v == 301, "clockjoin's value %ld", (long)(intptr_t)v);
    printf("timed joins ok\n");
    h = mix(h, 1);

    CHECK_RC(pthread_create(&t, NULL, sleeper, (void *)(intptr_t)10));
    while (pthread_tryjoin_np(t, &v) == EBUSY)
        sleep_ms(5);
    CHECK((intptr_t)v == 11, "tryjoin's value %ld", (long)(intptr_t)v);
    later = deadline_ms(CLOCK_REALTIME, 1000);
    CHECK_RC(pthread_create(&t, NULL, sleeper, (void *)(intptr_t)0));
    CHECK_RC(pthread_timedjoin_np(t, &v, &later));
    CHECK((intptr_t)v == 1, "timedjoin's value %ld", (long)(intptr_t)v);
    printf("tryjoin ok\n");
    h = mix(h, 2);

    pthread_t l;
    CHECK_RC(pthread_create(&l, NULL, last, NULL));
    CHECK_RC(pthread_detach(l));
    pthread_exit(NULL);
}
