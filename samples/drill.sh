#!/usr/bin/env bash
# A failover drill on a two-region deployment on this machine: two SeaweedFS servers as regions
# `east` and `west`, the samples' Parquet and Delta tables in east's bucket replicated to west's,
# one Tarn instance per region with the default [failover] settings, then
#   tarn drill failover --region east
# which stops east's store for real (SIGKILL), measures recovery from west's copy and data lag,
# restarts the store, checks failback, and prints the report.
#
#   ./samples/drill.sh            (dev build, like the quickstart; RELEASE=1 for --release)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
cd "$root"
profile=debug; flags=()
[ "${RELEASE:-0}" = 1 ] && { profile=release; flags=(--release); }
echo "building tarn..." >&2
cargo build --quiet "${flags[@]}" -p tarn-service
tarn="$CARGO_TARGET_DIR/$profile/tarn"
venv="$("$root/scripts/venv.sh")"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$root/scripts/seaweed.sh" stop "$work/east" || true
  "$root/scripts/seaweed.sh" stop "$work/west" || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/east" "$work/west"
eval "$("$root/scripts/seaweed.sh" start "$work/east")"
east="$TARN_TEST_S3_ENDPOINT"
export TARN_TEST_S3_SECRET_KEY
eval "$("$root/scripts/seaweed.sh" start "$work/west")"
west="$TARN_TEST_S3_ENDPOINT"
export AWS_ACCESS_KEY_ID="$TARN_TEST_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$TARN_TEST_S3_SECRET_KEY"

# The data lands in east (orders/) and is replicated to west (orders-dr/).
"$venv/bin/python" - "$east" "$west" "$root/samples/data" <<'PY'
import sys, os
import pyarrow.fs as fs
east, west, data = sys.argv[1:]
def s3(endpoint):
    return fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                           access_key=os.environ["AWS_ACCESS_KEY_ID"],
                           secret_key=os.environ["AWS_SECRET_ACCESS_KEY"])
local = fs.LocalFileSystem()
for src in ("parquet", "delta/orders"):
    fs.copy_files(f"{data}/{src}", f"lake/orders/{src}", source_filesystem=local, destination_filesystem=s3(east))
    fs.copy_files(f"lake/orders/{src}", f"lake/orders-dr/{src}", source_filesystem=s3(east), destination_filesystem=s3(west))
PY

start() { # name home port
  cat > "$work/$1.toml" <<TOML
listen = "127.0.0.1:$3"
mysql_listen = ""
flight_listen = ""
data_dir = "$work/$1-data"
instance_name = "tarn-$1"
allowed_locations = ["s3://lake/"]
home_region = "$2"
[regions.east]
endpoint = "$east"
allow_http = true
[regions.west]
endpoint = "$west"
allow_http = true
[[replicas]]
primary = { region = "east", location = "s3://lake/orders/" }
replica = { region = "west", location = "s3://lake/orders-dr/" }
[failover]
failback_after = "5s"
TOML
  "$tarn" serve --config "$work/$1.toml" >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$3/healthz" >/dev/null && return; sleep 0.1; done
  cat "$work/$1.log" >&2; exit 1
}
# Both instances run with one admin token, which `tarn sql` and `tarn drill` send.
export TARN_ADMIN_TOKEN="tarn-drill-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
export TARN_TOKEN="$TARN_ADMIN_TOKEN"
start one east 18181
start two west 18182
for port in 18181 18182; do
  "$tarn" sql --url "http://127.0.0.1:$port" \
    -e "CREATE DATABASE sales" \
    -e "CREATE EXTERNAL TABLE sales.orders FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://lake/orders/parquet/') REFRESH_INTERVAL = '10s'" \
    -e "CREATE EXTERNAL TABLE sales.delta_orders FILE_FORMAT = (FORMAT delta) FILES = (URI 's3://lake/orders/delta/orders/')" \
    -e "ALTER TABLE sales.orders SECONDARY_LOAD" \
    -e "ALTER TABLE sales.delta_orders SECONDARY_LOAD" >/dev/null
done
"$tarn" drill failover --instance http://127.0.0.1:18181 --instance http://127.0.0.1:18182 \
  --region east \
  --cut-command "'$root/scripts/seaweed.sh' kill '$work/east'" \
  --restore-command "'$root/scripts/seaweed.sh' restart '$work/east'" \
  --json "${DRILL_JSON:-$work/drill.json}"
