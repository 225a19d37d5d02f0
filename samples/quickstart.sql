-- Tarn quickstart: the same orders in five formats, declared, loaded and queried.
-- @SAMPLES@ is replaced by the absolute path of samples/data by quickstart.sh.
CREATE DATABASE IF NOT EXISTS quickstart;

CREATE EXTERNAL TABLE IF NOT EXISTS quickstart.orders_csv (
    order_id INT NOT NULL, customer VARCHAR(32), product LONGTEXT, quantity INT,
    amount DECIMAL(10,2), weight DOUBLE, express BOOLEAN, order_date DATE, shipped_at DATETIME)
  FILE_FORMAT = (FORMAT csv HEADER ON FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"')
  FILES = (URI 'file://@SAMPLES@/csv/');

CREATE EXTERNAL TABLE IF NOT EXISTS quickstart.orders_parquet
  FILE_FORMAT = (FORMAT parquet)
  FILES = (URI 'file://@SAMPLES@/parquet/' PATTERN '\\.parquet$');

CREATE EXTERNAL TABLE IF NOT EXISTS quickstart.orders_json (
    order_id INT, customer VARCHAR(32), product LONGTEXT, quantity INT,
    amount DECIMAL(10,2), weight DOUBLE, express BOOLEAN, order_date DATE, shipped_at DATETIME)
  FILE_FORMAT = (FORMAT json)
  FILES = (URI 'file://@SAMPLES@/json/orders.ndjson');

CREATE EXTERNAL TABLE IF NOT EXISTS quickstart.orders_avro
  FILE_FORMAT = (FORMAT avro)
  FILES = (URI 'file://@SAMPLES@/avro/*.avro');

CREATE EXTERNAL TABLE IF NOT EXISTS quickstart.orders_delta (order_id INT, product LONGTEXT, amount DOUBLE)
  FILE_FORMAT = (FORMAT delta)
  FILES = (URI 'file://@SAMPLES@/delta/orders/');

ALTER TABLE quickstart.orders_csv SECONDARY_LOAD;
ALTER TABLE quickstart.orders_parquet SECONDARY_LOAD;
ALTER TABLE quickstart.orders_json SECONDARY_LOAD;
ALTER TABLE quickstart.orders_avro SECONDARY_LOAD;
ALTER TABLE quickstart.orders_delta SECONDARY_LOAD;

SELECT @@hostname, name, load_status, nrows, size_bytes
  FROM performance_schema.rpd_tables t JOIN performance_schema.rpd_table_id i ON t.id = i.id
  ORDER BY name;

SELECT customer, COUNT(*) AS orders, SUM(amount) AS revenue
  FROM quickstart.orders_parquet GROUP BY customer ORDER BY revenue DESC;

SELECT 'csv' AS format, COUNT(*), SUM(amount) FROM quickstart.orders_csv
UNION ALL SELECT 'json', COUNT(*), SUM(amount) FROM quickstart.orders_json
UNION ALL SELECT 'avro', COUNT(*), SUM(amount) FROM quickstart.orders_avro;

SELECT @@hostname, a.* FROM quickstart.orders_delta a ORDER BY order_id LIMIT 5;
