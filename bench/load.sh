#!/usr/bin/env bash
# Load benchmark: TPC-H lineitem at scale factor SF (default 1) from tpchgen-cli, loaded by a
# release build of Tarn from Parquet and from CSV. Reports load throughput (MB/s of Arrow data in
# memory, rows/s), memory per row, and the server's resident memory.
#
#   ./bench/load.sh            # SF 1
#   SF=10 ./bench/load.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
sf="${SF:-1}"
data="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}/sf$sf"
venv="$("$root/scripts/venv.sh")"

if [ ! -f "$data/parquet/lineitem.parquet" ]; then
  "$venv/bin/tpchgen-cli" parquet -s "$sf" --tables=lineitem --output-dir="$data/parquet"
fi
if [ ! -f "$data/csv/lineitem.csv" ]; then
  "$venv/bin/tpchgen-cli" csv -s "$sf" --tables=lineitem --output-dir="$data/csv"
fi

(cd "$root" && cargo build --release -p tarn-service)
# The servers' admin token (bench/benchauth.py sends the same).
export TARN_ADMIN_TOKEN="${TARN_BENCH_TOKEN:-tarn-bench-admin-token}"
# Benchmark servers speak HTTP only (as bench/benchauth.py sets it).
export TARN_MYSQL_LISTEN="" TARN_FLIGHT_LISTEN=""
tarn="$CARGO_TARGET_DIR/release/tarn"
work="$(mktemp -d)"
port="${TARN_BENCH_PORT:-18181}"
"$tarn" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --allowed-locations "file://$data/" \
  >"$work/tarn.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

sql() { curl -sf -H 'accept: application/json' -H "authorization: Bearer $TARN_ADMIN_TOKEN" --data-binary "$1" "http://127.0.0.1:$port/v1/sql"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$pid/status"; }

sql "CREATE DATABASE tpch" >/dev/null
sql "CREATE EXTERNAL TABLE tpch.lineitem_parquet FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://$data/parquet/lineitem.parquet')" >/dev/null
sql "CREATE EXTERNAL TABLE tpch.lineitem_csv (
  l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber INT, l_quantity DECIMAL(15,2),
  l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), l_tax DECIMAL(15,2), l_returnflag CHAR(1),
  l_linestatus CHAR(1), l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, l_shipinstruct VARCHAR(25),
  l_shipmode VARCHAR(10), l_comment VARCHAR(44))
  FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"')
  FILES = (URI 'file://$data/csv/lineitem.csv')" >/dev/null

printf '%-8s %10s %12s %10s %10s %12s %10s %12s %12s\n' format rows arrow_MB file_MB seconds arrow_MB/s rows/s bytes/row rss_MB
for fmt in parquet csv; do
  file_bytes=$(stat -c %s "$data/$fmt/lineitem.$fmt")
  out=$(sql "ALTER TABLE tpch.lineitem_$fmt SECONDARY_LOAD")
  python3 - "$out" "$fmt" "$file_bytes" "$(rss_kib)" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); fmt = sys.argv[2]; file_bytes = int(sys.argv[3]); rss = int(sys.argv[4])
cols = [c["name"] for c in r["columns"]]; row = dict(zip(cols, r["rows"][0]))
rows, b, s = row["rows"], row["bytes"], row["seconds"]
print(f'{fmt:<8} {rows:>10} {b/1e6:>12.1f} {file_bytes/1e6:>10.1f} {s:>10.2f} {b/1e6/s:>12.1f} {rows/s:>10.0f} {b/rows:>12.1f} {rss/1024:>12.1f}')
PY
  sql "ALTER TABLE tpch.lineitem_$fmt SECONDARY_UNLOAD" >/dev/null
done
echo "peak RSS: $(( $(hwm_kib) / 1024 )) MB; machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
