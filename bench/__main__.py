"""Benchmark iris-predict beside its references and peers, all measured in the same run.

    python -m bench               # the full run, as `make bench` (docs/performance.md)
    python -m bench --no-peers    # the same without MLflow, BentoML and MLServer
    python -m bench --quick       # a tiny configuration (seconds), to check the benchmark works

Prints a table with each figure beside its same-run reference and the targets,
writes every figure to bench/results/<UTC time>.json and latest.json, and draws
the chart (docs/bench.svg in a full run with its peers; the results folder always).
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

from bench import chart, cloudrun, inprocess, load, pipeline, report, trees, venvs
from bench.bodies import batch_bodies
from bench.servers import (ASGI_DECODING, ASGI_HELLO, CLOUD_RUN_SERVERS, CLOUD_RUN_SOURCES,
                           FLASK_HELLO, FUNCTION, INLINE, LAZY, MLFLOW, PEER_NAMES, PIPELINE,
                           PIPELINE_MODEL, PROTOCOL_VARIANTS, SPECS,
                           STACK_VARIANTS, THREADED, TREE_DIRECTORY, TREE_SERVERS,
                           TREE_WORKSPACE, TUTORIAL,
                           Server, save_mlflow_model)
from harness import ROOT

RESULTS = Path(__file__).resolve().parent / "results"
CHART = ROOT / "docs" / "bench.svg"
# Cold starts: the function, the references its targets name, the train.py pipeline model,
# the function and references as a Cloud Run instance starts them, and the peers.
COLD = (FUNCTION, FLASK_HELLO, ASGI_HELLO, TUTORIAL, LAZY, PIPELINE, *TREE_SERVERS,
        *CLOUD_RUN_SERVERS.values())
# Warm load: those, plus reference (b) on other HTTP parsers and event loops, and the
# function asked in its peers' protocols.
WARM = (FUNCTION, FLASK_HELLO, ASGI_HELLO, *STACK_VARIANTS, TUTORIAL, LAZY, *PROTOCOL_VARIANTS,
        PIPELINE, *TREE_SERVERS)
# Worker peak RSS: the function (its target), its references, the pipeline model.
PEAK_RSS = (FUNCTION, FLASK_HELLO, ASGI_HELLO, PIPELINE, *TREE_SERVERS)
# 1,000-row batches against connections: the function as shipped (those batches on the event
# loop) and with them on a worker thread (what main.THREAD_ROWS chooses between), and
# reference (b) reading and decoding the same body.
BATCH_SERVERS = (FUNCTION, THREADED, ASGI_DECODING)
FULL = {"cold_runs": 15, "warm_seconds": 2, "warm_rounds": 5, "connections": 8,
        "batch_rows": (1, 100, 1000, 10000), "batch_seconds": 1, "batch_rounds": 3,
        "stall_connections": (2, 8), "stall_seconds": 2, "stall_rounds": 5,
        "concurrency": (1, 2, 4, 8, 16, 32, 64), "concurrency_seconds": 2,
        "concurrency_rounds": 3, "mix_rows": 1000, "mix_every": 100,
        "big_rows": 10000, "inprocess_seconds": 1.0,
        "batch_connections": (1, 8, 32), "batch_concurrency_rows": 1000,
        "batch_concurrency_seconds": 2, "batch_concurrency_rounds": 3}
QUICK = {**FULL, "cold_runs": 1, "warm_seconds": 1, "warm_rounds": 1,
         "batch_rows": (1, 1000), "batch_rounds": 1, "stall_connections": (2,),
         "stall_seconds": 1, "stall_rounds": 1, "concurrency": (1, 8),
         "concurrency_seconds": 1, "concurrency_rounds": 1, "inprocess_seconds": 0.02,
         "batch_connections": (1, 8), "batch_concurrency_seconds": 1,
         "batch_concurrency_rounds": 1}


class Bench:
    """One run: the venvs, the servers that can run, and why the others cannot."""

    def __init__(self, config: dict, peers: bool, quick: bool):
        self.config = config
        self.unavailable = {}
        self.peers = []
        if quick:  # this interpreter's venv: creating venvs takes minutes
            self.bins = {"project": Path(sys.executable).parent,
                         venvs.CLOUD_RUN: venvs.Unavailable("--quick builds no venv")}
        else:
            needed = ["project", venvs.CLOUD_RUN] + (
                [SPECS[name].venv for name in PEER_NAMES] if peers else [])
            self.bins = venvs.ensure(needed)
        if isinstance(self.bins[venvs.CLOUD_RUN], venvs.Unavailable):
            for name in CLOUD_RUN_SERVERS.values():
                self.drop(name, str(self.bins[venvs.CLOUD_RUN]))
        else:
            cloudrun.prepare(self.bins[venvs.CLOUD_RUN],
                             {server: source for server, (source, _) in CLOUD_RUN_SOURCES.items()})
        for name in PEER_NAMES if peers else ():
            found = self.bins.get(SPECS[name].venv)
            if isinstance(found, venvs.Unavailable):
                self.drop(name, str(found))
            else:
                self.peers.append(name)
        if MLFLOW in self.peers:
            self.attempt(MLFLOW, lambda: save_mlflow_model(self.bins["mlflow"]))
        pipeline.make(self.bins["project"], PIPELINE_MODEL)
        # Fitted here: this interpreter has the training libraries.
        trees.make(TREE_DIRECTORY, trees.QUICK_ROWS if quick else trees.ROWS)
        cloudrun.workspace(TREE_WORKSPACE, cloudrun.bundle(), self.bins["project"] / "python")

    def server(self, name: str, prefix: tuple = ()) -> Server:
        return Server(name, self.bins[SPECS[name].venv], prefix)

    def drop(self, name: str, why: str):
        """A peer that cannot run here: say why, and go on without it."""
        say(f"{name} left out: {why}")
        self.unavailable[name] = why
        if name in self.peers:
            self.peers.remove(name)

    def attempt(self, name: str, fn):
        """fn(); for a peer, a failure drops it (and returns None) instead of ending the run."""
        if name not in PEER_NAMES:
            return fn()
        try:
            return fn()
        except Exception as e:  # any failure of a peer: it is theirs, not ours to debug
            self.drop(name, f"{type(e).__name__}: {e}")
            return None


def cold_starts(bench: Bench) -> dict:
    """Median seconds from spawn to first 200, servers interleaved in rotating order."""
    names = list(COLD) + bench.peers
    with bench.server(FUNCTION) as server:
        server.first_200()  # warm the page cache; not counted
    times = {name: [] for name in names}
    for run in range(bench.config["cold_runs"]):
        for name in names[run % len(names):] + names[:run % len(names)]:  # no favoured slot
            if name in bench.unavailable:
                continue
            measured = bench.attempt(name, lambda: cold_start(bench.server(name)))
            if measured is not None:
                times[name].append(measured)
    return {name: {"median_s": statistics.median(wall for wall, _ in t),
                   "median_cpu_s": statistics.median(cpu for _, cpu in t),
                   "runs_s": [wall for wall, _ in t], "runs_cpu_s": [cpu for _, cpu in t]}
            for name, t in times.items() if name not in bench.unavailable}


def cold_start(server: Server) -> tuple:
    """(wall seconds, CPU seconds of the process tree) from spawn to the first 200."""
    with server:
        return server.first_200(), server.cpu_seconds()


def warm(bench: Bench, servers: dict) -> dict:
    """Requests/s, latency and CPU per request at the configured connections.

    Servers alternate round by round, so that a noisy moment hits them all alike.
    """
    config = bench.config
    runs = {name: [] for name in servers}
    for _ in range(config["warm_rounds"]):
        for name, server in list(servers.items()):
            if name in bench.unavailable:
                continue
            measured = bench.attempt(name, lambda: load_with_cpu(server, config))
            if measured is not None:
                runs[name].append(measured)
    return {name: medians(rounds) for name, rounds in runs.items()
            if name not in bench.unavailable}


def load_with_cpu(server: Server, config: dict, body: bytes | None = None,
                  connections: int | None = None, seconds: float | None = None) -> dict:
    """load.run(), plus the server's CPU time per request (µs): its cost whatever else runs.

    By default the warm load: its one-flower body, at the configured connections and seconds.
    """
    cpu = server.cpu_seconds()
    measured = load.run(server.endpoint, server.spec.body if body is None else body,
                        connections or config["connections"], seconds or config["warm_seconds"])
    measured["cpu_us"] = (server.cpu_seconds() - cpu) / measured["requests"] * 1e6
    return measured


def medians(rounds: list) -> dict:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def batches(bench: Bench, servers: dict) -> dict:
    """Rows/s for each batch size and shape, one connection; reference (b) gets the same body."""
    config = bench.config
    runs = {}
    for _ in range(config["batch_rounds"]):
        for rows in config["batch_rows"]:
            for shape, body in batch_bodies(rows).items():
                for name in (FUNCTION, ASGI_HELLO):
                    measured = load.run(servers[name].endpoint, body, 1, config["batch_seconds"])
                    runs.setdefault((shape, rows, name), []).append(measured["rps"] * rows)
    result = {}
    for rows in config["batch_rows"]:
        for shape, body in batch_bodies(rows).items():
            result[f"{shape} {rows}"] = {
                "rows": rows, "bytes": len(body),
                "rows_per_s": statistics.median(runs[shape, rows, FUNCTION]),
                "hello_rows_per_s": statistics.median(runs[shape, rows, ASGI_HELLO])}
    return result


def batch_concurrency(bench: Bench) -> dict:
    """Rows/s of 1,000-row `instances` batches at 1 to 32 connections, beside reference (b)
    reading and decoding the same body; the servers on one CPU, wrk on the other.

    The function as shipped (such batches on the event loop) and with them on a worker
    thread: how batches share the CPU (main.THREAD_ROWS) is chosen by these figures.
    """
    config = bench.config
    rows = config["batch_concurrency_rows"]
    body = batch_bodies(rows)["instances"]
    runs = {}
    with pinned() as (prefix, cpus), contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(bench.server(name, prefix))
                   for name in BATCH_SERVERS}
        for server in servers.values():
            server.first_200()
        for _ in range(config["batch_concurrency_rounds"]):
            for c in config["batch_connections"]:
                for name, server in servers.items():
                    measured = load_with_cpu(server, config, body, c,
                                             config["batch_concurrency_seconds"])
                    measured["rows_per_s"] = measured["rps"] * rows
                    runs.setdefault((name, c), []).append(measured)
    result = {"cpus": cpus, "rows": rows, "bytes": len(body)}
    for (name, c), rounds in runs.items():
        result.setdefault(name, {})[str(c)] = medians(rounds)
    return result


@contextlib.contextmanager
def pinned():
    """The server's taskset prefix for one CPU, while this process (and wrk) runs on another.

    On a machine with one CPU, nothing is pinned: the prefix is empty.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        yield (), None
        return
    os.sched_setaffinity(0, {cpus[1]})  # threads and processes started from here inherit it
    try:
        yield ("taskset", "-c", str(cpus[0])), cpus[:2]
    finally:
        os.sched_setaffinity(0, set(cpus))


