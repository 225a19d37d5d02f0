"""DuckDB's side of bench/tpch.sh, in a process of its own so its memory is its own.

    python tpch_duckdb.py QUERIES.json PARQUET_DIR RUNS [S3_ENDPOINT BUCKET_PREFIX]

Loads the eight tables with CREATE TABLE AS SELECT from the Parquet files (and, with an S3
endpoint, times the same load from SeaweedFS through httpfs), runs every query warm on the loaded
tables and over the files, and prints JSON: load seconds, memory, and per query the run times and
the answer.
"""
import glob
import json
import os
import statistics
import sys
import time

import duckdb

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]


def rss():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    kb = lambda k: int(fields[k].split()[0]) * 1024
    return kb("VmRSS"), kb("VmHWM")


def extension(name):
    import importlib.util
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    path = glob.glob(os.path.join(os.path.dirname(spec.origin), "extensions", "*", f"{name}.duckdb_extension"))
    return path[0]


def plain(v):
    if v is None or isinstance(v, (int, float, str, bool)):
        return v
    return str(v)


def run_queries(con, queries, runs):
    out = {}
    for name, sql in queries.items():
        answer = [[plain(v) for v in row] for row in con.execute(sql).fetchall()]
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            con.execute(sql).fetchall()
            times.append(time.perf_counter() - t)
        out[name] = {"seconds": times, "rows": answer}
    return out


def main():
    queries = json.load(open(sys.argv[1]))
    parquet, runs = sys.argv[2], int(sys.argv[3])
    s3 = sys.argv[4:6] if len(sys.argv) > 5 else None
    result = {"threads": None}
    con = duckdb.connect()
    result["threads"] = con.execute("SELECT current_setting('threads')").fetchone()[0]
    base_rss, _ = rss()
    t = time.perf_counter()
    for table in TABLES:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{parquet}/{table}.parquet')")
    result["load_seconds"] = time.perf_counter() - t
    time.sleep(2.0)  # as for Tarn: memory is read once freed memory has gone back
    after_rss, peak = rss()
    result["rss_after_load"] = after_rss
    result["rss_loaded_data"] = after_rss - base_rss
    result["peak_rss"] = peak
    result["memory_usage"] = con.execute(
        "SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0]
    result["rows"] = sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES)
    result["loaded"] = run_queries(con, queries, runs)

    files = duckdb.connect()
    for table in TABLES:
        files.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{parquet}/{table}.parquet')")
    result["files"] = run_queries(files, queries, runs)
    files.close()

    if s3:
        endpoint, prefix = s3
        s3con = duckdb.connect()
        s3con.execute(f"LOAD '{extension('httpfs')}'")
        host = endpoint.split("://", 1)[1]
        s3con.execute(f"""CREATE SECRET (TYPE s3, KEY_ID '{os.environ["AWS_ACCESS_KEY_ID"]}',
            SECRET '{os.environ["AWS_SECRET_ACCESS_KEY"]}', ENDPOINT '{host}', URL_STYLE 'path',
            USE_SSL false, REGION 'us-east-1')""")
        t = time.perf_counter()
        for table in TABLES:
            s3con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{prefix}/{table}.parquet')")
        result["load_seconds_s3"] = time.perf_counter() - t
        s3con.close()
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
