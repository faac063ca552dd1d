/* Stand-in for /usr/bin/hull-agent in ns-smoke.sh. Behaviour comes from the
 * file /scenario in the test root:
 *   exit0   report state, leave an orphan behind, exit 0 (orderly shutdown)
 *   crash   exit 3 every time (restart with backoff, then give up)
 *   segv    die from SIGSEGV every time
 *   term    send SIGTERM to PID 1, then wait to be killed
 *   pwr, int  the same with SIGPWR, SIGINT (what Ctrl-Alt-Del sends)
 *   stubborn  ignore SIGTERM, send SIGTERM to PID 1, wait for SIGKILL
 *   wait    wait for a signal (for shutdowns started from outside)
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void report(void) {
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "SigBlk:", 7) || !strncmp(line, "SigIgn:", 7))
                fprintf(stderr, "fake-agent: %s", line);
        fclose(f);
    }
    fprintf(stderr, "fake-agent: pid=%d sid=%d pgid=%d\n", getpid(), getsid(0), getpgid(0));
    for (char **e = environ; *e; e++)
        fprintf(stderr, "fake-agent: env %s\n", *e);
    char host[128] = "";
    gethostname(host, sizeof host);
    fprintf(stderr, "fake-agent: hostname=%s\n", host);
}

int main(void) {
    char scenario[32] = "";
    FILE *f = fopen("/scenario", "r");
    if (f) {
        if (fgets(scenario, sizeof scenario, f))
            scenario[strcspn(scenario, "\n")] = 0;
        fclose(f);
    }
    fprintf(stderr, "fake-agent: scenario=%s\n", scenario);
    if (!strcmp(scenario, "exit0")) {
        report();
        if (fork() == 0) { /* orphan: init must reap it at shutdown */
            setsid();
            pause();
            _exit(0);
        }
        return 0;
    }
    if (!strcmp(scenario, "crash"))
        return 3;
    if (!strcmp(scenario, "segv"))
        raise(SIGSEGV);
    if (!strcmp(scenario, "term") || !strcmp(scenario, "stubborn")) {
        if (!strcmp(scenario, "stubborn"))
            signal(SIGTERM, SIG_IGN);
        kill(1, SIGTERM);
        for (;;)
            pause();
    }
    if (!strcmp(scenario, "pwr") || !strcmp(scenario, "int")) {
        kill(1, !strcmp(scenario, "pwr") ? SIGPWR : SIGINT);
        for (;;)
            pause();
    }
    if (!strcmp(scenario, "wait"))
        for (;;)
            pause();
    return 99;
}
