/* A helper `./run bench` puts into a container's rootfs to measure the guest itself:
 *   guest-helper vsock-write PORT BYTES   connect to host vsock PORT (CID 2) and write
 *                                         BYTES zero bytes in 64 KiB writes: the raw vsock
 *                                         path that ReadStdout is compared with
 *   guest-helper stdout-write BYTES       write BYTES zero bytes to stdout in 64 KiB writes:
 *                                         the same writer, on the container's stdout
 *   guest-helper spawn N PATH             fork+execve PATH and wait for it, N times; print
 *                                         the mean nanoseconds per spawn
 *   guest-helper vsock-peer-ports PORT    listen on guest vsock PORT; answer each connection
 *                                         with the peer (host) port it came from, one line,
 *                                         and close it: how a host behind a VMM that does not
 *                                         tell its side's port (vhost-device-vsock) learns it
 * Built with `cc -static -O2`. */
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Writes `bytes` zero bytes to `fd` in 64 KiB writes. */
static int write_zeros(int fd, unsigned long long bytes) {
    static char buf[64 * 1024];
    while (bytes > 0) {
        size_t len = bytes < sizeof buf ? bytes : sizeof buf;
        ssize_t n = write(fd, buf, len);
        if (n <= 0) {
            perror("guest-helper: write");
            return 1;
        }
        bytes -= (unsigned long long)n;
    }
    return 0;
}

static int vsock_write(unsigned port, unsigned long long bytes) {
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("guest-helper: socket(AF_VSOCK)");
        return 1;
    }
    struct sockaddr_vm addr = {
        .svm_family = AF_VSOCK,
        .svm_cid = VMADDR_CID_HOST,
        .svm_port = port,
    };
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("guest-helper: connect");
        return 1;
    }
    int rc = write_zeros(fd, bytes);
    close(fd);
    return rc;
}

static int vsock_peer_ports(unsigned port) {
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("guest-helper: socket(AF_VSOCK)");
        return 1;
    }
    struct sockaddr_vm addr = {
        .svm_family = AF_VSOCK,
        .svm_cid = VMADDR_CID_ANY,
        .svm_port = port,
    };
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 16) < 0) {
        perror("guest-helper: bind/listen");
        return 1;
    }
    for (;;) {
        struct sockaddr_vm peer;
        socklen_t len = sizeof peer;
        int conn = accept(fd, (struct sockaddr *)&peer, &len);
        if (conn < 0) {
            perror("guest-helper: accept");
            return 1;
        }
        char line[16];
        int n = snprintf(line, sizeof line, "%u\n", peer.svm_port);
        if (write(conn, line, (size_t)n) != n)
            perror("guest-helper: write");
        close(conn);
    }
}

static int spawn(long count, char *path) {
    struct timespec start, end;
    char *argv[] = {path, NULL};
    char *envp[] = {NULL};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < count; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("guest-helper: fork");
            return 1;
        }
        if (pid == 0) {
            execve(path, argv, envp);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "guest-helper: %s failed\n", path);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    long long ns = (end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
    printf("%lld\n", ns / count);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "vsock-write"))
        return vsock_write((unsigned)strtoul(argv[2], NULL, 10), strtoull(argv[3], NULL, 10));
    if (argc == 3 && !strcmp(argv[1], "stdout-write"))
        return write_zeros(1, strtoull(argv[2], NULL, 10));
    if (argc == 4 && !strcmp(argv[1], "spawn"))
        return spawn(strtol(argv[2], NULL, 10), argv[3]);
    if (argc == 3 && !strcmp(argv[1], "vsock-peer-ports"))
        return vsock_peer_ports((unsigned)strtoul(argv[2], NULL, 10));
    fprintf(stderr, "usage: guest-helper vsock-write PORT BYTES | stdout-write BYTES | spawn N PATH | vsock-peer-ports PORT\n");
    return 2;
}
