#!/usr/bin/env bash
# Streaming benchmark: TPC-H lineitem (scale factor SF, default 1: 6 M rows) loaded from Parquet
# by a release build, then `SELECT * FROM lineitem` fetched as an Arrow IPC stream RUNS times
# (default 3): time to the first byte, time to the last, bytes received, and the server's resident
# memory at its highest during the fetch above what it held before it.
#
#   ./bench/stream.sh                 # builds and measures this tree
#   TARN_BIN=/path/to/tarn ./bench/stream.sh   # measures another build (a before/after run)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
sf="${SF:-1}"
runs="${RUNS:-3}"
data="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}/sf$sf/parquet"
venv="$("$root/scripts/venv.sh")"
[ -f "$data/lineitem.parquet" ] || "$venv/bin/tpchgen-cli" parquet -s "$sf" --tables=lineitem --output-dir="$data"
if [ -z "${TARN_BIN:-}" ]; then
  (cd "$root" && cargo build --release -p tarn-service)
  TARN_BIN="$CARGO_TARGET_DIR/release/tarn"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
PYTHONPATH="$root/bench" "$venv/bin/python" "$root/bench/stream_driver.py" \
  "$TARN_BIN" "$data" "$work" "$runs" "${TARN_BENCH_PORT:-18185}"
