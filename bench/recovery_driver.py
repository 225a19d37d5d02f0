"""Drives bench/recovery.sh: see that script."""
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

from benchauth import HEADERS, env
from tpch_schema import COLUMNS, ddl

tarn, data, work, runs, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
base = f"http://127.0.0.1:{port}"


def start():
    t0 = time.monotonic()
    p = subprocess.Popen([tarn, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{work}/data",
                          "--allowed-locations", f"file://{data}/"],
                         stdout=subprocess.DEVNULL, stderr=open(f"{work}/tarn.log", "a"), env=env())
    return p, t0


def get(path):
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, headers=HEADERS)) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (urllib.error.URLError, ConnectionError):
        return None, None


def sql(q):
    req = urllib.request.Request(base + "/v1/sql", data=q.encode(), method="POST",
                                 headers={"accept": "application/json", **HEADERS})
    with urllib.request.urlopen(req) as r:
        res = json.loads(r.read())
    return [dict(zip([c["name"] for c in res["columns"]], row)) for row in res["rows"]]


def wait_ready(t0):
    while True:
        status, _ = get("/readyz")
        if status == 200:
            return time.monotonic() - t0
        time.sleep(0.005)


p, t0 = start()
wait_ready(t0)
sql("CREATE DATABASE tpch")
for t in COLUMNS:
    sql(ddl("tpch", t, data, "csv"))
t1 = time.monotonic()
loaded = {t: sql(f"ALTER TABLE tpch.{t} SECONDARY_LOAD")[0] for t in COLUMNS}
full = time.monotonic() - t1
rows = sum(r["rows"] for r in loaded.values())
size = sum(r["bytes"] for r in loaded.values())
print(f"full load from CSV: 8 tables, {rows} rows, {size / 1e9:.2f} GB in memory, {full:.2f} s")
while True:
    st = {t: get(f"/v1/tables/tpch/{t}")[1]["status"] for t in COLUMNS}
    if all(s["status"]["snapshot_version"] == s["version"] for s in st.values()):
        break
    time.sleep(0.1)
snap_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(f"{work}/data/snapshots") for f in fs)
write_secs = sum(s["status"]["snapshot_seconds"] for s in st.values())
print(f"snapshot: {snap_bytes / 1e9:.2f} GB on disk ({snap_bytes / size:.2f}x the loaded size), "
      f"written in the background in {write_secs:.2f} s (sum over tables)")
counts = {t: sql(f"SELECT COUNT(*) AS n FROM tpch.{t}")[0]["n"] for t in COLUMNS}



def drop_caches():
    """Empties the page cache, so the restart reads the snapshot from the disk (needs root)."""
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def restarts(cold):
    global p
    ready = []
    for i in range(runs):
        p.send_signal(signal.SIGKILL)
        p.wait()
        if cold:
            drop_caches()
        p, t0 = start()
        ready.append(wait_ready(t0))
        after = {t: sql(f"SELECT COUNT(*) AS n FROM tpch.{t}")[0]["n"] for t in COLUMNS}
        assert after == counts, (after, counts)
        src = sql("SELECT recovery_source FROM performance_schema.rpd_tables")
        assert all(r["recovery_source"] == "Snapshot" for r in src), src
    return ready


results = {}
for cold in (False, True):
    if cold and not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        print("restart with a cold page cache: skipped (writing /proc/sys/vm/drop_caches needs root)")
        continue
    ready = restarts(cold)
    med = statistics.median(ready)
    cache = "cold page cache (dropped before each)" if cold else "warm page cache"
    print(f"restart to ready, {cache} (process start -> /readyz 200, SIGKILL before each): "
          f"{', '.join(f'{s:.3f}' for s in ready)} s (median {med:.3f} s)")
    print(f"ready / full load = {med / full * 100:.1f} % (target <= {10 if cold else 5} %)")
    results["cold" if cold else "warm"] = {"runs": ready, "median": med, "ratio": med / full}
with open(os.environ.get("RESULTS", os.devnull), "w") as f:
    json.dump({"full_load_seconds": full, "rows": rows, "loaded_bytes": size,
               "snapshot_bytes": snap_bytes, **results}, f, indent=1)
p.send_signal(signal.SIGTERM)
p.wait()
