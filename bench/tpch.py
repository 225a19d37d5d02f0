"""Drives bench/tpch.sh: Tarn beside DuckDB on TPC-H, on this machine, in one run.

    python tpch.py TARN_BIN DATA_DIR RESULTS_DIR RUNS PORT [S3_ENDPOINT]

DATA_DIR holds `parquet/<table>.parquet`. Writes `tpch-sf<N>.json`, `.md` and `.png` to
RESULTS_DIR, and exits non-zero when an answer differs between the engines.
"""
import atexit
import datetime
import json
import math
import os
import platform
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from benchauth import HEADERS
from benchauth import env as with_token

HERE = os.path.dirname(os.path.abspath(__file__))
# Memory is read this long after the load (both engines), once freed memory has gone back.
SETTLE = 2.0
TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
# Data placement keys, as a user with date-range reports would declare them (DATA_PLACEMENT_KEY):
# the rows are ordered by them in the background after the load. TARN_PLACEMENT='{}' runs without.
PLACEMENT = json.loads(os.environ.get("TARN_PLACEMENT", '{"lineitem": "l_shipdate", "orders": "o_orderdate"}'))


def queries():
    """The 22 TPC-H queries as DuckDB's tpch extension gives them."""
    import duckdb
    import glob
    import importlib.util
    spec = importlib.util.find_spec("duckdb_extension_tpch")
    ext = glob.glob(os.path.join(os.path.dirname(spec.origin), "extensions", "*", "tpch.duckdb_extension"))[0]
    con = duckdb.connect()
    con.execute(f"LOAD '{ext}'")
    return {str(n): q.strip().rstrip(";") for n, q in con.execute("SELECT query_nr, query FROM tpch_queries()").fetchall()}


