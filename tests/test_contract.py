"""The live function against its contract, openapi.yaml: checked answers, then schemathesis.

openapi.yaml is generated from model.json (tests/test_openapi.py keeps it current).
"""

import hashlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from harness import ROOT

SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
ST = Path(sys.executable).with_name("st")
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.3, 3.3, 6.0, 2.5]
JSON = {"Content-Type": "application/json"}

V2_INFER = "/v2/models/iris/infer"
TENSOR = {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": SETOSA + VIRGINICA}
CSV = {"Content-Type": "text/csv"}

EXCHANGES = {
    # name: (method, path, body, headers, expected status)
    "metadata": ("GET", "/", None, {}, 200),
    "contract": ("GET", "/openapi.json", None, {}, 200),
    "page": ("GET", "/", None, {"Accept": "text/html"}, 200),
    "page script": ("GET", "/app.js", None, {}, 200),
    "page style": ("GET", "/style.css", None, {}, 200),
    "tutorial": ("POST", "/", {"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}, {}, 200),
    "long names": ("POST", "/", {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0,
                                 "petal_width": 2.5}, {}, 200),
    "explained": ("POST", "/?explain=true", {"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}, {}, 200),
    "instances": ("POST", "/", {"instances": [SETOSA, VIRGINICA]}, {}, 200),
    "instances with probabilities": ("POST", "/", {
        "instances": [SETOSA, {"sl": 7, "sw": 3.2, "pl": 4.7, "pw": 1.4}],
        "parameters": {"probabilities": True, "explain": True}}, {}, 200),
    "csv": ("POST", "/", "sl,sw,pl,pw\n5.1,3.5,1.4,0.2\n", CSV, 200),
    "csv answer": ("POST", "/", "5.1,3.5,1.4,0.2\n", {**CSV, "Accept": "text/csv"}, 200),
    "bad csv": ("POST", "/", "sl,sw,pl,pw\n5.1,x,1.4,0.2\n", CSV, 400),
    "bigquery species": ("POST", "/", {"requestId": "1", "calls": [SETOSA, [None, 1, 2, 3]]}, {},
                         200),
    "bigquery class": ("POST", "/", {"calls": [["5.1", "3.5", "1.4", "0.2"]],
                                     "userDefinedContext": {"output": "class"}}, {}, 200),
    "bigquery json": ("POST", "/", {"calls": [VIRGINICA, [9, 9, 9, 9]],
                                    "userDefinedContext": {"output": "json"}}, {}, 200),
    # Regressions: these were 500s until schemathesis found them.
    "bigquery json, no calls": ("POST", "/", {"calls": [],
                                              "userDefinedContext": {"output": "json"}}, {}, 200),
    "bigquery json, only nulls": ("POST", "/", {"calls": [[None, 1, 2, 3]],
                                                "userDefinedContext": {"output": "json"}}, {}, 200),
    "bad value": ("POST", "/", {"sl": "five", "sw": 2, "pl": 1, "pw": 1}, {}, 400),
    "bad bigquery call": ("POST", "/", {"calls": [[1, 2, 3]]}, {}, 400),
    "not json": ("POST", "/", "{", JSON, 400),
    "too many rows": ("POST", "/", {"instances": [SETOSA] * 10_001}, {}, 413),
    "too many bytes": ("POST", "/", " " * 3_000_000, JSON, 413),
    "form body": ("POST", "/", "sl=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    "preflight": ("OPTIONS", "/", None, {"Origin": "https://shop.example",
                                         "Access-Control-Request-Method": "POST"}, 204),
    "v2 server": ("GET", "/v2", None, {}, 200),
    "v2 live": ("GET", "/v2/health/live", None, {}, 200),
    "v2 ready": ("GET", "/v2/health/ready", None, {}, 200),
    "v2 model": ("GET", "/v2/models/iris", None, {}, 200),
    "v2 model ready": ("GET", "/v2/models/iris/ready", None, {}, 200),
    "v2 other model": ("GET", "/v2/models/mnist", None, {}, 404),
    "v2 infer": ("POST", V2_INFER, {"id": "1", "inputs": [TENSOR]}, {}, 200),
    "v2 infer, one output": ("POST", V2_INFER, {"inputs": [TENSOR],
                                                "outputs": [{"name": "predict"}]}, {}, 200),
    "v2 bad tensor": ("POST", V2_INFER, {"inputs": [{**TENSOR, "shape": [3, 4]}]}, {}, 400),
    "mlflow split": ("POST", "/invocations", {"dataframe_split": {
        "columns": ["sl", "sw", "pl", "pw"], "data": [SETOSA]}}, {}, 200),
    "mlflow records": ("POST", "/invocations", {"dataframe_records": [
        {"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}]}, {}, 200),
    "mlflow csv": ("POST", "/invocations", "5.1,3.5,1.4,0.2\n", CSV, 200),
    "mlflow two formats": ("POST", "/invocations", {"instances": [SETOSA], "inputs": [SETOSA]},
                           {}, 400),
    "mlflow ping": ("GET", "/ping", None, {}, 200),
    "mlflow health": ("GET", "/health", None, {}, 200),
    "mlflow version": ("GET", "/version", None, {}, 200),
}


def _validate(instance, schema: dict):
    """Validate against a schema from the spec, its $refs resolved within the spec."""
    jsonschema_rs.Draft202012Validator({**schema, "components": SPEC["components"]}) \
        .validate(instance)


def _resolved(obj: dict, kind: str) -> dict:
    """`obj`, or the component its $ref names."""
    return SPEC["components"][kind][obj["$ref"].rsplit("/", 1)[1]] if "$ref" in obj else obj


def _template(path: str) -> str:
    """The spec's path template that `path` (without its query) fills in."""
    path = path.partition("?")[0]
    for template in SPEC["paths"]:
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return template
    raise AssertionError(f"{path} is not in openapi.yaml")


def _documented(method: str, path: str, status: int) -> dict:
    """The spec's response object for an answer, following a $ref to components."""
    responses = SPEC["paths"][_template(path)][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} {status} is not in openapi.yaml"
    return _resolved(responses[str(status)], "responses")


@pytest.mark.parametrize("name", EXCHANGES)
def test_live_answers_match_the_contract(live, name):
    method, path, body, headers, status = EXCHANGES[name]
    reply = live.call(method, body, headers, path=path)
    assert reply.status == status
    documented = _documented(method, path, status)
    for header, spec in documented.get("headers", {}).items():
        spec = _resolved(spec, "headers")
        value = reply.headers.get(header.lower())
        assert value is not None or not spec.get("required"), f"{header} missing"
        if value is not None:
            _validate(value, spec["schema"])
    if "content" not in documented:
        assert reply.body == b""
        return
    media_type = reply.headers["content-type"].partition(";")[0]
    assert media_type in documented["content"], f"{media_type} is not documented"
    schema = documented["content"][media_type]["schema"]
    _validate(reply.json() if media_type == "application/json" else reply.body.decode(), schema)


def test_the_served_contract_is_the_committed_one(live):
    """GET /openapi.json is the document openapi.yaml holds (the bundled model, default limits)."""
    assert live.call("GET", path="/openapi.json").json() == SPEC


def test_the_contract_refuses_what_the_function_refuses():
    """The request schema is not vacuous: a few bodies the function rejects fail it too."""
    content = SPEC["paths"]["/"]["post"]["requestBody"]["content"]
    schema = content["application/json"]["schema"]
    _validate({"sl": 5, "sw": 3, "pl": 1, "pw": 0.2}, schema)
    for bad in ({"sl": 5, "sw": 3, "pl": 1}, {"sl": 0, "sw": 3, "pl": 1, "pw": 1},
                {"sl": 5, "sw": 3, "pl": 1, "pw": 1, "x": 1}, {"instances": []},
                {"instances": [[1, 2, 3]]}, {"calls": [[1, 2, 3, "abc"]]}, [SETOSA]):
        with pytest.raises(jsonschema_rs.ValidationError):
            _validate(bad, schema)


SCHEMAS = {
    # schema: (accepted, refused)
    "CsvTable": (["sl,sw,pl,pw\n5.1,3.5,1.4,0.2\n", "5.1,3.5,1.4,0.2\n6,3,5,2"],
                 ["5.1,3.5,1.4", "sl,sw,pl\n5.1,3.5,1.4\n", "5.1,3.5,1.4,0\n", "a,b,c,d\n"]),
    "V2InferenceRequest": ([{"inputs": [TENSOR]}],
                           [{}, {"inputs": [TENSOR, TENSOR]}, {"inputs": [{**TENSOR, "datatype":
                                                                           "INT32"}]},
                            {"inputs": [{**TENSOR, "shape": [2, 3]}]},
                            {"inputs": [TENSOR], "outputs": [{"name": "probabilities"}]}]),
    "MlflowRequest": ([{"instances": [SETOSA]}, {"dataframe_split": {"data": [SETOSA]}}],
                      [{"instances": [SETOSA], "inputs": [SETOSA]}, {"data": [SETOSA]},
                       {"instances": [SETOSA], "params": {"k": 1}}]),
}


@pytest.mark.parametrize("name", SCHEMAS)
def test_the_other_protocols_schemas_are_not_vacuous(name):
    accepted, refused = SCHEMAS[name]
    schema = SPEC["components"]["schemas"][name]
    for body in accepted:
        _validate(body, schema)
    for body in refused:
        with pytest.raises(jsonschema_rs.ValidationError):
            _validate(body, schema)


def test_schemathesis_finds_no_failures(live, tmp_path):
    """schemathesis's standard checks, bounded: fixed seed, 60 examples per operation.

    One worker: with two, hypothesis parses lambdas' source on both threads at once,
    which CPython 3.11's ast module can fail with "SystemError: AST constructor
    recursion depth mismatch" (seen on the Open Inference operations).
    """
    version = hashlib.sha256((ROOT / "model.joblib").read_bytes()).hexdigest()[:12]
    done = subprocess.run(
        [str(ST), "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run",
         str(ROOT / "openapi.yaml"), "--url", live.url,
         "--max-examples", "60", "--seed", "20261125", "--workers", "1",
         "--request-timeout", "10", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "IRIS_MODEL_VERSION": version})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout


LONG = "A" * 100_000
ECHO_BAIT = {
    # name: (body, headers)
    "long string value": ({"sl": LONG, "sw": 1, "pl": 1, "pw": 1}, {}),
    "long field name": ({LONG: 1}, {}),
    "long instances field": ({"instances": [[1, 2, 3, 4]], LONG: 1}, {}),
    "long BigQuery output": ({"calls": [], "userDefinedContext": {"output": LONG}}, {}),
    "long decimal string": ({"calls": [["1" * 100_000, 1, 1, 1]]}, {}),
    "huge integer": ('{"sl": ' + "9" * 100_000 + "}", JSON),
    "long garbage": (LONG, JSON),
    "deep nesting": ("[" * 100_000, JSON),
    "long content type": ("{}", {"Content-Type": "application/" + "x" * 8000}),
}


@pytest.mark.parametrize("name", ECHO_BAIT)
def test_error_messages_stay_short_whatever_comes(live, name):
    body, headers = ECHO_BAIT[name]
    reply = live.call("POST", body, headers)
    assert 400 <= reply.status < 500
    (message,) = reply.json().values()
    assert message and len(reply.body) <= 400 and "A" * 50 not in message


def test_an_oversized_body_is_refused_before_it_is_read(live):
    """Content-Length over the limit gets 413 at once, while the body has not even been sent."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 3000000\r\n\r\n{}")
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"413"
