"""Drives bench/cluster.sh: TPC-H on one Tarn process against a coordinator with three workers on
this machine, in one run.

    python cluster_driver.py TARN_BIN DATA_DIR RESULTS_DIR RUNS PORT

DATA_DIR holds `parquet/<table>.parquet` (nation, region) and `parts/<table>/*.parquet` (the
other six tables in twelve files each, so a cluster has files to spread). Both setups declare
the same tables over the same files, plainly (no placement key, columns inferred); snapshots are
off in both (the comparison is of loading and querying). Writes `cluster-sf<N>.json` and `.md`
to RESULTS_DIR and exits non-zero when an answer differs between the two.
"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchauth import HEADERS, env as with_token
from tpch import TABLES, Tarn, geomean, median, queries, same, tarn_queries

TOKEN = "tarn-bench-cluster-token"
WORKERS = 3
SPLIT = {"supplier", "customer", "part", "partsupp", "orders", "lineitem"}


def declare_and_load(tarn, data):
    tarn.sql("CREATE DATABASE `default`")
    for t in TABLES:
        uri = (f"URI 'file://{data}/parts/{t}/' PATTERN '\\\\.parquet$'" if t in SPLIT
               else f"URI 'file://{data}/parquet/{t}.parquet'")
        tarn.sql(f"CREATE EXTERNAL TABLE `default`.{t} FILE_FORMAT = (FORMAT parquet) FILES = ({uri})")
    t0 = time.perf_counter()
    for t in TABLES:
        tarn.sql(f"ALTER TABLE `default`.{t} SECONDARY_LOAD")
    return time.perf_counter() - t0


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def written(pid):
    """Bytes the process has written (files and sockets): during queries, what it sends."""
    with open(f"/proc/{pid}/io") as f:
        return int(dict(line.split(":", 1) for line in f)["wchar"])


def get(base, path):
    with urllib.request.urlopen(urllib.request.Request(base + path, headers=HEADERS)) as r:
        return json.loads(r.read())


def main():
    binary, data, results, runs, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    os.makedirs(results, exist_ok=True)
    qs = queries()
    work = tempfile.mkdtemp()
    # Gone when this script ends, however it ends (servers here write snapshots into it).
    atexit.register(shutil.rmtree, work, True)
    open(os.path.join(work, "tarn.toml"), "w").write(f'allowed_locations = ["file://{data}/"]\n')
    out = {"workers": WORKERS, "runs": runs}

    print("one process: load, queries...", file=sys.stderr)
    single = Tarn(binary, port, work, dict(os.environ), data="single")
    out["single_load_seconds"] = declare_and_load(single, data)
    time.sleep(2)
    out["single_memory"] = status(single.proc.pid)
    single_q = tarn_queries(single, qs, runs)
    single.stop()

    print(f"a coordinator and {WORKERS} workers: load, queries...", file=sys.stderr)
    workers = []
    for i in range(WORKERS):
        workers.append(subprocess.Popen(
            [binary, "worker", "--listen", f"127.0.0.1:{port + 1 + i}", "--data-dir", f"{work}/w{i}",
             "--snapshots", "false", "--config", f"{work}/tarn.toml", "--cluster-token", TOKEN],
            stdout=subprocess.DEVNULL, stderr=open(f"{work}/w{i}.log", "a"), env=with_token()))
    time.sleep(1)
    urls = ",".join(f"http://127.0.0.1:{port + 1 + i}" for i in range(WORKERS))
    env = dict(os.environ, TARN_WORKERS=urls, TARN_CLUSTER_TOKEN=TOKEN)
    coord = Tarn(binary, port, work, env, data="coordinator")
    try:
        out["cluster_load_seconds"] = declare_and_load(coord, data)
        time.sleep(2)
        out["coordinator_memory"] = status(coord.proc.pid)
        out["worker_memory"] = [status(w.pid) for w in workers]
        held = get(coord.base, "/v1/cluster")["workers"]
        used = [w["memory_used"] for w in held]
        out["worker_memory_used"] = used
        even = sum(used) / len(used)
        out["worker_memory_max_deviation"] = max(abs(u - even) / even for u in used)
        cluster_q = tarn_queries(coord, qs, runs)
        # Bytes the processes write during one more run of each query: what crosses between them.
        pids = [coord.proc.pid] + [w.pid for w in workers]
        exchange = {}
        for name, q in qs.items():
            before = sum(written(p) for p in pids)
            coord.sql(q)
            exchange[name] = sum(written(p) for p in pids) - before
        out["exchange_bytes"] = exchange
        out["peak_memory"] = {"coordinator": status(coord.proc.pid)["VmHWM"],
                              "workers": [status(w.pid)["VmHWM"] for w in workers]}
    finally:
        coord.stop()
        for w in workers:
            w.terminate()
            w.wait()

    rows, mismatches = [], []
    for name in qs:
        s, c = median(single_q[name]["seconds"]), median(cluster_q[name]["seconds"])
        rows.append({"query": int(name), "single": s, "cluster": c, "ratio": c / s,
                     "exchange_bytes": exchange[name]})
        why = same(single_q[name]["rows"], cluster_q[name]["rows"])
        if why:
            mismatches.append(f"Q{name}: {why}")
    out["queries"] = rows
    out["geomean_ratio"] = geomean([r["ratio"] for r in rows])
    worst = max(rows, key=lambda r: r["ratio"])
    out["worst"] = {"query": worst["query"], "ratio": worst["ratio"]}
    out["mismatches"] = mismatches
    sf = os.path.basename(data.rstrip("/")).removeprefix("sf")
    json.dump(out, open(os.path.join(results, f"cluster-sf{sf}.json"), "w"), indent=1)
    write_md(out, os.path.join(results, f"cluster-sf{sf}.md"), sf)
    print(open(os.path.join(results, f"cluster-sf{sf}.md")).read())
    if mismatches:
        raise SystemExit("answers differ: " + "; ".join(mismatches))


def write_md(out, path, sf):
    mib = lambda b: f"{b / 2**20:,.0f} MiB"
    lines = [
        f"# TPC-H SF{sf}: one process against a coordinator and {out['workers']} workers",
        "",
        f"On one machine ({os.cpu_count()} cores); median of {out['runs']} warm runs; tables declared "
        "plainly over the same Parquet files (twelve files per large table), snapshots off.",
        "",
        f"- geometric mean, cluster / one process: **{out['geomean_ratio']:.2f}**; worst: "
        f"Q{out['worst']['query']} at {out['worst']['ratio']:.2f}",
        f"- load: one process {out['single_load_seconds']:.2f} s, cluster {out['cluster_load_seconds']:.2f} s",
        f"- peak memory: one process {mib(out['single_memory']['VmHWM'])}; coordinator "
        f"{mib(out['peak_memory']['coordinator'])}, workers "
        + ", ".join(mib(m) for m in out["peak_memory"]["workers"]),
        "- loaded data per worker: " + ", ".join(mib(m) for m in out["worker_memory_used"])
        + f" (largest deviation from an even split: {out['worker_memory_max_deviation']:.1%})",
        "",
        "| query | one process (ms) | cluster (ms) | ratio | bytes between processes |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in out["queries"]:
        lines.append(f"| {r['query']} | {r['single'] * 1000:.0f} | {r['cluster'] * 1000:.0f} | "
                     f"{r['ratio']:.2f} | {r['exchange_bytes'] / 2**20:,.1f} MiB |")
    if out["mismatches"]:
        lines += ["", "Answers that differ: " + "; ".join(out["mismatches"])]
    open(path, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