class Tarn:
    def __init__(self, binary, port, work, env, snapshots=False, data="tarn-data"):
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{work}/{data}",
             "--snapshots", "true" if snapshots else "false", "--config", f"{work}/tarn.toml"],
            stdout=subprocess.DEVNULL, stderr=open(f"{work}/tarn.log", "a"), env=with_token(env))
        for _ in range(300):
            try:
                urllib.request.urlopen(self.base + "/healthz")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        raise SystemExit("tarn did not start; see " + work + "/tarn.log")

    def sql(self, q):
        req = urllib.request.Request(self.base + "/v1/sql", data=q.encode(), method="POST", headers=HEADERS)
        try:
            with urllib.request.urlopen(req) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise SystemExit(f"tarn: {q[:80]}...: {e.read().decode()}")

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return tuple(int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM"))

    def snapshotted(self, table):
        with urllib.request.urlopen(urllib.request.Request(f"{self.base}/v1/tables/default/{table}", headers=HEADERS)) as r:
            st = json.loads(r.read())["status"]
            if st["status"].get("snapshot_error"):
                raise SystemExit(f"tarn: the snapshot of {table} failed: {st['status']['snapshot_error']}")
            return st["status"].get("snapshot_version") == st.get("version")

    def wait_snapshotted(self, tables):
        """Waits until every table's loaded version is in its snapshot (written in the background)."""
        while not all(self.snapshotted(t) for t in tables):
            time.sleep(0.05)

    def placement(self, table):
        with urllib.request.urlopen(urllib.request.Request(f"{self.base}/v1/tables/default/{table}", headers=HEADERS)) as r:
            return json.loads(r.read())["status"]["status"].get("placement")

    def wait_placed(self, tables):
        """Waits until the rows of `tables` are in key order; fails if placement did not happen."""
        while any(self.placement(t) == "pending" for t in tables):
            time.sleep(0.01)
        states = {t: self.placement(t) for t in tables}
        if any(v != "placed" for v in states.values()):
            raise SystemExit(f"tarn: rows not placed: {states}")

    def memory_used(self):
        with urllib.request.urlopen(urllib.request.Request(self.base + "/metrics", headers=HEADERS)) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("tarn_memory_used_bytes"):
                    return int(float(line.split()[-1]))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def declare_and_load(tarn, parquet, placement):
    """Declares the eight tables over their Parquet files (with `placement` keys where it names
    one) and loads them one after another; answers when the loads began."""
    tarn.sql("CREATE DATABASE `default`")
    for t in TABLES:
        key = f" DATA_PLACEMENT_KEY = ({placement[t]})" if t in placement else ""
        tarn.sql(f"CREATE EXTERNAL TABLE `default`.{t} FILE_FORMAT = (FORMAT parquet) FILES = (URI 'file://{parquet}/{t}.parquet')" + key)
    t0 = time.perf_counter()
    for t in TABLES:
        tarn.sql(f"ALTER TABLE `default`.{t} SECONDARY_LOAD")
    return t0


def tarn_queries(tarn, qs, runs, replan=False):
    """Runs each query once for its answer, then `runs` times timed. Tarn keeps the optimized plan
    of a statement text it has run; with `replan`, every run's text differs by a comment, so each
    run is planned from the SQL (as a first run is)."""
    out = {}
    for name, q in qs.items():
        answer = tarn.sql(q)["rows"]
        times = []
        for i in range(runs):
            text = f"/* run {i} */ {q}" if replan else q
            t = time.perf_counter()
            tarn.sql(text)
            times.append(time.perf_counter() - t)
        out[name] = {"seconds": times, "rows": answer}
    return out


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return str(a).rstrip() == str(b).rstrip()
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


def same(rows_a, rows_b):
    """Same answers: row for row, values equal (numbers within 1e-6, strings without trailing
    blanks). Returns why not, or None."""
    if len(rows_a) != len(rows_b):
        return f"{len(rows_a)} rows against {len(rows_b)}"
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        if len(ra) != len(rb) or not all(close(x, y) for x, y in zip(ra, rb)):
            return f"row {i}: {ra} against {rb}"
    return None


def median(xs):
    return statistics.median(xs)


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main():
    binary, data, results, runs, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    s3 = sys.argv[6] if len(sys.argv) > 6 else None
    parquet = os.path.join(data, "parquet")
    os.makedirs(results, exist_ok=True)
    qs = queries()
    work = tempfile.mkdtemp()
    # Gone when this script ends, however it ends (servers here write snapshots into it).
    atexit.register(shutil.rmtree, work, True)
    qfile = os.path.join(work, "queries.json")
    json.dump(qs, open(qfile, "w"))
    sf = os.path.basename(data.rstrip("/")).removeprefix("sf")

    # DuckDB in its own process.
    print("duckdb: load, queries on loaded tables, queries over the files...", file=sys.stderr)
    args = [sys.executable, os.path.join(HERE, "tpch_duckdb.py"), qfile, parquet, str(runs)]
    if s3:
        args += [s3, "s3://lake/tpch-sf" + sf]
    duck = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)

    # Tarn: a fresh release server, no snapshots (DuckDB's in-memory tables are not persisted either).
    print("tarn: load, queries on loaded tables...", file=sys.stderr)
    toml = [f'allowed_locations = ["file://{parquet}/", "s3://lake/"]']
    if s3:
        toml += ['home_region = "bench"', "[regions.bench]", f'endpoint = "{s3}"', "allow_http = true"]
    open(os.path.join(work, "tarn.toml"), "w").write("\n".join(toml) + "\n")
    tarn = Tarn(binary, port, work, dict(os.environ))
    base_rss, _ = tarn.rss()
    t0 = declare_and_load(tarn, parquet, PLACEMENT)
    tarn_load = time.perf_counter() - t0
    # Queries run on placed rows: wait for the background placement, and report when it ended.
    tarn.wait_placed(PLACEMENT)
    tarn_placed = time.perf_counter() - t0
    time.sleep(SETTLE)
    after_rss, peak = tarn.rss()
    tarn_result = {
        "load_seconds": tarn_load,
        "placement": PLACEMENT,
        "placed_seconds": tarn_placed,
        "rss_after_load": after_rss,
        "rss_loaded_data": after_rss - base_rss,
        "peak_rss": peak,
        "memory_usage": tarn.memory_used(),
        "rows": sum(tarn.sql(f"SELECT count(*) FROM {t}")["rows"][0][0] for t in TABLES),
    }
    tarn_result["loaded"] = tarn_queries(tarn, qs, runs)
    tarn_result["loaded_replanned"] = tarn_queries(tarn, qs, runs, replan=True)
    if s3:
        for t in TABLES:
            tarn.sql(f"CREATE EXTERNAL TABLE `default`.{t}_s3 FILE_FORMAT = (FORMAT parquet) FILES = (URI 's3://lake/tpch-sf{sf}/{t}.parquet')")
        for t in TABLES:
            tarn.sql(f"ALTER TABLE `default`.{t} SECONDARY_UNLOAD")
        t0 = time.perf_counter()
        for t in TABLES:
            tarn.sql(f"ALTER TABLE `default`.{t}_s3 SECONDARY_LOAD")
        tarn_result["load_seconds_s3"] = time.perf_counter() - t0
    tarn.stop()

    # As a new user first declares the tables: no placement key, columns inferred, snapshots on
    # (the defaults), loaded one after another.
    print("tarn: plain tables (defaults): load, queries...", file=sys.stderr)
    tarn = Tarn(binary, port, work, dict(os.environ), snapshots=True, data="tarn-plain")
    t0 = declare_and_load(tarn, parquet, {})
    tarn_result["plain_load_seconds"] = time.perf_counter() - t0
    # Queries run once the snapshots written after the loads are done (they compete for the cores).
    tarn.wait_snapshotted(TABLES)
    tarn_result["plain_snapshotted_seconds"] = time.perf_counter() - t0
    time.sleep(SETTLE)
    tarn_result["plain_loaded"] = tarn_queries(tarn, qs, runs)
    tarn_result["plain_loaded_replanned"] = tarn_queries(tarn, qs, runs, replan=True)
    tarn.stop()

    print("tarn: queries over the files...", file=sys.stderr)
    out = subprocess.run([binary, "bench", "parquet", "--queries", qfile, "--runs", str(runs)]
                         + [a for t in TABLES for a in ("--table", f"{t}={parquet}/{t}.parquet")],
                         check=True, capture_output=True, text=True)
    tarn_result["files"] = json.loads(out.stdout)

    # Side by side.
    rows, mismatches = [], []
    for name in qs:
        row = {"query": int(name)}
        for mode in ("loaded", "files"):
            t, d = tarn_result[mode][name], duck[mode][name]
            row[f"tarn_{mode}"] = median(t["seconds"])
            row[f"duckdb_{mode}"] = median(d["seconds"])
            row[f"ratio_{mode}"] = row[f"tarn_{mode}"] / row[f"duckdb_{mode}"]
            why = same(t["rows"], d["rows"])
            if why:
                mismatches.append(f"Q{name} {mode}: {why}")
        def tarn_run(key, result, label):
            """Tarn's median for this query in tarn_result[result], its answer checked against
            DuckDB's on loaded tables."""
            r = tarn_result[result][name]
            row[key] = median(r["seconds"])
            why = same(r["rows"], duck["loaded"][name]["rows"])
            if why:
                mismatches.append(f"Q{name} {label}: {why}")
        tarn_run("tarn_plain", "plain_loaded", "loaded plain")
        row["ratio_plain"] = row["tarn_plain"] / row["duckdb_loaded"]
        row["loaded_vs_duckdb_files"] = row["tarn_loaded"] / row["duckdb_files"]
        tarn_run("tarn_plain_replanned", "plain_loaded_replanned", "loaded plain, planned each run")
        row["plain_replanned_vs_duckdb_files"] = row["tarn_plain_replanned"] / row["duckdb_files"]
        tarn_run("tarn_loaded_replanned", "loaded_replanned", "loaded, planned each run")
        row["loaded_replanned_vs_duckdb_files"] = row["tarn_loaded_replanned"] / row["duckdb_files"]
        rows.append(row)
    summary = {
        "geomean_ratio_loaded": geomean([r["ratio_loaded"] for r in rows]),
        "max_ratio_loaded": max(r["ratio_loaded"] for r in rows),
        "geomean_ratio_files": geomean([r["ratio_files"] for r in rows]),
        "geomean_ratio_plain": geomean([r["ratio_plain"] for r in rows]),
        "max_ratio_plain": max(r["ratio_plain"] for r in rows),
        "plain_load_ratio": tarn_result["plain_load_seconds"] / duck["load_seconds"],
        "geomean_tarn_loaded_vs_duckdb_files": geomean([r["loaded_vs_duckdb_files"] for r in rows]),
        "geomean_ratio_loaded_replanned": geomean([r["tarn_loaded_replanned"] / r["duckdb_loaded"] for r in rows]),
        "geomean_tarn_loaded_replanned_vs_duckdb_files": geomean([r["loaded_replanned_vs_duckdb_files"] for r in rows]),
        "geomean_tarn_plain_replanned_vs_duckdb_files": geomean([r["plain_replanned_vs_duckdb_files"] for r in rows]),
        "load_ratio": tarn_result["load_seconds"] / duck["load_seconds"],
        "memory_ratio_rss": tarn_result["rss_loaded_data"] / duck["rss_loaded_data"],
        "memory_ratio_own_accounting": tarn_result["memory_usage"] / duck["memory_usage"],
    }
    if s3:
        summary["load_ratio_s3"] = tarn_result["load_seconds_s3"] / duck["load_seconds_s3"]
    machine = f"{os.cpu_count()} cores, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, {platform.machine()}"
    report = {
        "scale_factor": sf, "runs": runs, "machine": machine,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "duckdb_threads": duck["threads"], "summary": summary, "queries": rows,
        "mismatches": mismatches,
        "tarn": {k: v for k, v in tarn_result.items() if k not in ("loaded", "loaded_replanned", "plain_loaded", "plain_loaded_replanned", "files")},
        "duckdb": {k: v for k, v in duck.items() if k not in ("loaded", "files")},
    }
    stem = os.path.join(results, f"tpch-sf{sf}")
    json.dump(report, open(stem + ".json", "w"), indent=1)
    md = markdown(report)
    open(stem + ".md", "w").write(md)
    chart(report, stem + ".png")
    print(md)
    if mismatches:
        print("ANSWERS DIFFER:\n  " + "\n  ".join(mismatches), file=sys.stderr)
        sys.exit(1)


