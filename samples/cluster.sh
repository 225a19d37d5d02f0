#!/usr/bin/env bash
# A Tarn cluster on this machine: a coordinator and three workers on 127.0.0.1, their data in a
# temporary directory. Declares the sample orders (CSV, Parquet, JSON, Avro), loads them over the
# workers, queries them through the coordinator, shows where the parts went, and stops them all.
#
#   ./samples/cluster.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn-target}"
cd "$root"
echo "building tarn (first build takes a while)..." >&2
cargo build --quiet -p tarn-service
tarn="$CARGO_TARGET_DIR/debug/tarn"

data="$(mktemp -d)"
port="${TARN_CLUSTER_PORT:-18090}"
token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
allowed="file://$root/samples/"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
wait_up() {
  for _ in $(seq 100); do
    curl -s "http://127.0.0.1:$1/healthz" >/dev/null && return 0
    sleep 0.1
  done
  cat "$data"/*.log >&2
  exit 1
}
workers=()
for i in 1 2 3; do
  "$tarn" worker --listen "127.0.0.1:$((port + i))" --data-dir "$data/worker$i" \
    --cluster-token "$token" --allowed-locations "$allowed" >"$data/worker$i.log" 2>&1 &
  pids+=($!)
  workers+=("http://127.0.0.1:$((port + i))")
done
for i in 1 2 3; do wait_up $((port + i)); done
"$tarn" serve --listen "127.0.0.1:$port" --data-dir "$data/coordinator" --mysql-listen "" \
  --flight-listen "" --instance-name cluster --allowed-locations "$allowed" \
  --workers "$(IFS=,; echo "${workers[*]}")" --cluster-token "$token" >"$data/coordinator.log" 2>&1 &
pids+=($!)
wait_up "$port"

s="$root/samples/data"
TARN_DATA_DIR="$data/coordinator" "$tarn" sql --url "http://127.0.0.1:$port" -f - <<SQL
CREATE DATABASE cluster;
CREATE EXTERNAL TABLE cluster.orders_csv (
    order_id INT NOT NULL, customer VARCHAR(32), product LONGTEXT, quantity INT,
    amount DECIMAL(10,2), weight DOUBLE, express BOOLEAN, order_date DATE, shipped_at DATETIME)
  FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"')
  FILES = (URI 'file://$s/csv/');
CREATE EXTERNAL TABLE cluster.orders_parquet
  FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://$s/parquet/' PATTERN '\\\\.parquet\$');
CREATE EXTERNAL TABLE cluster.orders_avro
  FILE_FORMAT = (FORMAT avro) FILES = (URI 'file://$s/avro/*.avro');
ALTER TABLE cluster.orders_csv SECONDARY_LOAD;
ALTER TABLE cluster.orders_parquet SECONDARY_LOAD;
ALTER TABLE cluster.orders_avro SECONDARY_LOAD;
SELECT name, load_status, nrows, size_bytes
  FROM performance_schema.rpd_tables t JOIN performance_schema.rpd_table_id i ON t.id = i.id
  ORDER BY name;
SELECT p.customer, COUNT(*) AS orders, SUM(p.amount) AS revenue, SUM(c.quantity) AS quantity
  FROM cluster.orders_parquet p JOIN cluster.orders_csv c ON p.order_id = c.order_id
  GROUP BY p.customer ORDER BY revenue DESC;
SELECT 'csv' AS format, COUNT(*), SUM(amount) FROM cluster.orders_csv
UNION ALL SELECT 'parquet', COUNT(*), SUM(amount) FROM cluster.orders_parquet
UNION ALL SELECT 'avro', COUNT(*), SUM(amount) FROM cluster.orders_avro;
SQL
echo "where the parts are (GET /v1/cluster):"
curl -s -H "Authorization: Bearer $(cat "$data/coordinator/admin.token")" \
  "http://127.0.0.1:$port/v1/cluster" | python3 -m json.tool
