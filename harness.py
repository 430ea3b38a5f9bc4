"""Real servers on loopback, HTTP calls to them, and what /proc says about their processes.

Shared by tests/ and bench/: nothing here fakes a server or a client. Not part of
the deployed bundle (.gcloudignore lets in only what serving needs).
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict  # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(url: str, method: str = "GET", body=None, headers: dict | None = None,
         timeout: float = 30) -> Reply:
    """One HTTP request; `body` may be bytes, str, or any JSON value (sent as JSON)."""
    headers = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    parts = urlsplit(url)
    path = parts.path or "/"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, f"{path}?{parts.query}" if parts.query else path, body=body,
                     headers=headers)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        conn.close()


class Server:
    """Any server command on a free loopback port, as a context manager.

    `command` is a function of the port (or None: a subclass sets self.command). The
    server runs in a session of its own, so that leaving stops everything it started,
    however it forks (gunicorn's workers, a peer's worker processes). With
    `wait=False`, entering returns at once and the caller decides what "ready" means
    (the benchmark times it).
    """

    def __init__(self, command=None, env: dict | None = None, cwd: Path = ROOT,
                 wait: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = command(self.port) if command else None
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cwd = cwd
        self.wait = wait
        self.log = tempfile.TemporaryFile()
        self.process = None
        self.started = None

    def __enter__(self):
        self.started = time.perf_counter()
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        if self.wait:
            try:
                self.wait_until_listening()
            except BaseException:  # `with` will not call __exit__: stop what was started
                self.__exit__()
                raise
        return self

    def wait_until_listening(self, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not listen within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __exit__(self, *exc):
        self.stop()
        self.log.close()

    def stop(self, timeout: float = 15):
        """SIGTERM to the server's session; SIGKILL to whatever is left after `timeout`."""
        group = self.process.pid  # the session leader's id is its process group's id
        _signal_group(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(group, signal.SIGKILL)  # stragglers: workers the leader did not reap
        self.process.wait()

    def call(self, method: str = "GET", body=None, headers: dict | None = None,
             path: str = "/") -> Reply:
        return call(self.url + path, method, body, headers)

    def tree(self) -> list[int]:
        """The server's process and all its descendants."""
        return tree(self.process.pid)


def _signal_group(group: int, sig: int):
    try:
        os.killpg(group, sig)
    except ProcessLookupError:  # every process in it has exited
        pass


class FunctionServer(Server):
    """`functions-framework --target=predict` on a free loopback port, as a context manager."""

    def __init__(self, env: dict | None = None, source: Path = ROOT / "main.py",
                 target: str = "predict", cwd: Path = ROOT, python: str = sys.executable,
                 wait: bool = True, prefix: tuple = ()):
        super().__init__(lambda port: [*prefix, python, "-m", "functions_framework",
                                       f"--target={target}", f"--source={source}",
                                       "--host=127.0.0.1", f"--port={port}"],
                         env, cwd, wait)


# What /proc says about a process (Linux): figures for tests and the benchmark.

def children(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (gunicorn's workers under its master)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants, parents first."""
    found, i = [pid], 0
    while i < len(found):
        found.extend(children(found[i]))
        i += 1
    return found


def status_kib(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status in KiB: VmRSS (now), VmHWM (peak), ..."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def rss_kib(pid: int) -> int:
    """Resident memory of a process now (KiB)."""
    return status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The most resident memory the process ever had (VmHWM, KiB)."""
    return status_kib(pid, "VmHWM")


def pss_kib(pid: int) -> int:
    """Proportional set size (KiB): pages shared with other processes count in part."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss for process {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_memory_kib(pid: int) -> dict:
    """{"rss": sum of VmRSS, "pss": sum of Pss, "processes": count} over the process tree.

    The RSS sum counts pages that a fork shares once per process (the function's
    master and worker share most of theirs); the PSS sum splits them.
    """
    rss = pss = count = 0
    for member in tree(pid):
        try:
            rss += rss_kib(member)
            pss += pss_kib(member)
            count += 1
        except (OSError, RuntimeError):  # exited while we looked, or a zombie
            continue
    return {"rss": rss, "pss": pss, "processes": count}
