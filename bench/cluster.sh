#!/usr/bin/env bash
# Two Ironpost nodes, one Redis, one smtp-sink, all on loopback: the cost of
# sharing rates and connection limits through Redis. Each run injects N/2
# messages into each node at once (smtp-source -s C per node) and times
# until the sink has counted all N. Variants, interleaved R times:
#   local   each node's own throttles (no Redis configured)
#   shared  kumo.configure_redis_throttles: every rate and limit in Redis
# The shaping file's limits never bind (bench/policies/cluster_shaping.toml).
# Also reported: Redis commands per message (INFO stats, per run).
#
# Environment: N=10000 R=3 C=50 SIZE=10240 IRONPOST_BIN=path
#   BENCH_DIR=/var/tmp/ironpost-cluster (real disk) KEEP=0
# Needs root (smtp-sink -u root), redis-server, postfix's smtp-source/sink.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
N=${N:-10000}
R=${R:-3}
C=${C:-50}
SIZE=${SIZE:-10240}
BENCH_DIR=${BENCH_DIR:-/var/tmp/ironpost-cluster}
KEEP=${KEEP:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-e2e}

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (smtp-sink -u root)"
command -v redis-server >/dev/null || die "redis-server is needed (apt-get install redis-server)"
command -v smtp-source >/dev/null || die "smtp-source is needed (apt-get install postfix)"

if [ -n "${IRONPOST_BIN:-}" ]; then BIN_SRC=$IRONPOST_BIN; else
    log "building ironpost (release)"
    cargo build --release -q -p ironpost
    BIN_SRC=$CARGO_TARGET_DIR/release/ironpost
fi
rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"; chmod 700 "$BENCH_DIR"
BIN=$BENCH_DIR/ironpost; cp "$BIN_SRC" "$BIN"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK_PORT=$(port); REDIS_PORT=$(port); P1=$(port); P2=$(port)
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    [ "$KEEP" = 1 ] || rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$BENCH_DIR/redis.log" 2>&1 &
PIDS+=($!)
SINK_OUT=$BENCH_DIR/sink.out
smtp-sink -c -u root "127.0.0.1:$SINK_PORT" 1000 >"$SINK_OUT" 2>&1 &
PIDS+=($!)
sleep 0.5
sink_count() { tail -c 128 "$SINK_OUT" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9][0-9]*\).*/\1/p' | tail -1; }
redis_cmds() { redis-cli -p "$REDIS_PORT" info stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p'; }

start_node() { # DIR PORT REDIS_URL
    mkdir -p "$1"
    IRONPOST_E2E_LISTEN=127.0.0.1:$2 IRONPOST_E2E_SINK=127.0.0.1:$SINK_PORT IRONPOST_E2E_DATA=$1 \
        IRONPOST_CLUSTER_REDIS=$3 IRONPOST_CLUSTER_SHAPING=$REPO/bench/policies/cluster_shaping.toml \
        "$BIN" serve --policy "$REPO/bench/policies/cluster.lua" >"$1.stdout" 2>"$1.stderr" &
    PIDS+=($!)
    local i
    for i in $(seq 1 100); do grep -q '^ready' "$1.stdout" 2>/dev/null && return 0; sleep 0.1; done
    die "node on $2 did not start: $(tail -3 "$1.stderr")"
}
stop_nodes() { # PID PID
    kill -TERM "$1" "$2" 2>/dev/null; wait "$1" "$2" 2>/dev/null || true
}

RESULTS=$BENCH_DIR/results.tsv
: >"$RESULTS"
run() { # VARIANT REP
    local v=$1 rep=$2 url=""
    [ "$v" = shared ] && url="redis://127.0.0.1:$REDIS_PORT/"
    local d=$BENCH_DIR/run-$v-$rep
    start_node "$d-a" "$P1" "$url"; local a=${PIDS[-1]}
    start_node "$d-b" "$P2" "$url"; local b=${PIDS[-1]}
    local before; before=$(sink_count); before=${before:-0}
    local cmds0; cmds0=$(redis_cmds)
    local t0; t0=$(date +%s.%N)
    smtp-source -s "$C" -m $((N / 2)) -l "$SIZE" -f bench@example.test -t sink@example.test "127.0.0.1:$P1" &
    local s1=$!
    smtp-source -s "$C" -m $((N / 2)) -l "$SIZE" -f bench@example.test -t sink@example.test "127.0.0.1:$P2" &
    local s2=$!
    wait "$s1" "$s2"
    local deadline=$((SECONDS + 600)) n=0
    while :; do
        n=$(sink_count); n=${n:-0}
        [ $((n - before)) -ge "$N" ] && break
        [ $SECONDS -lt $deadline ] || die "$v run $rep: only $((n - before)) of $N arrived"
        sleep 0.02
    done
    local t1; t1=$(date +%s.%N)
    local cmds1; cmds1=$(redis_cmds)
    local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
    local rate; rate=$(awk -v n="$N" -v s="$secs" 'BEGIN{printf "%.1f", n/s}')
    local per; per=$(awk -v c=$((cmds1 - cmds0)) -v n="$N" 'BEGIN{printf "%.2f", c/n}')
    printf '%s\t%s\t%s\t%s\t%s\n' "$v" "$rep" "$secs" "$rate" "$per" >>"$RESULTS"
    log "$v rep $rep: $N in ${secs}s = $rate msg/s; redis commands per message $per"
    stop_nodes "$a" "$b"
}
log "N=$N R=$R C=$C per node, SIZE=$SIZE; sink :$SINK_PORT, redis :$REDIS_PORT, nodes :$P1 :$P2"
for rep in $(seq 1 "$R"); do
    run local "$rep"
    run shared "$rep"
done
echo
echo "Two nodes, one sink: N=$N (N/2 per node, smtp-source -s $C each), SIZE=$SIZE, median of R=$R"
printf 'variant\tmsg/s (median)\truns\tredis cmds/msg\n'
python3 - "$RESULTS" <<'PY'
import sys, statistics
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
for v in ("local", "shared"):
    r = [x for x in rows if x[0] == v]
    if not r:
        continue
    rates = [float(x[3]) for x in r]
    print(f"{v}\t{statistics.median(rates):.1f}\t{','.join(str(int(x)) for x in rates)}\t{r[-1][4]}")
PY
