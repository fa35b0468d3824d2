#!/usr/bin/env bash
# Installs what building and testing corestream needs on a Debian machine, when missing:
# a Rust toolchain (cargo), Node.js and npm (for the real deepstream clients and servers from
# npm), python3 with venv (the Autobahn runner, kosoku from PyPI), redis-server (the cluster
# tests), nginx with its stream module (the tests behind nginx), MIT Kerberos and python3-gssapi
# (the Kerberos tests) and systemd-analyze (the unit in deploy/). Sourced by scripts/run.sh and
# scripts/test.sh; the npm packages, kosoku and cargo-fuzz are installed by the scripts that use
# them.
set -euo pipefail

need_apt=()
command -v cargo >/dev/null 2>&1 || need_apt+=(cargo rustc)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need_apt+=(libnginx-mod-stream)
# The Kerberos tests (scripts/kerberos-tests.sh): a KDC, kinit, the SPNEGO validator's
# python3-gssapi (for Debian's /usr/bin/python3), openssl for their TLS certificate.
command -v krb5kdc >/dev/null 2>&1 || [ -x /usr/sbin/krb5kdc ] || need_apt+=(krb5-kdc)
command -v kadmin.local >/dev/null 2>&1 || [ -x /usr/sbin/kadmin.local ] || need_apt+=(krb5-admin-server)
command -v kinit >/dev/null 2>&1 || need_apt+=(krb5-user)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import gssapi' 2>/dev/null || need_apt+=(python3-gssapi)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# systemd-analyze checks the unit in deploy/ (scripts/deploy-check.sh).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# Debian's python3 needs python3-venv for the Autobahn runner's virtualenv.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  need_apt+=(python3-venv)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing from apt: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# glommio and simd-json need a recent compiler (Rust 1.80 or later).
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "${rust_minor:-0}" -lt 80 ]; then
  echo "corestream needs Rust 1.80 or later; found $(rustc --version). Install it with rustup." >&2
  exit 2
fi
