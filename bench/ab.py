"""Drives bench/ab.sh: see that script."""
import atexit
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tpch  # noqa: E402


def compare_loads(binaries, port, parquet, rounds):
    """The eight tables loaded by a fresh server of each build in turn, the order swapping every
    round: the median time until they answer and until they are placed, per build."""
    loads = ([], [])
    placed = ([], [])
    for r in range(rounds):
        for i in ([0, 1] if r % 2 == 0 else [1, 0]):
            t, load, done = start(binaries[i], port + i, parquet, timed=True)
            t.stop()
            loads[i].append(load)
            placed[i].append(done)
    med = lambda xs: statistics.median(xs)
    print(f"load, 8 tables (median of {rounds} alternating fresh servers): A {med(loads[0]):.2f} s, "
          f"B {med(loads[1]):.2f} s, B/A {med(loads[1]) / med(loads[0]):.3f}; until placed: A "
          f"{med(placed[0]):.2f} s, B {med(placed[1]):.2f} s, B/A {med(placed[1]) / med(placed[0]):.3f}",
          flush=True)


def start(binary, port, parquet, timed=False):
    """A server with the eight tables loaded and placed; answers it and its load time (and, when
    `timed`, the time until the rows were placed)."""
    work = tempfile.mkdtemp()
    # Gone when this script ends, however it ends (servers here write snapshots into it).
    atexit.register(shutil.rmtree, work, True)
    open(os.path.join(work, "tarn.toml"), "w").write(f'allowed_locations = ["file://{parquet}/"]\n')
    t = tpch.Tarn(binary, port, work, dict(os.environ))
    t.sql("CREATE DATABASE `default`")
    for n in tpch.TABLES:
        key = f" DATA_PLACEMENT_KEY = ({tpch.PLACEMENT[n]})" if n in tpch.PLACEMENT else ""
        t.sql(f"CREATE EXTERNAL TABLE `default`.{n} FILE_FORMAT = (FORMAT parquet) "
              f"FILES = (URI 'file://{parquet}/{n}.parquet')" + key)
    t0 = time.perf_counter()
    for n in tpch.TABLES:
        t.sql(f"ALTER TABLE `default`.{n} SECONDARY_LOAD")
    load = time.perf_counter() - t0
    t.wait_placed(tpch.PLACEMENT)
    if timed:
        return t, load, time.perf_counter() - t0
    return t, load


def compare(servers, qs, rounds, replan):
    """Each query on both servers, alternating which goes first; answers must agree."""
    for q, text in qs.items():
        why = tpch.same(*(s.sql(text)["rows"] for s in servers))
        if why is not None:
            raise SystemExit(f"Q{q}: the builds answer differently: {why}")
    times = {q: ([], []) for q in qs}
    for r in range(rounds):
        for q, text in qs.items():
            for i in ([0, 1] if r % 2 == 0 else [1, 0]):
                sql = f"/* ab {r} {i} */ {text}" if replan else text
                t0 = time.perf_counter()
                servers[i].sql(sql)
                times[q][i].append(time.perf_counter() - t0)
    medians = {q: (statistics.median(a), statistics.median(b)) for q, (a, b) in times.items()}
    ratios = [b / a for a, b in medians.values()]
    gm = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print(("planned each run" if replan else "kept plans") +
          f": B/A geometric mean {gm:.3f} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
          f"median of {rounds} alternating runs, ms A/B:")
    print(", ".join(f"Q{q} {a * 1000:.1f}/{b * 1000:.1f}" for q, (a, b) in medians.items()), flush=True)


def main():
    a_bin, b_bin, data, rounds, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    parquet = os.path.join(data, "parquet")
    qs = tpch.queries()
    compare_loads([a_bin, b_bin], port, parquet, int(os.environ.get("LOAD_RUNS", "5")))
    servers = []
    try:
        for i, binary in enumerate([a_bin, b_bin]):
            server, load = start(binary, port + i, parquet)
            servers.append(server)
            print(f"{'AB'[i]} = {binary}: load {load:.2f} s", flush=True)
        time.sleep(tpch.SETTLE)
        compare(servers, qs, rounds, replan=False)
        compare(servers, qs, rounds, replan=True)
    finally:
        for s in servers:
            s.stop()


main()
