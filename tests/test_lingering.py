"""Over-limit bodies from clients that write the whole body before they read (issue 10, part 2).

The function refuses a body over MAX_BODY_BYTES with 413 before reading it
(its Content-Length says so) or as soon as it passes the limit (chunked). A
client still sending when the server closes gets a broken pipe or a reset
instead of that answer. So the server lingers (RFC 9112 section 9.6,
iris_predict/edge/responses.py): it answers, reads and discards the rest of the body
within LINGER_BYTES and LINGER_SECONDS, and only then closes. Every client here
must read the 413 JSON, with bodies sent whole and chunked.
"""

import asyncio
import functools
import json
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import requests

from iris_predict.edge import responses
from iris_predict import settings
from tests import oracle
from tests.evidence import wait_until_read
from harness import FunctionServer

LIMIT = settings.MAX_BODY_BYTES
BIG_BYTES = 20_000_000  # "a 20 MB body"
BATCH_ROWS = 200_000    # "a 200,000-row batch": 4.4 MB of JSON, over LIMIT by its Content-Length
CHUNK = 64 * 1024
JSON = "application/json"
# Node 20's fetch (undici), posting a file whole or as a stream (sent chunked), printing the answer.
FETCH = """
import { createReadStream, readFileSync } from "node:fs";
import { Readable } from "node:stream";
const [url, path, mode] = process.argv.slice(1);
const body = mode === "chunked" ? Readable.toWeb(createReadStream(path)) : readFileSync(path);
const response = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                   body, duplex: "half"});
console.log(JSON.stringify({status: response.status, type: response.headers.get("content-type"),
                            body: await response.text()}));
"""


@pytest.fixture(scope="module")
def server():
    """A fresh server for this module's refusals."""
    with FunctionServer() as server:
        yield server


@pytest.fixture(scope="module")
def bodies(tmp_path_factory) -> dict:
    """The over-limit bodies, as files every client can send."""
    folder = tmp_path_factory.mktemp("bodies")
    big, batch = folder / "big.json", folder / "batch.json"
    big.write_bytes(b"[" + b"1," * ((BIG_BYTES - 3) // 2) + b"1]")
    batch.write_text(json.dumps({"instances": [oracle.FLOWERS["setosa"]] * BATCH_ROWS}))
    return {"20 MB": big, "200,000 rows": batch}


def _chunks(path):
    with open(path, "rb") as f:
        yield from iter(functools.partial(f.read, CHUNK), b"")


def _curl(url, path, chunked, *options):
    headers = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    out = subprocess.run(["curl", "-sS", "-X", "POST", url, "-H", f"Content-Type: {JSON}",
                          *headers, *options, "--data-binary", f"@{path}",
                          "-w", "\n%{http_code} %{content_type}"],
                         capture_output=True, check=True, timeout=60).stdout
    body, _, status_type = out.rpartition(b"\n")
    status, content_type = status_type.decode().split(" ", 1)
    return int(status), content_type, body


def _urllib(url, path, chunked):
    data = _chunks(path) if chunked else path.read_bytes()  # an iterable is sent chunked
    request = urllib.request.Request(url, data=data, headers={"Content-Type": JSON})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as refusal:
        return refusal.code, refusal.headers["Content-Type"], refusal.read()


def _requests(url, path, chunked):
    data = _chunks(path) if chunked else path.read_bytes()  # a generator is sent chunked
    response = requests.post(url, data=data, headers={"Content-Type": JSON}, timeout=60)
    return response.status_code, response.headers["Content-Type"], response.content


def _fetch(url, path, chunked):
    done = subprocess.run(["node", "--input-type=module", "-e", FETCH, url, str(path),
                           "chunked" if chunked else "whole"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    return answer["status"], answer["type"], answer["body"].encode()


CLIENTS = {
    "curl": _curl,  # sends Expect: 100-continue, then no body once it has the 413
    "curl, no Expect": lambda url, path, chunked: _curl(url, path, chunked, "-H", "Expect:"),
    "urllib": _urllib,
    "requests": _requests,
    "node fetch": _fetch,
}


@pytest.mark.parametrize("chunked", [False, True], ids=["Content-Length", "chunked"])
@pytest.mark.parametrize("body", ["20 MB", "200,000 rows"])
@pytest.mark.parametrize("client", CLIENTS)
def test_every_client_reads_the_413(server, bodies, client, body, chunked):
    status, content_type, answer = CLIENTS[client](server.url, bodies[body], chunked)
    assert (status, content_type) == (413, JSON)
    assert f"more than the limit of {LIMIT}" in json.loads(answer)["error"]


def _send_headers(port: int, length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % length)
    return sock


def _read_answer(sock: socket.socket) -> tuple[int, dict]:
    """One HTTP answer with a Content-Length body: (status, JSON body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(CHUNK)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines
                  if line.lower().startswith("content-length:"))
    while len(body) < length:
        body += sock.recv(CHUNK)
    return int(lines[0].split()[1]), json.loads(body)


def test_the_server_answers_others_while_it_drains(server):
    """A slow client is refused at once; others are answered while its body still arrives."""
    piece = b"1" * (1024 * 1024)
    with _send_headers(server.port, BIG_BYTES) as slow:
        slow.sendall(piece)
        status, answer = _read_answer(slow)
        assert status == 413 and f"{BIG_BYTES} bytes" in answer["error"]
        slow.sendall(piece)
        wait_until_read(server, [slow])  # the server is draining what it refused
        other = server.call("POST", dict(zip(oracle.ALIASES, oracle.FLOWERS["virginica"])))
        assert (other.status, other.json()["species"]) == (200, "virginica")
        slow.sendall(piece)
        wait_until_read(server, [slow])  # ... and still is, after answering the other
        slow.sendall(b"1" * (BIG_BYTES - 3 * len(piece)))
        assert slow.recv(CHUNK) == b""  # all read: a clean close, no reset


def test_draining_stops_at_its_bound(server):
    """A body beyond LINGER_BYTES is read up to the bound, then the connection is closed."""
    length, sent = 2 * responses.LINGER_BYTES, 0
    piece = b"1" * CHUNK
    with _send_headers(server.port, length) as sock:
        assert _read_answer(sock)[0] == 413
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while sent < length:
                sent += sock.send(piece)
    assert responses.LINGER_BYTES <= sent < length
    assert server.call("GET").status == 200


def test_draining_stops_after_its_time_bound(monkeypatch):
    """A client that stops sending is not waited for longer than LINGER_SECONDS."""
    monkeypatch.setattr(responses, "LINGER_SECONDS", 0.01)

    async def silent_client():
        await asyncio.Event().wait()  # the rest of the body never comes

    asyncio.run(asyncio.wait_for(responses._discard_body(silent_client), timeout=10))


def test_a_body_refused_on_its_last_chunk_keeps_the_connection(server):
    """Nothing is left to drain, so no lingering close: the connection stays usable."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (LIMIT, b"1" * LIMIT))
        wait_until_read(server, [sock])  # the body is at the limit, not over it yet
        sock.sendall(b"1\r\n1\r\n0\r\n\r\n")  # one byte more, and the end of the body
        status, answer = _read_answer(sock)
        assert status == 413 and f"more than the limit of {LIMIT}" in answer["error"]
        flower = json.dumps(dict(zip(oracle.ALIASES, oracle.FLOWERS["setosa"]))).encode()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(flower), flower))
        status, answer = _read_answer(sock)
        assert (status, answer["species"]) == (200, "setosa")
