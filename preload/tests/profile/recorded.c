/* The program `flexsc profile` records in tests/profile.rs: a known sequence of calls.
 *
 * A forked child truncates and writes a file once and exits. Then two green threads each do,
 * three times: open(O_TRUNC), two 2-byte writes, close; stat, open and read of the same path,
 * close. The main thread (an OS thread) waits for the child and writes "done". */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir;

static void truncate_and_write(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "ab", 2) != 2 || write(fd, "cd", 2) != 2 || close(fd) != 0) {
        perror(path);
        exit(1);
    }
}

static void *worker(void *arg) {
    char path[4096];
    snprintf(path, sizeof path, "%s/file-%ld", dir, (long)arg);
    for (int i = 0; i < 3; i++) {
        truncate_and_write(path);
        struct stat st;
        char buf[8];
        int fd;
        if (stat(path, &st) != 0 || (fd = open(path, O_RDONLY)) < 0 ||
            read(fd, buf, sizeof buf) != 4 || close(fd) != 0) {
            perror(path);
            exit(1);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: recorded DIR\n");
        return 2;
    }
    dir = argv[1];
    pid_t child = fork();
    if (child == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/child", dir);
        truncate_and_write(path);
        exit(0);
    }
    int status;
    if (child < 0 || waitpid(child, &status, 0) != child || status != 0) {
        fprintf(stderr, "the child failed\n");
        return 1;
    }
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        if (pthread_create(&t[i], 0, worker, (void *)i) != 0) return 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    return write(1, "done\n", 5) == 5 ? 0 : 1;
}
