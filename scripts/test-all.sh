#!/usr/bin/env bash
# Runs every Ironpost test on a fresh machine: installs what the tests need
# (idempotently), checks formatting and lints, runs the Rust test suites
# (which start the real daemon on loopback) and the Python client tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-off build gains nothing from incremental state; it only costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "==> disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free"

need_apt=()
command -v swaks >/dev/null || need_apt+=(swaks)
# swaks needs these for --tls; they are only Recommends of its package.
perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || need_apt+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v smtp-sink >/dev/null || need_apt+=(postfix)
command -v openssl >/dev/null || need_apt+=(openssl)
# The cluster tests share throttles through a real Redis.
command -v redis-server >/dev/null || need_apt+=(redis-server)
/usr/bin/python3 -c 'import dkim, nacl' 2>/dev/null || need_apt+=(python3-dkim python3-nacl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Independent judges for the posture and TLS report tests, in a venv of
# their own: checkdmarc (SPF, DMARC), dkimpy (DKIM key records), jsonschema
# (RFC 8460 reports). The tests fail, never skip, without them.
if ! .venv-tests/bin/python -c 'import checkdmarc, dkim, nacl, jsonschema, authres' 2>/dev/null; then
  echo "==> Python judges (checkdmarc, dkimpy, jsonschema, authres) in .venv-tests"
  python3 -m venv .venv-tests
  .venv-tests/bin/pip install -q checkdmarc dkimpy pynacl jsonschema authres
fi
export IRONPOST_PYTHON="$PWD/.venv-tests/bin/python"

echo "==> Vault-compatible test server (rusty_vault)"
export IRONPOST_RVAULT="$(bash scripts/install-rvault.sh)"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings

echo "==> python client tests (smtplib, swaks)"
cargo build -q -p ironpost
IRONPOST_BIN="$PWD/target/debug/ironpost" python3 tests/python/test_smtplib.py

echo "==> cargo test"
cargo test --workspace
echo "==> tests done; target directory: $(du -sh target | cut -f1)"

# The Debian package, built from the test build's binary: lintian, install,
# the service account and modes, ironpost check, a message over STARTTLS to
# the installed binary, the unit's exposure score, purge.
if [ "$(id -u)" -eq 0 ] && command -v dpkg >/dev/null; then
  echo "==> Debian package"
  PACKAGE_BINARY="$PWD/target/debug/ironpost" bash scripts/test-package.sh
else
  echo "==> Debian package: skipped (needs root on Debian)"
fi

# Every fuzz target runs for a while (stable Rust with RUSTC_BOOTSTRAP; see
# scripts/fuzz.sh); a crash, timeout or out-of-memory fails the run.
# IRONPOST_FREE_DISK=1 (set by .ci/run) drops the test build first, since
# the fuzz build under AddressSanitizer needs room of its own.
if [ "${IRONPOST_FREE_DISK:-0}" = 1 ]; then
  cargo clean -q
fi
echo "==> fuzzing, ${FUZZ_SECONDS:-20} s per target"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" bash scripts/fuzz.sh
echo "==> done"
