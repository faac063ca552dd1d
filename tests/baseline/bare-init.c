/* The bare baseline's /init for `./run bench`: the least a guest can do once the kernel
 * hands over. It prints one line on the console (the harness times its appearance) and
 * powers the VM off. No libc: built with `cc -static -nostdlib -Os`. */
#include <linux/reboot.h>
#include <sys/syscall.h>

static long syscall4(long n, long a, long b, long c, long d) {
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

void _start(void) {
    static const char line[] = "bare-init: running\n";
    syscall4(SYS_write, 1, (long)line, sizeof line - 1, 0);
    syscall4(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF, 0);
    for (;;)
        syscall4(SYS_pause, 0, 0, 0, 0);
}
