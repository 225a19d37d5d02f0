#!/usr/bin/env bash
# Restart benchmark: the eight TPC-H tables at scale factor SF (default 1) loaded from CSV by a
# release build of Tarn, then the server is killed and started again: time to ready (/readyz)
# from snapshots beside the full load from the CSV files, and the snapshot's size beside the
# loaded size; the restarts run with the page cache warm, then (as root) with it dropped before
# each restart, so the snapshot is read from the disk. Writes bench/results/recovery-sf<SF>.{json,txt}.
#
#   ./bench/recovery.sh          # RUNS=3 restarts
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
sf="${SF:-1}"
runs="${RUNS:-3}"
data="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}/sf$sf/csv"
venv="$("$root/scripts/venv.sh")"
for t in region nation supplier customer part partsupp orders lineitem; do
  [ -f "$data/$t.csv" ] || "$venv/bin/tpchgen-cli" csv -s "$sf" --tables="$t" --output-dir="$data"
done

(cd "$root" && cargo build --release -p tarn-service)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="$root/bench/results/recovery-sf$sf"
{
  RESULTS="$out.json" PYTHONPATH="$root/bench" "$venv/bin/python" "$root/bench/recovery_driver.py" \
    "$CARGO_TARGET_DIR/release/tarn" "$data" "$work" "$runs" "${TARN_BENCH_PORT:-18183}"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
} | tee "$out.txt"
