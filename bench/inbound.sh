#!/usr/bin/env bash
# Inbound (acceptance) benchmark: Ironpost vs. Postfix, side by side.
#
# Both MTAs accept the same load from smtp-source on loopback and store every
# message durably (fsync/fdatasync) before answering 250. The headline figure
# is the acceptance rate: messages per second for which smtp-source got its
# 250 to DATA (smtp-source aborts on any other reply, so a completed run means
# every message was accepted). When both MTAs also deliver (to one smtp-sink
# on loopback), the time until the last message was delivered is reported too.
# See bench/README.md.
#
# Environment (all optional):
#   N=10000            messages per run
#   R=3                repetitions per (MTA, concurrency); the median is reported
#   CONCURRENCY="20 100"  smtp-source -s values
#   SIZE=10240         smtp-source -l payload bytes
#   WARMUP=500         messages sent to each MTA once before measuring (0: none)
#   POSTFIX_MODE=auto  relay: Postfix relays to the smtp-sink (as in
#                        /work/shared/peers/postfix_setup.sh);
#                      hold: Postfix keeps accepted mail in its hold queue
#                        (accept-only);
#                      auto: relay if this Ironpost build delivers, hold if it
#                        only spools, so both sides do the same work
#   BENCH_DIR=bench/.work  work area on a real disk (not tmpfs)
#   RUN_TIMEOUT=900    seconds before one smtp-source run (or the wait for
#                      delivery to finish) is abandoned
#   VERIFY=1           after each run, count what each MTA stored / delivered
#   SETTLE=2           seconds of idle (after sync) before each timed run
#   LOAD_WARN=0.25     warn when other processes keep more cores than this busy
#                      during the idle second(s) before a run (machine not quiet)
#   QUIET_WAIT=0       seconds to wait, per run, for the machine to become quiet
#   CARGO_TARGET_DIR=/tmp/target-bench
#   IRONPOST_BIN=path  use this ironpost binary instead of building one
#   IRONPOST_REV=rev   build this commit (from a git archive export in BENCH_DIR)
#                      instead of the working tree
# Needs root (it runs a private Postfix instance). Only loopback is used.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

N=${N:-10000}
R=${R:-3}
CONCURRENCY=${CONCURRENCY:-"20 100"}
SIZE=${SIZE:-10240}
WARMUP=${WARMUP:-500}
POSTFIX_MODE=${POSTFIX_MODE:-auto}
BENCH_DIR=${BENCH_DIR:-$REPO/bench/.work}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
VERIFY=${VERIFY:-1}
SETTLE=${SETTLE:-2}
LOAD_WARN=${LOAD_WARN:-0.25}
QUIET_WAIT=${QUIET_WAIT:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
POLICY=$REPO/bench/policies/inbound.lua
FROM=bench@example.test
TO=sink@example.test

log() { printf '[inbound %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case $POSTFIX_MODE in auto|hold|relay) ;; *) die "POSTFIX_MODE must be auto, hold or relay" ;; esac
[[ $N =~ ^[0-9]+$ && $N -gt 0 && $R =~ ^[0-9]+$ && $R -gt 0 ]] || die "N and R must be positive integers"
[ "$(id -u)" -eq 0 ] || die "run as root: the Postfix side needs a privileged master process"

# ---------------------------------------------------------------- set-up ----

install_tools() {
    if ! command -v postfix >/dev/null || ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then
        log "installing postfix (for postfix, smtp-source, smtp-sink)"
        export DEBIAN_FRONTEND=noninteractive
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        apt-get update -q
        apt-get install -y -q postfix
    fi
    command -v ss >/dev/null || { apt-get update -q; apt-get install -y -q iproute2; }
}

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
fstype=$(stat -f -c %T "$BENCH_DIR")
case $fstype in tmpfs|ramfs) die "BENCH_DIR=$BENCH_DIR is on $fstype; fsync would be free. Use a real disk." ;; esac

install_tools

if [ -n "${IRONPOST_BIN:-}" ]; then
    log "using prebuilt $IRONPOST_BIN (IRONPOST_BIN set; not building)"
    [ -x "$IRONPOST_BIN" ] || die "IRONPOST_BIN=$IRONPOST_BIN is not executable"
    src_bin=$IRONPOST_BIN
    BUILT_FROM="prebuilt $IRONPOST_BIN"
elif [ -n "${IRONPOST_REV:-}" ]; then
    # Build a committed revision from a clean export (the working tree may be
    # mid-edit); the repository itself is only read.
    rev=$(git rev-parse --short "$IRONPOST_REV^{commit}") || die "unknown revision $IRONPOST_REV"
    src=$BENCH_DIR/src-$rev
    if [ ! -f "$src/Cargo.toml" ]; then
        rm -rf "$src.tmp" && mkdir -p "$src.tmp"
        git archive "$rev" | tar -x -C "$src.tmp"
        mv "$src.tmp" "$src"
    fi
    log "building ironpost $rev (release, from $src, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$src" && cargo build --release -q -p ironpost) || die "cargo build of $rev failed"
    src_bin=$CARGO_TARGET_DIR/release/ironpost
    BUILT_FROM="commit $rev"
