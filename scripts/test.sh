#!/usr/bin/env bash
# Runs every test on a fresh machine: sets up the cached Python venv with the independent
# readers (pyarrow, fastavro, deltalake, duckdb), then builds and runs the whole suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
venv="$("$root/scripts/venv.sh")"
export TARN_PYTHON="$venv/bin/python"
cargo test --workspace --all-targets
