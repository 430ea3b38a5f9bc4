"""Load against a live server on loopback: wrk when installed, else Python threads.

Both keep connections alive, POST a JSON body (or a mix: every `every`-th request
a second, bigger body), run for a fixed time and report requests/s with p50 and
p99 latency; any non-2xx answer fails the run.
"""

import http.client
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from urllib.parse import urlsplit

JSON = {"Content-Type": "application/json"}
# Bodies go in level-2 long brackets: JSON arrays end in "]]", never in "]==]".
# One body, sent as is by wrk's C code: the fastest way it has.
WRK_ONE_BODY = """wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
"""
# Two bodies: a Lua function builds each request (slower, but wrk stays far ahead of a server).
WRK_MIX = """local headers = {{["Content-Type"] = "application/json"}}
local small = [==[{body}]==]
local big = [==[{big}]==]
local n = 0
request = function()
  n = n + 1
  if n % {every} == 0 then return wrk.format("POST", nil, headers, big) end
  return wrk.format("POST", nil, headers, small)
end
"""
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def tool() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def run(url: str, body: bytes, connections: int, seconds: float,
        big: bytes | None = None, every: int = 0) -> dict:
    """{"requests", "rps", "p50_ms", "p99_ms"} for `connections` keep-alive clients over `seconds`.

    With `big`, every `every`-th request sends `big` instead of `body`.
    """
    if tool() == "wrk":
        return _wrk(url, body, connections, seconds, big, every)
    return _python(url, body, connections, seconds, big, every)


def _wrk(url, body, connections, seconds, big, every) -> dict:
    if big is None:
        script_text = WRK_ONE_BODY.format(body=body.decode())
    else:
        script_text = WRK_MIX.format(body=body.decode(), big=big.decode(), every=every)
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(script_text)
        script.flush()
        out = subprocess.run(
            ["wrk", "--threads=1", f"--connections={connections}",
             f"--duration={max(1, round(seconds))}s",
             "--timeout=10s", "--latency", f"--script={script.name}", url],
            capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)$", out, re.M))
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": _ms(percentiles["50"]), "p99_ms": _ms(percentiles["99"])}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(number) * UNITS[unit] * 1e3


def _python(url, body, connections, seconds, big, every) -> dict:
    parts = urlsplit(url)
    latencies, failures = [], []
    stop = time.perf_counter() + seconds

    def client():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine, n = [], 0
        while time.perf_counter() < stop:
            n += 1
            took, status = _post(conn, parts.path or "/", big if every and n % every == 0
                                 else body)
            mine.append(took)
            if not 200 <= status < 300:
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
    return {"requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50_ms": cuts[49] * 1e3, "p99_ms": cuts[98] * 1e3}


class Background:
    """A client posting `body` back to back on one connection until stopped (a thread)."""

    def __init__(self, url: str, body: bytes):
        self.parts = urlsplit(url)
        self.body = body
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._post_until_stopped, daemon=True)
        self.error = None

    def _post_until_stopped(self):
        conn = http.client.HTTPConnection(self.parts.hostname, self.parts.port, timeout=60)
        try:
            while not self._stop.is_set():
                _, status = _post(conn, self.parts.path or "/", self.body)
                if status != 200:
                    raise RuntimeError(f"background POST answered {status}")
                self.sent += 1
        except Exception as e:  # reported by __exit__, in the benchmark's thread
            self.error = e
        finally:
            conn.close()

    def __enter__(self):
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self.started
        if self.error is not None:
            raise self.error


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple:
    """(seconds, status) of one JSON POST on a kept-alive connection."""
    start = time.perf_counter()
    conn.request("POST", path, body=body, headers=JSON)
    response = conn.getresponse()
    response.read()
    return time.perf_counter() - start, response.status
