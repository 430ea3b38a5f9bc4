"""Faults on the live server (issue 10, part 3): each staged, then awaited on evidence.

A test knows its fault is in place before it checks what must hold: the
kernel shows the worker accepted a connection and read what was sent on it
(tests/evidence.py), the server's log shows what it did. docs/security.md
"Faults" says what each fault does to the server and what protects it.
"""

import asyncio
import json
import resource
import selectors
import shutil
import signal
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from iris_predict.edge import server as serving
from tests import oracle
from tests.evidence import (listening, peak_rss_kib, tree, wait_for, wait_until_read,
                            wait_until_released)
from harness import ROOT, FunctionServer, call, children

HEADER_TIMEOUT_S = 3  # HEADER_TIMEOUT_SECONDS for the shared server: short, to keep tests quick
BATCH_ROWS = 10_000   # MAX_BATCH_ROWS: the largest batch the function answers
MEMORY_LIMIT_KIB = 512 * 1024  # deploy.sh --memory=512Mi
SHUTDOWN_WITHIN_S = 10  # Cloud Run kills an instance 10 s after SIGTERM
# libuv, under the server's event loop, counts time in whole milliseconds.
TIMER_GRAIN_S = 0.001


def _flower(species: str) -> dict:
    return dict(zip(oracle.ALIASES, oracle.FLOWERS[species]))


def _batch_rows(count: int) -> list:
    """`count` rows cycling through the three known flowers: setosa, versicolor, virginica."""
    flowers = list(oracle.FLOWERS.values())
    return [flowers[i % 3] for i in range(count)]


def _check_single(answer: dict, species: str):
    """A one-flower answer: the flower's known species, scikit-learn's probabilities."""
    assert answer["species"] == species
    assert answer["prediction"] == [oracle.CLASSES.index(species)]
    assert oracle.close(answer["probabilities"], oracle.probabilities([oracle.FLOWERS[species]])[0])
    assert answer["warnings"] == []


def _check_batch(answer: dict, rows: list, probabilities: list | None):
    assert answer["predictions"] == [i % 3 for i in range(len(rows))]
    assert answer["species"] == [oracle.CLASSES[i % 3] for i in range(len(rows))]
    assert answer["warnings"] == []
    if probabilities is not None:
        assert oracle.close(answer["probabilities"], probabilities)


def _answers_every_species(server):
    for species in oracle.CLASSES:
        reply = server.call("POST", _flower(species))
        assert reply.status == 200
        _check_single(reply.json(), species)


def _post_head(length: int, connection: bytes = b"keep-alive") -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: %s\r\nContent-Length: %d\r\n\r\n" % (connection, length))


