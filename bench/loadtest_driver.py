"""Drives bench/loadtest.sh: many clients at once on TPC-H, while a table is refreshed every second.

    python loadtest_driver.py DATA_DIR RESULTS_DIR CLIENTS SECONDS PORT NAME=TARN_BIN [NAME=TARN_BIN ...]

For each Tarn binary (e.g. `auth=...` and `noauth=...`), and for DuckDB: the eight TPC-H tables are
loaded from `DATA_DIR/parquet` (Tarn: plain DDL, schema from the files, snapshots on as a new user
runs it), then CLIENTS clients (one connection each) send queries back to back for SECONDS seconds:
the 22 TPC-H queries and three light ones (a point lookup, a date-range count, a count of the
refreshed table), drawn at random with a fixed seed, half heavy and half light. Meanwhile a new
small file lands in the `ticks` table's directory every second and the table is refreshed (Tarn:
`POST /v1/tables/tpch/ticks/refresh`; DuckDB: the file's rows are inserted). Every answer must
succeed: one error fails the run. Reports queries/s and p50/p99 latency per engine, to
RESULTS_DIR/loadtest-sf<N>.{json,md}.

With MIX=tpch in the environment, the clients send only the 22 TPC-H queries (in random order) and
nothing is refreshed; the results go to RESULTS_DIR/loadtest-sf<N>-tpch.{json,md}.
"""
import datetime
import http.client
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchauth import HEADERS
from benchauth import env as with_token

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tpch import TABLES, queries  # noqa: E402

LIGHT = {
    "lookup": "SELECT o_orderkey, o_custkey, o_totalprice, o_orderdate FROM orders WHERE o_orderkey = {k}",
    "range": "SELECT count(*) FROM lineitem WHERE l_shipdate >= DATE '1995-03-01' AND l_shipdate < DATE '1995-03-08'",
    "ticks": "SELECT count(*), max(n) FROM ticks",
}


TPCH_ONLY = os.environ.get("MIX", "mixed") == "tpch"


def workload(seed, n=100000):
    """The statements a client sends, in order: heavy (TPC-H) and light, one for one (only
    TPC-H with MIX=tpch)."""
    rnd = random.Random(seed)
    names = [str(i) for i in range(1, 23)]
    out = []
    for _ in range(n):
        if TPCH_ONLY or rnd.random() < 0.5:
            out.append(("q" + (q := rnd.choice(names)), q))
        else:
            kind = rnd.choice(sorted(LIGHT))
            out.append((kind, kind))
    return out


