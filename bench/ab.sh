#!/usr/bin/env bash
# Two Tarn builds side by side: first each loads the eight TPC-H tables (scale factor SF, default
# 1) from Parquet with the benchmark's placement keys in a fresh server, in turn, LOAD_RUNS times
# (default 5; median time until they answer and until placed); then both servers load them, each of the 22 queries runs on one
# and then the other, the order swapping every round (RUNS rounds, default 7), with kept plans and
# then with every run planned anew. Prints each query's median per build and the geometric mean
# of B/A. Answers must agree. Machine drift during the run hits both builds alike.
#
#   TARN_A=/path/to/old/tarn TARN_B=/path/to/new/tarn ./bench/ab.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${TARN_A:?set TARN_A and TARN_B to the two tarn binaries}" "${TARN_B:?set TARN_B}"
sf="${SF:-1}"
data="${TARN_BENCH_DATA:-$HOME/.cache/tarn-bench}/sf$sf"
venv="$("$root/scripts/venv.sh")"
for t in region nation supplier customer part partsupp orders lineitem; do
  [ -f "$data/parquet/$t.parquet" ] || "$venv/bin/tpchgen-cli" parquet -s "$sf" --tables="$t" --output-dir="$data/parquet"
done
"$venv/bin/python" "$root/bench/ab.py" "$TARN_A" "$TARN_B" "$data" "${RUNS:-7}" "${TARN_BENCH_PORT:-18401}"
