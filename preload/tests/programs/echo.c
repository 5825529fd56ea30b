/* A threaded TCP echo server on 127.0.0.1 (thread per connection) and 64 client threads doing
 * 200 verified round trips each, in one process; then an orderly shutdown. */
#define _GNU_SOURCE
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>

#define CLIENTS 64
#define ROUNDS 200
#define MAX_MSG 2048
#define MAX_CONNS (CLIENTS + 1) /* the clients, and the connection that wakes the acceptor */

static int listen_fd;
static struct sockaddr_in server_addr;
static int stopping;
static pthread_t conn_threads[MAX_CONNS];
static int conns_accepted;
static uint64_t echoed_bytes[MAX_CONNS];

static void nodelay(int fd)
{
    int one = 1;
    CHECK_SYS(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
}

struct conn {
    int fd;
    int index;
};

static void *serve_conn(void *arg)
{
    struct conn c = *(struct conn *)arg;
    free(arg);
    char buf[4096];
    uint64_t total = 0;
    for (;;) {
        /* half the connections use read/write, the other half recv/send */
        ssize_t n = c.index % 2 ? recv(c.fd, buf, sizeof buf, 0) : read(c.fd, buf, sizeof buf);
        if (n == -1 && errno == EINTR)
            continue;
        CHECK(n >= 0, "server: connection %d: read: %s", c.index, strerror(errno));
        if (n == 0)
            break;
        if (c.index % 2) {
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = send(c.fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
                CHECK(w > 0, "server: send: %s", strerror(errno));
                off += w;
            }
        } else {
            CHECK(write_full(c.fd, buf, (size_t)n) == 0, "server: write: %s", strerror(errno));
        }
        total += (uint64_t)n;
    }
    CHECK_SYS(close(c.fd));
    echoed_bytes[c.index] = total;
    return NULL;
}

static void *acceptor(void *arg)
{
    (void)arg;
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        int fd = accept(listen_fd, (struct sockaddr *)&peer, &len);
        if (fd == -1 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        CHECK(fd >= 0, "accept: %s", strerror(errno));
        CHECK(len == sizeof peer && peer.sin_family == AF_INET &&
                  peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK),
              "accept: peer address");
        if (__atomic_load_n(&stopping, __ATOMIC_SEQ_CST)) {
            CHECK_SYS(close(fd)); /* the wake-up connection */
            return NULL;
        }
        CHECK(conns_accepted < CLIENTS, "more connections than clients");
        nodelay(fd);
        struct conn *c = malloc(sizeof *c);
        CHECK(c != NULL, "malloc");
        c->fd = fd;
        c->index = conns_accepted;
        CHECK_RC(pthread_create(&conn_threads[conns_accepted], NULL, serve_conn, c));
        conns_accepted++;
    }
}

static size_t msg_len(int client, int round)
{
    return 1 + (size_t)((client * 131 + round * 977) % MAX_MSG);
}

static unsigned char msg_byte(int client, int round, size_t i)
{
    return (unsigned char)(client * 7 + round * 3 + i * 11 + (i >> 8));
}

static uint64_t client_sum[CLIENTS];

static void *client(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned char out[MAX_MSG], in[MAX_MSG];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "client %d: socket: %s", id, strerror(errno));
    int rc;
    while ((rc = connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr)) == -1 &&
           errno == EINTR) {
    }
    CHECK(rc == 0, "client %d: connect: %s", id, strerror(errno));
    nodelay(fd);
    uint64_t sum = 0;
    for (int r = 0; r < ROUNDS; r++) {
        size_t n = msg_len(id, r);
        for (size_t i = 0; i < n; i++)
            out[i] = msg_byte(id, r, i);
        CHECK(write_full(fd, out, n) == 0, "client %d: write: %s", id, strerror(errno));
        memset(in, 0, n);
        CHECK(read_full(fd, in, n) == 0, "client %d round %d: short echo", id, r);
        CHECK(memcmp(in, out, n) == 0, "client %d round %d: echo differs", id, r);
        for (size_t i = 0; i < n; i++)
            sum += in[i];
    }
    /* half-close: the server sees end of file, closes, and the client sees end of file */
    CHECK_SYS(shutdown(fd, SHUT_WR));
    char c;
    ssize_t n = read(fd, &c, 1);
    CHECK(n == 0, "client %d: expected end of file, read returned %zd", id, n);
    CHECK_SYS(close(fd));
    client_sum[id] = sum;
    return NULL;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(listen_fd >= 0, "socket: %s", strerror(errno));
    int one = 1;
    CHECK_SYS(setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    CHECK_SYS(bind(listen_fd, (struct sockaddr *)&a, sizeof a));
    CHECK_SYS(listen(listen_fd, 128));
    socklen_t len = sizeof server_addr;
    CHECK_SYS(getsockname(listen_fd, (struct sockaddr *)&server_addr, &len));
    CHECK(server_addr.sin_port != 0, "no port assigned");

    pthread_t acc, clients[CLIENTS];
    CHECK_RC(pthread_create(&acc, NULL, acceptor, NULL));
    for (intptr_t i = 0; i < CLIENTS; i++)
        CHECK_RC(pthread_create(&clients[i], NULL, client, (void *)i));
    for (int i = 0; i < CLIENTS; i++)
        CHECK_RC(pthread_join(clients[i], NULL));

    /* shutdown: flag, then one connection wakes the acceptor, which sees the flag and exits */
    __atomic_store_n(&stopping, 1, __ATOMIC_SEQ_CST);
    int wake = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(wake >= 0, "socket: %s", strerror(errno));
    CHECK_SYS(connect(wake, (struct sockaddr *)&server_addr, sizeof server_addr));
    CHECK_RC(pthread_join(acc, NULL));
    CHECK_SYS(close(wake));
    CHECK(conns_accepted == CLIENTS, "accepted %d connections", conns_accepted);
    for (int i = 0; i < conns_accepted; i++)
        CHECK_RC(pthread_join(conn_threads[i], NULL));
    CHECK_SYS(close(listen_fd));

    uint64_t expect_bytes = 0, server_bytes = 0, h = MIX_INIT, sum = 0;
    for (int c = 0; c < CLIENTS; c++) {
        uint64_t s = 0;
        for (int r = 0; r < ROUNDS; r++) {
            size_t n = msg_len(c, r);
            expect_bytes += n;
            for (size_t i = 0; i < n; i++)
                s += msg_byte(c, r, i);
        }
        CHECK(client_sum[c] == s, "client %d: echoed sum %" PRIu64 " expected %" PRIu64, c,
              client_sum[c], s);
        sum += s;
        h = mix(h, s);
    }
    for (int i = 0; i < conns_accepted; i++)
        server_bytes += echoed_bytes[i];
    CHECK(server_bytes == expect_bytes, "server echoed %" PRIu64 " bytes, clients sent %" PRIu64,
          server_bytes, expect_bytes);
    printf("echo clients %d rounds %d bytes %" PRIu64 " sum %" PRIu64 "\n", CLIENTS, ROUNDS,
           server_bytes, sum);
    finish(mix(h, server_bytes));
    return 0;
}
