#!/usr/bin/env bash
# The Debian package, end to end: build it (cargo-deb), check it with
# lintian, install it (dpkg -i), check the service account, the directory
# owners and modes and `ironpost check` on the installed policy, start the
# installed binary as the unit starts it (as ironpost, with only
# CAP_NET_BIND_SERVICE; in the foreground, as CI has no systemd as PID 1),
# send it a message over STARTTLS and find it spooled, score the unit with
# `systemd-analyze security --offline`, then purge and check what is left.
#
# Needs root and a Debian system. PACKAGE_BINARY=path packages that binary
# (the test command passes its debug build, to save a release build);
# without it, `cargo deb` builds a release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test-package: run as root" >&2; exit 1; }
say() { echo "==> package: $*"; }
fail() { echo "test-package: FAILED: $*" >&2; exit 1; }

need=()
command -v lintian >/dev/null || need+=(lintian)
command -v swaks >/dev/null || need+=(swaks)
command -v setpriv >/dev/null || need+=(util-linux)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb"
    cargo install cargo-deb --locked -q
fi

rm -rf target/debian
if [ -n "${PACKAGE_BINARY:-}" ]; then
    mkdir -p target/release
    cp "$PACKAGE_BINARY" target/release/ironpost
    strip --strip-unneeded target/release/ironpost
    cargo deb -p ironpost --no-build --no-separate-debug-symbols -q
else
    cargo deb -p ironpost -q
fi
deb=$(ls target/debian/ironpost_*.deb)
say "built $deb"

say "lintian"
lintian --fail-on error --suppress-tags-from-file /dev/null "$deb" || fail "lintian reports errors"

# A previous run's leftovers must not make this one pass.
dpkg --purge ironpost >/dev/null 2>&1 || true
rm -rf /var/spool/ironpost
dpkg -i "$deb" >/dev/null
say "installed"

getent passwd ironpost | grep -q ':/usr/sbin/nologin$' || fail "no ironpost system user with no login shell"
expect_mode() { # PATH OWNER:GROUP MODE
    local got; got=$(stat -c '%U:%G %a' "$1")
    [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
}
expect_mode /var/spool/ironpost ironpost:ironpost 2770
expect_mode /var/log/ironpost ironpost:ironpost 2770
expect_mode /etc/ironpost/dkim root:ironpost 2750
expect_mode /etc/ironpost/policy.lua root:root 644
expect_mode /usr/sbin/ironpost root:root 755
test -f /usr/share/man/man8/ironpost.8.gz || fail "no man page"
test -f /usr/share/bash-completion/completions/ironpost || fail "no bash completion"
test -f /lib/systemd/system/ironpost.service || fail "no unit"

as_daemon() { setpriv --reuid ironpost --regid ironpost --init-groups \
    --inh-caps +net_bind_service --ambient-caps +net_bind_service "$@"; }

say "ironpost check, as the unit's ExecStartPre runs it"
as_daemon /usr/sbin/ironpost check --policy /etc/ironpost/policy.lua

say "the unit's exposure"
score=$(systemd-analyze security --offline=yes /lib/systemd/system/ironpost.service 2>/dev/null \
    | sed -n 's/.*Overall exposure level for ironpost.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security --offline=yes: exposure $score"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }' || fail "exposure $score is above 2.0"

say "serve as ExecStart does, and receive a message over STARTTLS"
out=$(mktemp)
# setpriv itself (not a function: $! must be the daemon) execs the daemon.
setpriv --reuid ironpost --regid ironpost --init-groups \
    --inh-caps +net_bind_service --ambient-caps +net_bind_service \
    /usr/sbin/ironpost serve --policy /etc/ironpost/policy.lua >"$out" 2>"$out.err" &
pid=$!
for _ in $(seq 1 100); do grep -q '^ready' "$out" && break; sleep 0.1; done
grep -q '^ready' "$out" || { cat "$out.err"; fail "the installed daemon did not start"; }
swaks --server 127.0.0.1:25 --tls --from root@localhost --to someone@example.invalid \
    --header 'Subject: package test' --body 'hello' >"$out.swaks" 2>&1 || { cat "$out.swaks"; fail "swaks"; }
grep -q '250 2.0.0 OK' "$out.swaks" || { cat "$out.swaks"; fail "no 250 for the message"; }
owners=$(find /var/spool/ironpost -type f -size +0 -printf '%u\n' | sort -u)
[ "$owners" = ironpost ] || fail "spool files owned by '$owners', not ironpost"
kill -TERM "$pid"
wait "$pid" || true
! kill -0 "$pid" 2>/dev/null || fail "the daemon did not stop on SIGTERM"
rm -f "$out" "$out.err" "$out.swaks"

say "purge"
dpkg --purge ironpost 2>"$out.purge" >/dev/null || { cat "$out.purge"; fail "purge"; }
grep -q "kept /var/spool/ironpost" "$out.purge" || fail "purge did not say it kept the spool"
rm -f "$out.purge"
[ ! -e /etc/ironpost ] || fail "/etc/ironpost left behind"
[ ! -e /var/log/ironpost ] || fail "/var/log/ironpost left behind"
[ -d /var/spool/ironpost ] || fail "the spool with a queued message was removed"
! getent passwd ironpost >/dev/null || fail "the ironpost user is left"
rm -rf /var/spool/ironpost
say "passed"