def markdown(r):
    s, t, d = r["summary"], r["tarn"], r["duckdb"]
    gb = lambda b: f"{b / 2**30:.2f} GiB"
    lines = [
        f"TPC-H SF{r['scale_factor']}, {r['machine']}, {r['date']}; median of {r['runs']} warm runs; "
        f"DuckDB 1.5.5 ({r['duckdb_threads']} threads). Ratio = Tarn / DuckDB (below 1: Tarn is faster).",
        "",
        "| | Tarn | DuckDB | ratio |",
        "|---|---|---|---|",
        f"| load, 8 tables from Parquet (local) | {t['load_seconds']:.2f} s | {d['load_seconds']:.2f} s | {s['load_ratio']:.2f} |",
    ]
    if t.get("placement"):
        keys = ", ".join(f"{k}.{v}" for k, v in t["placement"].items())
        lines.append(f"| load until the rows are placed by their key ({keys}), in the background | {t['placed_seconds']:.2f} s | | {t['placed_seconds'] / d['load_seconds']:.2f} |")
    if "load_ratio_s3" in s:
        lines.append(f"| load, 8 tables from Parquet (SeaweedFS S3) | {t['load_seconds_s3']:.2f} s | {d['load_seconds_s3']:.2f} s | {s['load_ratio_s3']:.2f} |")
    lines += [
        f"| memory of loaded data (RSS growth) | {gb(t['rss_loaded_data'])} | {gb(d['rss_loaded_data'])} | {s['memory_ratio_rss']:.2f} |",
        f"| memory of loaded data (own accounting) | {gb(t['memory_usage'])} | {gb(d['memory_usage'])} | {s['memory_ratio_own_accounting']:.2f} |",
        f"| peak RSS during load | {gb(t['peak_rss'])} | {gb(d['peak_rss'])} | {t['peak_rss'] / d['peak_rss']:.2f} |",
        f"| 22 queries on loaded data, geometric mean of ratios | | | {s['geomean_ratio_loaded']:.2f} (max {s['max_ratio_loaded']:.2f}) |",
        f"| the tables as first declared (no placement key, columns inferred, snapshots on): load | {t['plain_load_seconds']:.2f} s | {d['load_seconds']:.2f} s | {s['plain_load_ratio']:.2f} |",
        f"| the same tables: load until their snapshots are written, in the background | {t['plain_snapshotted_seconds']:.2f} s | | {t['plain_snapshotted_seconds'] / d['load_seconds']:.2f} |",
        f"| the same tables: 22 queries, geometric mean of ratios | | | {s['geomean_ratio_plain']:.2f} (max {s['max_ratio_plain']:.2f}) |",
        f"| 22 queries over the Parquet files, geometric mean of ratios | | | {s['geomean_ratio_files']:.2f} |",
        f"| Tarn loaded / DuckDB over the files, geometric mean | | | {s['geomean_tarn_loaded_vs_duckdb_files']:.3f} |",
        f"| the same, each run planned from the SQL (no kept plan): on loaded data / DuckDB loaded; / DuckDB over the files | | | "
        f"{s['geomean_ratio_loaded_replanned']:.2f}; {s['geomean_tarn_loaded_replanned_vs_duckdb_files']:.3f} |",
        f"| the tables as first declared, each run planned: Tarn loaded / DuckDB over the files, geometric mean | | | "
        f"{s['geomean_tarn_plain_replanned_vs_duckdb_files']:.3f} |",
        "",
        "| query | Tarn loaded | DuckDB loaded | ratio | Tarn, tables as first declared | ratio | Tarn loaded, planned each run | as first declared, planned each run | Tarn over files | DuckDB over files | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for q in r["queries"]:
        lines.append(f"| Q{q['query']} | {q['tarn_loaded'] * 1000:.1f} ms | {q['duckdb_loaded'] * 1000:.1f} ms | {q['ratio_loaded']:.2f} "
                     f"| {q['tarn_plain'] * 1000:.1f} ms | {q['ratio_plain']:.2f} "
                     f"| {q['tarn_loaded_replanned'] * 1000:.1f} ms | {q['tarn_plain_replanned'] * 1000:.1f} ms "
                     f"| {q['tarn_files'] * 1000:.1f} ms | {q['duckdb_files'] * 1000:.1f} ms | {q['ratio_files']:.2f} |")
    if r["mismatches"]:
        lines += ["", "Answers that differ: " + "; ".join(r["mismatches"])]
    return "\n".join(lines) + "\n"


def chart(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    qs = [f"Q{q['query']}" for q in r["queries"]]
    series = [("tarn_loaded", "Tarn, loaded"), ("duckdb_loaded", "DuckDB, loaded"),
              ("tarn_files", "Tarn, over Parquet"), ("duckdb_files", "DuckDB, over Parquet")]
    fig, ax = plt.subplots(figsize=(14, 5))
    w = 0.2
    for i, (key, label) in enumerate(series):
        ax.bar([x + (i - 1.5) * w for x in range(len(qs))], [q[key] * 1000 for q in r["queries"]], w, label=label)
    ax.set_xticks(range(len(qs)), qs)
    ax.set_yscale("log")
    ax.set_ylabel("ms (median, log scale)")
    ax.set_title(f"TPC-H SF{r['scale_factor']}: Tarn and DuckDB ({r['machine']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
