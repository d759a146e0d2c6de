#!/usr/bin/env bash
# Memory with a large queue: inject M (1,000,000) small messages into
# Ironpost for a destination that cannot be reached, so they all stay queued,
# then report the daemon's RSS (VmRSS now, VmHWM peak), the queue size (HTTP
# queue summary), the spool's size on disk and the time taken. Optionally
# restart the daemon on that spool and report the same after recovery.
#
# Environment (all optional):
#   M=1000000        messages (smtp-source -m)
#   C=50             concurrent sessions (smtp-source -s)
#   SIZE=200         smtp-source -l payload bytes
#   MODE=unreachable unreachable: the queue's mx_list is a closed loopback port,
#                      retry_interval 1h (each message gets one failed attempt,
#                      a TransientFailure record and a retry time, then waits);
#                    suspend: the same, plus the domain is suspended over the
#                      admin API before injection (no attempts at all)
#   LOGS=1           local logs on (1) or off (0)
#   RESTART=1        after injection, restart the daemon on the same spool and
#                    measure recovery time and RSS with the recovered queue
#   TIME_LIMIT=1800  seconds; the whole run is abandoned (and cleaned up) after
#   SAMPLE=15        seconds between progress samples
#   BENCH_DIR=/var/tmp/ironpost-rss-million  created here, removed at exit (real disk)
#   IRONPOST_PORT=3535 HTTP_PORT=3580 DEAD_PORT=3599
#   CARGO_TARGET_DIR=/tmp/target-e2e; IRONPOST_BIN=path to skip the build
# Loopback only. Needs smtp-source (postfix package), curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

M=${M:-1000000}
C=${C:-50}
SIZE=${SIZE:-200}
MODE=${MODE:-unreachable}
LOGS=${LOGS:-1}
RESTART=${RESTART:-1}
TIME_LIMIT=${TIME_LIMIT:-1800}
SAMPLE=${SAMPLE:-15}
BENCH_DIR=${BENCH_DIR:-/var/tmp/ironpost-rss-million}
IRONPOST_PORT=${IRONPOST_PORT:-3535}
HTTP_PORT=${HTTP_PORT:-3580}
DEAD_PORT=${DEAD_PORT:-3599}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-e2e}
POLICY=$REPO/bench/policies/rss_million.lua
START=$(date +%s)
DEADLINE=$((START + TIME_LIMIT))

log() { printf '[rss %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case $MODE in unreachable|suspend) ;; *) die "MODE must be unreachable or suspend" ;; esac
for t in smtp-source curl jq ss; do command -v $t >/dev/null || die "$t is needed"; done
for p in "$IRONPOST_PORT" "$HTTP_PORT" "$DEAD_PORT"; do
    [ -z "$(ss -Htln "sport = :$p")" ] || die "port $p is in use (set IRONPOST_PORT, HTTP_PORT, DEAD_PORT)"
done
[ ! -e "$BENCH_DIR" ] || die "$BENCH_DIR exists; remove it or choose another BENCH_DIR"

if [ -n "${IRONPOST_BIN:-}" ]; then
    src_bin=$IRONPOST_BIN
else
    log "building ironpost (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --release -q -p ironpost || die "cargo build failed"
    src_bin=$CARGO_TARGET_DIR/release/ironpost
fi

mkdir -p "$BENCH_DIR"
chmod 700 "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
fstype=$(stat -f -c %T "$BENCH_DIR")
case $fstype in tmpfs|ramfs) rm -rf "$BENCH_DIR"; die "$BENCH_DIR is on $fstype; use a real disk" ;; esac
BIN=$BENCH_DIR/ironpost-bin
cp "$src_bin" "$BIN"
DATA=$BENCH_DIR/data
IP_PID=""
SRC_PID=""

cleanup() {
    set +e
    if [ -n "$SRC_PID" ]; then kill "$SRC_PID" 2>/dev/null; wait "$SRC_PID" 2>/dev/null; fi
    if [ -n "$IP_PID" ]; then
        kill -TERM "$IP_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$IP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$IP_PID" 2>/dev/null
        wait "$IP_PID" 2>/dev/null
    fi
    rm -rf "$BENCH_DIR"
    log "cleaned up (daemon stopped, $BENCH_DIR removed)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", b - a }'; }
