/* A helper `./run bench` puts into a container's rootfs to measure the guest itself:
 *   guest-helper vsock-write PORT BYTES   connect to host vsock PORT (CID 2) and write
 *                                         BYTES zero bytes in 64 KiB writes: the raw vsock
 *                                         path that ReadStdout is compared with
 *   guest-helper spawn N PATH             fork+execve PATH and wait for it, N times; print
 *                                         the mean nanoseconds per spawn
 * Built with `cc -static -O2`. */
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
    close(fd);
    return 0;
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
    if (argc == 4 && !strcmp(argv[1], "spawn"))
        return spawn(strtol(argv[2], NULL, 10), argv[3]);
    fprintf(stderr, "usage: guest-helper vsock-write PORT BYTES | spawn N PATH\n");
    return 2;
}
