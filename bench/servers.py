"""The servers under test: this function, its references and its peers, each a real process.

Each server has a venv (bench/venvs.py), a command, and the one-flower request
in its own protocol. The function and the references on its own stack run
from the project venv (requirements.txt); each peer from its own.
"""

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import harness
from harness import ROOT, call
from bench import cloudrun, trees
from bench.pipeline import ONE_ROW
from bench.venvs import CLOUD_RUN, PEERS, VENVS

FUNCTIONS = Path(__file__).resolve().parent / "functions"
FLOWER = [3.0, 2.0, 1.0, 1.0]
TUTORIAL_BODY = b'{"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}'
JSON = {"Content-Type": "application/json"}
FUNCTION = "iris-predict"
FLASK_HELLO = "(a) Flask hello"
ASGI_HELLO = "(b) ASGI hello"
ASGI_DECODING = "(b) decoding the body"  # reads the body and decodes it with orjson
TUTORIAL = "(c) tutorial app"
LAZY = "lazy joblib"
MLFLOW = "(d) MLflow 3.17.2"
BENTOML = "(e) BentoML 1.4.40"
MLSERVER = "(f) MLServer 1.7.1"
# The bench's XGBoost model (bench/trees.py) in MLServer's XGBoost runtime, which imports
# XGBoost and takes the model's own columns: the row the function is sent, coded as the
# pipeline's ColumnTransformer codes it.
MLSERVER_XGBOOST = "(f) MLServer 1.7.1, XGBoost runtime"
INLINE = "iris-predict, batches inline"
THREADED = "iris-predict, 1,000-row batches on a thread"
# A model train.py makes from a table with categories (bench/pipeline.py), served alike.
PIPELINE = "iris-predict, train.py pipeline"
# The tree models of bench/trees.py and the linear pipeline on the same table, served alike.
TREE_MODELS = {trees.LINEAR: "20 features: linear pipeline", trees.XGBOOST: "20 features: XGBoost",
               trees.HIST: "20 features: HistGradientBoosting",
               trees.FOREST: "20 features: random forest"}
TREE_SERVERS = tuple(TREE_MODELS.values())
TREE_DIRECTORY = VENVS / "tree-models"  # made anew each run
# The tree servers and their linear reference serve from a copy of the bundle compiled as the
# buildpack compiles it (bench/cloudrun.py), made anew each run: started from this tree where
# PYTHONDONTWRITEBYTECODE is set, each start compiled the project's sources again, and a tree
# model the tree evaluator's modules too, which a Cloud Run instance never does.
TREE_WORKSPACE = VENVS / "tree-workspace"
H11_ASYNCIO = "(b) on h11 + asyncio"
HTTPTOOLS_ASYNCIO = "(b) on httptools + asyncio"
TUNED_PROTOCOL = "(b) on the function's protocol"
STACK_VARIANTS = (H11_ASYNCIO, HTTPTOOLS_ASYNCIO, TUNED_PROTOCOL)
# The function asked for one flower in a peer's protocol, which it also speaks (docs/api.md).
FUNCTION_MLFLOW = "iris-predict, MLflow's request"
FUNCTION_V2 = "iris-predict, Open Inference request"
PROTOCOL_VARIANTS = (FUNCTION_MLFLOW, FUNCTION_V2)
MLFLOW_BODY = json.dumps({"inputs": [FLOWER]}).encode()
V2_PATH = "/v2/models/iris/infer"
V2_BODY = json.dumps({"inputs": [{"name": "flowers", "shape": [1, 4], "datatype": "FP64",
                                  "data": FLOWER}]}).encode()
CHURN_V2_PATH = "/v2/models/churn/infer"
CHURN_V2_BODY = json.dumps({
    "inputs": [{"name": "churn", "shape": [1, len(trees.ONE_ROW_CODED)], "datatype": "FP64",
                "data": trees.ONE_ROW_CODED}],
    "outputs": [{"name": "predict_proba"}]}).encode()  # probabilities, as the function's
IRIS_PEERS = (MLFLOW, BENTOML, MLSERVER)  # serving the iris model, as the function does
PEER_NAMES = (*IRIS_PEERS, MLSERVER_XGBOOST)


@dataclass(frozen=True)
class Spec:
    """How to start one server and ask it for one flower."""

    venv: str
    launch: Callable  # (bin directory, port) -> (argv, extra environment)
    path: str = "/"
    body: bytes = TUTORIAL_BODY
    env: dict = field(default_factory=dict)
    cwd: Path = ROOT


