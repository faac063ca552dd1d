#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (one at a time) for SECONDS each, or until each has run
# RUNS inputs, and prints a table of executions, time and crashes per target; exits non-zero
# if any target crashed.
# Usage: scripts/fuzz.sh [SECONDS | --runs RUNS] [TARGET...]   (the Justfile's `fuzz` recipe)
set -euo pipefail

seconds=60
runs=""
case "${1:-}" in
    --runs)
        runs="${2:?fuzz: --runs needs a count}"
        case "$runs" in *[!0-9]*|"") echo "fuzz: --runs takes a number of executions, not '$runs'" >&2; exit 2;; esac
        shift 2
        ;;
    "") ;;
    *[!0-9]*)
        [ -n "${1##-*}" ] || { echo "fuzz: unknown option '$1' (SECONDS or --runs RUNS)" >&2; exit 2; }
        ;;
    *) seconds="$1"; shift ;;
esac
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
all_targets=$(cargo +nightly fuzz list)
if [ "$#" -gt 0 ]; then
    for target in "$@"; do
        grep -qx "$target" <<<"$all_targets" || { echo "fuzz: no target '$target' (targets: $(echo $all_targets))" >&2; exit 2; }
    done
    targets="$*"
else
    targets="$all_targets"
fi
if [ -n "$runs" ]; then
    limit=(-runs="$runs")
    echo "fuzz: each target until $runs executions" >&2
else
    limit=(-max_total_time="$seconds")
fi
rows=()
failed=0
for target in $targets; do
    log="fuzz/logs/$target.log"
    echo "fuzz: $target (${limit[0]#-})" >&2
    # A target without seeds starts from an empty corpus (libFuzzer needs the directory).
    mkdir -p "fuzz/corpus/$target"
    status=0
    started=$(date +%s)
    cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - started ))
    [ "$elapsed" -gt 0 ] || elapsed=1
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    execs=${execs:-0}
    crashes=0
    if [ "$status" -ne 0 ]; then
        crashes=$(find "fuzz/artifacts/$target" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) 2>/dev/null | wc -l)
        [ "$crashes" -gt 0 ] || crashes=1
        failed=1
        echo "fuzz: $target FAILED (exit $status), see $log" >&2
    fi
    rows+=("$target $execs $elapsed $((execs / elapsed)) $crashes")
done

printf '\n%-18s %14s %9s %10s %8s\n' target execs seconds execs/s crashes
for row in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-18s %14s %9s %10s %8s\n' $row
done
if [ -n "$runs" ]; then
    printf '(until %s executions per target, %s, %s)\n' "$runs" "$(date -u +%Y-%m-%d)" "$(uname -n)"
else
    printf '(%ss per target, %s, %s)\n' "$seconds" "$(date -u +%Y-%m-%d)" "$(uname -n)"
fi
exit "$failed"
