"""The live server's log lines: JSON that Cloud Logging reads, one per request, no client data."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from harness import ROOT, FunctionServer
from iris_predict import logs

PROJECT = "iris-test-project"
TRACE_ID = "105445aa7843bc8bf206b12000100000"
# Values distinctive enough that finding them in the log means the log leaked them.
SECRET_VALUES = (5.13579246, 3.24681357, 1.97531864, 0.28642753)
SECRET_FLOWER = dict(zip(("sl", "sw", "pl", "pw"), SECRET_VALUES))

REQUESTS = [
    # (method, path, body, headers, status, severity, rows)
    ("POST", "/", SECRET_FLOWER, {}, 200, "INFO", 1),
    ("POST", "/", {"instances": [list(SECRET_VALUES)] * 3}, {}, 200, "INFO", 3),
    ("POST", "/", {"calls": [list(SECRET_VALUES), [None, 1, 2, 3]]}, {}, 200, "INFO", 2),
    ("GET", "/", None, {}, 200, "INFO", None),
    ("OPTIONS", "/", None, {"Origin": "https://shop.example"}, 204, "INFO", None),
    ("POST", "/", {**SECRET_FLOWER, "pw": "hunter2-secret"}, {}, 400, "WARNING", None),
    ("POST", "/", {**SECRET_FLOWER, "secret-field-name": 1}, {}, 400, "WARNING", None),
    ("POST", "/", '{"sl": 5.13579246,', {"Content-Type": "application/json"}, 400, "WARNING", None),
    ("POST", "/", "x" * 3_000_000, {"Content-Type": "application/json"}, 413, "WARNING", None),
    ("POST", "/", "sl=5.13579246", {"Content-Type": "text/plain"}, 415, "WARNING", None),
    ("DELETE", "/", None, {}, 405, "WARNING", None),
    ("GET", "/favicon.ico", None, {}, 404, "WARNING", None),
]


def _json_lines(output: str) -> list[dict]:
    """Every line the server printed that is a JSON object (gunicorn's own may not be)."""
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def _request_lines(server: FunctionServer, expected: int) -> list[dict]:
    """The request log lines, once `expected` of them have been written."""
    deadline = time.monotonic() + 60  # a loaded machine writes them late; no wait once there
    while True:
        lines = [e for e in _json_lines(server.output())
                 if e.get("logger") == "iris_predict.requests"]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server():
    """A fresh server with a project set, shared by this module's tests."""
    with FunctionServer(env={"GOOGLE_CLOUD_PROJECT": PROJECT}) as server:
        yield server


@pytest.fixture(scope="module")
def logged(server):
    """The REQUESTS' log lines and everything the server printed until then."""
    for method, path, body, headers, status, _, _ in REQUESTS:
        headers = {**headers, "X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1"}
        assert server.call(method, body, headers, path=path).status == status
    return _request_lines(server, len(REQUESTS)), server.output()


def test_one_json_line_per_request_with_http_fields(logged):
    lines, _ = logged
    assert len(lines) == len(REQUESTS)
    for entry, (method, _, _, _, status, severity, rows) in zip(lines, REQUESTS):
        assert entry["severity"] == severity
        assert entry["message"].startswith(f"{method} {status}")
        http = entry["httpRequest"]
        assert (http["requestMethod"], http["status"]) == (method, status)
        assert http["latency"].endswith("s") and float(http["latency"][:-1]) >= 0
        assert entry.get("rows") == rows
        assert entry["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"


def test_every_line_is_json(logged):
    _, output = logged
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines and all(line.startswith("{") and json.loads(line)["severity"] for line in lines)
    assert any("model loaded" in e["message"] for e in _json_lines(output))


def test_the_log_never_holds_the_clients_data(logged):
    _, output = logged
    for secret in (*map(str, SECRET_VALUES), "hunter2", "secret-field-name", "sl=", "xxxx"):
        assert secret not in output
    # ...but says what kind of problem it was.
    assert "pw must be a number" in output and "not valid JSON" in output


def test_malformed_trace_headers_are_left_out(server, logged):
    headers = ["", "not-a-trace", "105445aa/1;o=1", f"{TRACE_ID}x/1"]
    for header in headers:
        server.call("POST", SECRET_FLOWER, {"X-Cloud-Trace-Context": header})
    lines = _request_lines(server, len(REQUESTS) + len(headers))[len(REQUESTS):]
    assert len(lines) == len(headers)
    assert not any("logging.googleapis.com/trace" in line for line in lines)


def test_unavailable_model_is_an_error_with_its_cause_once(tmp_path):
    env = {"MODEL_PATH": str(tmp_path / "gone.joblib"), "GOOGLE_CLOUD_PROJECT": ""}
    with FunctionServer(env=env) as server:
        for _ in range(3):
            trace = {"X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1"}
            assert server.call("POST", SECRET_FLOWER, trace).status == 503
        lines = _request_lines(server, 3)
        causes = [e for e in _json_lines(server.output()) if "model unavailable" in e["message"]]
    assert [e["severity"] for e in lines] == ["ERROR"] * 3
    assert not any("logging.googleapis.com/trace" in e for e in lines)  # no project, no link
    assert len(causes) == 1 and causes[0]["severity"] == "ERROR"
    assert "gone.json is missing" in causes[0]["message"]


SLOW_SOURCE = '''
"""main.py with a model that takes seconds to load, to see how probes meanwhile are logged."""
import time

from iris_predict.model import artifact
from main import predict

_load = artifact.load


def _slow_load(path):
    time.sleep(3)  # longer than a loaded machine takes from listening to the first probe
    return _load(path)


artifact.load = _slow_load
'''


def test_a_probe_while_the_model_loads_is_not_an_error(tmp_path):
    """/ping's 503 before the model is loaded is every start's "not yet": INFO, as its 200
    after; WARNING is for clients' mistakes, ERROR for what stops the function serving."""
    source = tmp_path / "slow.py"
    source.write_text(SLOW_SOURCE)
    with FunctionServer(source=source) as server:
        statuses = [server.call("GET", path="/ping").status]
        while statuses[-1] != 200:
            time.sleep(0.1)
            statuses.append(server.call("GET", path="/ping").status)
        lines = _request_lines(server, len(statuses))
    assert statuses[0] == 503 and set(statuses) == {503, 200}
    assert [(e["httpRequest"]["status"], e["severity"]) for e in lines] == [
        (status, "INFO") for status in statuses]


BROKEN_SOURCE = '''
"""main.py with a model that raises a bug of ours, to see how a 500 is logged."""
from iris_predict.model import served as model
from main import predict


def _bug():
    raise RuntimeError("a bug of ours")


model.get = _bug
'''


def test_a_bug_is_one_error_line_with_the_stack_trace(tmp_path):
    source = tmp_path / "broken.py"
    source.write_text(BROKEN_SOURCE)
    with FunctionServer(source=source) as server:
        reply = server.call("POST", SECRET_FLOWER)
        assert (reply.status, reply.json()) == (500, {"error": "internal error"})
        (line,) = _request_lines(server, 1)
    assert line["severity"] == "ERROR"
    assert "Traceback" in line["message"] and "RuntimeError: a bug of ours" in line["message"]


def test_the_cli_keeps_stdout_for_the_answer(tmp_path):
    done = subprocess.run([sys.executable, "main.py", "--sl", "5.1", "--sw", "3.5", "--pl", "1.4",
                           "--pw", "0.2"], cwd=ROOT, capture_output=True, text=True,
                          env={"MODEL_PATH": str(tmp_path / "gone.joblib"), "PATH": ""})
    assert done.returncode == 1 and done.stdout == ""
    assert "gone.json is missing" in done.stderr


PROTOCOLS = [
    # (method, path, body, headers, protocol the line names)
    ("POST", "/", SECRET_FLOWER, {}, "native"),
    ("POST", "/", {"calls": [list(SECRET_VALUES)]}, {}, "bigquery"),
    ("POST", "/", "sl,sw,pl,pw\n5.13579246,3.24681357,1.97531864,0.28642753\n",
     {"Content-Type": "text/csv"}, "csv"),
    ("POST", "/v2/models/iris/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                                   "data": list(SECRET_VALUES)}]}, {}, "v2"),
    ("GET", "/v2/health/ready", None, {}, "v2"),
    ("POST", "/invocations", {"instances": [list(SECRET_VALUES)]}, {}, "mlflow"),
    ("GET", "/ping", None, {}, "mlflow"),
    ("POST", "/invocations", {"instances": [], "inputs": []}, {}, "mlflow"),
    ("GET", "/nowhere", None, {}, "native"),
]


def test_each_line_names_the_protocol_without_the_clients_data():
    with FunctionServer() as server:
        for method, path, body, headers, _ in PROTOCOLS:
            server.call(method, body, headers, path=path)
        lines = _request_lines(server, len(PROTOCOLS))
        output = server.output()
    assert [line["protocol"] for line in lines] == [p for *_, p in PROTOCOLS]
    assert lines[-1]["message"].startswith("GET 404: /nowhere: nothing here")
    for secret in map(str, SECRET_VALUES):
        assert secret not in output


@pytest.mark.parametrize("blocking", [True, False])
def test_lines_reach_a_full_pipe_whole(blocking):
    """A pipe fuller than one write takes, read slowly: every byte arrives, in order."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, blocking)
    data = b"".join(b'{"n":%d}\n' % n for n in range(40_000))  # several pipe buffers
    received = bytearray()

    def reader():
        while chunk := os.read(read_end, 4096):
            received.extend(chunk)
            time.sleep(0.0005)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        logs.write_all(write_end, data)
    finally:
        os.close(write_end)
        thread.join(timeout=60)
        os.close(read_end)
    assert bytes(received) == data
