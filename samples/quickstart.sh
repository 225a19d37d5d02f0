#!/usr/bin/env bash
# Tarn quickstart: builds Tarn, starts it on 127.0.0.1 with its data in a temporary directory,
# defines tables over samples/data in all five formats, loads and queries them, and stops it.
#
#   ./samples/quickstart.sh
#
# Built with the dev profile (fast to compile; the samples are small). Benchmarks use --release.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
cd "$root"
echo "building tarn (first build takes a while)..." >&2
cargo build --quiet -p tarn-service
tarn="$CARGO_TARGET_DIR/debug/tarn"

data="$(mktemp -d)"
port="${TARN_QUICKSTART_PORT:-18080}"
mysql_port="${TARN_QUICKSTART_MYSQL_PORT:-13306}"
flight_port="${TARN_QUICKSTART_FLIGHT_PORT:-15051}"
log="$data/tarn.log"
"$tarn" serve --listen "127.0.0.1:$port" --mysql-listen "127.0.0.1:$mysql_port" \
  --flight-listen "127.0.0.1:$flight_port" --data-dir "$data/tarn-data" \
  --instance-name quickstart --allowed-locations "file://$root/samples/" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
sed "s#@SAMPLES@#$root/samples/data#g" samples/quickstart.sql > "$data/quickstart.sql"
# `tarn sql` finds the admin token the server generated in its data directory.
TARN_DATA_DIR="$data/tarn-data" "$tarn" sql --url "http://127.0.0.1:$port" -f "$data/quickstart.sql"