left() { echo $((DEADLINE - $(date +%s))); }
kib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
queued() { curl -s --max-time 30 "http://127.0.0.1:$HTTP_PORT/api/admin/queue-summary/v1" | jq '[.queues[]] | add // 0' 2>/dev/null || echo "?"; }
du_b() { if [ -e "$1" ]; then du -sb "$1" | awk '{ printf "%.1f MiB", $1 / 1048576 }'; else echo -; fi; }
records() { [ "$LOGS" = 1 ] || { echo -; return; }; cat "$DATA"/logs/* 2>/dev/null | grep -c "\"type\":\"$1\"" || true; }

start_ironpost() {
    local t0 i
    t0=$(now)
    IRONPOST_RSS_LISTEN=127.0.0.1:$IRONPOST_PORT IRONPOST_RSS_HTTP=127.0.0.1:$HTTP_PORT \
        IRONPOST_RSS_DEAD=127.0.0.1:$DEAD_PORT IRONPOST_RSS_DATA=$DATA IRONPOST_RSS_LOGS=$LOGS \
        "$BIN" serve --policy "$POLICY" >"$BENCH_DIR/ironpost.stdout" 2>>"$BENCH_DIR/ironpost.stderr" &
    IP_PID=$!
    while [ "$(left)" -gt 0 ]; do
        grep -qx ready "$BENCH_DIR/ironpost.stdout" 2>/dev/null && { STARTUP_SECS=$(elapsed "$t0" "$(now)"); return 0; }
        kill -0 "$IP_PID" 2>/dev/null || { cat "$BENCH_DIR/ironpost.stdout" >&2; tail -20 "$BENCH_DIR/ironpost.stderr" >&2; IP_PID=""; die "ironpost exited during start"; }
        sleep 0.1
    done
    die "ironpost not ready before the time limit"
}
stop_ironpost() {
    local rc=0
    kill -TERM "$IP_PID"
    wait "$IP_PID" || rc=$?
    IP_PID=""
    [ "$rc" -eq 0 ] || { tail -20 "$BENCH_DIR/ironpost.stderr" >&2; die "ironpost exited with status $rc on SIGTERM"; }
}
sample() { # LABEL
    log "$1: t=$(( $(date +%s) - START ))s queued=$(queued) VmRSS=$(kib "$(status_kib "$IP_PID" VmRSS)") VmHWM=$(kib "$(status_kib "$IP_PID" VmHWM)") spool=$(du_b "$DATA/spool")"
}

log "ironpost on 127.0.0.1:$IRONPOST_PORT (HTTP 127.0.0.1:$HTTP_PORT), destination 127.0.0.1:$DEAD_PORT (closed), MODE=$MODE LOGS=$LOGS"
log "M=$M C=$C SIZE=$SIZE, work area $BENCH_DIR ($fstype), time limit ${TIME_LIMIT}s"
start_ironpost
log "started in ${STARTUP_SECS}s; VmRSS $(kib "$(status_kib "$IP_PID" VmRSS)")"
if [ "$MODE" = suspend ]; then
    curl -sf --max-time 10 -H 'Content-Type: application/json' \
        -d '{"domain":"example.test","reason":"rss benchmark","duration":"2h"}' \
        "http://127.0.0.1:$HTTP_PORT/api/admin/suspend/v1" >/dev/null || die "suspend request failed"
fi

# ------------------------------------------------------------ injection ----
T0=$(now)
timeout "$(left)" smtp-source -s "$C" -m "$M" -l "$SIZE" -f bench@example.test -t sink@example.test \
    "127.0.0.1:$IRONPOST_PORT" >"$BENCH_DIR/smtp-source.out" 2>&1 &
SRC_PID=$!
next=$(( $(date +%s) + SAMPLE ))
while kill -0 "$SRC_PID" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$next" ]; then sample injecting; next=$(( $(date +%s) + SAMPLE )); fi
    kill -0 "$IP_PID" 2>/dev/null || die "ironpost died during injection"
    sleep 1
done
rc=0
wait "$SRC_PID" || rc=$?
SRC_PID=""
INJECT_SECS=$(elapsed "$T0" "$(now)")
INJECT_OK=yes
if [ "$rc" -ne 0 ]; then
    INJECT_OK="no (smtp-source status $rc$([ "$rc" = 124 ] && echo ': time limit'))"
    log "smtp-source failed (status $rc):"
    tail -5 "$BENCH_DIR/smtp-source.out" >&2
fi
log "injection done in ${INJECT_SECS}s"

# Let the first (failing) delivery attempts finish: wait until the queue
# size and the log stop moving, bounded by the time limit.
prev=""
while [ "$(left)" -gt 0 ]; do
    cur="$(queued)/$(records TransientFailure)/$(status_kib "$IP_PID" VmRSS)"
    [ "$cur" = "$prev" ] && break
    prev=$cur
    sleep 5
done
SETTLED_SECS=$(elapsed "$T0" "$(now)")
sample settled
Q=$(queued)
RSS=$(status_kib "$IP_PID" VmRSS)
HWM=$(status_kib "$IP_PID" VmHWM)
SPOOL=$(du_b "$DATA/spool")
LOGSZ=$(du_b "$DATA/logs")
NREC=$(records Reception)
NTF=$(records TransientFailure)
NOTHER=$(( $(records Delivery | sed 's/-/0/') + $(records Bounce | sed 's/-/0/') + $(records Expiration | sed 's/-/0/') ))

R_STARTUP="-" R_Q="-" R_RSS="-" R_HWM="-"
if [ "$RESTART" = 1 ] && [ "$(left)" -gt 60 ]; then
    log "restarting on the same spool"
    T1=$(now)
    stop_ironpost
    STOP_SECS=$(elapsed "$T1" "$(now)")
    start_ironpost
    R_STARTUP=$STARTUP_SECS
    # Wait for the recovered queue to show up in full (bounded).
    while [ "$(left)" -gt 0 ]; do
        R_Q=$(queued)
        [ "$R_Q" = "$Q" ] && break
        sleep 2
    done
    sleep 5
    R_Q=$(queued)
    R_RSS=$(status_kib "$IP_PID" VmRSS)
    R_HWM=$(status_kib "$IP_PID" VmHWM)
    RECOVERED=$(sed -n 's/^spool: .* (recovered \([0-9]*\) messages)$/\1/p' "$BENCH_DIR/ironpost.stdout" | tail -1)
    log "stopped in ${STOP_SECS}s, restarted in ${R_STARTUP}s, recovered ${RECOVERED:-?} messages"
fi

echo
echo "Ironpost with a large queue: smtp-source -s $C -m $M -l $SIZE into a destination that cannot be reached"
echo "(mx_list = a closed loopback port, retry_interval 1h; MODE=$MODE; spool flush=true on $fstype; logs $([ "$LOGS" = 1 ] && echo on || echo off))."
echo
printf '%-44s %s\n' "injection complete" "$INJECT_OK"
printf '%-44s %s s (%s msg/s)\n' "injection time" "$INJECT_SECS" "$(awk -v n="$M" -v s="$INJECT_SECS" 'BEGIN { printf "%.0f", n / s }')"
printf '%-44s %s s\n' "until queue and log settled" "$SETTLED_SECS"
printf '%-44s %s\n' "queued (HTTP queue summary)" "$Q"
printf '%-44s %s\n' "Reception / TransientFailure records" "$NREC / $NTF"
printf '%-44s %s\n' "Delivery+Bounce+Expiration records" "$([ "$LOGS" = 1 ] && echo "$NOTHER" || echo -)"
printf '%-44s %s\n' "VmRSS with the queue" "$(kib "$RSS")"
printf '%-44s %s\n' "VmHWM (peak) during injection" "$(kib "$HWM")"
printf '%-44s %s\n' "spool on disk" "$SPOOL"
printf '%-44s %s\n' "logs on disk" "$([ "$LOGS" = 1 ] && echo "$LOGSZ" || echo -)"
if [ "$RESTART" = 1 ]; then
    printf '%-44s %s\n' "restart: stop (SIGTERM) / start until ready" "${STOP_SECS:--} s / $R_STARTUP s"
    printf '%-44s %s\n' "restart: recovered / queued" "${RECOVERED:--} / $R_Q"
    printf '%-44s %s\n' "restart: VmRSS / VmHWM" "$([ "$R_RSS" = - ] && echo - || echo "$(kib "$R_RSS") / $(kib "$R_HWM")")"
fi
printf '%-44s %s s\n' "total wall time" "$(( $(date +%s) - START ))"
[ "$INJECT_OK" = yes ] && [ "$Q" = "$M" ] || { echo "WARNING: expected $M queued"; exit 1; }
