"""The live function against its contract, openapi.yaml: checked answers, then schemathesis."""

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

EXCHANGES = {
    # name: (method, body, headers, expected status)
    "metadata": ("GET", None, {}, 200),
    "tutorial": ("POST", {"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}, {}, 200),
    "long names": ("POST", {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0,
                            "petal_width": 2.5}, {}, 200),
    "instances": ("POST", {"instances": [SETOSA, VIRGINICA]}, {}, 200),
    "instances with probabilities": ("POST", {"instances": [SETOSA, {"sl": 7, "sw": 3.2,
                                                                     "pl": 4.7, "pw": 1.4}],
                                              "parameters": {"probabilities": True}}, {}, 200),
    "bigquery species": ("POST", {"requestId": "1", "calls": [SETOSA, [None, 1, 2, 3]]}, {}, 200),
    "bigquery class": ("POST", {"calls": [["5.1", "3.5", "1.4", "0.2"]],
                                "userDefinedContext": {"output": "class"}}, {}, 200),
    "bigquery json": ("POST", {"calls": [VIRGINICA, [9, 9, 9, 9]],
                               "userDefinedContext": {"output": "json"}}, {}, 200),
    # Regressions: these were 500s until schemathesis found them.
    "bigquery json, no calls": ("POST", {"calls": [], "userDefinedContext": {"output": "json"}},
                                {}, 200),
    "bigquery json, only nulls": ("POST", {"calls": [[None, 1, 2, 3]],
                                           "userDefinedContext": {"output": "json"}}, {}, 200),
    "bad value": ("POST", {"sl": "five", "sw": 2, "pl": 1, "pw": 1}, {}, 400),
    "bad bigquery call": ("POST", {"calls": [[1, 2, 3]]}, {}, 400),
    "not json": ("POST", "{", JSON, 400),
    "too many rows": ("POST", {"instances": [SETOSA] * 10_001}, {}, 413),
    "too many bytes": ("POST", " " * 3_000_000, JSON, 413),
    "form body": ("POST", "sl=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    "preflight": ("OPTIONS", None, {"Origin": "https://shop.example",
                                    "Access-Control-Request-Method": "POST"}, 204),
}


def _validate(instance, schema: dict):
    """Validate against a schema from the spec, its $refs resolved within the spec."""
    jsonschema_rs.Draft202012Validator({**schema, "components": SPEC["components"]}) \
        .validate(instance)


def _documented(method: str, status: int) -> dict:
    """The spec's response object for an answer, following a $ref to components."""
    responses = SPEC["paths"]["/"][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {status} is not in openapi.yaml"
    response = responses[str(status)]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response


@pytest.mark.parametrize("name", EXCHANGES)
def test_live_answers_match_the_contract(live, name):
    method, body, headers, status = EXCHANGES[name]
    reply = live.call(method, body, headers)
    assert reply.status == status
    documented = _documented(method, status)
    for header, spec in documented.get("headers", {}).items():
        if "$ref" in spec:
            spec = SPEC["components"]["headers"][spec["$ref"].rsplit("/", 1)[1]]
        value = reply.headers.get(header.lower())
        assert value is not None or not spec.get("required"), f"{header} missing"
        if value is not None:
            _validate(value, spec["schema"])
    if "content" in documented:
        assert reply.headers["content-type"] == "application/json"
        _validate(reply.json(), documented["content"]["application/json"]["schema"])
    else:
        assert reply.body == b""


def test_the_contract_refuses_what_the_function_refuses():
    """The request schema is not vacuous: a few bodies the function rejects fail it too."""
    schema = SPEC["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    _validate({"sl": 5, "sw": 3, "pl": 1, "pw": 0.2}, schema)
    for bad in ({"sl": 5, "sw": 3, "pl": 1}, {"sl": 0, "sw": 3, "pl": 1, "pw": 1},
                {"sl": 5, "sw": 3, "pl": 1, "pw": 1, "x": 1}, {"instances": []},
                {"instances": [[1, 2, 3]]}, {"calls": [[1, 2, 3, "abc"]]}, [SETOSA]):
        with pytest.raises(jsonschema_rs.ValidationError):
            _validate(bad, schema)


def test_schemathesis_finds_no_failures(live, tmp_path):
    """schemathesis's standard checks, bounded: fixed seed, 60 examples per operation."""
    done = subprocess.run(
        [str(ST), "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run",
         str(ROOT / "openapi.yaml"), "--url", live.url, "--checks", "all",
         "--max-examples", "60", "--seed", "20261125", "--workers", "2",
         "--request-timeout", "10", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
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
