#!/usr/bin/env bash
# TPC-H, Tarn beside DuckDB 1.5.5, on this machine, in one run:
#   - load: the eight tables from Parquet, Tarn's SECONDARY_LOAD against DuckDB's CREATE TABLE AS
#     SELECT (from local disk, and from SeaweedFS through S3); wall time and memory of each;
#   - the 22 queries on the loaded tables, warm, median of RUNS runs (default 5), answers compared
#     (a difference fails the run); with placement keys on lineitem and orders, and again on the
#     tables as a new user first declares them (no key, columns inferred, snapshots on);
#   - the same queries over the Parquet files as they are (DuckDB's read_parquet, Tarn's engine
#     through `tarn bench parquet`).
# Writes bench/results/tpch-sf<SF>.{json,md,png}.
#
#   ./bench/tpch.sh            # SF=10 for scale factor 10; S3=0 to skip the SeaweedFS load
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
sf="${SF:-1}"
runs="${RUNS:-5}"
data="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}/sf$sf"
venv="$("$root/scripts/venv.sh")"
tables=region,nation,supplier,customer,part,partsupp,orders,lineitem
for t in ${tables//,/ }; do
  [ -f "$data/parquet/$t.parquet" ] || "$venv/bin/tpchgen-cli" parquet -s "$sf" --tables="$t" --output-dir="$data/parquet"
  [ -f "$data/csv/$t.csv" ] || "$venv/bin/tpchgen-cli" csv -s "$sf" --tables="$t" --output-dir="$data/csv"
done
(cd "$root" && cargo build --release -p tarn-service)

s3=()
if [ "${S3:-1}" = 1 ]; then
  s3dir="$(mktemp -d)"
  trap '"$root/scripts/seaweed.sh" stop "$s3dir"; rm -rf "$s3dir"' EXIT
  eval "$("$root/scripts/seaweed.sh" start "$s3dir")"
  export AWS_ACCESS_KEY_ID="$TARN_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$TARN_TEST_S3_SECRET_KEY"
  "$venv/bin/python" - "$TARN_TEST_S3_ENDPOINT" "$data/parquet" "lake/tpch-sf$sf" <<'PY'
import os, sys
import pyarrow.fs as fs
endpoint, src, dst = sys.argv[1:]
s3 = fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                     access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"])
fs.copy_files(src, dst, source_filesystem=fs.LocalFileSystem(), destination_filesystem=s3)
PY
  s3=("$TARN_TEST_S3_ENDPOINT")
fi
"$venv/bin/python" "$root/bench/tpch.py" "$CARGO_TARGET_DIR/release/tarn" "$data" "$root/bench/results" \
  "$runs" "${TARN_BENCH_PORT:-18184}" "${s3[@]}"
