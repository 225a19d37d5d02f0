#!/usr/bin/env bash
# Refresh benchmark: TPC-H lineitem SF1 split into 1,000 Parquet files (about 1.3 GB in memory),
# loaded by a release build of Tarn. Measures a full load and reload beside a refresh after one
# new file lands (time and bytes read), and the time from a file landing to its rows being
# visible with REFRESH_INTERVAL = '1s' and with MAX_STALENESS = '1s' on read.
#
#   ./bench/refresh.sh            # FILES=1000 RUNS=5; writes bench/results/refresh-<FILES>-files.txt
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
files="${FILES:-1000}"
runs="${RUNS:-5}"
bench="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}"
data="$bench/refresh-$files"
venv="$("$root/scripts/venv.sh")"

if [ ! -f "$bench/sf1/parquet/lineitem.parquet" ]; then
  "$venv/bin/tpchgen-cli" parquet -s 1 --tables=lineitem --output-dir="$bench/sf1/parquet"
fi
if [ ! -f "$data/.done" ]; then
  rm -rf "$data"
  "$venv/bin/python" - "$bench/sf1/parquet/lineitem.parquet" "$data" "$files" <<'PY'
import os, sys
import pyarrow.parquet as pq
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = pq.read_table(src)
os.makedirs(f"{out}/table"); os.makedirs(f"{out}/incoming")
step = -(-t.num_rows // n)
for i in range(n):
    pq.write_table(t.slice(i * step, step), f"{out}/table/part-{i:04d}.parquet")
# Files to land during the benchmark: slices of the same data under new names.
for i in range(64):
    pq.write_table(t.slice(i * step, step), f"{out}/incoming/new-{i:04d}.parquet")
open(f"{out}/.done", "w").close()
PY
fi

(cd "$root" && cargo build --release -p tarn-service)
# The servers' admin token (bench/benchauth.py sends the same).
export TARN_ADMIN_TOKEN="${TARN_BENCH_TOKEN:-tarn-bench-admin-token}"
# Benchmark servers speak HTTP only (as bench/benchauth.py sets it).
export TARN_MYSQL_LISTEN="" TARN_FLIGHT_LISTEN=""
tarn="$CARGO_TARGET_DIR/release/tarn"
work="$(mktemp -d)"
port="${TARN_BENCH_PORT:-18182}"
# Each run starts from the 1,000 files: take out what earlier runs landed.
rm -f "$data"/table/new-*.parquet
"$tarn" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --allowed-locations "file://$data/" \
  >"$work/tarn.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"; rm -f "$data"/table/new-*.parquet' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

{
  "$venv/bin/python" "$root/bench/refresh_driver.py" "http://127.0.0.1:$port" "$data" "$runs"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
} | tee "$root/bench/results/refresh-$files-files.txt"
