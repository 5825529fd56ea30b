/* The hybrid rule's descriptor modes (preload/src/direct.rs, nonblock.rs): calls on descriptors
 * made non-blocking (fcntl F_SETFL, ioctl FIONBIO, accept4 SOCK_NONBLOCK) or with MSG_DONTWAIT
 * return EAGAIN at once; and a descriptor that stops being non-blocking (F_SETFL without the
 * flag, FIONBIO off, closed and its number reused, replaced by dup2, changed by a forked child)
 * blocks again: a readv on it waits for the data a writer sends later. programs.rs checks in the
 * statistics that the first kind ran on the carrier and that the second was posted. */
#define _GNU_SOURCE
#include "check.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#define ROUNDS 100

static uint64_t h = MIX_INIT;

static void pair(int sv[2])
{
    CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
}

/* ROUNDS reads of an empty non-blocking socket: each EAGAIN at once. */
static void expect_eagain(int fd)
{
    char c;
    for (int i = 0; i < ROUNDS; i++) {
        ssize_t n = read(fd, &c, 1);
        CHECK(n == -1 && errno == EAGAIN, "read on a non-blocking socket: %zd (%s)", n,
              strerror(errno));
    }
}

struct later {
    int fd;
    uint64_t value;
};

static void *write_later(void *arg)
{
    struct later *l = arg;
    sleep_ms(20);
    CHECK(write_full(l->fd, &l->value, sizeof l->value) == 0, "late write");
    return NULL;
}

/* A readv on `fd`, which must block until a writer thread sends `value` 20 ms later on `peer`. */
static void expect_blocking(int fd, int peer, uint64_t value)
{
    struct later l = {peer, value};
    pthread_t w;
    CHECK_RC(pthread_create(&w, NULL, write_later, &l));
    uint64_t got = 0;
    struct iovec iov = {&got, sizeof got};
    ssize_t n = readv(fd, &iov, 1);
    CHECK(n == (ssize_t)sizeof got && got == value, "blocking readv: %zd (%s)", n,
          n < 0 ? strerror(errno) : "short or wrong");
    CHECK_RC(pthread_join(w, NULL));
    h = mix(h, got);
}

static void *run(void *unused)
{
    (void)unused;
    int sv[2];
    char c;

    /* fcntl(F_SETFL, O_NONBLOCK), then back to blocking. */
    pair(sv);
    int fl = fcntl(sv[0], F_GETFL);
    CHECK_SYS(fl);
    CHECK_SYS(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK));
    expect_eagain(sv[0]);
    CHECK_SYS(fcntl(sv[0], F_SETFL, fl));
    expect_blocking(sv[0], sv[1], 1);

    /* Closed while non-blocking; its number reused by a blocking socket. */
    CHECK_SYS(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK));
    int old = sv[0];
    close(sv[0]);
    close(sv[1]);
    pair(sv);
    CHECK(sv[0] == old, "the closed descriptor's number was not reused");
    expect_blocking(sv[0], sv[1], 2);

    /* ioctl(FIONBIO) on and off; recvmsg with the flag on. */
    int on = 1, off = 0;
    CHECK_SYS(ioctl(sv[0], FIONBIO, &on));
    struct iovec iov = {&c, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    for (int i = 0; i < ROUNDS; i++) {
        ssize_t n = recvmsg(sv[0], &msg, 0);
        CHECK(n == -1 && errno == EAGAIN, "recvmsg after FIONBIO: %zd", n);
    }
    CHECK_SYS(ioctl(sv[0], FIONBIO, &off));
    expect_blocking(sv[0], sv[1], 3);

    /* MSG_DONTWAIT on a blocking socket. */
    for (int i = 0; i < ROUNDS; i++) {
        ssize_t n = recv(sv[0], &c, 1, MSG_DONTWAIT);
        CHECK(n == -1 && errno == EAGAIN, "recv(MSG_DONTWAIT): %zd", n);
    }

    /* Replaced by dup2 while non-blocking: the new description is blocking. */
    int other[2];
    pair(other);
    CHECK_SYS(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK));
    expect_eagain(sv[0]);
    CHECK_SYS(dup2(other[0], sv[0]));
    expect_blocking(sv[0], other[1], 4);
    close(other[0]);
    close(other[1]);
    close(sv[0]);
    close(sv[1]);
    pair(sv);

    /* A forked child makes the shared description blocking, unseen by this process. */
    CHECK_SYS(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK));
    expect_eagain(sv[0]);
    pid_t pid = fork();
    CHECK_SYS(pid);
    if (pid == 0) {
        if (fcntl(sv[0], F_SETFL, fl) < 0)
            _exit(2);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the child");
    expect_blocking(sv[0], sv[1], 5);
    close(sv[0]);
    close(sv[1]);

    /* accept4: a non-blocking listener gives EAGAIN; SOCK_NONBLOCK makes the accepted socket
     * non-blocking, plain accept4 leaves it blocking. */
    int lst = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_SYS(lst);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK_SYS(bind(lst, (struct sockaddr *)&a, sizeof a));
    CHECK_SYS(listen(lst, 4));
    CHECK_SYS(getsockname(lst, (struct sockaddr *)&a, &alen));
    CHECK_SYS(fcntl(lst, F_SETFL, O_NONBLOCK));
    for (int i = 0; i < ROUNDS; i++) {
        int r = accept4(lst, NULL, NULL, 0);
        CHECK(r == -1 && errno == EAGAIN, "accept4 on a non-blocking listener: %d", r);
    }
    CHECK_SYS(fcntl(lst, F_SETFL, 0));
    for (int nb = 1; nb >= 0; nb--) {
        int cl = socket(AF_INET, SOCK_STREAM, 0);
        CHECK_SYS(cl);
        CHECK_SYS(connect(cl, (struct sockaddr *)&a, sizeof a));
        int s = accept4(lst, NULL, NULL, nb ? SOCK_NONBLOCK : 0);
        CHECK_SYS(s);
        if (nb)
            expect_eagain(s);
        else
            expect_blocking(s, cl, 6);
        close(s);
        close(cl);
    }
    close(lst);
    return NULL;
}

int main(void)
{
    pthread_t t;
    CHECK_RC(pthread_create(&t, NULL, run, NULL));
    CHECK_RC(pthread_join(t, NULL));
    printf("nonblock: 6 modes withdrawn, %d rounds each\n", ROUNDS);
    finish(h);
    return 0;
}
