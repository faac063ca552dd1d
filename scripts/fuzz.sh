#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for SECONDS each (one at a time) and prints a table of
# executions and crashes per target; exits non-zero if any target crashed.
# Usage: scripts/fuzz.sh [SECONDS]   (the Justfile's `fuzz` recipe)
set -euo pipefail

seconds="${1:-60}"
cache="${HULL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hull}"
export PATH="$cache/tools/bin:$PATH"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: needs the nightly toolchain (cargo +nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz into $cache/tools (a few minutes, once)" >&2
    cargo install --quiet --locked --root "$cache/tools" cargo-fuzz
fi

cargo +nightly fuzz build
# Seed corpora from the shapes of real requests (fuzz/examples/seeds.rs). An ordinary build
# on the default toolchain, in the main workspace's target directory to reuse its
# dependencies.
CARGO_TARGET_DIR="$root/target" cargo run --quiet --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus

mkdir -p fuzz/logs
targets=$(cargo +nightly fuzz list)
rows=()
failed=0
for target in $targets; do
    log="fuzz/logs/$target.log"
    echo "fuzz: $target for ${seconds}s" >&2
    status=0
    cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    execs=${execs:-0}
    crashes=0
    if [ "$status" -ne 0 ]; then
        crashes=$(find "fuzz/artifacts/$target" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) 2>/dev/null | wc -l)
        [ "$crashes" -gt 0 ] || crashes=1
        failed=1
        echo "fuzz: $target FAILED (exit $status), see $log" >&2
    fi
    rows+=("$target $execs $((execs / seconds)) $crashes")
done

printf '\n%-16s %14s %10s %8s\n' target execs execs/s crashes
for row in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-16s %14s %10s %8s\n' $row
done
printf '(%ss per target, %s)\n' "$seconds" "$(date -u +%Y-%m-%d)"
exit "$failed"
