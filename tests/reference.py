"""Independent reader for Tarn's tests: reads the sample orders with a reader that is not Tarn's
(duckdb for CSV and JSON, pyarrow for Parquet, fastavro for Avro, deltalake for Delta) and prints
the rows as JSON, ordered by order_id, values in the form Tarn's JSON answers use.

    python tests/reference.py {csv|parquet|json|avro|delta} PATH
"""
import datetime
import decimal
import glob
import json
import os
import sys

COLS = ["order_id", "customer", "product", "quantity", "amount", "weight", "express", "order_date", "shipped_at"]
TYPES = {
    "order_id": "INTEGER", "customer": "VARCHAR", "product": "VARCHAR", "quantity": "INTEGER",
    "amount": "DECIMAL(10,2)", "weight": "DOUBLE", "express": "BOOLEAN", "order_date": "DATE",
    "shipped_at": "TIMESTAMP",
}


def norm(v):
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, datetime.datetime):
        return v.replace(tzinfo=None).isoformat()
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v


def rows(fmt, path):
    if fmt in ("csv", "json"):
        import duckdb
        con = duckdb.connect()
        cols = "{" + ", ".join(f"'{c}': '{t}'" for c, t in TYPES.items()) + "}"
        if fmt == "csv":
            files = sorted(glob.glob(os.path.join(path, "*.csv*")))
            rel = con.sql(f"SELECT * FROM read_csv({files!r}, header=true, columns={cols})")
        else:
            files = sorted(glob.glob(os.path.join(path, "*.ndjson")))
            rel = con.sql(f"SELECT * FROM read_json({files!r}, format='newline_delimited', columns={cols})")
        return [dict(zip(rel.columns, r)) for r in rel.fetchall()]
    if fmt == "parquet":
        import pyarrow.parquet as pq
        return pq.read_table(path).to_pylist()
    if fmt == "avro":
        import fastavro
        out = []
        for f in sorted(glob.glob(os.path.join(path, "*.avro"))):
            with open(f, "rb") as fh:
                out.extend(fastavro.reader(fh))
        return out
    if fmt == "delta":
        from deltalake import DeltaTable
        return DeltaTable(path).to_pyarrow_table().to_pylist()
    raise SystemExit(f"unknown format {fmt}")


if __name__ == "__main__":
    fmt, path = sys.argv[1], sys.argv[2]
    rs = sorted(rows(fmt, path), key=lambda r: r["order_id"])
    print(json.dumps([[norm(r[c]) for c in COLS] for r in rs], ensure_ascii=False))
    sys.stdout.flush()
    # deltalake's native runtime can abort while the interpreter shuts down, after the answer is
    # out: leave without running finalizers.
    os._exit(0)
