"""Writes Tarn's sample data: one `orders` data set in all five formats, by writers independent
of Tarn's readers (pyarrow, fastavro, deltalake). Deterministic: re-running gives the same rows.

    python samples/generate.py samples/data
"""
import csv
import datetime as dt
import decimal
import gzip
import json
import random
import shutil
import sys
from pathlib import Path

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

PRODUCTS = ["widget", "gadget, large", 'the "best" gizmo', "sprocket", "größe", "thing\twith tab"]
CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli"]


def orders(start, count, seed):
    rnd = random.Random(seed)
    base = dt.datetime(2024, 1, 1, 8, 0, 0)
    rows = []
    for i in range(start, start + count):
        ts = base + dt.timedelta(minutes=rnd.randint(0, 500_000))
        rows.append(
            {
                "order_id": i,
                "customer": rnd.choice(CUSTOMERS),
                "product": rnd.choice(PRODUCTS),
                "quantity": rnd.randint(1, 20),
                "amount": decimal.Decimal(rnd.randint(100, 999_999)) / 100,
                "weight": round(rnd.uniform(0.1, 50.0), 3),
                "express": rnd.random() < 0.3,
                "order_date": ts.date(),
                "shipped_at": None if i % 7 == 0 else ts + dt.timedelta(hours=rnd.randint(1, 72)),
            }
        )
    return rows


SCHEMA = pa.schema(
    [
        ("order_id", pa.int32()),
        ("customer", pa.string()),
        ("product", pa.string()),
        ("quantity", pa.int32()),
        ("amount", pa.decimal128(10, 2)),
        ("weight", pa.float64()),
        ("express", pa.bool_()),
        ("order_date", pa.date32()),
        ("shipped_at", pa.timestamp("us")),
    ]
)

AVRO_SCHEMA = {
    "type": "record",
    "name": "order",
    "fields": [
        {"name": "order_id", "type": "int"},
        {"name": "customer", "type": "string"},
        {"name": "product", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "weight", "type": "double"},
        {"name": "express", "type": "boolean"},
        {"name": "order_date", "type": {"type": "int", "logicalType": "date"}},
        {"name": "shipped_at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
    ],
}


def table(rows):
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def write_csv(path, rows, opener=open):
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
        w.writerow(list(SCHEMA.names))
        for r in rows:
            w.writerow(
                [
                    r["order_id"], r["customer"], r["product"], r["quantity"], f'{r["amount"]:.2f}',
                    r["weight"], "true" if r["express"] else "false", r["order_date"].isoformat(),
                    r["shipped_at"].isoformat(sep=" ") if r["shipped_at"] else "",
                ]
            )


def main(out):
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    for d in ["csv", "parquet", "json", "avro"]:
        (out / d).mkdir(parents=True)

    a, b = orders(1, 120, 1), orders(121, 80, 2)
    write_csv(out / "csv" / "orders_1.csv", a)
    write_csv(out / "csv" / "orders_2.csv.gz", b, opener=gzip.open)

    pq.write_table(table(a), out / "parquet" / "orders-0.parquet", row_group_size=50)
    pq.write_table(table(b), out / "parquet" / "orders-1.parquet", compression="zstd")

    with open(out / "json" / "orders.ndjson", "w", encoding="utf-8") as f:
        for r in a + b:
            j = dict(r)
            j["amount"] = f'{r["amount"]:.2f}'
            j["order_date"] = r["order_date"].isoformat()
            j["shipped_at"] = r["shipped_at"].isoformat(sep=" ") if r["shipped_at"] else None
            f.write(json.dumps(j, ensure_ascii=False) + "\n")

    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    for name, codec, rows in [("orders_null", "null", a[:60]), ("orders_deflate", "deflate", a[60:]), ("orders_snappy", "snappy", b)]:
        with open(out / "avro" / f"{name}.avro", "wb") as f:
            fastavro.writer(f, parsed, rows, codec=codec)

    # Delta: several versions. v0 and v1 append, v2 deletes, v3 appends again.
    delta = out / "delta" / "orders"
    write_deltalake(str(delta), table(orders(1, 100, 3)))
    write_deltalake(str(delta), table(orders(101, 50, 4)), mode="append")
    DeltaTable(str(delta)).delete("order_id % 10 = 0")
    write_deltalake(str(delta), table(orders(151, 30, 5)), mode="append")
    print(f"wrote samples to {out} (Delta version {DeltaTable(str(delta)).version()})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "data")
