"""Writer for Tarn's refresh tests, with writers that are not Tarn's (pyarrow, fastavro,
deltalake). Rows are (id BIGINT, name VARCHAR, amount DOUBLE[, note VARCHAR]) with ids from a range,
so a test knows what every state of a table holds.

    python tests/write.py files FORMAT DIR NAME:START:END[:note] ...
        writes one file per spec (csv with a header, parquet, json lines, avro)
    python tests/write.py delta PATH OP [ARGS]
        create START END NFILES | append START END | delete PREDICATE | optimize | checkpoint |
        overwrite START END | addcolumn START END
        then prints {"version", "files", "count", "sum_id"} of the table as deltalake reads it
"""
import json
import os
import sys

import pyarrow as pa


def table(start, end, note=False):
    ids = list(range(start, end))
    cols = {
        "id": pa.array(ids, pa.int64()),
        "name": pa.array([f"n{i % 13}" for i in ids], pa.string()),
        "amount": pa.array([i * 0.5 for i in ids], pa.float64()),
    }
    if note:
        cols["note"] = pa.array([f"note {i}" for i in ids], pa.string())
    return pa.table(cols)


def write_file(fmt, path, t):
    if fmt == "csv":
        import pyarrow.csv as pcsv
        pcsv.write_csv(t, path)
    elif fmt == "parquet":
        import pyarrow.parquet as pq
        pq.write_table(t, path)
    elif fmt == "json":
        with open(path, "w") as f:
            for r in t.to_pylist():
                f.write(json.dumps(r) + "\n")
    elif fmt == "avro":
        import fastavro
        fields = [{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
                  {"name": "amount", "type": "double"}]
        if "note" in t.column_names:
            fields.append({"name": "note", "type": ["null", "string"]})
        schema = {"type": "record", "name": "row", "fields": fields}
        with open(path, "wb") as f:
            fastavro.writer(f, schema, t.to_pylist(), codec="deflate")
    else:
        raise SystemExit(f"unknown format {fmt}")


def files(fmt, out, specs):
    os.makedirs(out, exist_ok=True)
    for spec in specs:
        parts = spec.split(":")
        name, start, end = parts[0], int(parts[1]), int(parts[2])
        write_file(fmt, os.path.join(out, name), table(start, end, note=len(parts) > 3))


def delta(path, op, args):
    from deltalake import DeltaTable, write_deltalake
    if op == "create":
        start, end, n = int(args[0]), int(args[1]), int(args[2])
        step = (end - start + n - 1) // n
        for s in range(start, end, step):
            write_deltalake(path, table(s, min(s + step, end)), mode="append")
    elif op == "append":
        write_deltalake(path, table(int(args[0]), int(args[1])), mode="append")
    elif op == "delete":
        DeltaTable(path).delete(args[0])
    elif op == "checkpoint":
        DeltaTable(path).create_checkpoint()
    elif op == "optimize":
        DeltaTable(path).optimize.compact()
    elif op == "overwrite":
        write_deltalake(path, table(int(args[0]), int(args[1])), mode="overwrite",
                        schema_mode="overwrite")
    elif op == "addcolumn":
        write_deltalake(path, table(int(args[0]), int(args[1]), note=True), mode="append",
                        schema_mode="merge")
    else:
        raise SystemExit(f"unknown op {op}")
    dt = DeltaTable(path)
    t = dt.to_pyarrow_table()
    ids = t.column("id").to_pylist()
    print(json.dumps({"version": dt.version(), "files": sorted(os.path.basename(u) for u in dt.file_uris()),
                      "count": len(ids), "sum_id": sum(ids)}))


if __name__ == "__main__":
    if sys.argv[1] == "files":
        files(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        delta(sys.argv[2], sys.argv[3], sys.argv[4:])
    sys.stdout.flush()
    os._exit(0)
