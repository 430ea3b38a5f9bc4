"""The function under a real `functions-framework --target=predict` server, over HTTP."""

import http.client
import json
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import FunctionServer
from tests.test_parsing import BAD

TUTORIAL_BODY = '{"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}'


def test_tutorial_curl(live):
    """The tutorial's exact request, sent by curl."""
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", live.url, "-H", "Content-Type: application/json",
         "-d", TUTORIAL_BODY, "-w", "\n%{http_code}"],
        capture_output=True, text=True, check=True).stdout
    body, status = out.rsplit("\n", 1)
    assert status == "200"
    assert json.loads(body)["prediction"] == [0]


def test_get_and_preflight(live):
    assert live.call("GET").json()["classes"] == ["setosa", "versicolor", "virginica"]
    preflight = live.call("OPTIONS", headers={"Origin": "http://127.0.0.1:1",
                                              "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "content-type"})
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]


def _chunked_post(url_port, chunks):
    conn = http.client.HTTPConnection("127.0.0.1", url_port, timeout=30)
    try:
        conn.request("POST", "/", body=iter(chunks), encode_chunked=True,
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


HTTP_BAD = [
    # (method, path, body, headers, status)
    ("PUT", "/", TUTORIAL_BODY, {"Content-Type": "application/json"}, 405),
    ("DELETE", "/", None, {}, 405),
    ("PATCH", "/", TUTORIAL_BODY, {"Content-Type": "application/json"}, 405),
    ("POST", "/", TUTORIAL_BODY, {}, 415),
    ("POST", "/", TUTORIAL_BODY, {"Content-Type": "text/plain"}, 415),
    ("POST", "/", "sl=1&sw=2", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ("POST", "/", TUTORIAL_BODY, {"Content-Type": "application/xml"}, 415),
    ("POST", "/", "x" * 3_000_000, {"Content-Type": "application/json"}, 413),
    ("POST", "/", json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 10_001}),
     {"Content-Type": "application/json"}, 413),
    ("GET", "/favicon.ico", None, {}, 404),
    ("GET", "/robots.txt", None, {}, 404),
]


@pytest.mark.parametrize("body, status, words", BAD)
def test_hostile_bodies_get_4xx_json(live, body, status, words):
    reply = live.call("POST", body, {"Content-Type": "application/json"})
    assert reply.status == status
    assert reply.headers["content-type"] == "application/json"
    # BigQuery reads errors from "errorMessage"; every other client from "error".
    assert words in reply.json()["errorMessage" if body.startswith(b'{"calls"') else "error"]


@pytest.mark.parametrize("method, path, body, headers, status", HTTP_BAD)
def test_hostile_requests_get_4xx_json(live, method, path, body, headers, status):
    reply = live.call(method, body, headers, path=path)
    assert reply.status == status
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]
    assert len(reply.body) < 500  # never echoes a large body back


def test_oversized_chunked_body_is_413(live):
    status, content_type, body = _chunked_post(live.port, [b"[" + b"1," * 100_000] * 20)
    assert status == 413 and content_type == "application/json"
    assert "limit" in json.loads(body)["error"]
    assert live.call("POST", TUTORIAL_BODY, {"Content-Type": "application/json"}).status == 200


def test_cold_instance_loads_the_model_once_under_a_burst():
    with FunctionServer() as server:
        with ThreadPoolExecutor(32) as pool:
            statuses = list(pool.map(
                lambda _: server.call("POST", TUTORIAL_BODY,
                                      {"Content-Type": "application/json"}).status, range(32)))
        assert statuses == [200] * 32
        assert server.output().count("model loaded") == 1


def test_disallowed_origin_gets_no_cors_header():
    with FunctionServer(env={"ALLOWED_ORIGINS": "https://shop.example, https://admin.example"}) as server:
        ok = server.call("POST", TUTORIAL_BODY, {"Content-Type": "application/json",
                                                 "Origin": "https://admin.example"})
        assert ok.headers["access-control-allow-origin"] == "https://admin.example"
        refused = server.call("POST", TUTORIAL_BODY, {"Content-Type": "application/json",
                                                      "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in refused.headers
        assert refused.headers["vary"] == "Origin"


def test_missing_model_is_503_json(tmp_path):
    with FunctionServer(env={"MODEL_PATH": str(tmp_path / "nothing.joblib")}) as server:
        for _ in range(3):
            reply = server.call("POST", TUTORIAL_BODY, {"Content-Type": "application/json"})
            assert reply.status == 503 and "unavailable" in reply.json()["error"]
        assert server.output().count("model unavailable") == 1


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello, on plain HTTP
])
def test_bytes_that_are_not_http_get_a_json_400(live, request_bytes):
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": "the request is not valid HTTP/1.1"}


@pytest.mark.parametrize("method, body", [("OPTIONS", None), ("POST", TUTORIAL_BODY),
                                          ("GET", None), ("DELETE", None)])
def test_each_answer_names_its_cors_origin_once(live, method, body):
    """Browsers refuse an answer with two Access-Control-Allow-Origin headers."""
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    try:
        conn.request(method, "/", body=body, headers={
            "Origin": "https://shop.example", "Content-Type": "application/json",
            "Access-Control-Request-Method": "POST"})
        response = conn.getresponse()
        response.read()
        names = [name.lower() for name, _ in response.getheaders()]
    finally:
        conn.close()
    assert names.count("access-control-allow-origin") == 1
    assert len(names) == len(set(names))  # no header twice


def test_a_client_that_waits_for_100_continue_gets_it_then_its_answer(live):
    """The server sends 100 Continue when the handler reads the body, before any answer."""
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 500}).encode()
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before the body is sent
        sock.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"]}"):
            answer += sock.recv(65536)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(payload)["species"] == ["setosa"] * 500


def test_head_answers_get_their_headers_and_no_body(live):
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"live":true}'):
            answer += sock.recv(65536)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: " in head
    assert rest.startswith(b"HTTP/1.1 200 ")  # the next answer follows at once: no body
