#!/usr/bin/env bash
# Runs every test on a fresh machine: sets up the cached Python venv (independent readers and
# writers, SeaweedFS, MySQL and Flight SQL drivers) and the mysql client, starts SeaweedFS on
# 127.0.0.1 as the S3 server, runs the whole suite, stops the server, and checks terraform/
# offline (scripts/terraform-check.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
venv="$("$root/scripts/venv.sh")"
export TARN_PYTHON="$venv/bin/python"
# The `mysql` command-line client, for the MySQL protocol tests (Debian's package).
if ! command -v mysql >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing the mysql client (default-mysql-client)..." >&2
  $sudo apt-get install -y -q default-mysql-client >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q default-mysql-client >/dev/null; } \
    || echo "could not install the mysql client: the test that drives it will fail, naming it" >&2
fi
# Debian's Chromium, for the status page's browser tests (driven by Playwright from the venv).
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing chromium..." >&2
  $sudo apt-get install -y -q chromium >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; } \
    || echo "could not install chromium: the status page test will fail, naming it" >&2
fi
# Build first, so the server's start-up is not counted against a build.
cargo test --workspace --all-targets --no-run
s3dir="$(mktemp -d)"
trap '"$root/scripts/seaweed.sh" stop "$s3dir"; rm -rf "$s3dir"' EXIT
eval "$("$root/scripts/seaweed.sh" start "$s3dir")"
cargo test --workspace --all-targets
# The deployment: terraform fmt, structure, checkov, templates rendered and checked (offline).
"$root/scripts/terraform-check.sh"
