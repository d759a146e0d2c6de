#!/usr/bin/env bash
# End-to-end benchmark: smtp-source -> MTA -> smtp-sink, all on loopback,
# Ironpost vs. Postfix relaying the same load to the same sink, interleaved.
#
# The figure is the one in /work/shared/peers/README.md: messages per second
# END TO END = N / (time from the start of smtp-source until the sink has
# received all N messages). The sink's running count (smtp-sink -c) is what
# is polled, so both MTAs are timed by the same clock and the same criterion.
# Both MTAs fsync every message before answering 250. See bench/E2E.md.
#
# Environment (all optional):
#   N=10000               messages per run
#   R=3                   repetitions per (MTA, variant, C); the median is reported
#   CONCURRENCY="20 100"  smtp-source -s values
#   SIZE=10240            smtp-source -l payload bytes
#   VARIANT=plain         Ironpost policy: plain (bench/policies/e2e.lua),
#                         ed25519 (e2e_dkim_ed25519.lua: one Ed25519 DKIM
#                         signature, made by the signer process),
#                         ed25519_inproc (the same, signed in the network
#                         process: serve --in-process-signing),
#                         both (e2e_dkim_both.lua: RSA-2048 + Ed25519),
#                         shaped (e2e_shaped.lua: a pool of two loopback sources,
#                         policy-extras.shaping with limits that do not bind and
#                         an automation rule; its connection limits are in
#                         e2e_shaping.toml: 16 per source, 32 in all),
#                         authn (e2e_authn.lua: mail_auth.check(msg) on every
#                         message, refusing nothing: DKIM (none: unsigned), SPF,
#                         iprev, DMARC, ARC, Authentication-Results; its DNS is
#                         a loopback server started by this script,
#                         crates/testkit/examples/e2e_dns.rs, serving SPF, DMARC,
#                         PTR and A for bench@example.test from 127.0.0.1. While
#                         it runs, every variant's resolver points at it)
#   VARIANTS="$VARIANT"   several of the above, interleaved in the same run
#   TLS=0                 1: TLS on both legs. The load comes from `ironpost traffic-gen
#                         --starttls` and goes to `ironpost traffic-gen sink
#                         --require-starttls` (for both MTAs) instead of smtp-source and
#                         smtp-sink; Ironpost's egress uses enable_tls = 'RequiredInsecure',
#                         Postfix gets smtpd_tls_security_level = may (a self-signed
#                         certificate) and smtp_tls_security_level = encrypt.
#   MTA_CPUS=, LOAD_CPUS= taskset CPU lists: the MTA under test (and the processes it
#                         starts) on MTA_CPUS, the load generator and sink on LOAD_CPUS,
#                         e.g. MTA_CPUS=0 LOAD_CPUS=1 for the MTA on one core. Unset: no pinning.
#   CONN_LIMITS=32        Ironpost egress connection_limit value(s), e.g. "32 64"
#   POSTFIX=1             also run Postfix (0: Ironpost only). Postfix never signs.
#   WARMUP=500            messages sent through each configuration once first (0: none)
#   BENCH_DIR=/var/tmp/ironpost-e2e  work area on a real disk (not tmpfs); removed at exit
#   KEEP=0                1: keep BENCH_DIR (per-run results, logs) at exit
#   IRONPOST_PORT=3525 POSTFIX_PORT=3526 SINK_PORT=3600   (moved up if taken)
#   RUN_TIMEOUT=900       seconds before a run (injection + delivery) is abandoned
#   SETTLE=2              seconds of idle (after sync) before each timed run
#   POLL=0.02             seconds between polls of the sink's count
#   CARGO_TARGET_DIR=/tmp/target-e2e
#   IRONPOST_BIN=path     use this binary instead of building one
#   E2E_DNS_BIN=path      authn: this e2e_dns binary instead of building the example
# Needs root (private Postfix instance; smtp-sink -u root). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

N=${N:-10000}
R=${R:-3}
CONCURRENCY=${CONCURRENCY:-"20 100"}
SIZE=${SIZE:-10240}
VARIANT=${VARIANT:-plain}
VARIANTS=${VARIANTS:-$VARIANT}
CONN_LIMITS=${CONN_LIMITS:-32}
POSTFIX=${POSTFIX:-1}
WARMUP=${WARMUP:-500}
BENCH_DIR=${BENCH_DIR:-/var/tmp/ironpost-e2e}
KEEP=${KEEP:-0}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
SETTLE=${SETTLE:-2}
POLL=${POLL:-0.02}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-e2e}
FROM=bench@example.test
TO=sink@example.test

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $N =~ ^[0-9]+$ && $N -gt 0 && $R =~ ^[0-9]+$ && $R -gt 0 ]] || die "N and R must be positive integers"
[ "$(id -u)" -eq 0 ] || die "run as root (private Postfix instance, smtp-sink -u root)"
for v in $VARIANTS; do
    case $v in plain|ed25519|ed25519_inproc|both|shaped|authn) ;; *) die "unknown variant $v (plain, ed25519, ed25519_inproc, both, shaped, authn)" ;; esac
