#!/usr/bin/env bash
# Installs rusty_vault's `rvault` binary (a Vault-compatible server) for the
# keysource tests, once: later runs find it and do nothing. Prints the path
# of the binary on stdout and nothing else on success.
#
#   IRONPOST_TOOLS  cache directory (default ~/.cache/ironpost-tools); the
#                   binary goes to $IRONPOST_TOOLS/rvault/bin/rvault, which
#                   is where crates/testkit/src/vault.rs looks for it.
set -euo pipefail

RVAULT_VERSION=0.2.1
tools="${IRONPOST_TOOLS:-$HOME/.cache/ironpost-tools}"
root="$tools/rvault"
bin="$root/bin/rvault"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

# rusty_vault links OpenSSL through openssl-sys: it needs pkg-config and the
# OpenSSL headers.
need_apt=()
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q >/dev/null
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi

mkdir -p "$root"
log="$root/install.log"
echo "install-rvault: building rusty_vault $RVAULT_VERSION into $root (several minutes; log: $log)" >&2
# --locked uses the crate's own Cargo.lock. Should that set no longer build
# with this toolchain, retry with freshly resolved dependencies.
# The server only has to answer a test suite: a lightly optimised build
# without LTO or debug info takes a fraction of the release profile's time
# on a fresh CI machine.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_INCREMENTAL=false
if ! cargo install rusty_vault --version "=$RVAULT_VERSION" --locked --root "$root" >"$log" 2>&1; then
  echo "install-rvault: --locked build failed; retrying with fresh dependency resolution" >&2
  if ! cargo install rusty_vault --version "=$RVAULT_VERSION" --root "$root" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "install-rvault: cargo install rusty_vault failed (full log: $log)" >&2
    exit 1
  fi
fi

if [ ! -x "$bin" ]; then
  echo "install-rvault: cargo install succeeded but $bin is missing" >&2
  exit 1
fi
echo "$bin"