def functions_framework(source: Path, target: str) -> Callable:
    def launch(bin_dir: Path, port: int):
        return [str(bin_dir / "python"), "-m", "functions_framework", f"--target={target}",
                f"--source={source}", "--host=127.0.0.1", f"--port={port}"], {}
    return launch


def _path_with(bin_dir: Path) -> str:
    """PATH with a venv's bin directory first: peers start their own tools by name."""
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def tutorial(bin_dir: Path, port: int):
    """gunicorn configured as functions-framework configures it for a Flask app."""
    threads = os.environ.get("THREADS", str((os.cpu_count() or 1) * 4))
    return [str(bin_dir / "python"), "-m", "gunicorn", "--workers=1", f"--threads={threads}",
            "--timeout=0", f"--bind=127.0.0.1:{port}", "bench.functions.tutorial:app"], {}


PIPELINE_MODEL = VENVS / "pipeline-model" / "garden.joblib"  # made anew each run
PIPELINE_BODY = json.dumps(ONE_ROW).encode()


# MLflow serves a model directory: model.joblib saved anew by save_mlflow_model() each run.
MLFLOW_MODEL = VENVS / "mlflow-model"


def save_mlflow_model(bin_dir: Path):
    """model.joblib through mlflow.sklearn.save_model, in MLflow's venv; raises on failure."""
    shutil.rmtree(MLFLOW_MODEL, ignore_errors=True)
    run = subprocess.run([str(bin_dir / "python"), str(PEERS / "mlflow" / "save_model.py"),
                          str(MLFLOW_MODEL)], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        raise RuntimeError(f"mlflow.sklearn.save_model failed:\n{run.stderr[-2000:]}")


def mlflow(bin_dir: Path, port: int):
    # `mlflow models serve` execs uvicorn, which it finds on PATH.
    return [str(bin_dir / "mlflow"), "models", "serve", "-m", str(MLFLOW_MODEL),
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"], {
        "PATH": _path_with(bin_dir),
        "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def bentoml(bin_dir: Path, port: int):
    return [str(bin_dir / "bentoml"), "serve", "service:Iris", "--working-dir",
            str(PEERS / "bentoml"), "--host", "127.0.0.1", "-p", str(port)], {
        "PATH": _path_with(bin_dir),
        "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(VENVS / "bentoml-home")}


def mlserver(models: Path) -> Callable:
    def launch(bin_dir: Path, port: int):
        # One inference worker process beside the HTTP server: MLServer's default.
        return [str(bin_dir / "mlserver"), "start", str(models)], {
            "PATH": _path_with(bin_dir),
            "MLSERVER_HOST": "127.0.0.1", "MLSERVER_HTTP_PORT": str(port),
            "MLSERVER_GRPC_PORT": str(harness.free_port()),
            "MLSERVER_METRICS_PORT": str(harness.free_port()),
            "MLSERVER_PARALLEL_WORKERS": "1"}
    return launch


function = functions_framework(ROOT / "main.py", "predict")
hello_asgi = functions_framework(FUNCTIONS / "hello_asgi.py", "hello")
inline = functions_framework(FUNCTIONS / "inline.py", "predict")
SPECS = {
    FUNCTION: Spec("project", function),
    FLASK_HELLO: Spec("project", functions_framework(FUNCTIONS / "hello.py", "hello")),
    ASGI_HELLO: Spec("project", hello_asgi),
    ASGI_DECODING: Spec("project", hello_asgi, env={"HELLO_DECODE": "orjson"}),
    TUTORIAL: Spec("project", tutorial),
    LAZY: Spec("project", functions_framework(FUNCTIONS / "lazy.py", "predict")),
    H11_ASYNCIO: Spec("project", hello_asgi, env={"HELLO_STACK": "h11,asyncio"}),
    HTTPTOOLS_ASYNCIO: Spec("project", hello_asgi, env={"HELLO_STACK": "httptools,asyncio"}),
    TUNED_PROTOCOL: Spec("project", hello_asgi, env={"HELLO_STACK": "protocol"}),
    INLINE: Spec("project", inline),
    THREADED: Spec("project", inline, env={"BENCH_THREAD_ROWS": "1000"}),
    PIPELINE: Spec("project", function, body=PIPELINE_BODY,
                   env={"MODEL_PATH": str(PIPELINE_MODEL)}),
    **{server: Spec("project", functions_framework(TREE_WORKSPACE / "main.py", "predict"),
                    body=json.dumps(trees.ONE_ROW).encode(), cwd=TREE_WORKSPACE,
                    env={"MODEL_PATH": str(trees.model_path(TREE_DIRECTORY, model))})
       for model, server in TREE_MODELS.items()},
    FUNCTION_MLFLOW: Spec("project", function, "/invocations", MLFLOW_BODY),
    FUNCTION_V2: Spec("project", function, V2_PATH, V2_BODY),
    MLFLOW: Spec("mlflow", mlflow, "/invocations", MLFLOW_BODY),
    BENTOML: Spec("bentoml", bentoml, "/predict", MLFLOW_BODY),  # BentoML's own "inputs"
    MLSERVER: Spec("mlserver", mlserver(PEERS / "mlserver"), V2_PATH, V2_BODY),
    MLSERVER_XGBOOST: Spec("mlserver", mlserver(PEERS / "mlserver-xgboost"), CHURN_V2_PATH,
                           CHURN_V2_BODY),
}
# The function and references (a) and (b) as a Cloud Run instance starts them, in each
# bytecode condition (bench/cloudrun.py), for cold starts: {server: (its one source file, or
# None for the bundle deploy.sh uploads; its target)}.
CLOUD_RUN_SOURCES = {FUNCTION: (None, "predict"), FLASK_HELLO: (FUNCTIONS / "hello.py", "hello"),
                     ASGI_HELLO: (FUNCTIONS / "hello_asgi.py", "hello")}
CLOUD_RUN_SERVERS = {(server, condition): f"{server}, {condition}"
                     for server in CLOUD_RUN_SOURCES for condition in cloudrun.CONDITIONS}
SPECS.update({
    name: Spec(CLOUD_RUN, functions_framework(cloudrun.directory(server) / "main.py",
                                              CLOUD_RUN_SOURCES[server][1]),
               env=cloudrun.CONDITIONS[condition], cwd=cloudrun.directory(server))
    for (server, condition), name in CLOUD_RUN_SERVERS.items()})


class Server(harness.Server):
    """One server of SPECS, started from a venv's bin directory; entering returns at once.

    `prefix` goes before the command (taskset, to pin the server to a CPU).
    """

    def __init__(self, name: str, bin_dir: Path, prefix: tuple = ()):
        spec = SPECS[name]
        super().__init__(wait=False)  # the repository root is its working directory
        argv, env = spec.launch(bin_dir, self.port)
        self.command = [*prefix, *argv]
        self.env.update({**env, **spec.env})
        self.cwd = spec.cwd
        self.name = name
        self.spec = spec
        self.endpoint = self.url + spec.path

    def first_200(self, timeout: float = 120) -> float:
        """Post the one-flower request until it answers 200; return seconds since spawn.

        Until then a refused connection, or an answer such as MLServer's 400 "not
        ready yet", means the server is still starting.
        """
        deadline = self.started + timeout
        last = "no answer"
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                                   f"{self.output()[-3000:]}")
            try:
                reply = call(self.endpoint, "POST", self.spec.body, JSON, timeout=timeout)
            except OSError as e:
                last = repr(e)
                time.sleep(0.002)
                continue
            if reply.status == 200:
                return time.perf_counter() - self.started
            last = f"{reply.status} {reply.body[:200]!r}"
            time.sleep(0.002)
        raise RuntimeError(f"{self.name} gave no 200 within {timeout} s (last: {last}):\n"
                           f"{self.output()[-3000:]}")

    def worker_pid(self) -> int:
        """The process that serves: gunicorn's only worker, or the server itself if alone."""
        children = harness.children(self.process.pid)
        return children[0] if len(children) == 1 else self.process.pid

    def cpu_seconds(self) -> float:
        """CPU time (user + system) spent so far by every live process of the server."""
        total = 0.0
        for pid in self.tree():
            try:
                total += harness.cpu_seconds(pid)
            except OSError:  # exited while we looked
                pass
        return total

    def memory_mib(self) -> dict:
        """Memory of the whole process tree (RSS and PSS sums), in MiB."""
        kib = harness.tree_memory_kib(self.process.pid)
        return {"rss": kib["rss"] / 1024, "pss": kib["pss"] / 1024,
                "processes": kib["processes"]}

    def peak_rss_mib(self) -> float:
        """VmHWM of the serving worker, in MiB."""
        return harness.peak_rss_kib(self.worker_pid()) / 1024