done
policy_for() {
    case $1 in
        plain) echo "$REPO/bench/policies/e2e.lua" ;;
        ed25519|ed25519_inproc) echo "$REPO/bench/policies/e2e_dkim_ed25519.lua" ;;
        both) echo "$REPO/bench/policies/e2e_dkim_both.lua" ;;
        shaped) echo "$REPO/bench/policies/e2e_shaped.lua" ;;
        authn) echo "$REPO/bench/policies/e2e_authn.lua" ;;
    esac
}

# Extra `serve` options per variant: ed25519_inproc signs in the network
# process (no signer process), the way every build before the signer did.
args_for() {
    case $1 in
        ed25519_inproc) echo "--in-process-signing" ;;
        *) echo "" ;;
    esac
}
IP_ARGS=""

# ---------------------------------------------------------------- set-up ----

if ! command -v postfix >/dev/null || ! command -v smtp-source >/dev/null || ! command -v smtp-sink >/dev/null; then
    log "installing postfix (for postfix, smtp-source, smtp-sink)"
    export DEBIAN_FRONTEND=noninteractive
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -q
    apt-get install -y -q postfix
fi
command -v python3 >/dev/null || die "python3 is needed for the latency join"

mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR" # the postfix user needs to reach its queue in here; Ironpost's and the keys' directories are 0700
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
fstype=$(stat -f -c %T "$BENCH_DIR")
case $fstype in tmpfs|ramfs) die "BENCH_DIR=$BENCH_DIR is on $fstype; fsync would be free. Use a real disk." ;; esac

if [ -n "${IRONPOST_BIN:-}" ]; then
    src_bin=$IRONPOST_BIN
    BUILT_FROM="prebuilt $IRONPOST_BIN"
else
    log "building ironpost (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    cargo build --release -q -p ironpost || die "cargo build failed"
    src_bin=$CARGO_TARGET_DIR/release/ironpost
    BUILT_FROM="working tree at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes')"
fi
BIN=$BENCH_DIR/ironpost-bin
cp "$src_bin" "$BIN"
DNS_BIN=""
if [[ " $VARIANTS " == *" authn "* ]]; then
    if [ -n "${E2E_DNS_BIN:-}" ]; then
        DNS_BIN=$E2E_DNS_BIN
    else
        log "building the loopback DNS server (cargo build --release -p ironpost-testkit --example e2e_dns)"
        cargo build --release -q -p ironpost-testkit --example e2e_dns || die "cargo build of e2e_dns failed"
        DNS_BIN=$CARGO_TARGET_DIR/release/examples/e2e_dns
    fi
fi

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
IRONPOST_PORT=$(free_port "${IRONPOST_PORT:-3525}")
TAKEN+="$IRONPOST_PORT "
POSTFIX_PORT=$(free_port "${POSTFIX_PORT:-3526}")
TAKEN+="$POSTFIX_PORT "
SINK_PORT=$(free_port "${SINK_PORT:-3600}")

IP_PID=""
SINK_PID=""
DNS_PID=""
E2E_DNS=""
PF_CONF=$BENCH_DIR/postfix/etc
PF_QUEUE=$BENCH_DIR/postfix/spool
PF_DATA=$BENCH_DIR/postfix/lib
PF_LOG=$BENCH_DIR/postfix/maillog
PF_RUNNING=0
SINK_OUT=$BENCH_DIR/sink.out
TLS=${TLS:-0}
SINK_COUNT_FILE=$BENCH_DIR/sink.count
# Core pinning (taskset): the MTA under test (with every process it starts)
# on MTA_CPUS, the load generator and the sink on LOAD_CPUS.
ON_MTA=${MTA_CPUS:+taskset -c $MTA_CPUS}
ON_LOAD=${LOAD_CPUS:+taskset -c $LOAD_CPUS}
DKIM_DIR=$BENCH_DIR/dkim

