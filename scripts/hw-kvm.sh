#!/usr/bin/env bash
# Is hardware KVM usable here (what vmm-lite needs to boot Linux in useful time)?
# Exit 0 if so; otherwise print why on stderr and exit 1. With --note, print one line for
# `./run test` saying whether `./run test-kvm` can run here, and always exit 0.
set -uo pipefail
reason=""
if [ ! -e /dev/kvm ]; then
    reason="there is no /dev/kvm"
elif [ -d /sys/module/kvm_pvm ]; then
    reason="/dev/kvm is PVM (kvm_pvm): it emulates guest kernel code at ~1 µs per instruction, so Linux only crawls; vmm-lite's payload tests and Linux smoke test run here, the full boot needs hardware KVM (kvm_intel or kvm_amd)"
elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    reason="/dev/kvm is not readable and writable by $(id -un) (join the kvm group)"
elif [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then
    reason="neither kvm_intel nor kvm_amd is loaded"
fi
if [ "${1:-}" = "--note" ]; then
    if [ -z "$reason" ]; then
        echo "test-kvm: hardware KVM is present: run ./run test-kvm for the full Linux boot under vmm-lite"
    else
        echo "test-kvm: the full Linux boot under vmm-lite was not run here: $reason"
    fi
    exit 0
fi
if [ -n "$reason" ]; then
    echo "test-kvm: hardware KVM is required: $reason" >&2
    exit 1
fi
