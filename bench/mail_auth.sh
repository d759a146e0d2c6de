#!/usr/bin/env bash
# Cost of `mail_auth.check(msg)` (policy-extras.mail_auth) per message, run
# through the real policy engine as the daemon runs it, with DNS served on
# loopback: warm cache (every answer cached), the same event with an empty
# handler (the difference is the check's own cost), each piece of the check
# alone, and a cold cache (every message from a new domain and client
# address). See
# crates/cli/examples/mail_auth_bench.rs and bench/README.md.
#
# Environment (all optional):
#   ALGOS="rsa ed25519"   the DKIM signature the message carries (one run each)
#   ROUNDS=5              rounds per figure; the median is reported
#   N=2000                messages per round at most ...
#   MAX_SECS=2            ... and seconds per round at most
#   WARMUP=300            messages before the warm figures
#   COLD_N=200            messages (new domains) per cold round (0: no cold figure)
#   BREAKDOWN=1           also time each piece of the check alone (0: skip)
#   CARGO_TARGET_DIR=/tmp/target-e2e
# No root needed; everything is in one process.
set -euo pipefail
cd "$(dirname "$0")/.."

ALGOS=${ALGOS:-"rsa ed25519"}
ROUNDS=${ROUNDS:-5}
N=${N:-2000}
MAX_SECS=${MAX_SECS:-2}
WARMUP=${WARMUP:-300}
COLD_N=${COLD_N:-200}
BREAKDOWN=${BREAKDOWN:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-e2e}

echo "building the benchmark (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)" >&2
cargo build --release -q -p ironpost --example mail_auth_bench
BIN=$CARGO_TARGET_DIR/release/examples/mail_auth_bench

echo "ironpost $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes'), $(nproc) cores"
for algo in $ALGOS; do
    echo
    timeout 600 "$BIN" --algo "$algo" --rounds "$ROUNDS" --n "$N" --max-secs "$MAX_SECS" \
        --warmup "$WARMUP" --cold-n "$COLD_N" --breakdown "$BREAKDOWN"
done