def write_tick(dir_, i):
    """One small CSV file of the `ticks` table (n, at)."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    path = os.path.join(dir_, f"tick-{i:06d}.csv")
    with open(path + ".tmp", "w") as f:
        for r in range(100):
            f.write(f"{i * 100 + r},{now}\n")
    os.replace(path + ".tmp", path)
    return path


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summarize(latencies, errors, seconds, refreshes):
    all_ms = [ms for per in latencies.values() for ms in per]
    heavy = [ms for k, per in latencies.items() if k.startswith("q") for ms in per]
    light = [ms for k, per in latencies.items() if not k.startswith("q") for ms in per]
    return {
        "queries": len(all_ms),
        "errors": len(errors),
        "first_errors": errors[:5],
        "qps": len(all_ms) / seconds,
        "p50_ms": percentile(all_ms, 50) if all_ms else None,
        "p99_ms": percentile(all_ms, 99) if all_ms else None,
        "heavy_p50_ms": percentile(heavy, 50) if heavy else None,
        "heavy_p99_ms": percentile(heavy, 99) if heavy else None,
        "light_p50_ms": percentile(light, 50) if light else None,
        "light_p99_ms": percentile(light, 99) if light else None,
        "refreshes": refreshes,
    }


class TarnServer:
    def __init__(self, binary, port, work, parquet, ticks):
        self.port = port
        os.makedirs(work, exist_ok=True)
        open(os.path.join(work, "tarn.toml"), "w").write(
            f'allowed_locations = ["file://{parquet}/", "file://{ticks}/"]\n')
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{work}/tarn-data",
             "--config", f"{work}/tarn.toml"],
            stdout=subprocess.DEVNULL, stderr=open(f"{work}/tarn.log", "a"), env=with_token())
        for _ in range(600):
            if self.proc.poll() is not None:
                raise SystemExit("tarn exited at start; see " + work + "/tarn.log")
            try:
                self.request("GET", "/healthz")
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("tarn did not start; see " + work + "/tarn.log")

    def request(self, method, path, body=None, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        c.request(method, path, body=body.encode() if body else None, headers=HEADERS)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        if r.status != 200:
            raise RuntimeError(f"{r.status} {data[:300].decode(errors='replace')}")
        return json.loads(data) if data.startswith((b"{", b"[")) else data

    def sql(self, q, conn=None):
        return self.request("POST", "/v1/sql", q, conn)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run_tarn(binary, port, parquet, qs, clients, seconds):
    work = tempfile.mkdtemp()
    ticks = os.path.join(work, "ticks")
    os.makedirs(ticks)
    write_tick(ticks, 0)
    t = TarnServer(binary, port, work, parquet, ticks)
    try:
        # Unqualified names in the queries resolve in `default`, as in bench/tpch.sh.
        t.sql("CREATE DATABASE `default`")
        for name in TABLES:
            t.sql(f"CREATE EXTERNAL TABLE `default`.{name} FILE_FORMAT = (FORMAT parquet) "
                  f"FILES = (URI 'file://{parquet}/{name}.parquet')")
        t.sql(f"CREATE EXTERNAL TABLE `default`.ticks (n BIGINT, at VARCHAR(40)) FILE_FORMAT = (FORMAT csv FIELDS TERMINATED BY ',') "
              f"FILES = (URI 'file://{ticks}/')")
        for name in TABLES + ["ticks"]:
            t.sql(f"ALTER TABLE `default`.{name} SECONDARY_LOAD")

        result = drive(lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=600),
                     lambda conn, kind, key, rnd: t.sql(statement(qs, kind, key, rnd), conn),
                     lambda i: (write_tick(ticks, i), t.request("POST", "/v1/tables/default/ticks/refresh")),
                     clients, seconds)
        result["auth_cost"] = auth_cost(port)
        return result
    finally:
        t.stop()
        shutil.rmtree(work, ignore_errors=True)


def auth_cost(port, n=3000):
    """What checking a token costs a request: the median time of a request that needs none
    (`GET /healthz`) beside one as small that needs one (`GET /v1/tokens`, admin), and one refused
    for a wrong token, on one kept-alive connection, in microseconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def median_us(path, headers):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            conn.getresponse().read()
            times.append((time.perf_counter() - t0) * 1e6)
        return statistics.median(times)

    out = {
        "healthz_no_token_us": median_us("/healthz", {}),
        "tokens_with_token_us": median_us("/v1/tokens", HEADERS),
        "refused_wrong_token_us": median_us("/v1/tokens", {"authorization": "Bearer tarn_wrong"}),
    }
    conn.close()
    return out


def statement(qs, kind, key, rnd):
    """The text of one statement."""
    if kind.startswith("q"):
        return qs[key]
    if kind == "lookup":
        return LIGHT[kind].format(k=rnd.randrange(1, 6000000, 32))
    return LIGHT[kind]


def drive(connect, send, tick, clients, seconds):
    """CLIENTS threads send statements back to back for SECONDS, each on its own connection,
    while `tick(i)` runs every second; answers the summary."""
    latencies = {}
    errors = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(c):
        conn = connect()
        rnd = random.Random(1000 + c)
        mine = {}
        for kind, key in workload(c):
            if time.monotonic() >= stop:
                break
            t0 = time.perf_counter()
            try:
                send(conn, kind, key, rnd)
            except Exception as e:  # noqa: BLE001 - every failure counts, whatever it is
                with lock:
                    errors.append(f"{kind}: {e}")
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = connect()
                continue
            mine.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
        with lock:
            for k, v in mine.items():
                latencies.setdefault(k, []).extend(v)

    refreshes = {"done": 0, "ms": []}

    def ticker():
        i = 1
        while not TPCH_ONLY and time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                tick(i)
                refreshes["done"] += 1
                refreshes["ms"].append((time.perf_counter() - t0) * 1000)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"refresh: {e}")
            i += 1
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    threads.append(threading.Thread(target=ticker))
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - started
    out = summarize(latencies, errors, elapsed, refreshes["done"])
    out["refresh_p50_ms"] = percentile(refreshes["ms"], 50) if refreshes["ms"] else None
    out["refresh_p99_ms"] = percentile(refreshes["ms"], 99) if refreshes["ms"] else None
    out["seconds"] = elapsed
    return out