else
    log "building ironpost (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --release -q -p ironpost || die "cargo build failed (a prebuilt binary can be given with IRONPOST_BIN=..., or a commit with IRONPOST_REV=...)"
    src_bin=$CARGO_TARGET_DIR/release/ironpost
    BUILT_FROM="working tree at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes')"
fi
# Run a private copy so a rebuild during the benchmark cannot swap it mid-run.
BIN=$BENCH_DIR/ironpost-bin
if ! [ "$src_bin" -ef "$BIN" ]; then
    cp "$src_bin" "$BIN.tmp"
    mv -f "$BIN.tmp" "$BIN"
fi

# A free TCP port on 127.0.0.1 at or above $1, skipping those in $TAKEN.
TAKEN=" "
free_port() {
    local p=$1
    while [ "$p" -lt 65000 ]; do
        if [[ $TAKEN != *" $p "* ]] && [ -z "$(ss -Htln "sport = :$p")" ]; then
            TAKEN+="$p "
            echo "$p"
            return
        fi
        p=$((p + 1))
    done
    die "no free port above $1"
}
IRONPOST_PORT=$(free_port 2525)
TAKEN+="$IRONPOST_PORT "
POSTFIX_PORT=$(free_port 2526)
TAKEN+="$POSTFIX_PORT "
SINK_PORT=$(free_port 2600)

IP_PID=""
SINK_PID=""
PF_CONF=$BENCH_DIR/postfix/etc
PF_QUEUE=$BENCH_DIR/postfix/spool
PF_DATA=$BENCH_DIR/postfix/lib
PF_LOG=$BENCH_DIR/postfix/maillog
PF_RUNNING=0

cleanup() {
    set +e
    [ -n "$IP_PID" ] && kill -TERM "$IP_PID" 2>/dev/null && wait "$IP_PID" 2>/dev/null
    if [ "$PF_RUNNING" = 1 ]; then
        postsuper -c "$PF_CONF" -d ALL >/dev/null 2>&1
        postfix -c "$PF_CONF" stop >/dev/null 2>&1
    fi
    [ -n "$SINK_PID" ] && kill -TERM "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
    rm -rf "$BENCH_DIR/ironpost"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s + 0 > 0) printf "%.1f", n / s; else print "-" }'; }

# ------------------------------------------------------------- ironpost ----

