#!/usr/bin/env bash
# TPC-H on one Tarn process against a coordinator with three workers, on this machine, in one run:
# load time, each process's memory, the loaded data per worker, the 22 queries (median of RUNS
# warm runs, answers compared) and the bytes that cross between the processes for each query.
# Writes bench/results/cluster-sf<SF>.{json,md}.
#
#   ./bench/cluster.sh            # SF=10 for scale factor 10
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
sf="${SF:-1}"
runs="${RUNS:-5}"
data="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}/sf$sf"
venv="$("$root/scripts/venv.sh")"
for t in nation region; do
  [ -f "$data/parquet/$t.parquet" ] || "$venv/bin/tpchgen-cli" parquet -s "$sf" --tables="$t" --output-dir="$data/parquet"
done
# Twelve files per large table, so that a cluster has files to spread.
for t in supplier customer part partsupp orders lineitem; do
  [ -d "$data/parts/$t" ] || "$venv/bin/tpchgen-cli" parquet -s "$sf" --tables="$t" --parts=12 --output-dir="$data/parts"
done
(cd "$root" && cargo build --release -p tarn-service)
cd "$root/bench"
"$venv/bin/python" "$root/bench/cluster_driver.py" "$CARGO_TARGET_DIR/release/tarn" "$data" "$root/bench/results" \
  "$runs" "${TARN_BENCH_PORT:-18284}"
