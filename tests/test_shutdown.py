"""SIGTERM (what Cloud Run sends before stopping an instance) lets requests in flight finish."""

import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from harness import FunctionServer

IN_FLIGHT = 8
EXIT_WITHIN_S = 10  # Cloud Run kills the instance 10 s after SIGTERM
FLOWER = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 200}).encode()


def _open_request(port: int) -> socket.socket:
    """A request whose headers and half its body are sent: the server is reading it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(FLOWER))
    sock.sendall(FLOWER[: len(FLOWER) // 2])
    return sock


def _finish_request(sock: socket.socket) -> tuple[int, dict]:
    with sock:
        sock.sendall(FLOWER[len(FLOWER) // 2:])
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_sigterm_lets_requests_in_flight_finish_then_exits_0():
    with FunctionServer() as server:
        assert server.call("GET").status == 200  # the worker is up and the model loaded
        socks = [_open_request(server.port) for _ in range(IN_FLIGHT)]
        time.sleep(0.5)  # the worker has picked them up and waits for the rest
        server.process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        time.sleep(0.5)  # the server is shutting down while they are still arriving
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            answers = list(pool.map(_finish_request, socks))
        status = server.process.wait(timeout=EXIT_WITHIN_S + 5)
        took = time.monotonic() - terminated
    assert [code for code, _ in answers] == [200] * IN_FLIGHT
    assert all(body["predictions"] == [0] * 200 for _, body in answers)
    assert status == 0
    assert took < EXIT_WITHIN_S
