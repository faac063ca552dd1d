#!/bin/sh
# Boots hull-init as /init of a gzip cpio initramfs under QEMU (TCG, or KVM
# when HULL_ACCEL=kvm) with the fake agent, and checks the serial console.
#
# usage: init/tests/smoke/vm-smoke.sh BZIMAGE [path/to/hull-init]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
kernel=${1:?usage: vm-smoke.sh BZIMAGE [hull-init]}
init=${2:-$repo/target/x86_64-unknown-linux-gnu/guest/hull-init}
accel=${HULL_ACCEL:-tcg}
work=$(mktemp -d /tmp/hull-init-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -static -O2 -o "$work/fake-agent" "$here/fake-agent.c"
fail=0

boot() { # SCENARIO CMDLINE-EXTRA
    rm -rf "$work/stage"
    mkdir -p "$work/stage/usr/bin"
    cp "$init" "$work/stage/init"
    cp "$work/fake-agent" "$work/stage/usr/bin/hull-agent"
    echo "$1" > "$work/stage/scenario"
    (cd "$work/stage" && find . | cpio -o -H newc --quiet | gzip) > "$work/$1.cpio.gz"
    timeout 120 qemu-system-x86_64 -machine "q35,accel=$accel" -m 256 -kernel "$kernel" \
        -initrd "$work/$1.cpio.gz" -append "console=ttyS0 quiet $2" \
        -nographic -no-reboot -display none -monitor none >"$work/$1.log" 2>&1 || {
        echo "FAIL $1: qemu did not exit by itself"
        fail=1
    }
}

expect() { # SCENARIO PATTERN...
    scenario=$1; shift
    for pattern in "$@"; do
        if ! grep -aq -- "$pattern" "$work/$scenario.log"; then
            echo "FAIL $scenario: no line matching: $pattern"
            fail=1
        fi
    done
}

boot exit0 "hull.hostname=vm-smoke hull.debug"
expect exit0 'init: mounted target=/dev fstype=devtmpfs' 'init: mounted target=/sys/fs/cgroup fstype=cgroup2' \
    'init: config debug=true hostname=vm-smoke agent_restarts=5' 'fake-agent: hostname=vm-smoke' \
    'fake-agent: SigBlk:	0000000000000000' 'init: agent exited pid=[0-9]* status=0 ' \
    'init: shutting down reason=agent-exit' 'init: powering off' 'reboot: Power down'

boot crash "hull.agent_restarts=1"
expect crash 'init: restarting agent attempt=1 max=1 delay_ms=100 ' \
    'init: agent restart limit reached, giving up restarts=1' 'reboot: Power down'

boot term ""
expect term 'init: shutting down reason=signal signal=SIGTERM' 'reboot: Power down'

if [ "$fail" != 0 ] || [ "${VERBOSE:-0}" = 1 ]; then
    for f in "$work"/*.log; do
        echo "===== $(basename "$f")"
        grep -a -E 'init:|fake-agent:|reboot:|Kernel panic' "$f" || cat "$f"
    done
fi
if [ "$fail" = 0 ]; then echo "vm-smoke: 3 passed, 0 failed"; else echo "vm-smoke: FAILED"; exit 1; fi
