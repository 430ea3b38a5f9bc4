"""The handler through functions-framework's own ASGI app, in process."""

import json
import logging
import shutil
import threading
import time

import pytest
from starlette.testclient import TestClient

from iris_predict import settings
from tests import oracle

TUTORIAL = {"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}
SETOSA = [5.1, 3.5, 1.4, 0.2]
VERSICOLOR = [7.0, 3.2, 4.7, 1.4]
VIRGINICA = [6.3, 3.3, 6.0, 2.5]


def test_tutorial_request_keeps_its_answer_and_adds_detail(client):
    reply = client.post("/", json=TUTORIAL)
    assert reply.status_code == 200
    body = reply.json()
    assert body["prediction"] == [0]
    assert body["species"] == "setosa"
    assert set(body["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert max(body["probabilities"], key=body["probabilities"].get) == "setosa"
    assert [w["feature"] for w in body["warnings"]] == ["sepal_length"]  # 3.0 < 4.3 seen


def test_named_features_give_the_same_answer(client):
    named = dict(zip(("sepal_length", "sepal_width", "petal_length", "petal_width"),
                     TUTORIAL.values()))
    assert client.post("/", json=named).json() == client.post("/", json=TUTORIAL).json()


def test_batch_answers_each_row_in_order(client):
    rows = [VIRGINICA, SETOSA, {"sl": 7.0, "sw": 3.2, "pl": 4.7, "pw": 1.4}]
    body = client.post("/", json={"instances": rows}).json()
    assert body["predictions"] == [2, 0, 1]
    assert body["species"] == ["virginica", "setosa", "versicolor"]
    assert "probabilities" not in body and body["warnings"] == []
    asked = client.post("/", json={"instances": rows, "parameters": {"probabilities": True}})
    assert oracle.close(asked.json()["probabilities"],
                        oracle.probabilities([VIRGINICA, SETOSA, VERSICOLOR]))


def test_batch_warnings_name_row_and_feature(client):
    body = client.post("/", json={"instances": [SETOSA, [5.1, 3.5, 9.5, 0.2]]}).json()
    assert [(w["row"], w["feature"], w["max"]) for w in body["warnings"]] == [(1, "petal_length", 6.9)]
    assert "extrapolation" in body["warnings"][0]["message"]


def test_bigquery_calls(client):
    request = {"requestId": "124ab1c", "caller": "//bigquery.googleapis.com/projects/p/jobs/j",
               "sessionUser": "a@example.com", "calls": [SETOSA, [None, 3, 4, 5], VIRGINICA]}
    assert client.post("/", json=request).json() == {"replies": ["setosa", None, "virginica"]}
    request["userDefinedContext"] = {"output": "json"}
    replies = client.post("/", json=request).json()["replies"]
    assert replies[1] is None and replies[2]["class"] == 2 and replies[2]["species"] == "virginica"
    request["calls"] = [[1, 2, 3]]
    reply = client.post("/", json=request)
    assert reply.status_code == 400 and "calls[0] has 3 arguments" in reply.json()["errorMessage"]


def test_get_describes_the_model(client):
    body = client.get("/").json()
    assert [f["name"] for f in body["features"]] == ["sepal_length", "sepal_width",
                                                     "petal_length", "petal_width"]
    assert {k: body["features"][0][k] for k in ("name", "alias", "unit", "min", "max")} == \
        {"name": "sepal_length", "alias": "sl", "unit": "cm", "min": 4.3, "max": 7.9}
    assert body["classes"] == ["setosa", "versicolor", "virginica"]
    assert body["limits"] == {"max_body_bytes": settings.MAX_BODY_BYTES,
                              "max_batch_rows": settings.MAX_BATCH_ROWS}
    with open(settings.MODEL_PATH.with_suffix(".json")) as f:
        assert body["sha256"] == json.load(f)["sha256"]
    assert {"holdout_accuracy", "cv_accuracy_mean"} <= set(body["metrics"])
    assert {"python", "scikit-learn", "joblib", "numpy"} <= set(body["versions"])


def test_every_answer_is_json_and_nosniff(client):
    # The framework's own /favicon.ico answer is the server's to redo: tests/test_live.py.
    for reply in (client.get("/"), client.post("/", json=TUTORIAL), client.post("/", content="x"),
                  client.delete("/"), client.post("/favicon.ico", json=TUTORIAL)):
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        reply.json()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow(client, method):
    reply = client.request(method, "/")
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "GET, POST, OPTIONS"
    assert method in reply.json()["error"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_non_json_content_types_are_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    reply = client.post("/", content=json.dumps(TUTORIAL), headers=headers)
    assert reply.status_code == 415 and "application/json" in reply.json()["error"]


def test_json_with_charset_is_fine(client):
    reply = client.post("/", content=json.dumps(TUTORIAL),
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert reply.status_code == 200


def test_body_over_the_limit_is_413_before_it_is_read(app, monkeypatch):
    """Content-Length alone decides: the body stream fails the test if read before the answer."""
    monkeypatch.setattr(settings, "MAX_BODY_BYTES", 100)
    early_reads = []

    async def body_guarded(scope, receive, send):
        answered = False

        async def guarded_receive():
            if scope["type"] == "http" and not answered:
                early_reads.append(scope["path"])
            return await receive()

        async def watched_send(message):
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        await app(scope, guarded_receive, watched_send)

    with TestClient(body_guarded, raise_server_exceptions=False) as client:
        reply = client.post("/", content=b"{" * 101, headers={"Content-Type": "application/json"})
    assert early_reads == [], "the body was read before the 413"
    assert reply.status_code == 413
    assert reply.json() == {"error": "request body is 101 bytes, more than the limit of 100; send "
                                     "the rows in several requests, batches of at most "
                                     f"{settings.MAX_BATCH_ROWS} rows that each fit in 100 bytes"}


def test_cors_any_origin_by_default(client):
    reply = client.post("/", json=TUTORIAL, headers={"Origin": "https://shop.example"})
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    preflight = client.options("/", headers={"Origin": "https://shop.example",
                                             "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    # X-Api-Key: a page calling through API Gateway (docs/gateway.md) sends its key in it.
    assert (preflight.headers["Access-Control-Allow-Headers"]
            == "Content-Type, Authorization, X-Api-Key")
    assert int(preflight.headers["Access-Control-Max-Age"]) > 0


def test_cors_origin_list(client, monkeypatch):
    monkeypatch.setattr(settings, "ALLOWED_ORIGINS", frozenset({"https://shop.example"}))
    allowed = client.post("/", json=TUTORIAL, headers={"Origin": "https://shop.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert allowed.headers["Vary"] == "Origin"
    for origin in ("https://evil.example", "https://shop.example.evil.example", "null"):
        refused = client.post("/", json=TUTORIAL, headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in refused.headers
        assert refused.headers["Vary"] == "Origin"
        preflight = client.options("/", headers={"Origin": origin,
                                                 "Access-Control-Request-Method": "POST"})
        # Not one CORS header: a refused origin learns nothing of the methods or headers.
        assert preflight.status_code == 204
        assert [name for name in preflight.headers
                if name.lower().startswith("access-control-")] == [], origin
    error = client.post("/", json={}, headers={"Origin": "https://shop.example"})
    assert error.status_code == 400  # browsers can read the error message too
    assert error.headers["Access-Control-Allow-Origin"] == "https://shop.example"


def test_concurrent_first_requests_load_the_model_once(client, fresh_model):
    replies, start = [], threading.Barrier(32)

    def first_request():
        start.wait()
        replies.append(client.post("/", json=TUTORIAL).status_code)

    threads = [threading.Thread(target=first_request) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [200] * 32
    assert fresh_model.loads == 1


def _broken_copy(tmp_path, damage):
    """A copy of the bundled model and sidecar, damaged by `damage(model_path, sidecar_path)`."""
    model, sidecar = tmp_path / "model.joblib", tmp_path / "model.json"
    shutil.copy(settings.MODEL_PATH, model)
    shutil.copy(settings.MODEL_PATH.with_suffix(".json"), sidecar)
    damage(model, sidecar)
    return model


def _edit_sidecar(sidecar, edit):
    data = json.loads(sidecar.read_text())
    edit(data)
    sidecar.write_text(json.dumps(data))


BROKEN = {
    "missing model": (lambda m, s: m.unlink(), "cannot be read"),
    "missing metadata": (lambda m, s: s.unlink(), "metadata"),
    "truncated model": (lambda m, s: m.write_bytes(m.read_bytes()[:100]), "SHA-256"),
    "other sklearn": (lambda m, s: _edit_sidecar(
        s, lambda d: d["versions"].update({"scikit-learn": "0.24.2"})), "0.24.2"),
    "wrong digest": (lambda m, s: _edit_sidecar(s, lambda d: d.update(sha256="0" * 64)), "SHA-256"),
    "garbage metadata": (lambda m, s: s.write_text("{"), "unreadable"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_unloadable_model_is_503_and_logged_once(case, client, fresh_model, tmp_path,
                                                 monkeypatch, caplog):
    damage, cause = BROKEN[case]
    monkeypatch.setattr(settings, "MODEL_PATH", _broken_copy(tmp_path, damage))
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            for reply in (client.post("/", json=TUTORIAL), client.get("/"),
                          client.post("/", json={"calls": [SETOSA]})):
                assert reply.status_code == 503
                assert "unavailable" in json.dumps(reply.json())
    logged = [r.getMessage() for r in caplog.records if "model unavailable" in r.getMessage()]
    assert len(logged) == 1 and cause in logged[0]
    assert fresh_model.loads == 1


ROUTES = [
    # (path, methods it answers, the field its refusals carry)
    ("/", "GET, POST, OPTIONS", "error"),
    ("/v2", "GET, OPTIONS", "error"),
    ("/v2/health/live", "GET, OPTIONS", "error"),
    ("/v2/health/ready", "GET, OPTIONS", "error"),
    ("/v2/models/iris", "GET, OPTIONS", "error"),
    ("/v2/models/iris/versions/1c442e9f6416/ready", "GET, OPTIONS", "error"),
    ("/v2/models/iris/infer", "POST, OPTIONS", "error"),
    ("/invocations", "POST, OPTIONS", "error_code"),
    ("/ping", "GET, OPTIONS", "error_code"),
    ("/version", "GET, OPTIONS", "error_code"),
]


@pytest.mark.parametrize("path, allow, field", ROUTES)
def test_each_path_says_which_methods_it_answers(client, path, allow, field):
    reply = client.request("PATCH", path)
    assert reply.status_code == 405 and reply.headers["Allow"] == allow
    assert field in reply.json()
    preflight = client.options(path, headers={"Origin": "https://shop.example",
                                              "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Methods"] == allow


@pytest.mark.parametrize("path", ["/predict", "/v1/models/iris:predict", "/v2/models",
                                  "/v2/models/iris/explain", "/index.html", "/ping/"])
def test_other_paths_are_404_and_say_what_is_there(client, path):
    for method in ("GET", "POST"):
        reply = client.request(method, path, json=TUTORIAL)
        assert reply.status_code == 404
        assert "/v2/..." in reply.json()["error"] and "/invocations" in reply.json()["error"]


def test_the_tutorials_path_is_unchanged(client):
    """"/" is still this function's own API, whatever else it now answers."""
    assert client.post("/", json=TUTORIAL).json()["prediction"] == [0]
    assert client.get("/").json()["classes"] == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize("damage", [None, BROKEN["missing model"][0]], ids=["loaded", "unloadable"])
def test_the_worker_collects_garbage_again_once_the_model_load_ends(damage, fresh_model, tmp_path,
                                                                    monkeypatch):
    """main.py keeps the collector off through start-up (docs/performance.md "Cold starts"); in
    the forked worker, until the model's load has ended, loaded or not."""
    import gc

    import main

    assert gc.isenabled()  # importing main.py leaves it on, as it found it
    if damage is not None:
        monkeypatch.setattr(settings, "MODEL_PATH", _broken_copy(tmp_path, damage))
    loading = threading.Event()
    real_get = fresh_model.get

    def slow_get():
        loading.wait(5)
        return real_get()

    monkeypatch.setattr(fresh_model, "get", slow_get)
    frozen = gc.get_freeze_count()
    try:
        main._serve_in_worker()  # as os.register_at_fork runs it in the child
        assert not gc.isenabled()
        loading.set()
        deadline = time.monotonic() + 10
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gc.isenabled() and gc.get_freeze_count() > frozen
        assert fresh_model.loads == 1
    finally:
        loading.set()
        gc.enable()
