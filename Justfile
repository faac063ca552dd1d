# hull: the guest half of a VM-isolated container runtime.
# Start with `./run --list`; `./run demo` and `./run test` are the README's two commands.

set shell := ["bash", "-euo", "pipefail", "-c"]

cache := env_var_or_default("HULL_CACHE", env_var_or_default("XDG_CACHE_HOME", env_var("HOME") / ".cache") / "hull")
export PATH := cache / "tools/bin" + ":" + env_var("PATH")
export HULL_CACHE := cache

guest_target := "x86_64-unknown-linux-gnu"
guest_dir := "target" / guest_target / "guest"
guest_bins := "--init " + guest_dir / "hull-init" + " --agent " + guest_dir / "hull-agent"
guest_bins_policy := "--init " + guest_dir / "hull-init" + " --agent " + guest_dir / "hull-agent-policy"
hull_image := "cargo run --locked --release -q -p hull-image --"
export HULL_KERNEL := env_var_or_default("HULL_KERNEL", justfile_directory() / "build/kernel/bzImage")
export HULL_INITRD := env_var_or_default("HULL_INITRD", justfile_directory() / "build/initrd.img")

# List the recipes.
default:
    @just --list

# Install Debian packages and host tools (vhost-device-vsock, virtiofsd) when missing.
setup:
    scripts/setup.sh

# Build the static guest binaries (hull-init, hull-agent, and hull-agent-policy: the agent
# with the policy engine, cargo feature `policy`, for images that enforce an agent policy).
# Separate cargo runs: hull-init is `no_std` without libc, and built together with the
# agent its dependencies would get their `std` features (cargo unifies features within one
# build); the agent with the engine is built first and copied aside, then the default one.
guest:
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --locked --profile guest --target {{guest_target}} -p hull-init
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --locked --profile guest --target {{guest_target}} -p hull-agent --features policy
    cp -f {{guest_dir}}/hull-agent {{guest_dir}}/hull-agent-policy
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --locked --profile guest --target {{guest_target}} -p hull-agent

# Build (or take from the cache) the guest kernel into build/kernel.
kernel: setup
    {{hull_image}} kernel -o build/kernel

# Build the initrd from the guest binaries (and one with Debian's iptables tools for the
# GetIPTables/SetIPTables tests, and one with the policy-enabled agent for the policy tests).
initrd: guest
    {{hull_image}} initrd -o build/initrd.img {{guest_bins}}
    {{hull_image}} -q initrd -o build/initrd-iptables.img --with-iptables {{guest_bins}}
    {{hull_image}} -q initrd -o build/initrd-policy.img {{guest_bins_policy}}

# Build the disk images and manifests: build/rootfs.{ext4,erofs,ext4-verity}.img (DAX on pmem, or virtio-blk).
image: guest kernel
    {{hull_image}} image -o build/rootfs.ext4.img --fs ext4 --kernel build/kernel {{guest_bins}}
    {{hull_image}} -q image -o build/rootfs.erofs.img --fs erofs --kernel build/kernel {{guest_bins}}
    {{hull_image}} -q image -o build/rootfs.ext4-verity.img --fs ext4 --verity --kernel build/kernel {{guest_bins}}

# A debug image: the ext4 image plus busybox (/bin/sh and the applets) for a debug console.
image-debug: guest kernel
    {{hull_image}} image -o build/rootfs-debug.ext4.img --fs ext4 --debug-tools --kernel build/kernel {{guest_bins}}

# The guest root tree as a directory (build/rootfs), for inspection.
rootfs: guest
    {{hull_image}} rootfs -o build/rootfs --force {{guest_bins}}

# Print how to attach an image to QEMU, cloud-hypervisor, Firecracker and Kata.
attach image="build/rootfs.ext4.img":
    {{hull_image}} attach {{image}}.manifest.json

# Everything a guest boots from: kernel, initrd and the disk images.
artifacts: kernel initrd image image-debug

# The README's demo: boot a guest, run `uname -a` in a busybox container (`./run demo --web`: also serve a page from one).
demo *args: setup artifacts
    cargo run --locked --release -q -p hull-e2e --bin hull-demo -- {{args}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --locked --workspace --all-targets -- -D warnings
    cargo fmt --manifest-path fuzz/Cargo.toml --check
    CARGO_TARGET_DIR={{justfile_directory()}}/target cargo clippy --locked --manifest-path fuzz/Cargo.toml --lib --examples --tests -- -D warnings

# hull-init as PID 1 of fresh namespaces on the host: crash, restart, signal and shutdown paths.
init-smoke: guest
    init/tests/smoke/ns-smoke.sh {{guest_dir}}/hull-init

# The whole test suite: lints, unit and host tests, init's namespace smoke test, the VM tests.
test: setup artifacts lint init-smoke
    cargo test --locked --workspace
    # The fuzz crate's own tests on stable (its decoders cover every method the agent
    # serves); it is a workspace of its own, built into this one's target directory.
    CARGO_TARGET_DIR={{justfile_directory()}}/target cargo test --locked --manifest-path fuzz/Cargo.toml --lib
    @scripts/hw-kvm.sh --note

# Fuzz every decoder of untrusted input (fuzz/, cargo-fuzz on nightly) for SECONDS per target (default 60), or `--runs N` executions each, optionally only the TARGETs named; prints execs, time and crashes per target, fails on a crash.
fuzz *args:
    scripts/fuzz.sh {{args}}

# Soak: one guest, CYCLES container lifecycles mixed with execs, signals, pauses and OOM kills while 16 clients call at once; prints cycle times, the agent's memory, fds and threads, the guest's mounts, cgroups and processes; fails on a leak or a slowdown.
soak cycles="1000": setup artifacts
    HULL_SOAK_CYCLES={{cycles}} cargo test --locked -p hull-e2e --test soak -- --exact soak_of_container_lifecycles --nocapture

# Stdio at scale: MIB through ReadStdout and WriteStdin (sha256 on both ends, the client reconnecting mid-stream), a read in flight when its client leaves, a slow reader.
stdio mib="1024": setup artifacts
    HULL_STDIO_MIB={{mib}} cargo test --locked -p hull-e2e --test soak -- --exact stdio_at_scale --nocapture

# The full Linux boot under vmm-lite (initrd, pmem and blk images; agent, a container, power-off, exit 0). Needs hardware KVM: fails at once where there is none.
test-kvm:
    scripts/hw-kvm.sh
    {{just_executable()}} setup artifacts
    cargo build --locked --release -p vmm-lite
    HULL_VMM=vmm-lite HULL_VMM_LITE={{justfile_directory()}}/target/release/vmm-lite cargo test --locked --release -p hull-e2e --test vmm_lite -- --ignored

# Sizes, boot (against a bare initrd), memory, stdio (against raw vsock) and container figures as a table, then vmm-lite next to QEMU (size, first serial byte, RSS); e.g. `./run bench --boots 2 --runs 2`.
bench *args: setup artifacts
    cargo run --locked --release -q -p hull-e2e --features hull-agent/policy --bin hull-bench -- {{args}}
    cargo build --locked --release -q -p vmm-lite --features payload
    target/release/vmm-lite-bench --runs 3