IP_DATA=""
IP_OUT=""
# start_ironpost DIR: start the daemon on DIR and wait for "ready".
start_ironpost() {
    IP_DATA=$1
    mkdir -p "$(dirname "$IP_DATA")"
    chmod 700 "$(dirname "$IP_DATA")"
    IP_OUT=$IP_DATA.stdout
    IRONPOST_BENCH_LISTEN=127.0.0.1:$IRONPOST_PORT IRONPOST_BENCH_SINK=127.0.0.1:$SINK_PORT \
        IRONPOST_BENCH_DATA=$IP_DATA \
        "$BIN" serve --policy "$POLICY" >"$IP_OUT" 2>>"$IP_DATA.stderr" &
    IP_PID=$!
    local i
    for i in $(seq 1 300); do
        grep -qx ready "$IP_OUT" 2>/dev/null && return 0
        kill -0 "$IP_PID" 2>/dev/null || { cat "$IP_OUT" "$IP_DATA.stderr" >&2; IP_PID=""; die "ironpost exited during start"; }
        sleep 0.1
    done
    die "ironpost not ready after 30 s"
}

stop_ironpost() {
    kill -TERM "$IP_PID"
    local rc=0
    wait "$IP_PID" || rc=$?
    IP_PID=""
    [ "$rc" -eq 0 ] || { tail -20 "$IP_DATA.stderr" >&2; die "ironpost exited with status $rc on SIGTERM"; }
}