cleanup() {
    set +e
    if [ -n "$IP_PID" ]; then kill -TERM "$IP_PID" 2>/dev/null; wait "$IP_PID" 2>/dev/null; fi
    if [ "$PF_RUNNING" = 1 ]; then
        postsuper -c "$PF_CONF" -d ALL >/dev/null 2>&1
        postfix -c "$PF_CONF" stop >/dev/null 2>&1
    fi
    if [ -n "$SINK_PID" ]; then kill -TERM "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null; fi
    if [ -n "$DNS_PID" ]; then kill -TERM "$DNS_PID" 2>/dev/null; wait "$DNS_PID" 2>/dev/null; fi
    if [ "$KEEP" = 1 ]; then
        rm -rf "$BENCH_DIR/ironpost" "$BENCH_DIR/postfix/spool"
        log "kept $BENCH_DIR"
    else
        rm -rf "$BENCH_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s + 0 > 0) printf "%.1f", n / s; else print "-" }'; }

# ----------------------------------------------------------------- sink ----

# One smtp-sink for the whole benchmark; -c makes it print a running count
# ("... mesg=<messages received>") for every event, unbuffered.
start_sink() {
    : >"$SINK_OUT"
    if [ "$TLS" = 1 ]; then
        echo 0 >"$SINK_COUNT_FILE"
        $ON_LOAD "$BIN" traffic-gen sink --listen "127.0.0.1:$SINK_PORT" --require-starttls \
            --count-file "$SINK_COUNT_FILE" >"$SINK_OUT" 2>&1 &
    else
        $ON_LOAD smtp-sink -c -u root "127.0.0.1:$SINK_PORT" 1000 >"$SINK_OUT" 2>&1 &
    fi
    SINK_PID=$!
    local i
    for i in $(seq 1 50); do
        [ -n "$(ss -Htln "sport = :$SINK_PORT")" ] && return 0
        sleep 0.1
    done
    die "smtp-sink is not listening on 127.0.0.1:$SINK_PORT"
}
sink_count() {
    local n
    if [ "$TLS" = 1 ]; then
        n=$(cat "$SINK_COUNT_FILE" 2>/dev/null)
        echo "${n:-0}"
        return
    fi
    n=$(tail -c 128 "$SINK_OUT" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9][0-9]*\).*/\1/p' | tail -1)
    echo "${n:-0}"
}

# ------------------------------------------------------------------ dns ----

# The authn variant's DNS: one loopback server for the whole benchmark
# (crates/testkit/examples/e2e_dns.rs); it prints 127.0.0.1:PORT when ready.
start_dns() {
    local out=$BENCH_DIR/dns.out i
    "$DNS_BIN" >"$out" 2>&1 &
    DNS_PID=$!
    for i in $(seq 1 50); do
        E2E_DNS=$(sed -n 's/^\(127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$out" | head -1)
        [ -n "$E2E_DNS" ] && return 0
        kill -0 "$DNS_PID" 2>/dev/null || { cat "$out" >&2; DNS_PID=""; die "the loopback DNS server exited"; }
        sleep 0.1
    done
    die "the loopback DNS server did not start"
}

# ------------------------------------------------------------- ironpost ----

IP_DATA=""
IP_OUT=""
start_ironpost() { # DIR POLICY CONN_LIMIT
    IP_DATA=$1
    mkdir -p "$(dirname "$IP_DATA")"
    chmod 700 "$(dirname "$IP_DATA")"
    IP_OUT=$IP_DATA.stdout
    IRONPOST_E2E_TLS=$TLS IRONPOST_E2E_LISTEN=127.0.0.1:$IRONPOST_PORT IRONPOST_E2E_SINK=127.0.0.1:$SINK_PORT \
        IRONPOST_E2E_DATA=$IP_DATA IRONPOST_E2E_SHAPING=$REPO/bench/policies/e2e_shaping.toml IRONPOST_E2E_CONN_LIMIT=$3 IRONPOST_E2E_DKIM_DIR=$DKIM_DIR \
        IRONPOST_E2E_DNS=${E2E_DNS:-127.0.0.1:1} $ON_MTA "$BIN" serve --policy "$2" $IP_ARGS >"$IP_OUT" 2>>"$IP_DATA.stderr" &
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
ip_records() { cat "$IP_DATA"/logs/* 2>/dev/null | grep -c "\"type\":\"$1\"" || true; }
# cpu_seconds PID: user + system CPU of PID and its live descendants (the
# signer's supervisor and signer), so signing is counted where it runs.
# descendants PID: the live processes below PID.
descendants() {
    local frontier=$1 next p
    while [ -n "$frontier" ]; do
        next=""
        for p in $frontier; do next="$next $(cat /proc/"$p"/task/*/children 2>/dev/null)"; done
        frontier=$(echo $next)
        echo $frontier
    done
}
cpu_seconds() {
    local p
    for p in "$1" $(descendants "$1"); do cat "/proc/$p/stat" 2>/dev/null; done |
        awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); t += $12 + $13 } END { printf "%.2f\n", t / hz }'
}