class HalfSent:
    """A POST whose headers and first half of the body are sent: the server is reading it."""

    def __init__(self, port: int, payload):
        self.body = json.dumps(payload).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(_post_head(len(self.body), b"close") + self.body[: len(self.body) // 2])

    def finish(self) -> tuple[int, dict]:
        """Send the rest, read the answer to the end: (status, JSON body)."""
        with self.sock:
            self.sock.sendall(self.body[len(self.body) // 2:])
            return _read_to_close(self.sock)


def _read_to_close(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture(scope="module")
def server():
    """A server with a short header deadline, shared by the faults it survives."""
    with FunctionServer(env={"HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S)}) as server:
        assert server.call("GET").status == 200  # the worker is up, the model loaded
        yield server


# --- 64 slowloris connections -------------------------------------------------------------
SLOWLORIS = 64
DRIBBLE_S = 0.25  # one more header byte from every slow connection this often


def _ended_yet(socks: list) -> list:
    """The connections the server has already answered or closed."""
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, _ in selector.select(timeout=0)]


def _answered_beside(server, socks: list, species: str) -> float:
    """Seconds a normal request took, answered within 2 s while the slow connections `socks`
    are held, and none of them ended yet (their deadline is still to come)."""
    asked = time.monotonic()
    reply = call(server.url, "POST", _flower(species), timeout=2)
    answered = time.monotonic()
    assert reply.status == 200 and answered - asked < 2
    _check_single(reply.json(), species)
    assert not _ended_yet(socks), "slow connections were ended before the deadline"
    return answered - asked


def _dribble_until_closed(socks: list, give_up_s: float) -> list:
    """Send a header byte on each connection every DRIBBLE_S until the server ends it.

    Returns, per connection, (monotonic time its end was seen, bytes the server sent).
    The end is seen as it happens: select() returns as soon as a connection is readable.
    """
    ended = [None] * len(socks)
    with selectors.DefaultSelector() as selector:
        for i, sock in enumerate(socks):
            selector.register(sock, selectors.EVENT_READ, i)
        deadline = time.monotonic() + give_up_s
        while None in ended and time.monotonic() < deadline:
            for i, sock in enumerate(socks):
                if ended[i] is None:
                    try:
                        sock.send(b"a")
                    except OSError:  # closed by the server between two bytes
                        ended[i] = (time.monotonic(), b"")
                        selector.unregister(sock)
            for key, _ in selector.select(timeout=DRIBBLE_S):
                try:
                    data = key.fileobj.recv(4096)
                except OSError:  # reset: closed while we were still writing
                    data = b""
                ended[key.data] = (time.monotonic(), data)
                selector.unregister(key.fileobj)
    return ended


def test_slowloris_connections_neither_starve_the_server_nor_outlive_the_deadline(server):
    opened, socks = [], []
    for _ in range(SLOWLORIS):
        opened.append(time.monotonic())  # the deadline starts later, when the worker accepts
        socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        socks[-1].sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    try:
        wait_until_read(server, socks)  # the worker holds all 64, headers unfinished
        took = _answered_beside(server, socks, "versicolor")
        ended = _dribble_until_closed(socks, give_up_s=HEADER_TIMEOUT_S + 30)
    finally:
        for sock in socks:
            sock.close()
    assert None not in ended, "the server left slow connections open"
    expected = {"error": f"request headers not received within {HEADER_TIMEOUT_S} s"}
    for start, (end, data) in zip(opened, ended):
        assert end - start >= HEADER_TIMEOUT_S - TIMER_GRAIN_S  # not closed before the deadline
        if data:  # a 408 JSON, unless the close won the race with our last byte
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 ") and b"content-type: application/json" in head
            assert json.loads(body) == expected
    lived = [end - start for start, (end, _) in zip(opened, ended)]
    print(f"\nslowloris: {SLOWLORIS} slow connections closed {min(lived):.2f}-{max(lived):.2f} s "
          f"after opening (deadline {HEADER_TIMEOUT_S} s), {sum(1 for _, d in ended if d)} with "
          f"a 408 JSON; a normal request was answered in {took * 1000:.0f} ms")
    assert server.call("GET").status == 200


# --- slow bodies after complete headers ---------------------------------------------------
BODY_TIMEOUT_S = 5  # BODY_TIMEOUT_SECONDS; not HEADER_TIMEOUT_S, so the two cannot be confused
SLOW_BODIES = 64
SLOW_BODY_LENGTH = 100_000  # announced, never sent: dribbling sends at most a few hundred bytes


@pytest.fixture(scope="module")
def body_server():
    """A server whose body deadline is short, and longer than its header deadline."""
    env = {"HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S),
           "BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S)}
    with FunctionServer(env=env) as server:
        assert server.call("GET").status == 200
        yield server


def _open_slow_bodies(port: int, count: int, head: bytes) -> tuple[list, list]:
    """`count` connections that sent complete headers: (monotonic times they were sent, sockets)."""
    sent, socks = [], []
    for _ in range(count):
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        socks[-1].sendall(head)
        sent.append(time.monotonic())  # the server has the headers no sooner than this
    return sent, socks


def _check_body_refusals(sent: list, ended: list):
    """Each connection ended no sooner than the body deadline, with the body's 408 JSON.

    A bare close may win the race with the last dribbled byte; the header deadline's
    408, due at HEADER_TIMEOUT_S, must never be what ends it.
    """
    assert None not in ended, "the server left slow bodies open"
    expected = {"error": f"request body not received within {BODY_TIMEOUT_S} s"}
    for start, (end, data) in zip(sent, ended):
        assert end - start >= BODY_TIMEOUT_S - TIMER_GRAIN_S, data
        if data:
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), head
            assert b"content-type: application/json" in head and b"connection: close" in head
            assert json.loads(body) == expected


def test_a_slow_body_after_complete_headers_gets_the_body_408_and_its_connection_closes(
        body_server):
    sent, socks = _open_slow_bodies(body_server.port, 1,
                                    _post_head(SLOW_BODY_LENGTH) + b'{"instances": [')
    [sock] = socks
    with sock:
        wait_until_read(body_server, socks)
        ended = _dribble_until_closed(socks, give_up_s=BODY_TIMEOUT_S + 30)
        _check_body_refusals(sent, ended)
        [(_, data)] = ended
        assert data.startswith(b"HTTP/1.1 408 "), "no 408 for the slow body"
        sock.settimeout(10)
        rest = b""
        try:
            while chunk := sock.recv(4096):  # the server closes: recv() sees the end
                rest += chunk
        except TimeoutError:
            pytest.fail("the connection stayed open after the body's 408")
    assert json.loads((data + rest).partition(b"\r\n\r\n")[2])["error"].startswith(
        "request body not received")


def test_an_answered_get_whose_body_trickles_on_is_closed_at_the_body_deadline(body_server):
    """uvicorn answers a GET without reading its body; the body still cannot hold the socket."""
    head = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
            % SLOW_BODY_LENGTH)
    sent, socks = _open_slow_bodies(body_server.port, 1, head)
    [sock] = socks
    with sock:
        sock.settimeout(10)
        assert sock.recv(1 << 16).startswith(b"HTTP/1.1 200 ")  # the metadata, at once
        ended = _dribble_until_closed(socks, give_up_s=BODY_TIMEOUT_S + 30)
    assert ended != [None], "the answered GET's trickling body kept its connection open"
    [(end, data)] = ended
    assert end - sent[0] >= BODY_TIMEOUT_S - TIMER_GRAIN_S
    assert data == b""  # closed: no second answer after the first


def test_slow_bodies_neither_starve_the_server_nor_outlive_the_body_deadline(body_server):
    sent, socks = _open_slow_bodies(body_server.port, SLOW_BODIES, _post_head(SLOW_BODY_LENGTH))
    try:
        wait_until_read(body_server, socks)  # the worker holds all 64, their bodies unfinished
        took = _answered_beside(body_server, socks, "virginica")
        ended = _dribble_until_closed(socks, give_up_s=BODY_TIMEOUT_S + 30)
    finally:
        for sock in socks:
            sock.close()
    _check_body_refusals(sent, ended)
    lived = [end - start for start, (end, _) in zip(sent, ended)]
    print(f"\nslow bodies: {SLOW_BODIES} closed {min(lived):.2f}-{max(lived):.2f} s after their "
          f"headers (deadline {BODY_TIMEOUT_S} s), {sum(1 for _, d in ended if d)} with a 408 "
          f"JSON; a normal request was answered in {took * 1000:.0f} ms")
    assert body_server.call("GET").status == 200


# --- 32 clients that vanish mid-body ------------------------------------------------------
VANISHING = 32
DISCONNECTED = "the client disconnected before sending the whole body"


def _vanish(sock: socket.socket, reset: bool):
    """Go away: a reset (SO_LINGER 0) or an orderly close."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_that_vanish_mid_body_leave_the_server_answering(server):
    # Half are reading an accepted body when they go; half are being drained after a 413.
    worker = children(server.process.pid)
    reading = [HalfSent(server.port, {"instances": _batch_rows(500)})
               for _ in range(VANISHING // 2)]
    refused = []
    for _ in range(VANISHING // 2):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(_post_head(20_000_000) + b"1" * 100_000)
        refused.append(sock)
    for sock in refused:
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")
    socks = [half.sock for half in reading] + refused
    wait_until_read(server, socks)
    ports = {sock.getsockname()[1] for sock in socks}
    before = server.output().count(DISCONNECTED)
    for i, sock in enumerate(socks):
        _vanish(sock, reset=i % 2 == 0)
    wait_until_released(server, ports)
    assert server.output().count(DISCONNECTED) - before == VANISHING // 2  # each a logged 400
    _answers_every_species(server)
    assert children(server.process.pid) == worker  # the same worker: nothing crashed
    assert "Traceback" not in server.output()


# --- SIGTERM with requests in flight -------------------------------------------------------
GRACEFUL_WAIT = "Waiting for connections to close"  # uvicorn's log line


def test_sigterm_answers_every_request_in_flight_then_exits_0():
    singles = [oracle.CLASSES[i % 3] for i in range(8)]
    rows = _batch_rows(BATCH_ROWS)
    # At level info, uvicorn says when its worker starts waiting for requests in flight.
    with FunctionServer(env={"GUNICORN_LOG_LEVEL": "info"}) as server:
        assert server.call("GET").status == 200  # the worker is up and the model loaded
        flowers = [HalfSent(server.port, _flower(species)) for species in singles]
        batches = [HalfSent(server.port, {"instances": rows}),
                   HalfSent(server.port, {"instances": rows,
                                          "parameters": {"probabilities": True}})]
        wait_until_read(server, [half.sock for half in flowers + batches])
        server.process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        wait_for(lambda: GRACEFUL_WAIT in server.output() or server.process.poll() is not None,
                 "the worker's graceful shutdown")
        assert GRACEFUL_WAIT in server.output() and not listening(server.port)
        with ThreadPoolExecutor(len(flowers) + len(batches)) as pool:
            answers = list(pool.map(HalfSent.finish, flowers + batches))
        status = server.process.wait(timeout=SHUTDOWN_WITHIN_S + 5)
        took = time.monotonic() - terminated
    assert [code for code, _ in answers] == [200] * 10
    for (_, answer), species in zip(answers, singles):
        _check_single(answer, species)
    _check_batch(answers[8][1], rows, None)
    _check_batch(answers[9][1], rows, oracle.probabilities(rows))
    assert status == 0
    assert took < SHUTDOWN_WITHIN_S
    print(f"\nSIGTERM: 10 requests in flight answered; exited 0 after {took:.2f} s")


def test_sigterm_gives_up_on_a_stalled_request_within_the_bound():
    """A client that never finishes its body cannot hold the instance past Cloud Run's 10 s."""
    with FunctionServer() as server:
        assert server.call("GET").status == 200
        stalled = HalfSent(server.port, _flower("setosa"))
        wait_until_read(server, [stalled.sock])
        server.process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        status = server.process.wait(timeout=SHUTDOWN_WITHIN_S + 5)
        took = time.monotonic() - terminated
        stalled.sock.close()
    assert status == 0
    assert serving.GRACEFUL_SHUTDOWN_SECONDS <= took < SHUTDOWN_WITHIN_S
    print(f"\nSIGTERM: a stalled request was given up on; exited 0 after {took:.2f} s")


# --- 32 concurrent 10,000-row batches: deploy.sh's --concurrency ----------------------
CONCURRENT_BATCHES = 32  # deploy.sh's --concurrency: the most Cloud Run sends one instance


def test_concurrent_largest_batches_stay_within_the_memory_limit(server):
    rows = _batch_rows(BATCH_ROWS)
    payload = {"instances": rows, "parameters": {"probabilities": True}}
    batches = [HalfSent(server.port, payload) for _ in range(CONCURRENT_BATCHES)]
    wait_until_read(server, [half.sock for half in batches])  # all 8 in the server at once
    with ThreadPoolExecutor(CONCURRENT_BATCHES) as pool:
        answers = list(pool.map(HalfSent.finish, batches))
    processes = tree(server.process.pid)
    peak_kib = sum(peak_rss_kib(pid) for pid in processes)
    expected = oracle.probabilities(rows)
    for status, answer in answers:
        assert status == 200
        _check_batch(answer, rows, expected)
    print(f"\nmemory: {CONCURRENT_BATCHES} concurrent {BATCH_ROWS}-row batches; peak RSS of "
          f"{len(processes)} processes {peak_kib / 1024:.0f} MiB (limit 512 MiB)")
    assert len(processes) == 2  # gunicorn's master and its one worker
    assert peak_kib < MEMORY_LIMIT_KIB


# --- the model file gone or unreadable after start ----------------------------------------
def _unreadable(model, sidecar):
    for path in (model, sidecar):
        path.chmod(0)  # root reads it anyway: the garbage below covers that


def _garbage(model, sidecar):
    for path in (model, sidecar):
        path.chmod(0o600)
        path.write_bytes(b"\0" * 64)
        path.chmod(0)


def _gone(model, sidecar):
    model.unlink()
    sidecar.unlink()


def _directory(model, sidecar):
    model.mkdir()  # no one, not even root, reads a directory as a file
    sidecar.mkdir()


def test_the_model_file_gone_or_unreadable_after_start_changes_nothing(tmp_path):
    model, sidecar = tmp_path / "model.joblib", tmp_path / "model.json"
    shutil.copy(ROOT / "model.joblib", model)
    shutil.copy(ROOT / "model.json", sidecar)
    digest = json.loads(sidecar.read_text())["sha256"]
    with FunctionServer(env={"MODEL_PATH": str(model)}) as server:
        _answers_every_species(server)  # evidence the model is loaded
        assert server.output().count("model loaded") == 1
        for damage in (_unreadable, _garbage, _gone, _directory):
            damage(model, sidecar)
            _answers_every_species(server)
            assert server.call("GET").json()["sha256"] == digest
        output = server.output()
    assert output.count("model loaded") == 1 and "model unavailable" not in output


# --- 1,000 keep-alive connections at once -------------------------------------------------
KEEP_ALIVE = 1000
# The sockets, plus the files Python, pytest, gunicorn and the model hold open.
FILES_NEEDED = KEEP_ALIVE + 256


@pytest.fixture
def many_files():
    """RLIMIT_NOFILE raised for this process and the server it starts, then restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FILES_NEEDED:
        pytest.skip(f"ulimit -n allows at most {hard} open files; "
                    f"{KEEP_ALIVE} connections need {FILES_NEEDED}")
    if soft != resource.RLIM_INFINITY and soft < FILES_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_NEEDED, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _exchange(reader, writer, body: bytes) -> tuple[int, dict] | None:
    """One request on an open connection: (status, JSON body), or None if it was cut."""
    writer.write(_post_head(len(body)) + body)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return int(head.split()[1]), json.loads(await reader.readexactly(length))
    except (OSError, asyncio.IncompleteReadError):
        return None


async def _keep_alive_clients(port: int, count: int) -> list:
    """Open `count` connections at once; then two requests on each, one after the other."""
    connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                         for _ in range(count)))

    async def two_requests(i, reader, writer):
        species = oracle.CLASSES[i % 3]
        body = json.dumps(_flower(species)).encode()
        try:
            return [(species, await _exchange(reader, writer, body)) for _ in range(2)]
        finally:
            writer.close()

    results = await asyncio.gather(*(two_requests(i, *c) for i, c in enumerate(connections)))
    return [result for pair in results for result in pair]


def test_a_thousand_keep_alive_connections_are_answered_or_refused_cleanly(many_files):
    with FunctionServer() as server:
        assert server.call("GET").status == 200
        worker = children(server.process.pid)
        results = asyncio.run(_keep_alive_clients(server.port, KEEP_ALIVE))
        answered = 0
        for species, reply in results:
            assert reply is not None, "a connection was cut without an answer"
            status, answer = reply
            if status == 200:
                _check_single(answer, species)
                answered += 1
            else:  # a refusal is a JSON error, never a bare close or a 500
                assert 400 <= status < 500 or status == 503
                assert answer["error"]
        _answers_every_species(server)
        assert children(server.process.pid) == worker
        assert "Traceback" not in server.output()
    print(f"\nkeep-alive: {KEEP_ALIVE} connections, {len(results)} requests: {answered} answered "
          f"200, {len(results) - answered} refused in JSON")