def stall(bench: Bench) -> dict:
    """One-flower latency alone and while another client posts 10,000-row batches back to back.

    For the function as shipped (big batches answered on a worker thread) and with
    every batch answered on the event loop; the server on one CPU, the clients on another.
    """
    config = bench.config
    big = batch_bodies(config["big_rows"])["instances"]
    runs = {}
    with pinned() as (prefix, cpus), contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(bench.server(name, prefix))
                   for name in (FUNCTION, INLINE)}
        for server in servers.values():
            server.first_200()
        for _ in range(config["stall_rounds"]):
            for c in config["stall_connections"]:
                for name, server in servers.items():
                    body, seconds = server.spec.body, config["stall_seconds"]
                    runs.setdefault((name, c, "alone"), []).append(
                        load.run(server.endpoint, body, c, seconds))
                    with load.Background(server.endpoint, big) as batches_:
                        measured = load.run(server.endpoint, body, c, seconds)
                    measured["batch_rows_per_s"] = batches_.sent * config["big_rows"] / \
                        batches_.seconds
                    runs.setdefault((name, c, "with batches"), []).append(measured)
    result = {"cpus": cpus}
    for (name, c, case), rounds in runs.items():
        result.setdefault(name, {}).setdefault(str(c), {})[case] = medians(rounds)
    return result


