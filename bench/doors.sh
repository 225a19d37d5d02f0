#!/usr/bin/env bash
# SELECT * of TPC-H lineitem (6 M rows at SF1) through each of Tarn's doors, one after another, from
# one release server: HTTP as an Arrow IPC stream, Arrow Flight SQL with ADBC, and the MySQL protocol with the `mysql` client
# (batch mode, to /dev/null) and with PyMySQL's unbuffered cursor. Prints wall time, rows/s, the
# server's CPU seconds (its own rate where the client is the limit) and its peak resident memory
# above what it held before. Writes bench/results/doors-sf<SF>.{json,md}.
#
#   ./bench/doors.sh            # TARN_BIN=path measures another build
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
sf="${SF:-1}"
data="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}/sf$sf"
venv="$("$root/scripts/venv.sh")"
[ -f "$data/parquet/lineitem.parquet" ] || "$venv/bin/tpchgen-cli" parquet -s "$sf" --tables=lineitem --output-dir="$data/parquet"
command -v mysql >/dev/null || { echo "the mysql client is needed: apt-get install default-mysql-client" >&2; exit 1; }
if [ -z "${TARN_BIN:-}" ]; then
  (cd "$root" && cargo build --release -p tarn-service)
fi
"$venv/bin/python" "$root/bench/doors_driver.py" "${TARN_BIN:-$CARGO_TARGET_DIR/release/tarn}" "$data" \
  "$root/bench/results" "${TARN_BENCH_PORT:-18186}" "${TARN_BENCH_MYSQL_PORT:-13307}" "${TARN_BENCH_FLIGHT_PORT:-50052}"
