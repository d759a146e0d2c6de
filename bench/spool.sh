#!/usr/bin/env bash
# Spool benchmark: group-commit spool vs. file-per-message, 10 KB messages,
# concurrency 1/20/100, fully durable (fdatasync) in both designs.
# Runs in a temp dir under $SPOOL_BENCH_DIR or the repository root (must be a
# real disk, not tmpfs); $SPOOL_BENCH_SECS sets seconds per run (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -p ironpost-spool --example spool_bench -- "$@"