# ip_records TYPE: how many log records of TYPE the running daemon wrote.
ip_records() {
    cat "$IP_DATA"/logs/* 2>/dev/null | grep -c "\"type\":\"$1\"" || true
}

# ip_wait_delivered COUNT: wait (bounded) until COUNT Delivery records exist,
# or until a failure record shows up; prints the completion time.
ip_wait_delivered() {
    local count=$1 deadline
    deadline=$(($(date +%s) + RUN_TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ "$(ip_records Delivery)" -ge "$count" ]; then now; return 0; fi
        kill -0 "$IP_PID" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

# ------------------------------------------------------------- postfix ----

# A private Postfix instance (its own config, queue and log under BENCH_DIR),
# so the system Postfix and /etc/postfix are left alone. Settings follow
# /work/shared/peers/postfix_setup.sh; chroot is off because the private queue
# directory has no chroot environment (no measurable cost either way).
setup_postfix() {
    if [ -f "$PF_CONF/main.cf" ] && postfix -c "$PF_CONF" status >/dev/null 2>&1; then
        postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
    fi
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF_DATA"
    chown root:root "$PF_QUEUE"
    chown postfix:postfix "$PF_DATA"
    local hold_settings=""
    if [ "$POSTFIX_MODE" = hold ]; then
        # HOLD: accepted, fsynced, queued, and left alone by the queue manager.
        # in_flow_delay is off because with nothing leaving the incoming queue
        # the queue manager never hands out flow tokens and every message would
        # wait in_flow_delay: an artefact of holding, not a cost of Postfix.
        hold_settings="smtpd_data_restrictions = check_client_access static:HOLD
in_flow_delay = 0s"
    fi
    cat >"$PF_CONF/main.cf" <<EOF
# Generated by bench/inbound.sh; rewritten on every run.
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF_DATA
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.local
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:$SINK_PORT
default_destination_concurrency_limit = 50
smtp_destination_concurrency_limit = 50
maillog_file = $PF_LOG
maillog_file_prefixes = $BENCH_DIR
smtputf8_enable = no
alias_maps =
alias_database =
biff = no
$hold_settings
EOF
    # Debian's master.cf with chroot off and the smtp listener on our port.
    awk -v port="$POSTFIX_PORT" '
        /^[#[:space:]]/ || NF < 8 { print; next }
        $1 == "smtp" && $2 == "inet" { $1 = "127.0.0.1:" port }
        { $5 = "n"; print }
    ' /etc/postfix/master.cf >"$PF_CONF/master.cf"
    : >"$PF_LOG"
    postfix -c "$PF_CONF" check 2>&1 | grep -v 'not owned by root' >&2 || true
    postfix -c "$PF_CONF" start >/dev/null 2>&1 || { tail -20 "$PF_LOG" >&2; die "postfix did not start"; }
    PF_RUNNING=1
    local i
    for i in $(seq 1 100); do
        [ -n "$(ss -Htln "sport = :$POSTFIX_PORT")" ] && return 0
        sleep 0.1
    done
    tail -20 "$PF_LOG" >&2
    die "postfix is not listening on 127.0.0.1:$POSTFIX_PORT"
}

pf_queue_count() {
    find "$PF_QUEUE"/{maildrop,incoming,active,deferred,hold} -type f 2>/dev/null | wc -l
}

pf_clear() {
    postsuper -c "$PF_CONF" -d ALL >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 100); do
        [ "$(pf_queue_count)" -eq 0 ] && return 0
        sleep 0.1
        postsuper -c "$PF_CONF" -d ALL >/dev/null 2>&1 || true
    done
    die "postfix queue not empty after postsuper -d ALL"
}

# pf_wait_delivered: wait (bounded) until the queue is empty, i.e. Postfix has
# delivered everything it accepted; prints the completion time.
pf_wait_delivered() {
    local deadline
    deadline=$(($(date +%s) + RUN_TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ "$(find "$PF_QUEUE"/{incoming,active,deferred} -type f 2>/dev/null | wc -l)" -eq 0 ]; then now; return 0; fi
        sleep 0.2
    done
    return 1
}

# ------------------------------------------------------------------ runs ----

# Start every timed run from the same state: previous run's files written
# back and deleted, and a moment for the disk to go idle. While we idle, see
# how many cores other work on the machine keeps busy (from /proc/stat).
cpu_busy_idle() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
settle() {
    sync
    local b0 i0 b1 i1 waited=0
    while :; do
        read -r b0 i0 < <(cpu_busy_idle)
        sleep "$SETTLE"
        read -r b1 i1 < <(cpu_busy_idle)
        LOAD=$(awk -v db=$((b1 - b0)) -v di=$((i1 - i0)) -v n="$(nproc)" 'BEGIN { printf "%.2f", (db + di) ? n * db / (db + di) : 0 }')
        awk -v l="$LOAD" -v max="$LOAD_WARN" 'BEGIN { exit !(l > max) }' || break
        [ "$waited" -lt "$QUIET_WAIT" ] || break
        [ "$waited" -gt 0 ] || log "machine busy ($LOAD cores used by others); waiting up to ${QUIET_WAIT}s for quiet"
        waited=$((waited + SETTLE))
    done
    if awk -v l="$LOAD" -v max="$LOAD_WARN" 'BEGIN { exit !(l > max) }'; then
        log "warning: other processes kept $LOAD cores busy just before this run; figures will be noisy"
        BUSY=$((BUSY + 1))
    fi
}

# run_source PORT C COUNT: one smtp-source run; sets T0 and ACCEPT_SECS.
run_source() {
    local port=$1 c=$2 count=$3 t1 rc=0
    T0=$(now)
    timeout "$RUN_TIMEOUT" smtp-source -s "$c" -m "$count" -l "$SIZE" -f "$FROM" -t "$TO" \
        "127.0.0.1:$port" >"$BENCH_DIR/smtp-source.out" 2>&1 || rc=$?
    t1=$(now)
    if [ "$rc" -ne 0 ]; then
        log "smtp-source against port $port failed (status $rc):"
        tail -5 "$BENCH_DIR/smtp-source.out" >&2
        return 1
    fi
    ACCEPT_SECS=$(elapsed "$T0" "$t1")
}

RESULTS=$BENCH_DIR/results-$(date +%Y%m%d-%H%M%S).tsv
printf 'mta\tc\trep\tmessages\taccept_s\taccept_msgs_per_s\tdelivered_s\tdelivered_msgs_per_s\tpeak_rss_kib\tcpu_s\tcheck\tother_cores_busy_before\n' >"$RESULTS"
RUN_NO=0
FAILURES=0
BUSY=0
LOAD=-
T0=0
ACCEPT_SECS=0
IRONPOST_DELIVERS=0

fail() { log "FAILED: $*"; FAILURES=$((FAILURES + 1)); }

# CPU seconds (user + system) of a live process.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat"
}

bench_ironpost() {
    local c=$1 rep=$2 count=$3 dir rss cpu check="-" dsecs="-" t_done n_rcpt n_fail recovered expect
    RUN_NO=$((RUN_NO + 1))
    dir=$BENCH_DIR/ironpost/run-$RUN_NO
    start_ironpost "$dir"
    settle
    if ! run_source "$IRONPOST_PORT" "$c" "$count"; then
        fail "ironpost C=$c rep=$rep: smtp-source did not complete; daemon stderr tail:"
        tail -20 "$dir.stderr" >&2
        kill -0 "$IP_PID" 2>/dev/null || { log "ironpost is no longer running"; IP_PID=""; }
        [ -n "$IP_PID" ] && stop_ironpost
        cp -a "$dir.stderr" "$BENCH_DIR/failed-ironpost-run-$RUN_NO.stderr"
        rm -rf "$dir" "$dir".*
        return 0
    fi
    if [ "$IRONPOST_DELIVERS" = 1 ]; then
        if t_done=$(ip_wait_delivered "$count"); then
            dsecs=$(elapsed "$T0" "$t_done")
        else
            fail "ironpost C=$c rep=$rep: $(ip_records Delivery) of $count delivered after ${RUN_TIMEOUT}s"
        fi
    fi
    rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$IP_PID/status")
    cpu=$(cpu_seconds "$IP_PID")
    stop_ironpost
    if [ "$VERIFY" = 1 ]; then
        # Logs are on: every acceptance must have its Reception record, and
        # there must be no failed delivery attempts.
        n_rcpt=$(ip_records Reception)
        [ "$n_rcpt" = "$count" ] || fail "ironpost C=$c rep=$rep: $n_rcpt Reception log records, expected $count"
        n_fail=$(( $(ip_records TransientFailure) + $(ip_records Bounce) + $(ip_records Expiration) ))
        [ "$n_fail" = 0 ] || fail "ironpost C=$c rep=$rep: $n_fail TransientFailure/Bounce/Expiration records"
        # Restart on the same spool: recovery counts what is still spooled:
        # everything if this build only spools, nothing once all is delivered.
        start_ironpost "$dir"
        recovered=$(sed -n 's/^spool: .* (recovered \([0-9]*\) messages)$/\1/p' "$IP_OUT")
        stop_ironpost
        expect=$count
        [ "$IRONPOST_DELIVERS" = 1 ] && expect=0
        [ "$recovered" = "$expect" ] || fail "ironpost C=$c rep=$rep: restart recovered $recovered messages, expected $expect"
        check="received=$n_rcpt,delivered=$(ip_records Delivery),recovered=$recovered"
    fi
    [ "$FAILURES" -eq 0 ] || cp -a "$dir.stderr" "$BENCH_DIR/ironpost-run-$RUN_NO.stderr"
    rm -rf "$dir" "$dir".*
    [ "$rep" = warmup ] || printf 'ironpost\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$rep" "$count" \
        "$ACCEPT_SECS" "$(rate "$count" "$ACCEPT_SECS")" "$dsecs" "$(rate "$count" "$dsecs")" "$rss" "$cpu" "$check" "$LOAD" >>"$RESULTS"
    log "ironpost C=$c rep=$rep: accepted $count in ${ACCEPT_SECS}s = $(rate "$count" "$ACCEPT_SECS")/s;$([ "$dsecs" = - ] || echo " all delivered after ${dsecs}s;") peak RSS ${rss} KiB, CPU ${cpu}s; $check"
}

bench_postfix() {
    local c=$1 rep=$2 count=$3 check="-" dsecs="-" t_done log_before sent held
    pf_clear
    settle
    log_before=$(wc -l <"$PF_LOG")
    if ! run_source "$POSTFIX_PORT" "$c" "$count"; then
        fail "postfix C=$c rep=$rep: smtp-source did not complete"
        pf_clear
        return 0
    fi
    if [ "$POSTFIX_MODE" = relay ]; then
        if t_done=$(pf_wait_delivered); then
            dsecs=$(elapsed "$T0" "$t_done")
        else
            fail "postfix C=$c rep=$rep: queue not empty after ${RUN_TIMEOUT}s"
        fi
        if [ "$VERIFY" = 1 ]; then
            sleep 0.5 # postlogd may be a moment behind
            sent=$(tail -n +"$((log_before + 1))" "$PF_LOG" | grep -c ' status=sent ' || true)
            [ "$sent" = "$count" ] || fail "postfix C=$c rep=$rep: $sent status=sent log lines, expected $count"
            check="sent=$sent"
        fi
    elif [ "$VERIFY" = 1 ]; then
        held=$(find "$PF_QUEUE/hold" -type f | wc -l)
        [ "$held" = "$count" ] || fail "postfix C=$c rep=$rep: $held messages held, expected $count"
        check="held=$held"
    fi
    pf_clear
    [ "$rep" = warmup ] || printf 'postfix\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\t-\t%s\t%s\n' "$c" "$rep" "$count" \
        "$ACCEPT_SECS" "$(rate "$count" "$ACCEPT_SECS")" "$dsecs" "$(rate "$count" "$dsecs")" "$check" "$LOAD" >>"$RESULTS"
    log "postfix C=$c rep=$rep: accepted $count in ${ACCEPT_SECS}s = $(rate "$count" "$ACCEPT_SECS")/s;$([ "$dsecs" = - ] || echo " all delivered after ${dsecs}s;") $check"
}

rm -rf "$BENCH_DIR/ironpost"
smtp-sink -u postfix "127.0.0.1:$SINK_PORT" 1000 >/dev/null 2>&1 &
SINK_PID=$!

# Does this Ironpost build deliver? Send one message and watch its log.
start_ironpost "$BENCH_DIR/ironpost/probe"
smtp-source -m 1 -l 100 -f "$FROM" -t "$TO" "127.0.0.1:$IRONPOST_PORT" >/dev/null 2>&1 || die "probe message not accepted by ironpost"
for i in $(seq 1 50); do
    [ "$(ip_records Delivery)" -gt 0 ] && { IRONPOST_DELIVERS=1; break; }
    [ "$(( $(ip_records TransientFailure) + $(ip_records Bounce) ))" -gt 0 ] && {
        grep -h '"type":"\(TransientFailure\|Bounce\)"' "$IP_DATA"/logs/* | head -3 >&2
        die "ironpost could not deliver the probe message to the sink on 127.0.0.1:$SINK_PORT"
    }
    sleep 0.1
done
stop_ironpost
rm -rf "$BENCH_DIR/ironpost/probe"*
if [ "$POSTFIX_MODE" = auto ]; then
    if [ "$IRONPOST_DELIVERS" = 1 ]; then POSTFIX_MODE=relay; else POSTFIX_MODE=hold; fi
fi
if [ "$IRONPOST_DELIVERS" = 1 ] && [ "$POSTFIX_MODE" = hold ]; then
    log "warning: Ironpost delivers but Postfix only holds: the comparison favours Postfix"
elif [ "$IRONPOST_DELIVERS" = 0 ] && [ "$POSTFIX_MODE" = relay ]; then
    log "warning: Ironpost only spools but Postfix also delivers: the comparison favours Ironpost"
fi

setup_postfix
log "ironpost ($BUILT_FROM; $([ "$IRONPOST_DELIVERS" = 1 ] && echo delivers || echo 'spools only')) on 127.0.0.1:$IRONPOST_PORT"
log "postfix ($POSTFIX_MODE) on 127.0.0.1:$POSTFIX_PORT; smtp-sink on 127.0.0.1:$SINK_PORT"
log "N=$N R=$R C=[$CONCURRENCY] SIZE=$SIZE, work area $BENCH_DIR ($fstype)"

if [ "$WARMUP" -gt 0 ]; then
    first_c=${CONCURRENCY%% *}
    bench_ironpost "$first_c" warmup "$WARMUP"
    bench_postfix "$first_c" warmup "$WARMUP"
fi

for rep in $(seq 1 "$R"); do
    for c in $CONCURRENCY; do
        # Alternate which MTA goes first so slow drift favours neither.
        if [ $((rep % 2)) -eq 1 ]; then
            bench_ironpost "$c" "$rep" "$N"
            bench_postfix "$c" "$rep" "$N"
        else
            bench_postfix "$c" "$rep" "$N"
            bench_ironpost "$c" "$rep" "$N"
        fi
    done
done

# ----------------------------------------------------------------- table ----

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -F'\t' -v m="$1" -v c="$2" -v k="$3" '$1 == m && $2 == c && $k != "-" { print $k }' "$RESULTS"; }
runs() { col "$@" | awk '{ printf "%s%.0f", s, $1; s = "," }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }'; }

echo
echo "Inbound, ${SIZE}-byte messages, N=$N per run, median of R=$R runs."
echo "Ironpost: $BUILT_FROM, $([ "$IRONPOST_DELIVERS" = 1 ] && echo 'delivering to smtp-sink' || echo 'spooling only'); Postfix 3.x: $POSTFIX_MODE mode."
echo "Both fsync every message before 250. Per-run data: $RESULTS"
echo
hdr='%-9s %4s %14s %16s %9s'
row='%-9s %4s %14s %16s %9s'
if [ "$POSTFIX_MODE" = relay ] && [ "$IRONPOST_DELIVERS" = 1 ]; then
    hdr+=' %15s %16s %9s'
    row+=' %15s %16s %9s'
fi
hdr+=' %13s\n'
row+=' %13s\n'
if [ "$POSTFIX_MODE" = relay ] && [ "$IRONPOST_DELIVERS" = 1 ]; then
    # shellcheck disable=SC2059
    printf "$hdr" MTA C "accepted msg/s" "runs" "IP/PF" "delivered msg/s" "runs" "IP/PF" "peak RSS"
else
    # shellcheck disable=SC2059
    printf "$hdr" MTA C "accepted msg/s" "runs" "IP/PF" "peak RSS"
fi
for c in $CONCURRENCY; do
    ia=$(col ironpost "$c" 6 | median)
    pa=$(col postfix "$c" 6 | median)
    rss=$(col ironpost "$c" 9 | sort -g | tail -1 | awk '{ printf "%.1f MiB", $1 / 1024 }')
    if [ "$POSTFIX_MODE" = relay ] && [ "$IRONPOST_DELIVERS" = 1 ]; then
        id=$(col ironpost "$c" 8 | median)
        pd=$(col postfix "$c" 8 | median)
        # shellcheck disable=SC2059
        printf "$row" ironpost "$c" "$ia" "$(runs ironpost "$c" 6)" "$(ratio "$ia" "$pa")" "$id" "$(runs ironpost "$c" 8)" "$(ratio "$id" "$pd")" "${rss:--}"
        # shellcheck disable=SC2059
        printf "$row" postfix "$c" "$pa" "$(runs postfix "$c" 6)" "" "$pd" "$(runs postfix "$c" 8)" "" ""
    else
        # shellcheck disable=SC2059
        printf "$row" ironpost "$c" "$ia" "$(runs ironpost "$c" 6)" "$(ratio "$ia" "$pa")" "${rss:--}"
        # shellcheck disable=SC2059
        printf "$row" postfix "$c" "$pa" "$(runs postfix "$c" 6)" "" ""
    fi
done
[ "$BUSY" -eq 0 ] || echo "NOTE: before $BUSY run(s) other processes kept more than $LOAD_WARN cores busy; the machine was not quiet, so compare only within this table."
if [ "$FAILURES" -gt 0 ]; then
    echo "WARNING: $FAILURES check(s) failed; see the log above and $BENCH_DIR/ironpost-run-*.stderr."
    exit 1
fi
