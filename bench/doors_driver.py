"""Drives bench/doors.sh: SELECT * of TPC-H lineitem through each of Tarn's doors.

    python doors_driver.py TARN_BIN DATA_DIR RESULTS_DIR PORT MYSQL_PORT FLIGHT_PORT

One release server loads lineitem from DATA_DIR/parquet (plain DDL, snapshots on). Then, one door
at a time, the whole table is fetched: HTTP as an Arrow IPC stream (curl to /dev/null), Arrow
Flight SQL with ADBC (fetch_arrow_table, and batch by batch without keeping them), the MySQL
protocol with the `mysql` client in batch mode (to /dev/null) and with PyMySQL's unbuffered
cursor. Beside them, the reference: Arrow's own C++ Flight server holding the same answer, read by
the same pyarrow.flight client and by ADBC. For each: wall time, rows/s, the server's CPU seconds (so that
where the client is the limit, the server's own rate shows), the clients' CPU seconds, and the
server's resident memory at its peak during the fetch above what it held before. Writes RESULTS_DIR/doors-sf<N>.{json,md}.
"""
import atexit
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# numpy (through pyarrow) would otherwise start BLAS threads that spin beside the clients.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from benchauth import HEADERS, TOKEN
from benchauth import env as with_token

ROWS_SQL = "SELECT * FROM tpch.lineitem"


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


REPEAT = int(os.environ.get("TARN_BENCH_REPEAT", "5"))


