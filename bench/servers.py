"""The servers under test: this function, the references and the tutorial baseline.

Each runs as a real process on a loopback port: functions-framework for the
functions, plain gunicorn (configured as functions-framework configures it) for
the tutorial-style Flask app.
"""

import os
import time
from pathlib import Path

from tests.server import ROOT, FunctionServer, call

FUNCTIONS = Path(__file__).resolve().parent / "functions"
TUTORIAL_BODY = b'{"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}'
JSON = {"Content-Type": "application/json"}

# name: (source, target); None marks the gunicorn-served tutorial baseline.
SERVERS = {
    "iris-predict": (ROOT / "main.py", "predict"),
    "lazy joblib": (FUNCTIONS / "lazy.py", "predict"),
    "hello world": (FUNCTIONS / "hello.py", "hello"),
    "tutorial baseline": None,
}


class Server(FunctionServer):
    """A FunctionServer that returns as soon as the process is spawned (we time the rest)."""

    def __init__(self, name: str):
        spec = SERVERS[name]
        super().__init__(**({"source": spec[0], "target": spec[1]} if spec else {}))
        self.name = name
        if spec is None:
            threads = os.environ.get("THREADS", str((os.cpu_count() or 1) * 4))
            self.command = [self.command[0], "-m", "gunicorn", "--workers=1",
                            f"--threads={threads}", "--timeout=0",
                            f"--bind=127.0.0.1:{self.port}",
                            "bench.functions.tutorial:app"]

    def wait_until_listening(self, timeout: float = 60):
        pass

    def first_200(self, timeout: float = 120) -> float:
        """Poll the tutorial POST until it answers 200; return seconds since spawn."""
        start = self.started
        deadline = start + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            try:
                reply = call(self.url, "POST", TUTORIAL_BODY, JSON)
            except OSError:
                time.sleep(0.002)
                continue
            if reply.status != 200:
                raise RuntimeError(f"{self.name} answered {reply.status}: {reply.body[:200]}")
            return time.perf_counter() - start
        raise RuntimeError(f"{self.name} gave no 200 within {timeout}s:\n{self.output()}")

    def __enter__(self):
        self.started = time.perf_counter()
        return super().__enter__()

    def worker_pid(self) -> int:
        """The gunicorn worker: the master's only child."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0])

    def peak_rss_mib(self) -> float:
        """VmHWM of the worker process (what served the requests), in MiB."""
        return _status_kib(self.worker_pid(), "VmHWM") / 1024

    def master_rss_mib(self) -> float:
        return _status_kib(self.process.pid, "VmRSS") / 1024

    def cpu_seconds(self) -> float:
        """CPU time (user + system) spent so far by the master and the worker.

        Less sensitive than wall time to other load on a shared machine.
        """
        return sum(_cpu_seconds(pid) for pid in (self.process.pid, self.worker_pid()))


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cold_start(name: str) -> tuple:
    """(wall seconds, CPU seconds) from spawning a server to its first 200 for the tutorial POST."""
    with Server(name) as server:
        return server.first_200(), server.cpu_seconds()