def run_duckdb(parquet, qs, clients, seconds):
    import duckdb
    work = tempfile.mkdtemp()
    ticks = os.path.join(work, "ticks")
    os.makedirs(ticks)
    con = duckdb.connect()
    con.execute(f"SET threads = {clients}")
    for name in TABLES:
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{parquet}/{name}.parquet')")
    con.execute('CREATE TABLE ticks (n BIGINT, "at" VARCHAR)')

    def tick(i):
        path = write_tick(ticks, i)
        c = con.cursor()
        c.execute(f"INSERT INTO ticks SELECT * FROM read_csv('{path}', header = false, columns = {{'n': 'BIGINT', 'at': 'VARCHAR'}})")
        c.close()

    def send(conn, kind, key, rnd):
        conn.execute(statement(qs, kind, key, rnd)).fetchall()

    try:
        return drive(lambda: con.cursor(), send, tick, clients, seconds)
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    data, results, clients, seconds, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    binaries = [a.split("=", 1) for a in sys.argv[6:]]
    parquet = os.path.join(data, "parquet")
    sf = os.path.basename(data.rstrip("/")).removeprefix("sf")
    qs = queries()
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "scale_factor": sf, "clients": clients, "seconds": seconds, "engines": {},
        "mix": "tpch" if TPCH_ONLY else "mixed",
    }
    for name, binary in binaries:
        print(f"tarn ({name}): load, then {clients} clients for {seconds:.0f} s...", file=sys.stderr)
        report["engines"][f"tarn ({name})"] = run_tarn(binary, port, parquet, qs, clients, seconds)
    print(f"duckdb: load, then {clients} threads for {seconds:.0f} s...", file=sys.stderr)
    report["engines"]["duckdb"] = run_duckdb(parquet, qs, clients, seconds)
    os.makedirs(results, exist_ok=True)
    base = os.path.join(results, f"loadtest-sf{sf}" + ("-tpch" if TPCH_ONLY else ""))
    json.dump(report, open(base + ".json", "w"), indent=1)
    open(base + ".md", "w").write(markdown(report))
    print(markdown(report))
    failed = {k: v["errors"] for k, v in report["engines"].items() if v["errors"]}
    if failed:
        raise SystemExit(f"errors during the load test: {failed}; first ones: "
                         + json.dumps({k: v["first_errors"] for k, v in report["engines"].items() if v["errors"]}))


def markdown(r):
    f = lambda v: "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"
    lines = [
        f"# Load test, TPC-H SF{r['scale_factor']}: {r['clients']} clients for {r['seconds']:.0f} s",
        "",
        f"{r['date']}, {r['machine']}. " + (
            "The 22 TPC-H queries only, in random order; nothing refreshed." if r.get("mix") == "tpch" else
            "Half TPC-H queries, half light ones (point lookup, date-range count,\n"
            "count of the refreshed table); a new file and a refresh of `ticks` every second."),
        "",
        "| engine | queries | errors | queries/s | p50 ms | p99 ms | heavy p50 | heavy p99 | light p50 | light p99 | refreshes | refresh p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in r["engines"].items():
        lines.append(f"| {name} | {e['queries']} | {e['errors']} | {f(e['qps'])} | {f(e['p50_ms'])} | {f(e['p99_ms'])} | "
                     f"{f(e['heavy_p50_ms'])} | {f(e['heavy_p99_ms'])} | {f(e['light_p50_ms'])} | {f(e['light_p99_ms'])} | "
                     f"{e['refreshes']} | {f(e['refresh_p50_ms'])} |")
    for name, e in r["engines"].items():
        if "auth_cost" in e:
            a = e["auth_cost"]
            lines += ["", f"{name}, median of 3,000 requests on one connection: `GET /healthz` (no token) "
                      f"{a['healthz_no_token_us']:.0f} µs, `GET /v1/tokens` with the admin token "
                      f"{a['tokens_with_token_us']:.0f} µs, refused for a wrong token {a['refused_wrong_token_us']:.0f} µs."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
