"""Warm load against a live server on loopback: wrk when installed, else Python threads.

Both keep connections alive, POST the tutorial body, run for a fixed time and
report requests/s with p50 and p99 latency; any non-200 answer fails the run.
"""

import http.client
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

WRK_SCRIPT = """wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
"""
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def tool() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def run(url: str, body: bytes, connections: int, seconds: float) -> dict:
    """{"rps", "p50_ms", "p99_ms"} for `connections` keep-alive clients over `seconds`."""
    if tool() == "wrk":
        return _wrk(url, body, connections, seconds)
    return _python(url, body, connections, seconds)


def _wrk(url: str, body: bytes, connections: int, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT.format(body=body.decode()))
        script.flush()
        out = subprocess.run(
            ["wrk", "--threads=1", f"--connections={connections}",
             f"--duration={max(1, round(seconds))}s",
             "--timeout=10s", "--latency", f"--script={script.name}", url],
            capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)$", out, re.M))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": _ms(percentiles["50"]), "p99_ms": _ms(percentiles["99"])}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(number) * UNITS[unit] * 1e3


def _python(url: str, body: bytes, connections: int, seconds: float) -> dict:
    parts = urlsplit(url)
    latencies, failures = [], []
    stop = time.perf_counter() + seconds

    def client():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine = []
        while time.perf_counter() < stop:
            seconds, status = _post(conn, body)
            mine.append(seconds)
            if status != 200:
                failures.append(status)
        conn.close()
        latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. status {failures[0]}")
    cuts = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50_ms": cuts[49] * 1e3, "p99_ms": cuts[98] * 1e3}


def post_seconds(url: str, body: bytes, repeat: int) -> float:
    """Median seconds for one POST of `body` over a kept-alive connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    times = []
    try:
        for _ in range(repeat):
            seconds, status = _post(conn, body)
            times.append(seconds)
            if status != 200:
                raise RuntimeError(f"POST answered {status}")
    finally:
        conn.close()
    return statistics.median(times)


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple:
    """(seconds, status) of one JSON POST on a kept-alive connection."""
    start = time.perf_counter()
    conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return time.perf_counter() - start, response.status
