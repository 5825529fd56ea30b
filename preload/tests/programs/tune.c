/* The hybrid rule's tuner (preload/src/tune.rs, FLEXSC_DIRECT=auto): echo pairs on non-blocking
 * socketpairs run for over a second, long enough for the tuner to close its epochs and try both
 * rules; every message must come back intact whichever rule ran it. programs.rs checks in the
 * statistics that the sends ran both on the carrier and posted. */
#define _GNU_SOURCE
#include "check.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#define PAIRS 4
#define ROUNDS 5000        /* checked into the output: deterministic */
#define MIN_NS 1500000000LL /* and go on, unchecksummed, until this long has passed */
#define MSG 64

struct pair {
    int index;
    int fd; /* this side's end */
    uint64_t sum;
};

static void wait_for(int fd, short ev)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int n;
    do
        n = poll(&p, 1, -1);
    while (n == -1 && errno == EINTR);
    CHECK(n == 1, "poll: %d (%s)", n, strerror(errno));
}

/* One whole message of MSG bytes on a non-blocking socket, waiting in poll on EAGAIN. */
static void recv_msg(int fd, unsigned char *buf)
{
    size_t got = 0;
    while (got < MSG) {
        ssize_t n = recv(fd, buf + got, MSG - got, 0);
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            wait_for(fd, POLLIN);
            continue;
        }
        CHECK(n > 0, "recv: %zd (%s)", n, strerror(errno));
        got += (size_t)n;
    }
}

static void send_msg(int fd, const unsigned char *buf)
{
    size_t put = 0;
    while (put < MSG) {
        ssize_t n = send(fd, buf + put, MSG - put, MSG_NOSIGNAL);
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            wait_for(fd, POLLOUT);
            continue;
        }
        CHECK(n > 0, "send: %zd (%s)", n, strerror(errno));
        put += (size_t)n;
    }
}

static void fill(unsigned char *buf, int pair, long round)
{
    for (int i = 0; i < MSG; i++)
        buf[i] = (unsigned char)(pair * 31 + round * 7 + i);
}

/* Echoes every message back until the peer closes. */
static void *server(void *arg)
{
    struct pair *p = arg;
    unsigned char buf[MSG];
    for (;;) {
        ssize_t n = recv(p->fd, buf, 1, MSG_PEEK);
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            wait_for(p->fd, POLLIN);
            continue;
        }
        CHECK(n >= 0, "server peek: %s", strerror(errno));
        if (n == 0)
            break;
        recv_msg(p->fd, buf);
        send_msg(p->fd, buf);
    }
    CHECK_SYS(close(p->fd));
    return NULL;
}

static void *client(void *arg)
{
    struct pair *p = arg;
    unsigned char out[MSG], in[MSG];
    int64_t start = now_ns();
    uint64_t h = MIX_INIT;
    for (long round = 0; round < ROUNDS || now_ns() - start < MIN_NS; round++) {
        fill(out, p->index, round);
        send_msg(p->fd, out);
        recv_msg(p->fd, in);
        CHECK(memcmp(in, out, MSG) == 0, "pair %d round %ld: the echo differs", p->index, round);
        if (round < ROUNDS)
            for (int i = 0; i < MSG; i++)
                h = mix(h, in[i]);
    }
    CHECK_SYS(close(p->fd));
    p->sum = h;
    return NULL;
}

int main(void)
{
    struct pair c[PAIRS], s[PAIRS];
    pthread_t ct[PAIRS], st[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        int sv[2];
        CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
        /* as servers do it (APR, MariaDB's vio): the library learns the mode from fcntl */
        for (int k = 0; k < 2; k++)
            CHECK_SYS(fcntl(sv[k], F_SETFL, fcntl(sv[k], F_GETFL) | O_NONBLOCK));
        c[i] = (struct pair){.index = i, .fd = sv[0]};
        s[i] = (struct pair){.index = i, .fd = sv[1]};
        CHECK_RC(pthread_create(&st[i], NULL, server, &s[i]));
        CHECK_RC(pthread_create(&ct[i], NULL, client, &c[i]));
    }
    uint64_t h = MIX_INIT;
    for (int i = 0; i < PAIRS; i++) {
        CHECK_RC(pthread_join(ct[i], NULL));
        CHECK_RC(pthread_join(st[i], NULL));
        h = mix(h, c[i].sum);
    }
    printf("%d pairs echoed %d checked rounds each\n", PAIRS, ROUNDS);
    printf("ok %016" PRIx64 "\n", h);
    return 0;
}
