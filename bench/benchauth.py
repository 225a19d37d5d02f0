"""The admin token the benchmark servers run with (TARN_ADMIN_TOKEN), and the header that
sends it."""
import os

TOKEN = os.environ.get("TARN_BENCH_TOKEN", "tarn-bench-admin-token")
HEADERS = {"authorization": f"Bearer {TOKEN}"}


def env(base=None):
    """`base` (default: this process's environment) with the servers' admin token."""
    e = dict(os.environ if base is None else base)
    e["TARN_ADMIN_TOKEN"] = TOKEN
    # Benchmark servers speak HTTP only: several may run side by side.
    e["TARN_MYSQL_LISTEN"] = ""
    e["TARN_FLIGHT_LISTEN"] = ""
    return e