def measure(pid, rows, run, repeat=None):
    """Runs `run()` `repeat` times (TARN_BENCH_REPEAT, 5 by default); answers the figures of the
    run of median wall time."""
    runs = sorted((measure_once(pid, rows, run) for _ in range(repeat or REPEAT)),
                  key=lambda m: m["seconds"])
    median = dict(runs[len(runs) // 2])
    median["runs"] = len(runs)
    return median


def client_cpu_seconds():
    """CPU seconds of this process (the Python clients) and of its finished children (`mysql`,
    curl)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def measure_once(pid, rows, run):
    """Runs `run()` once, sampling the server's RSS; answers the figures."""
    base = status(pid)
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], status(pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    cpu0, client0 = cpu_seconds(pid), client_cpu_seconds()
    t0 = time.perf_counter()
    got = run()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0
    client = client_cpu_seconds() - client0
    done.set()
    t.join()
    if got is not None and got != rows:
        raise SystemExit(f"expected {rows} rows, got {got}")
    return {"seconds": wall, "rows_per_s": rows / wall, "server_cpu_s": cpu,
            "rows_per_server_cpu_s": rows / cpu if cpu > 0 else None, "client_cpu_s": client,
            "server_rss_peak_above_before": peak[0] - base}


def main():
    binary, data, results, port, mysql_port, flight_port = sys.argv[1:7]
    parquet = os.path.join(data, "parquet")
    sf = os.path.basename(data.rstrip("/")).removeprefix("sf")
    work = tempfile.mkdtemp()
    # Gone when this script ends, however it ends (servers here write snapshots into it).
    atexit.register(shutil.rmtree, work, True)
    open(os.path.join(work, "tarn.toml"), "w").write(f'allowed_locations = ["file://{parquet}/"]\n')
    env = with_token()
    env["TARN_MYSQL_LISTEN"] = f"127.0.0.1:{mysql_port}"
    env["TARN_FLIGHT_LISTEN"] = f"127.0.0.1:{flight_port}"
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{work}/data",
                             "--config", f"{work}/tarn.toml"],
                            stdout=subprocess.DEVNULL, stderr=open(f"{work}/tarn.log", "a"), env=env)
    base = f"http://127.0.0.1:{port}"

    def sql(q, accept="application/json"):
        req = urllib.request.Request(base + "/v1/sql", data=q.encode(), method="POST",
                                     headers={**HEADERS, "accept": accept})
        with urllib.request.urlopen(req) as r:
            return r.read()

    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz")
                break
            except OSError:
                time.sleep(0.05)
        sql("CREATE DATABASE tpch")
        sql(f"CREATE EXTERNAL TABLE tpch.lineitem FILE_FORMAT = (FORMAT parquet) "
            f"FILES = (URI 'file://{parquet}/lineitem.parquet')")
        sql("ALTER TABLE tpch.lineitem SECONDARY_LOAD")
        rows = json.loads(sql("SELECT count(*) FROM tpch.lineitem"))["rows"][0][0]
        time.sleep(6)  # the load's freed memory goes back first
        out = {}
        curl = ["curl", "-sf", "-o", "/dev/null", "-H", f"authorization: Bearer {TOKEN}",
                "-H", "accept: application/vnd.apache.arrow.stream", "--data-binary", ROWS_SQL, base + "/v1/sql"]
        out["HTTP, Arrow IPC stream (curl)"] = measure(proc.pid, rows, lambda: subprocess.run(curl, check=True) and None)

        def http_pyarrow():
            import pyarrow as pa
            req = urllib.request.Request(base + "/v1/sql", data=ROWS_SQL.encode(), method="POST",
                                         headers={**HEADERS, "accept": "application/vnd.apache.arrow.stream"})
            with urllib.request.urlopen(req) as r:
                return pa.ipc.open_stream(r).read_all().num_rows
        out["HTTP, Arrow IPC stream (pyarrow read_all)"] = measure(proc.pid, rows, http_pyarrow)

        def flight(keep, port=flight_port, auth=True):
            import adbc_driver_flightsql.dbapi as flight_sql
            c = flight_sql.connect(f"grpc://127.0.0.1:{port}", autocommit=True,
                                   db_kwargs={"username": "admin", "password": TOKEN} if auth else None)
            cur = c.cursor()
            cur.execute(ROWS_SQL)
            if keep:
                n = cur.fetch_arrow_table().num_rows
            else:
                n = sum(b.num_rows for b in cur.fetch_record_batch())
            c.close()
            return n
        out["Arrow Flight SQL, ADBC fetch_arrow_table"] = measure(proc.pid, rows, lambda: flight(True))
        out["Arrow Flight SQL, ADBC batch by batch"] = measure(proc.pid, rows, lambda: flight(False))

        def flight_cpp(parallel):
            # Arrow's C++ Flight client (pyarrow.flight), with the Flight SQL command built by hand.
            import pyarrow.flight as fl

            def field(num, data):
                n, size = len(data), b""
                while True:
                    b, n = n & 0x7F, n >> 7
                    size += bytes([b | (0x80 if n else 0)])
                    if not n:
                        break
                return bytes([(num << 3) | 2]) + size + data
            command = field(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + \
                field(2, field(1, ROWS_SQL.encode()))
            client = fl.FlightClient(f"grpc://127.0.0.1:{flight_port}")
            options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {TOKEN}".encode())])
            info = client.get_flight_info(fl.FlightDescriptor.for_command(command), options)
            # Every endpoint at once, each on a thread of its own, into one table; or one after
            # another (the first then streams the whole answer, as one stream).
            from concurrent.futures import ThreadPoolExecutor
            import pyarrow as pa
            with ThreadPoolExecutor(len(info.endpoints) if parallel else 1) as pool:
                parts = list(pool.map(lambda e: client.do_get(e.ticket, options).read_all(), info.endpoints))
            return pa.concat_tables(parts).num_rows
        out["Arrow Flight SQL, pyarrow.flight read_all (C++ client)"] = measure(
            proc.pid, rows, lambda: flight_cpp(True))
        out["Arrow Flight SQL, pyarrow.flight read_all, one stream"] = measure(
            proc.pid, rows, lambda: flight_cpp(False))

        # The reference: Arrow's own C++ Flight server holding the same answer (as HTTP sent
        # it, same batches), read by the same client as one stream.
        answer = os.path.join(work, "lineitem.arrows")
        req = urllib.request.Request(base + "/v1/sql", data=ROWS_SQL.encode(), method="POST",
                                     headers={**HEADERS, "accept": "application/vnd.apache.arrow.stream"})
        with urllib.request.urlopen(req) as r, open(answer, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
        reference_port = int(flight_port) + 1
        reference = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "flight_reference.py"),
                                      answer, str(reference_port)], stdout=subprocess.PIPE, text=True)
        try:
            if reference.stdout.readline().strip() != "ready":
                raise SystemExit("the reference Flight server did not start")

            def reference_read():
                import pyarrow.flight as fl
                client = fl.FlightClient(f"grpc://127.0.0.1:{reference_port}")
                return client.do_get(fl.Ticket(b"lineitem")).read_all().num_rows
            out["Reference: Arrow's C++ Flight server, same batches, pyarrow.flight read_all"] = measure(
                reference.pid, rows, reference_read)
            # The same server read by ADBC, as Tarn's door is above: what this client costs when
            # the server costs next to nothing.
            out["Reference: Arrow's C++ Flight server, same batches, ADBC fetch_arrow_table"] = measure(
                reference.pid, rows, lambda: flight(True, reference_port, auth=False))
        finally:
            reference.terminate()
            reference.wait()
            os.remove(answer)
        mysql = ["mysql", "-h", "127.0.0.1", "-P", mysql_port, "-u", "admin", f"-p{TOKEN}", "--batch",
                 "--quick", "-e", ROWS_SQL]
        out["MySQL protocol, mysql client --batch --quick"] = measure(
            proc.pid, rows, lambda: subprocess.run(mysql, check=True, stdout=subprocess.DEVNULL) and None)

        def pymysql_rows():
            import pymysql
            import pymysql.cursors
            c = pymysql.connect(host="127.0.0.1", port=int(mysql_port), user="admin", password=TOKEN,
                                cursorclass=pymysql.cursors.SSCursor)
            cur = c.cursor()
            cur.execute(ROWS_SQL)
            n = sum(1 for _ in cur)
            c.close()
            return n
        # A minute a run: once.
        out["MySQL protocol, PyMySQL unbuffered cursor"] = measure(proc.pid, rows, pymysql_rows, repeat=1)
    finally:
        proc.terminate()
        proc.wait()
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{os.cpu_count()} cores, {platform.machine()}", "scale_factor": sf, "rows": rows,
              "doors": out}
    os.makedirs(results, exist_ok=True)
    path = os.path.join(results, f"doors-sf{sf}")
    json.dump(report, open(path + ".json", "w"), indent=1)
    lines = [f"# SELECT * of TPC-H lineitem SF{sf} ({rows:,} rows) through each door",
             "", f"{report['date']}, {report['machine']}; each the run of median time.", "",
             "| door and client | runs | seconds | rows/s | server CPU s | rows per server CPU s | client CPU s | server RSS peak above before |",
             "|---|---|---|---|---|---|---|---|"]
    for name, d in out.items():
        per_cpu = d["rows_per_server_cpu_s"]
        lines.append(f"| {name} | {d['runs']} | {d['seconds']:.2f} | {d['rows_per_s'] / 1e6:.2f} M | {d['server_cpu_s']:.2f} | "
                     f"{'-' if per_cpu is None else f'{per_cpu / 1e6:.2f} M'} | {d['client_cpu_s']:.2f} | "
                     f"{d['server_rss_peak_above_before'] / 2**20:.0f} MiB |")
    open(path + ".md", "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
