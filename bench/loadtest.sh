#!/usr/bin/env bash
# Load test, Tarn beside DuckDB 1.5.5 on TPC-H: CLIENTS concurrent clients (default 16, one
# connection each) for SECONDS seconds (default 60) of mixed queries, while a table gets a new
# file and a refresh every second; zero errors allowed. Tarn runs as a new user runs it (plain
# DDL, snapshots on, a token on every request). Tarn has no mode without tokens, so the cost of
# the token check is measured on its own: the median time of a request that needs no token beside
# one as small that does. Writes bench/results/loadtest-sf<SF>.{json,md}.
#
#   ./bench/loadtest.sh                                  # this tree's release build
#   TARN_BIN=/path/to/tarn ./bench/loadtest.sh           # that build instead (no cargo build)
#   TARN_COMPARE=/path/to/other/tarn ./bench/loadtest.sh # and another build beside it
#   MIX=tpch ./bench/loadtest.sh                         # only the 22 TPC-H queries, no refreshes
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
sf="${SF:-1}"
data="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}/sf$sf"
venv="$("$root/scripts/venv.sh")"
for t in region nation supplier customer part partsupp orders lineitem; do
  [ -f "$data/parquet/$t.parquet" ] || "$venv/bin/tpchgen-cli" parquet -s "$sf" --tables="$t" --output-dir="$data/parquet"
done
if [ -z "${TARN_BIN:-}" ]; then
  (cd "$root" && cargo build --release -p tarn-service)
fi
binaries=("this=${TARN_BIN:-$CARGO_TARGET_DIR/release/tarn}")
if [ -n "${TARN_COMPARE:-}" ]; then
  binaries+=("${TARN_COMPARE_NAME:-other}=$TARN_COMPARE")
fi
"$venv/bin/python" "$root/bench/loadtest_driver.py" "$data" "$root/bench/results" \
  "${CLIENTS:-16}" "${SECONDS_:-60}" "${TARN_BENCH_PORT:-18185}" "${binaries[@]}"
