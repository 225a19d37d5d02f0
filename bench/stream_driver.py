"""Drives bench/stream.sh: see that script."""
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.request

from benchauth import HEADERS, env
from tpch_schema import ddl

tarn, data, work, runs, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
base = f"http://127.0.0.1:{port}"
server = subprocess.Popen([tarn, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{work}/data",
                           "--allowed-locations", f"file://{data}/", "--snapshots", "false"],
                          stdout=subprocess.DEVNULL, stderr=open(f"{work}/tarn.log", "a"), env=env())


def rss():
    with open(f"/proc/{server.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def sql(q):
    req = urllib.request.Request(base + "/v1/sql", data=q.encode(), method="POST",
                                 headers={"accept": "application/json", **HEADERS})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


try:
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/healthz")
            break
        except OSError:
            time.sleep(0.05)
    sql("CREATE DATABASE tpch")
    sql(ddl("tpch", "lineitem", data, "parquet"))
    sql("ALTER TABLE tpch.lineitem SECONDARY_LOAD")
    time.sleep(2)  # freed load buffers go back to the system
    results = []
    for run in range(runs):
        before = rss()
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        conn = http.client.HTTPConnection("127.0.0.1", port)
        t0 = time.monotonic()
        conn.request("POST", "/v1/sql", body="SELECT * FROM tpch.lineitem",
                     headers={"accept": "application/vnd.apache.arrow.stream", **HEADERS})
        resp = conn.getresponse()
        first = resp.read(1)
        t_first = time.monotonic() - t0
        size = len(first)
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
        t_total = time.monotonic() - t0
        done.set()
        sampler.join()
        conn.close()
        results.append((t_first, t_total, size, peak[0] - before))
        print(f"run {run + 1}: first byte {t_first:.3f} s, last byte {t_total:.3f} s, "
              f"{size / 1e9:.2f} GB, server RSS peak +{(peak[0] - before) / 2**30:.2f} GiB "
              f"(from {before / 2**30:.2f} GiB)", flush=True)
    best = min(results, key=lambda r: r[1])
    print(json.dumps({"first_byte_s": [round(r[0], 3) for r in results],
                      "last_byte_s": [round(r[1], 3) for r in results],
                      "bytes": best[2],
                      "rss_peak_growth_gib": [round(r[3] / 2**30, 3) for r in results]}))
finally:
    server.terminate()
    server.wait()