def concurrency(bench: Bench) -> dict:
    """p50/p99 and requests/s against concurrency, the server pinned to one CPU.

    One-flower requests alone, and a mix where every mix_every-th request is a
    mix_rows-row batch.
    """
    config = bench.config
    big = batch_bodies(config["mix_rows"])["instances"]
    runs = {}
    with pinned() as (prefix, cpus), bench.server(FUNCTION, prefix) as server:
        server.first_200()
        for _ in range(config["concurrency_rounds"]):
            for c in config["concurrency"]:
                seconds = config["concurrency_seconds"]
                runs.setdefault(("one flower", c), []).append(
                    load.run(server.endpoint, server.spec.body, c, seconds))
                runs.setdefault(("mix", c), []).append(load.run(
                    server.endpoint, server.spec.body, c, seconds, big, config["mix_every"]))
    result = {"cpus": cpus}
    for (case, c), rounds in runs.items():
        result.setdefault(case, {})[str(c)] = medians(rounds)
    return result


def run(bench: Bench) -> dict:
    started = time.perf_counter()
    config = bench.config
    results = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
               "machine": machine(), "load_tool": load.tool()}
    say(f"cold starts: {config['cold_runs']} rounds")
    results["cold_start"] = cold_starts(bench)
    say(f"warm load: {config['warm_rounds']} rounds of {config['warm_seconds']} s per server; "
        "then batches")
    with contextlib.ExitStack() as stack:
        servers = {}
        for name in list(WARM) + bench.peers:
            server = stack.enter_context(bench.server(name))
            if bench.attempt(name, server.first_200) is not None:
                servers[name] = server
        results["warm"] = warm(bench, servers)
        results["memory_mib"] = {name: s.memory_mib() for name, s in servers.items()
                                 if name not in bench.unavailable}
        results["batch"] = batches(bench, servers)
        results["peak_rss_mib"] = {name: servers[name].peak_rss_mib() for name in PEAK_RSS}
    say("1,000-row batches against connections, the servers on one CPU")
    results["batch_concurrency"] = batch_concurrency(bench)
    say("one-flower latency under 10,000-row batches")
    results["stall"] = stall(bench)
    say("concurrency, the server on one CPU")
    results["concurrency"] = concurrency(bench)
    say("1,000-row batches of the tree models in process, beside their libraries")
    results["tree_batches"] = trees.measure_batches(TREE_DIRECTORY)
    say("explanations of the tree models in process, beside SHAP's C++ TreeExplainer")
    results["tree_explanations"] = trees.measure_explanations(TREE_DIRECTORY)
    say("in-process stages")
    results["inprocess"] = inprocess.measure_in(bench.bins["project"],
                                                config["inprocess_seconds"])
    results["unavailable"] = bench.unavailable
    results["versions"] = {venv: venvs.versions(venv) for venv, found in bench.bins.items()
                           if not isinstance(found, venvs.Unavailable) and venv != "project"}
    results["seconds"] = time.perf_counter() - started
    return results


def say(text: str):
    """Progress, on stderr: a full run takes minutes."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "load_average": os.getloadavg()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a tiny configuration (seconds); no peers, no venvs created")
    parser.add_argument("--no-peers", action="store_true",
                        help="leave out MLflow, BentoML and MLServer (and their venvs)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args(argv)
    # Stopped (SIGTERM), the run unwinds: every server it started is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    bench = Bench(QUICK if args.quick else FULL, peers=not (args.quick or args.no_peers),
                  quick=args.quick)
    results = run(bench)
    results["targets"] = report.verdicts(results)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    text = json.dumps(results, indent=2)
    for name in (f"{stamp}.json", "latest.json"):
        (args.output / name).write_text(text)
    svg = chart.draw(results)
    # The committed chart shows a full run with its peers, nothing less.
    charts = [args.output / "latest.svg"] + ([] if args.quick or args.no_peers else [CHART])
    for path in charts:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg)
    print()
    print(report.render(results))
    print(f"\nJSON: {args.output / 'latest.json'}; chart: {', '.join(map(str, charts))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
