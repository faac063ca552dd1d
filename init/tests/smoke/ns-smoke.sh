#!/bin/sh
# Runs hull-init as PID 1 of fresh PID/mount/UTS namespaces, chrooted into a
# private tmpfs with a fake agent, and checks its console lines.
# Needs root, unshare(1) and gcc. Host-safe: /dev, /sys and /sys/fs/cgroup are
# pre-mounted tmpfs (init skips them), every mount is private to the new mount
# namespace, and reboot(2) in a child PID namespace only ends that namespace.
#
# usage: init/tests/smoke/ns-smoke.sh [path/to/hull-init]   (default: the static guest build)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
init=${1:-$repo/target/x86_64-unknown-linux-gnu/guest/hull-init}
work=$(mktemp -d /tmp/hull-init-smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -static -O2 -o "$work/fake-agent" "$here/fake-agent.c"
fail=0

# run SCENARIO [with-agent]: output in $work/SCENARIO.log
run() {
    scenario=$1
    agent=${2:-yes}
    mkdir -p "$work/root"
    timeout 30 unshare --mount --uts --pid --fork --propagation private sh -c '
        set -e
        r=$1
        mount -t tmpfs -o size=32m tmpfs "$r"
        mkdir -p "$r/usr/bin" "$r/dev" "$r/sys" "$r/proc"
        cp "$2" "$r/init"
        if [ "$4" = yes ]; then cp "$3" "$r/usr/bin/hull-agent"; fi
        echo "$5" > "$r/scenario"
        if [ "$5" = badrun ]; then : > "$r/run"; fi  # a file where /run must be
        mount -t tmpfs tmpfs "$r/dev"
        mount -t tmpfs tmpfs "$r/sys"
        mkdir -p "$r/sys/fs/cgroup"
        mount -t tmpfs tmpfs "$r/sys/fs/cgroup"
        exec chroot "$r" /init
    ' sh "$work/root" "$init" "$work/fake-agent" "$agent" "$scenario" >"$work/$scenario.log" 2>&1 || true
}

expect() { # SCENARIO PATTERN...
    scenario=$1; shift
    for pattern in "$@"; do
        if ! grep -q -- "$pattern" "$work/$scenario.log"; then
            echo "FAIL $scenario: no line matching: $pattern"
            fail=1
        fi
    done
}

run exit0
expect exit0 'init: starting ' 'init: mounted target=/proc ' 'init: agent started pid=' \
    'fake-agent: SigBlk:	0000000000000000' 'fake-agent: SigIgn:	0000000000000000' \
    'fake-agent: env HULL_INIT=1' 'fake-agent: env PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    'fake-agent: hostname=hull' \
    'init: agent exited pid=[0-9]* status=0 ' 'init: shutting down reason=agent-exit' \
    'init: sent SIGTERM to all processes' 'init: all processes exited' \
    'init: filesystems unmounted ' 'init: root remounted read-only' 'init: powering off'

run crash
expect crash 'init: agent crashed pid=[0-9]* status=3 ' \
    'init: restarting agent attempt=1 max=5 delay_ms=100 ' \
    'init: restarting agent attempt=5 max=5 delay_ms=1600 ' \
    'init: agent restart limit reached, giving up restarts=5' \
    'init: shutting down reason=agent-failed' 'init: powering off'

run segv
expect segv 'init: agent crashed pid=[0-9]* signal=SIGSEGV ' 'init: shutting down reason=agent-failed'

run term
expect term 'init: shutdown requested signal=SIGTERM sender_pid=' \
    'init: shutting down reason=signal signal=SIGTERM' 'init: all processes exited' 'init: powering off'

run pwr
expect pwr 'init: shutdown requested signal=SIGPWR ' 'init: shutting down reason=signal signal=SIGPWR' 'init: powering off'

run int
expect int 'init: shutdown requested signal=SIGINT ' 'init: shutting down reason=signal signal=SIGINT' 'init: powering off'

run stubborn
expect stubborn 'init: shutting down reason=signal signal=SIGTERM' \
    'init: processes still running, sending SIGKILL' 'init: all processes exited' 'init: powering off'

run missing no
expect missing 'init: agent binary missing path=/usr/bin/hull-agent' \
    'init: shutting down reason=agent-missing' 'init: powering off'

run badrun
expect badrun 'init: required mount failed error="cannot create mount point /run: ' \
    'init: shutting down reason=boot-failure' 'init: powering off'
if grep -q 'agent started' "$work/badrun.log"; then echo "FAIL badrun: agent started"; fail=1; fi

if [ "$fail" != 0 ] || [ "${VERBOSE:-0}" = 1 ]; then
    for f in "$work"/*.log; do
        echo "===== $(basename "$f")"
        cat "$f"
    done
fi
if [ "$fail" = 0 ]; then echo "ns-smoke: 9 passed, 0 failed"; else echo "ns-smoke: FAILED"; exit 1; fi
