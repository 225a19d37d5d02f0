#!/usr/bin/env bash
# S3 load benchmark: TPC-H lineitem (scale factor SF, default 1) as Parquet, loaded by a release
# build of Tarn from local disk and from SeaweedFS on 127.0.0.1 (s3://), RUNS times each
# (default 3). Prints each run and the ratio of the medians (S3 / local throughput).
#
#   ./bench/s3.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
sf="${SF:-1}"; runs="${RUNS:-3}"
data="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}/sf$sf"
venv="$("$root/scripts/venv.sh")"
[ -f "$data/parquet/lineitem.parquet" ] || "$venv/bin/tpchgen-cli" parquet -s "$sf" --tables=lineitem --output-dir="$data/parquet"
(cd "$root" && cargo build --release -p tarn-service)

work="$(mktemp -d)"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; "$root/scripts/seaweed.sh" stop "$work/s3"; rm -rf "$work"; }
trap cleanup EXIT
eval "$("$root/scripts/seaweed.sh" start "$work/s3")"
"$venv/bin/python" - "$data/parquet/lineitem.parquet" <<'PY'
import os, sys
from pyarrow import fs
s3 = fs.S3FileSystem(endpoint_override=os.environ["TARN_TEST_S3_ENDPOINT"], scheme="http",
                     access_key=os.environ["TARN_TEST_S3_ACCESS_KEY"], secret_key=os.environ["TARN_TEST_S3_SECRET_KEY"])
fs.copy_files(sys.argv[1], "lake/bench/lineitem.parquet", source_filesystem=fs.LocalFileSystem(), destination_filesystem=s3)
PY

cat > "$work/tarn.toml" <<TOML
allowed_locations = ["file://$data/", "s3://lake/bench/"]
home_region = "us-east-1"
[regions.us-east-1]
endpoint = "$TARN_TEST_S3_ENDPOINT"
allow_http = true
credentials = "env"
TOML
# The servers' admin token (bench/benchauth.py sends the same).
export TARN_ADMIN_TOKEN="${TARN_BENCH_TOKEN:-tarn-bench-admin-token}"
# Benchmark servers speak HTTP only (as bench/benchauth.py sets it).
export TARN_MYSQL_LISTEN="" TARN_FLIGHT_LISTEN=""
port="${TARN_BENCH_PORT:-18182}"
AWS_ACCESS_KEY_ID="$TARN_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$TARN_TEST_S3_SECRET_KEY" \
  "$CARGO_TARGET_DIR/release/tarn" serve --config "$work/tarn.toml" --listen "127.0.0.1:$port" --data-dir "$work/data" \
  >"$work/tarn.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
sql() { curl -sf -H 'accept: application/json' -H "authorization: Bearer $TARN_ADMIN_TOKEN" --data-binary "$1" "http://127.0.0.1:$port/v1/sql"; }
sql "CREATE DATABASE b" >/dev/null
sql "CREATE EXTERNAL TABLE b.local FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://$data/parquet/lineitem.parquet')" >/dev/null
sql "CREATE EXTERNAL TABLE b.s3 FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://lake/bench/lineitem.parquet')" >/dev/null
for i in $(seq "$runs"); do
  for t in local s3; do
    sql "ALTER TABLE b.$t SECONDARY_LOAD" > "$work/$t.$i.json"
    sql "ALTER TABLE b.$t SECONDARY_UNLOAD" >/dev/null
  done
done
python3 - "$work" "$runs" <<'PY'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
med = {}
for t in ["local", "s3"]:
    rates = []
    for i in range(1, runs + 1):
        r = json.load(open(f"{work}/{t}.{i}.json"))
        row = dict(zip([c["name"] for c in r["columns"]], r["rows"][0]))
        rate = row["bytes"] / 1e6 / row["seconds"]
        rates.append(rate)
        print(f"{t:<6} run {i}: {row['rows']} rows, {row['bytes']/1e6:.1f} MB Arrow in {row['seconds']:.2f} s = {rate:.1f} MB/s")
    med[t] = statistics.median(rates)
print(f"median: local {med['local']:.1f} MB/s, s3 {med['s3']:.1f} MB/s, ratio s3/local = {med['s3']/med['local']:.2f}")
PY
