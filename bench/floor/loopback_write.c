/*
 * The kernel's floor for one SSE delivery on this machine: the cost of one small write to a
 * loopback TCP socket, and of the read that takes it, with nothing else in the way (no
 * runtime, no HTTP, no parsing). docs/PERFORMANCE.md compares the hubs' CPU per delivery
 * at 20 events/s with this.
 *
 *   gcc -O2 -o /tmp/loopback_write bench/floor/loopback_write.c
 *   /tmp/loopback_write [SOCKETS=1000] [ROUNDS=50] [BYTES=120]
 *
 * Each round writes one BYTES-long frame to every socket (TCP_NODELAY, like the hubs), then
 * reads every socket, then sleeps 50 ms (a 20/s wave). Set SEND=1 to write with send(2)
 * instead of writev(2). Loopback only; stops by itself.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    int rounds = argc > 2 ? atoi(argv[2]) : 50;
    int bytes = argc > 3 ? atoi(argv[3]) : 120;
    int use_send = getenv("SEND") != NULL;
    if (n < 1 || n > 15000 || rounds < 1 || bytes < 1 || bytes > 4096) {
        fprintf(stderr, "usage: loopback_write [1..15000 sockets] [rounds] [1..4096 bytes]\n");
        return 2;
    }
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (void *)&a, sizeof a) || listen(l, 4096) || getsockname(l, (void *)&a, &al)) {
        perror("listen");
        return 1;
    }
    int *c = calloc(n, sizeof(int)), *s = calloc(n, sizeof(int));
    for (int i = 0; i < n; i++) {
        c[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (c[i] < 0 || connect(c[i], (void *)&a, sizeof a) || (s[i] = accept(l, 0, 0)) < 0) {
            perror("connect (raise ulimit -n?)");
            return 1;
        }
        int one = 1;
        setsockopt(s[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(s[i], F_SETFL, O_NONBLOCK);
        fcntl(c[i], F_SETFL, O_NONBLOCK);
    }
    char *buf = malloc(bytes), rb[65536];
    memset(buf, 'x', bytes);
    struct iovec v = {buf, (size_t)bytes};
    double tw = 0, tr = 0;
    for (int r = 0; r < rounds; r++) {
        double t = now();
        for (int i = 0; i < n; i++) {
            if (use_send) send(s[i], buf, bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
            else writev(s[i], &v, 1);
        }
        tw += now() - t;
        t = now();
        for (int i = 0; i < n; i++) (void)!read(c[i], rb, sizeof rb);
        tr += now() - t;
        usleep(50000);
    }
    printf("%d sockets, %d rounds, %d bytes: %s %.2f us, read %.2f us per call\n", n, rounds,
           bytes, use_send ? "send" : "writev", tw / rounds / n * 1e6, tr / rounds / n * 1e6);
    return 0;
}