# latency LOGDIR: per message, seconds from its Reception record (written
# when the 250 is sent) to its Delivery record; prints
# "p50_ms p99_ms max_ms received delivered unique_delivered".
latency() {
    python3 - "$1" <<'EOF'
import glob, json, sys
from datetime import datetime, timezone
def ts(s):
    # RFC 3339 with up to nanoseconds, e.g. 2026-11-22T06:44:31.288590067+00:00
    base, _, rest = s.partition('.')
    frac = ''.join(c for c in rest.split('+')[0].split('Z')[0] if c.isdigit()) if rest else ''
    t = datetime.strptime(base[:19], '%Y-%m-%dT%H:%M:%S').replace(tzinfo=timezone.utc).timestamp()
    return t + (int(frac) / 10 ** len(frac) if frac else 0.0)
rec, dlv, ndlv = {}, {}, 0
for f in sorted(glob.glob(sys.argv[1] + '/*')):
    with open(f) as fh:
        for line in fh:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get('type') == 'Reception':
                rec[r['id']] = ts(r['timestamp'])
            elif r.get('type') == 'Delivery':
                ndlv += 1
                dlv.setdefault(r['id'], ts(r['timestamp']))
lat = sorted(dlv[i] - rec[i] for i in dlv if i in rec)
def pct(p):
    return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float('nan')
print('%.0f %.0f %.0f %d %d %d' % (pct(0.50), pct(0.99), (lat[-1] * 1000 if lat else float('nan')), len(rec), ndlv, len(dlv)))
EOF
}

# authn_passes LOGDIR: Reception records whose authentication_results say
# spf, iprev and dmarc pass: the authn variant's checks really ran and found
# their records (SPF and DMARC can only come from the loopback DNS server).
authn_passes() {
    python3 - "$1" <<'EOF'
import glob, json, sys
n = 0
for f in sorted(glob.glob(sys.argv[1] + '/*')):
    with open(f) as fh:
        for line in fh:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get('type') != 'Reception':
                continue
            got = {a.get('method'): a.get('result') for a in r.get('authentication_results') or []}
            n += all(got.get(m) == 'pass' for m in ('spf', 'iprev', 'dmarc'))
print(n)
EOF
}

# ------------------------------------------------------------- postfix ----

# A private Postfix instance (own config, queue and log under BENCH_DIR),
# settings from /work/shared/peers/postfix_setup.sh: relayhost = the sink,
# destination concurrency 50. chroot is off (the private queue directory has
# no chroot environment). The system Postfix and /etc/postfix are untouched.
# With TLS=1: STARTTLS offered inbound (a self-signed certificate) and
# required outbound, unverified, as Ironpost's RequiredInsecure; TLS
# connections to the sink reused, as Ironpost reuses its connections.
postfix_tls() {
    [ "$TLS" = 1 ] || return 0
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench.local" \
        -keyout "$PF_CONF/tls.key" -out "$PF_CONF/tls.crt" >/dev/null 2>&1 || die "openssl failed"
    chmod 600 "$PF_CONF/tls.key"
    cat <<EOF
smtpd_tls_cert_file = $PF_CONF/tls.crt
smtpd_tls_key_file = $PF_CONF/tls.key
smtpd_tls_security_level = may
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 0
# Postfix's own means of not paying a handshake per message: TLS connection
# reuse through tlsproxy (3.4+), and session caches.
smtp_tls_connection_reuse = yes
smtp_tls_session_cache_database = btree:$PF_DATA/smtp_scache
smtpd_tls_session_cache_database = btree:$PF_DATA/smtpd_scache
EOF
}

