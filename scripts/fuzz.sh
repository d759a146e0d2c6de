#!/usr/bin/env bash
# Build the fuzz targets (fuzz/, a cargo-fuzz project of its own) and run
# each one for a while; fails on any crash, timeout or out-of-memory.
#
#   bash scripts/fuzz.sh                 # every target
#   bash scripts/fuzz.sh sasl dane_tlsa  # only these
#
# Environment:
#   FUZZ_SECONDS   run time per target (default 45)
#   FUZZ_ARGS      extra libFuzzer flags, e.g. "-max_len=8192"
#
# Only stable Rust is needed: cargo-fuzz's nightly flags (-Zsanitizer=address)
# are allowed by RUSTC_BOOTSTRAP=1. Each target starts from its seeds in
# fuzz/seeds/<target> plus whatever earlier runs found, kept in
# fuzz/corpus/<target> (not in git). A crashing input is written to
# fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>   (from fuzz/)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${FUZZ_SECONDS:-45}
export RUSTC_BOOTSTRAP=1
# The SQLite that rusqlite bundles (policy_helpers) is built instrumented
# too, and has two file-local globals of the same name, which ASan's ODR
# check mistakes for a violation; Rust code cannot have ODR violations.
export ASAN_OPTIONS="detect_odr_violation=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd fuzz
if [ $# -gt 0 ]; then
    targets=("$@")
    known=$(cargo fuzz list)
    for t in "${targets[@]}"; do
        if ! grep -qx "$t" <<<"$known"; then
            echo "unknown fuzz target '$t'; targets are:" >&2
            echo "$known" >&2
            exit 2
        fi
    done
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${#targets[@]} fuzz target(s)"
start=$SECONDS
# One build (one cargo run) for all targets: optimised code with debug
# assertions and overflow checks (fuzz/Cargo.toml), under AddressSanitizer.
if [ ${#targets[@]} -eq 1 ]; then
    cargo fuzz build -O "${targets[0]}"
else
    cargo fuzz build -O
fi
echo "== built in $((SECONDS - start)) s; fuzz/target is $(du -sh target | cut -f1)"

triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="target/$triple/release"
failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="corpus/$t"
    mkdir -p "$corpus" "artifacts/$t"
    if [ -d "seeds/$t" ]; then
        cp -r "seeds/$t/." "$corpus/"
    fi
    log="artifacts/$t/last-run.log"
    echo "== $t: ${seconds} s"
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$bin_dir/$t" "$corpus" \
        -max_total_time="$seconds" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    status=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    line="$t: ${execs:-?} executions in ${seconds} s"
    if [ $status -ne 0 ]; then
        line="$line, FAILED (exit $status)"
        failed+=("$t")
        echo "---- $t: last lines of fuzz/$log"
        tail -n 60 "$log"
        echo "---- crashing inputs:"
        ls -1 "artifacts/$t" | grep -v '^last-run.log$' | sed "s|^|  fuzz/artifacts/$t/|" || true
    fi
    echo "$line"
    summary+=("$line")
done

echo "== summary"
printf '  %s\n' "${summary[@]}"
echo "== total $((SECONDS - start)) s; fuzz/target is $(du -sh "$root/fuzz/target" | cut -f1)"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]}" >&2
    exit 1
fi
