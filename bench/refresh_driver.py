"""Drives bench/refresh.sh against a running Tarn: see that script."""
import json
import random
import os
import shutil
import statistics
import sys
import time
import urllib.request

from benchauth import HEADERS

base, data, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
table_dir, incoming = f"{data}/table", f"{data}/incoming"
landed = 0


def post(path, body=b""):
    req = urllib.request.Request(base + path, data=body, method="POST",
                                 headers={"accept": "application/json", **HEADERS})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def sql(q):
    r = post("/v1/sql", q.encode())
    return [dict(zip([c["name"] for c in r["columns"]], row)) for row in r["rows"]]


def count(t):
    return sql(f"SELECT COUNT(*) AS n FROM b.{t}")[0]["n"]


def land():
    """Lands one new file atomically (copy beside, then rename in); answers its size."""
    global landed
    src = f"{incoming}/new-{landed:04d}.parquet"
    tmp = f"{data}/.landing.parquet"
    shutil.copyfile(src, tmp)
    os.rename(tmp, f"{table_dir}/new-{landed:04d}.parquet")
    landed += 1
    return os.path.getsize(src)


sql("CREATE DATABASE b")
uri = f"file://{table_dir}/"
sql(f"CREATE EXTERNAL TABLE b.t FILE_FORMAT = (FORMAT parquet) FILES = (URI '{uri}')")
load = sql("ALTER TABLE b.t SECONDARY_LOAD")[0]
print(f"full load:   {load['files']} files, {load['rows']} rows, {load['bytes'] / 1e9:.2f} GB in memory, "
      f"{load['seconds']:.3f} s")
reloads = [sql("ALTER TABLE b.t SECONDARY_LOAD")[0]["seconds"] for _ in range(3)]
full = statistics.median([load["seconds"]] + reloads)
print(f"full reload: {', '.join(f'{s:.3f}' for s in reloads)} s (median of load and reloads {full:.3f} s)")

refreshes = []
for _ in range(runs):
    size = land()
    r = post("/v1/tables/b/t/refresh")
    assert r["files_added"] == 1 and r["files_reused"] == r["files"] - 1, r
    assert r["bytes_read"] == size, (r["bytes_read"], size)
    refreshes.append((r["seconds"], r["files"] - 1, size))
secs = [s for s, _, _ in refreshes]
med = statistics.median(secs)
print(f"refresh, one new file of {refreshes[0][2]} bytes beside {refreshes[0][1]}-{refreshes[-1][1]} loaded: "
      f"{', '.join(f'{s * 1000:.1f}' for s in secs)} ms (median {med * 1000:.1f} ms); "
      f"bytes read = the new file's in every run")
print(f"refresh / full reload = {med / full * 100:.2f} % (target <= 1 %)")
sql("ALTER TABLE b.t SECONDARY_UNLOAD")


def visible_after_landing(table, query_each=0.02, timeout=30):
    before = count(table)
    t0 = time.monotonic()
    land()
    while count(table) == before:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"{table}: the new file was not visible after {timeout} s")
        time.sleep(query_each)
    return time.monotonic() - t0


for table, option in [("sched", "REFRESH_INTERVAL = '1s'"), ("stale", "MAX_STALENESS = '1s'")]:
    sql(f"CREATE EXTERNAL TABLE b.{table} FILE_FORMAT = (FORMAT parquet) FILES = (URI '{uri}') {option}")
    sql(f"ALTER TABLE b.{table} SECONDARY_LOAD")
    lat = []
    for _ in range(runs):
        time.sleep(random.uniform(0, 1.2))  # land at random points of the interval
        lat.append(visible_after_landing(table))
    print(f"landing -> visible with {option}: {', '.join(f'{s:.2f}' for s in lat)} s "
          f"(median {statistics.median(lat):.2f} s, max {max(lat):.2f} s; queries every 20 ms)")
    sql(f"ALTER TABLE b.{table} SECONDARY_UNLOAD")