setup_postfix() {
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF_DATA"
    chown postfix:postfix "$PF_DATA"
    cat >"$PF_CONF/main.cf" <<EOF
# Generated by bench/e2e.sh
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
$(postfix_tls)
alias_maps =
alias_database =
biff = no
EOF
    awk -v port="$POSTFIX_PORT" '
        /^[#[:space:]]/ || NF < 8 { print; next }
        $1 == "smtp" && $2 == "inet" { $1 = "127.0.0.1:" port }
        { $5 = "n"; print }
    ' /etc/postfix/master.cf >"$PF_CONF/master.cf"
    # TLS connection reuse goes through tlsproxy, commented out in Debian's.
    if [ "$TLS" = 1 ] && ! grep -q '^tlsproxy' "$PF_CONF/master.cf"; then
        echo 'tlsproxy  unix  -       -       n       -       0       tlsproxy' >>"$PF_CONF/master.cf"
    fi
    : >"$PF_LOG"
    postfix -c "$PF_CONF" check 2>&1 | grep -v 'not owned by root' >&2 || true
    $ON_MTA postfix -c "$PF_CONF" start >/dev/null 2>&1 || { tail -20 "$PF_LOG" >&2; die "postfix did not start"; }
    PF_RUNNING=1
    local i
    for i in $(seq 1 100); do
        [ -n "$(ss -Htln "sport = :$POSTFIX_PORT")" ] && return 0
        sleep 0.1
    done
    tail -20 "$PF_LOG" >&2
    die "postfix is not listening on 127.0.0.1:$POSTFIX_PORT"
}
pf_queue_count() { find "$PF_QUEUE"/{maildrop,incoming,active,deferred,hold} -type f 2>/dev/null | wc -l; }
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

# ------------------------------------------------------------------ runs ----

# Busy and idle jiffies of the whole machine. Time of nice'd processes (e.g.
# background compiles at nice 19) counts as idle: they yield to the benchmark.
cpu_busy_idle() { awk '/^cpu / { print $2 + $4 + $7 + $8 + $9, $3 + $5 + $6 }' /proc/stat; }
LOAD=-
settle() {
    sync
    local b0 i0 b1 i1
    read -r b0 i0 < <(cpu_busy_idle)
    sleep "$SETTLE"
    read -r b1 i1 < <(cpu_busy_idle)
    LOAD=$(awk -v db=$((b1 - b0)) -v di=$((i1 - i0)) -v n="$(nproc)" 'BEGIN { printf "%.2f", (db + di) ? n * db / (db + di) : 0 }')
    awk -v l="$LOAD" 'BEGIN { exit !(l > 0.25) }' && log "warning: other (non-nice) processes kept $LOAD cores busy just before this run"
    return 0
}

# timed_run PORT C COUNT PID_TO_WATCH: runs smtp-source, then waits until
# the sink has COUNT more messages than before. Sets ACCEPT_SECS
# (smtp-source's own duration) and E2E_SECS (start until the sink has all
# COUNT), or returns 1. The sink is only polled once smtp-source is done (it
# cannot have everything before then), so polling costs nothing during the
# bulk of the run.
ACCEPT_SECS=-
E2E_SECS=-
SINK_BEFORE=0
timed_run() {
    local port=$1 c=$2 count=$3 watch=$4 t0 target rc=0 deadline
    SINK_BEFORE=$(sink_count)
    target=$((SINK_BEFORE + count))
    ACCEPT_SECS=-
    E2E_SECS=-
    deadline=$(($(date +%s) + RUN_TIMEOUT))
    t0=$(now)
    if [ "$TLS" = 1 ]; then
        timeout "$RUN_TIMEOUT" $ON_LOAD "$BIN" traffic-gen --target "127.0.0.1:$port" -c "$c" -n "$count" --size "$SIZE" \
            --from "$FROM" --to "$TO" --starttls --json >"$BENCH_DIR/smtp-source.out" 2>&1 || rc=$?
        if [ "$rc" -eq 0 ] && ! grep -q "\"accepted\": *$count\b" "$BENCH_DIR/smtp-source.out"; then rc=99; fi
    else
        timeout "$RUN_TIMEOUT" $ON_LOAD smtp-source -s "$c" -m "$count" -l "$SIZE" -f "$FROM" -t "$TO" "127.0.0.1:$port" \
            >"$BENCH_DIR/smtp-source.out" 2>&1 || rc=$?
    fi
    [ "$rc" -eq 0 ] || { log "the load generator failed (status $rc):"; tail -5 "$BENCH_DIR/smtp-source.out" >&2; return 1; }
    ACCEPT_SECS=$(elapsed "$t0" "$(now)")
    while [ "$(sink_count)" -lt "$target" ]; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "run abandoned after ${RUN_TIMEOUT}s: the sink has $(( $(sink_count) - SINK_BEFORE )) of $count"
            return 1
        fi
        [ -z "$watch" ] || kill -0 "$watch" 2>/dev/null || { log "MTA process $watch died"; return 1; }
        sleep "$POLL"
    done
    E2E_SECS=$(elapsed "$t0" "$(now)")
}

RESULTS=$BENCH_DIR/results.tsv
printf 'mta\tvariant\tconn_limit\tc\trep\tmessages\taccept_s\te2e_s\te2e_msgs_per_s\tpeak_rss_kib\tcpu_s\tp50_ms\tp99_ms\tmax_ms\tcheck\tother_cores_busy_before\n' >"$RESULTS"
FAILURES=0
RUN_NO=0
fail() { log "FAILED: $*"; FAILURES=$((FAILURES + 1)); }

bench_ironpost() { # VARIANT CONN_LIMIT C REP COUNT
    local variant=$1 cl=$2 c=$3 rep=$4 count=$5 dir rss="-" cpu="-" check="-" lat p50="-" p99="-" pmax="-" nrec ndlv nuniq extra recovered nfail npass
    RUN_NO=$((RUN_NO + 1))
    dir=$BENCH_DIR/ironpost/run-$RUN_NO
    IP_ARGS=$(args_for "$variant")
    start_ironpost "$dir" "$(policy_for "$variant")" "$cl"
    settle
    if timed_run "$IRONPOST_PORT" "$c" "$count" "$IP_PID"; then
        rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$IP_PID/status")
        cpu=$(cpu_seconds "$IP_PID")
    else
        fail "ironpost $variant cl=$cl C=$c rep=$rep: run did not complete"
    fi
    sleep 1 # anything more (a duplicate) would reach the sink now
    extra=$(( $(sink_count) - SINK_BEFORE - count ))
    if kill -0 "$IP_PID" 2>/dev/null; then stop_ironpost; else IP_PID=""; fail "ironpost died"; fi
    read -r p50 p99 pmax nrec ndlv nuniq < <(latency "$dir/logs")
    nfail=$(( $(ip_records TransientFailure) + $(ip_records Bounce) + $(ip_records Expiration) ))
    # Restart on the same spool: nothing may be left in it.
    start_ironpost "$dir" "$(policy_for "$variant")" "$cl"
    recovered=$(sed -n 's/^spool: .* (recovered \([0-9]*\) messages)$/\1/p' "$IP_OUT")
    stop_ironpost
    check="received=$nrec,delivered=$ndlv,unique=$nuniq,failures=$nfail,sink_extra=$extra,recovered=$recovered"
    npass=$count
    if [ "$variant" = authn ]; then
        npass=$(authn_passes "$dir/logs")
        check+=",authn_pass=$npass"
    fi
    [ "$nrec" = "$count" ] && [ "$ndlv" = "$count" ] && [ "$nuniq" = "$count" ] && [ "$nfail" = 0 ] \
        && [ "$extra" = 0 ] && [ "$recovered" = 0 ] && [ "$npass" = "$count" ] || { fail "ironpost $variant cl=$cl C=$c rep=$rep: $check"; cp -a "$dir.stderr" "$BENCH_DIR/failed-run-$RUN_NO.stderr" 2>/dev/null || true; }
    rm -rf "$dir" "$dir".*
    [ "$rep" = warmup ] || printf 'ironpost\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$cl" "$c" "$rep" "$count" \
        "$ACCEPT_SECS" "$E2E_SECS" "$(rate "$count" "$E2E_SECS")" "$rss" "$cpu" "$p50" "$p99" "$pmax" "$check" "$LOAD" >>"$RESULTS"
    log "ironpost $variant cl=$cl C=$c rep=$rep: e2e ${E2E_SECS}s = $(rate "$count" "$E2E_SECS")/s (accepted in ${ACCEPT_SECS}s); peak RSS ${rss} KiB, CPU ${cpu}s; 250->delivery p50 ${p50} ms p99 ${p99} ms; $check"
}

# pf_cpu: CPU seconds of the private Postfix so far: its master (with
# the children it has reaped) and every live descendant (qmgr, smtpd,
# smtp, cleanup, ...).
pf_cpu() {
    local master p
    master=$(cat "$PF_QUEUE/pid/master.pid" 2>/dev/null | tr -d ' ')
    [ -n "$master" ] || { echo 0; return; }
    {
        awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$master/stat"
        for p in $(descendants "$master"); do awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null; done
    } | awk -v hz="$(getconf CLK_TCK)" '{ t += $1 } END { printf "%.2f\n", t / hz }'
}

bench_postfix() { # C REP COUNT
    local c=$1 rep=$2 count=$3 check="-" log_before sent extra left cpu0 cpu="-"
    pf_clear
    settle
    log_before=$(wc -l <"$PF_LOG")
    cpu0=$(pf_cpu)
    timed_run "$POSTFIX_PORT" "$c" "$count" "" || fail "postfix C=$c rep=$rep: run did not complete"
    cpu=$(awk -v a="$cpu0" -v b="$(pf_cpu)" 'BEGIN { printf "%.2f", b - a }')
    sleep 1
    extra=$(( $(sink_count) - SINK_BEFORE - count ))
    left=$(pf_queue_count)
    sent=$(tail -n +"$((log_before + 1))" "$PF_LOG" | grep -c ' status=sent ' || true)
    check="sent=$sent,queue_left=$left,sink_extra=$extra"
    [ "$sent" = "$count" ] && [ "$left" = 0 ] && [ "$extra" = 0 ] || fail "postfix C=$c rep=$rep: $check"
    pf_clear
    [ "$rep" = warmup ] || printf 'postfix\t-\t-\t%s\t%s\t%s\t%s\t%s\t%s\t-\t%s\t-\t-\t-\t%s\t%s\n' "$c" "$rep" "$count" \
        "$ACCEPT_SECS" "$E2E_SECS" "$(rate "$count" "$E2E_SECS")" "$cpu" "$check" "$LOAD" >>"$RESULTS"
    log "postfix C=$c rep=$rep: e2e ${E2E_SECS}s = $(rate "$count" "$E2E_SECS")/s (accepted in ${ACCEPT_SECS}s); CPU ${cpu}s; $check"
}

# DKIM keys for the signing variants, made by the tool operators use.
mkdir -p "$DKIM_DIR"
chmod 700 "$DKIM_DIR"
if [[ " $VARIANTS " == *" ed25519 "* || " $VARIANTS " == *" ed25519_inproc "* || " $VARIANTS " == *" both "* ]]; then
    "$BIN" dkim keygen --domain example.test --selector ed --algo ed25519 --out "$DKIM_DIR" >/dev/null
fi
if [[ " $VARIANTS " == *" both "* ]]; then
    "$BIN" dkim keygen --domain example.test --selector rsa --algo rsa --bits 2048 --out "$DKIM_DIR" >/dev/null
fi

start_sink
[ -z "$DNS_BIN" ] || start_dns
[ "$POSTFIX" = 1 ] && setup_postfix
log "ironpost ($BUILT_FROM) on 127.0.0.1:$IRONPOST_PORT; variants [$VARIANTS]; connection_limit [$CONN_LIMITS]"
[ "$POSTFIX" = 1 ] && log "postfix ($(postconf -d -h mail_version 2>/dev/null)) on 127.0.0.1:$POSTFIX_PORT relaying to the sink"
log "smtp-sink on 127.0.0.1:$SINK_PORT; N=$N R=$R C=[$CONCURRENCY] SIZE=$SIZE; work area $BENCH_DIR ($fstype)"
[ -z "$E2E_DNS" ] || log "loopback DNS for the inbound checks on $E2E_DNS (every variant's resolver)"

# Every Ironpost configuration is "variant/conn_limit".
CONFIGS=""
for v in $VARIANTS; do for cl in $CONN_LIMITS; do CONFIGS+="$v/$cl "; done; done

if [ "$WARMUP" -gt 0 ]; then
    first_c=${CONCURRENCY%% *}
    for cfg in $CONFIGS; do bench_ironpost "${cfg%/*}" "${cfg#*/}" "$first_c" warmup "$WARMUP"; done
    [ "$POSTFIX" = 1 ] && bench_postfix "$first_c" warmup "$WARMUP"
fi

for rep in $(seq 1 "$R"); do
    for c in $CONCURRENCY; do
        # Alternate who goes first so slow drift favours neither.
        if [ $((rep % 2)) -eq 0 ] && [ "$POSTFIX" = 1 ]; then bench_postfix "$c" "$rep" "$N"; fi
        for cfg in $CONFIGS; do bench_ironpost "${cfg%/*}" "${cfg#*/}" "$c" "$rep" "$N"; done
        if [ $((rep % 2)) -eq 1 ] && [ "$POSTFIX" = 1 ]; then bench_postfix "$c" "$rep" "$N"; fi
    done
done

# ----------------------------------------------------------------- table ----

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# col MTA VARIANT CONN_LIMIT C FIELD: that field over the runs.
col() { awk -F'\t' -v m="$1" -v v="$2" -v l="$3" -v c="$4" -v k="$5" '$1 == m && $2 == v && $3 == l && $4 == c && $k != "-" && $k != "nan" { print $k }' "$RESULTS"; }
runs() { col "$@" | awk '{ printf "%s%.0f", s, $1; s = "," }'; }
fmt0() { awk -v x="$1" 'BEGIN { if (x == "-" || x == "") print "-"; else printf "%.0f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }'; }

echo
if [ "$TLS" = 1 ]; then
    echo "End to end with TLS on both legs: ironpost traffic-gen --starttls -c C -n $N --size $SIZE -> MTA -> ironpost traffic-gen sink --require-starttls (loopback), median of R=$R runs."
    echo "e2e msg/s = N / (start of traffic-gen until the sink counted all N). accepted = traffic-gen's own time."
else
    echo "End to end: smtp-source -s C -m $N -l $SIZE -> MTA -> smtp-sink (loopback), median of R=$R runs."
    echo "e2e msg/s = N / (start of smtp-source until the sink counted all N). accepted = smtp-source's own time."
fi
echo "Ironpost: $BUILT_FROM, spool flush=true, logs on.$([ "$POSTFIX" = 1 ] && echo " Postfix $(postconf -d -h mail_version 2>/dev/null): relayhost = the sink, concurrency 50.")"
echo "Both fsync every message before 250. Postfix never signs. 250->dlv: Reception to Delivery record, median over runs of each run's percentile."
echo
fmt='%-9s %-8s %5s %4s %9s %-20s %7s %9s %10s %9s %9s %9s\n'
# CPU per message (µs): user+system of the MTA's processes over the run.
cpu_us() { col "$@" 11 | awk -v n="$N" '{ print $1 * 1000000 / n }' | median; }
# shellcheck disable=SC2059
printf "$fmt" MTA variant conns C "e2e msg/s" "runs" "IP/PF" "accept/s" "peak RSS" "p50 250>dlv" "p99 250>dlv" "CPU µs/msg"
for c in $CONCURRENCY; do
    pe=$(col postfix - - "$c" 9 | median)
    for cfg in $CONFIGS; do
        v=${cfg%/*} cl=${cfg#*/}
        ie=$(col ironpost "$v" "$cl" "$c" 9 | median)
        ia=$(col ironpost "$v" "$cl" "$c" 7 | awk -v n="$N" '{ print n / $1 }' | median)
        rss=$(col ironpost "$v" "$cl" "$c" 10 | sort -g | tail -1 | awk '{ printf "%.1f MiB", $1 / 1024 }')
        p50=$(col ironpost "$v" "$cl" "$c" 12 | median)
        p99=$(col ironpost "$v" "$cl" "$c" 13 | median)
        # shellcheck disable=SC2059
        printf "$fmt" ironpost "$v" "$cl" "$c" "$ie" "$(runs ironpost "$v" "$cl" "$c" 9)" "$(ratio "$ie" "$pe")" \
            "$(fmt0 "$ia")" "${rss:--}" "${p50} ms" "${p99} ms" "$(fmt0 "$(cpu_us ironpost "$v" "$cl" "$c")")"
    done
    if [ "$POSTFIX" = 1 ]; then
        pa=$(col postfix - - "$c" 7 | awk -v n="$N" '{ print n / $1 }' | median)
        # shellcheck disable=SC2059
        printf "$fmt" postfix - 50 "$c" "$pe" "$(runs postfix - - "$c" 9)" "" "$(fmt0 "$pa")" "" "" "" \
            "$(fmt0 "$(cpu_us postfix - - "$c")")"
    fi
done
# Every variant against plain, when plain ran: the cost of what it adds.
if [[ " $VARIANTS " == *" plain "* && "$(echo $VARIANTS)" != plain ]]; then
    echo
    echo "Against plain (same C and connection_limit; medians over the runs; CPU = the daemon's and its descendants' user+system per message):"
    cpums() { col ironpost "$1" "$2" "$3" 11 | awk -v n="$N" '{ print $1 * 1000 / n }' | median; }
    for c in $CONCURRENCY; do
        for cl in $CONN_LIMITS; do
            pe=$(col ironpost plain "$cl" "$c" 9 | median)
            pc=$(cpums plain "$cl" "$c")
            for v in $VARIANTS; do
                [ "$v" = plain ] && continue
                ve=$(col ironpost "$v" "$cl" "$c" 9 | median)
                vc=$(cpums "$v" "$cl" "$c")
                printf '  C=%s conns=%s: %-14s %8s msg/s vs plain %8s msg/s = %6s; CPU %s vs %s ms/msg (%s ms)\n' \
                    "$c" "$cl" "$v" "$ve" "$pe" "$(ratio "$ve" "$pe")" "$(awk -v x="$vc" 'BEGIN { printf "%.3f", x }')" \
                    "$(awk -v x="$pc" 'BEGIN { printf "%.3f", x }')" "$(awk -v a="$vc" -v b="$pc" 'BEGIN { printf "%+.3f", a - b }')"
            done
        done
    done
fi
if [ "$KEEP" = 1 ]; then echo "Per-run data: $RESULTS"; else echo; echo "Per-run data:"; cat "$RESULTS"; fi
if [ "$FAILURES" -gt 0 ]; then
    echo "WARNING: $FAILURES check(s) failed; see the log above."
    exit 1
fi
