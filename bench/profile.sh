#!/usr/bin/env bash
# Where the daemon's CPU goes per message: runs Ironpost on an e2e policy,
# sends N messages through it to a sink with `ironpost traffic-gen`, records
# the daemon (not its signers) with `perf record -e cpu-clock`, and prints
# the daemon's CPU per message (from /proc) and the top of the profile:
# self time by object, then by symbol. The figures in bench/PROFILE.md come
# from here.
#
# Environment (all optional):
#   POLICY=bench/policies/e2e.lua   (e2e_dkim_ed25519.lua: one Ed25519 signature)
#   N=20000 C=20 SIZE=10240
#   TLS=0            1: STARTTLS on both legs (traffic-gen --starttls, sink --require-starttls)
#   MPC=100          traffic-gen --messages-per-connection (1: a connection per message)
#   PERF=1           0: CPU per message only, no perf
#   TOP=25           symbols printed
#   BENCH_DIR=/var/tmp/ironpost-profile  (real disk; removed at exit)
#   IRONPOST_BIN=    path to the binary (else a release build)
# Loopback only. Needs perf (Debian linux-perf) for PERF=1.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
POLICY=${POLICY:-bench/policies/e2e.lua}
N=${N:-20000}
C=${C:-20}
SIZE=${SIZE:-10240}
TLS=${TLS:-0}
MPC=${MPC:-100}
PERF=${PERF:-1}
TOP=${TOP:-25}
BENCH_DIR=${BENCH_DIR:-/var/tmp/ironpost-profile}
LISTEN=127.0.0.1:3725 SINK=127.0.0.1:3700
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-e2e}

log() { printf '[profile %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ ! -e "$BENCH_DIR" ] || die "$BENCH_DIR exists"
[ "$PERF" = 0 ] || command -v perf >/dev/null || die "perf is needed (apt-get install linux-perf), or PERF=0"
if [ -z "${IRONPOST_BIN:-}" ]; then
    cargo build --release -q -p ironpost || die "build failed"
    IRONPOST_BIN=$CARGO_TARGET_DIR/release/ironpost
fi
mkdir -p "$BENCH_DIR/data" "$BENCH_DIR/dkim"
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$BENCH_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tls_gen=() tls_sink=() tls_env=""
if [ "$TLS" = 1 ]; then tls_gen=(--starttls --insecure); tls_sink=(--require-starttls); tls_env=1; fi
echo 0 >"$BENCH_DIR/sink.count"
"$IRONPOST_BIN" traffic-gen sink --listen "$SINK" "${tls_sink[@]}" \
    --count-file "$BENCH_DIR/sink.count" >"$BENCH_DIR/sink.out" 2>&1 &
PIDS+=($!)
chmod 700 "$BENCH_DIR/dkim"
if grep -q "IRONPOST_E2E_DKIM_DIR" "$POLICY"; then
    "$IRONPOST_BIN" dkim keygen --domain example.test --selector ed --algo ed25519 --out "$BENCH_DIR/dkim" >/dev/null
    "$IRONPOST_BIN" dkim keygen --domain example.test --selector rsa --algo rsa --bits 2048 --out "$BENCH_DIR/dkim" >/dev/null
fi
IRONPOST_E2E_LISTEN=$LISTEN IRONPOST_E2E_SINK=$SINK IRONPOST_E2E_DATA=$BENCH_DIR/data \
    IRONPOST_E2E_DKIM_DIR=$BENCH_DIR/dkim IRONPOST_E2E_TLS=$tls_env \
    "$IRONPOST_BIN" serve --policy "$POLICY" >"$BENCH_DIR/ironpost.out" 2>"$BENCH_DIR/ironpost.err" &
DAEMON=$!
PIDS+=($DAEMON)
for _ in $(seq 1 100); do grep -qx ready "$BENCH_DIR/ironpost.out" 2>/dev/null && break; sleep 0.1; done
grep -qx ready "$BENCH_DIR/ironpost.out" || { tail "$BENCH_DIR/ironpost.err" >&2; die "ironpost did not start"; }

gen() { # COUNT
    "$IRONPOST_BIN" traffic-gen --target "$LISTEN" -c "$C" -n "$1" --size "$SIZE" \
        --messages-per-connection "$MPC" --from bench@example.test --to sink@example.test \
        "${tls_gen[@]}" >"$BENCH_DIR/gen.out" 2>&1 || { cat "$BENCH_DIR/gen.out" >&2; die "traffic-gen failed"; }
}
sunk() { cat "$BENCH_DIR/sink.count" 2>/dev/null || echo 0; }
wait_sunk() { # TARGET
    for _ in $(seq 1 600); do [ "$(sunk)" -ge "$1" ] && return 0; sleep 0.1; done
    die "the sink has $(sunk) of $1"
}
ticks() { awk '{ print $14 + $15 }' "/proc/$DAEMON/stat"; }
# "tid name ticks" for every thread of the daemon (the name is in brackets
# and has no spaces here).
threads() {
    for f in /proc/"$DAEMON"/task/*/stat; do
        awk '{ gsub(/[()]/, "", $2); print $1, $2, $14 + $15 }' "$f" 2>/dev/null
    done | LC_ALL=C sort
}

log "warm-up: 1000 messages"
gen 1000
wait_sunk 1000
base=$(sunk)
threads >"$BENCH_DIR/threads.0"
t0=$(ticks)
if [ "$PERF" = 1 ]; then
    perf record -q -e cpu-clock -F 2000 -g -p "$DAEMON" -o "$BENCH_DIR/perf.data" 2>/dev/null &
    PERF_PID=$!
    sleep 0.5
fi
log "measured: $N messages, C=$C, $SIZE bytes, TLS=$TLS, $MPC per connection, $(basename "$POLICY")"
gen "$N"
wait_sunk $((base + N))
t1=$(ticks)
threads >"$BENCH_DIR/threads.1"
if [ "$PERF" = 1 ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true; fi
hz=$(getconf CLK_TCK)
awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$N" \
    'BEGIN { printf "daemon CPU: %.0f us per message (%.2f s for %d)\n", t / hz / n * 1e6, t / hz, n }'
# CPU per message by thread. The runtime's threads are all called
# "ironpost": the first two started are its workers (on this 2-core
# machine), the later ones its blocking pool (policy events, signing).
echo "-- CPU per message by thread (us)"
LC_ALL=C join -a 2 -e 0 -o 2.1,2.2,1.3,2.3 "$BENCH_DIR/threads.0" "$BENCH_DIR/threads.1" | sort -n |
    awk -v hz="$hz" -v n="$N" -v workers="$(nproc)" '
        { us = ($4 - $3) / hz / n * 1e6 }
        $2 == "ironpost" && ++seen > workers { pool += us; if (us > 0) busy++; next }
        $2 == "ironpost" { printf "  %-28s %6.1f\n", "runtime worker " seen, us; next }
        us > 0 { printf "  %-28s %6.1f\n", $2, us }
        END { printf "  %-28s %6.1f\n", "blocking pool (" busy+0 " threads)", pool }'
if [ "$PERF" = 1 ]; then
    echo "-- self time by object"
    perf report -i "$BENCH_DIR/perf.data" --no-children --sort dso -g none --percent-limit 1 --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -8
    echo "-- self time by symbol"
    perf report -i "$BENCH_DIR/perf.data" --no-children --sort sym -g none --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -"$TOP"
fi
