# hull: the guest half of a VM-isolated container runtime.
# Start with `./run --list`; `./run demo` and `./run test` are the README's two commands.

set shell := ["bash", "-euo", "pipefail", "-c"]

cache := env_var_or_default("HULL_CACHE", env_var_or_default("XDG_CACHE_HOME", env_var("HOME") / ".cache") / "hull")
export PATH := cache / "tools/bin" + ":" + env_var("PATH")
export HULL_CACHE := cache

guest_target := "x86_64-unknown-linux-gnu"
guest_dir := "target" / guest_target / "guest"
export HULL_KERNEL := env_var_or_default("HULL_KERNEL", justfile_directory() / "build/kernel/bzImage")
export HULL_INITRD := env_var_or_default("HULL_INITRD", justfile_directory() / "build/initrd.img")

# List the recipes.
default:
    @just --list

# Install Debian packages and host tools (vhost-device-vsock, virtiofsd) when missing.
setup:
    scripts/setup.sh

# Build the static guest binaries (hull-init, hull-agent).
guest:
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --locked --profile guest --target {{guest_target}} -p hull-init -p hull-agent

# Build (or take from the cache) the guest kernel into build/kernel.
kernel: setup
    cargo run --locked --release -q -p hull-image -- kernel -o build/kernel

# Build the initrd from the guest binaries.
initrd: guest
    cargo run --locked --release -q -p hull-image -- initrd -o build/initrd.img --init {{guest_dir}}/hull-init --agent {{guest_dir}}/hull-agent

# Everything a guest boots from.
artifacts: kernel initrd

# The README's demo: build everything, boot a guest, show what its agent reports.
demo: setup artifacts
    cargo run --locked --release -q -p hull-e2e --bin hull-demo

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --locked --workspace --all-targets -- -D warnings

# hull-init as PID 1 of fresh namespaces on the host: crash, restart, signal and shutdown paths.
init-smoke: guest
    init/tests/smoke/ns-smoke.sh {{guest_dir}}/hull-init

# The whole test suite: lints, unit and host tests, init's namespace smoke test, the VM tests.
test: setup artifacts lint init-smoke
    cargo test --locked --workspace

# Sizes and boot times, printed as a table.
bench boots="5": setup artifacts
    cargo run --locked --release -q -p hull-e2e --bin hull-bench -- --boots {{boots}}
