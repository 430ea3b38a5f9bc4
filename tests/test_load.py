"""Load and soak on loopback: many keep-alive connections, every answer checked, memory flat."""

import asyncio
import itertools
import json
import random
import time

import pytest

from iris_predict import model
from iris_predict.answers import answer
from iris_predict.features import ALIASES, NAMES
from iris_predict.parsing import parse
from harness import FunctionServer, children, rss_kib

CONNECTIONS = 64
WARM_UP = 1_000
HALF = 9_500            # requests per half, after the warm-up: 20 000 in all
# Growth allowed from the end of the first half to the end of the second: the
# allocator may still settle a little, a leak of even 100 bytes a request
# (1 MB per half) would not fit.
RSS_TOLERANCE_KIB = 1024


def _requests(count: int, seed: int = 7) -> list:
    """(body bytes, expected answer) pairs: single flowers, batches and BigQuery calls."""
    rng = random.Random(seed)
    served = model.get()

    def row():
        return [round(rng.uniform(0.5, 9.5), rng.choice((1, 2, 6))) for _ in NAMES]

    pool = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            payload = dict(zip(ALIASES, row()))
        elif kind == 1:
            payload = dict(zip(NAMES, row()))
        elif kind == 2:
            payload = {"instances": [row() for _ in range(rng.randint(2, 8))],
                       "parameters": {"probabilities": rng.random() < 0.5}}
        else:
            payload = {"calls": [row() for _ in range(rng.randint(1, 8))],
                       "userDefinedContext": {"output": rng.choice(("species", "json"))}}
        pool.append((json.dumps(payload).encode(), answer(parse(payload), served)))
    return pool


async def _client(port: int, jobs, results: list):
    """One keep-alive connection sending requests until the shared iterator runs out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for body, expected in jobs:
            writer.write(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                         b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            status_line = await reader.readline()
            length = None
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answer_body = await reader.readexactly(length)
            results.append(status_line.split()[1] == b"200" and json.loads(answer_body) == expected)
    finally:
        writer.close()


def _send(port: int, pool: list, count: int) -> list:
    """Send `count` requests from the pool over CONNECTIONS connections; one bool each."""
    jobs = itertools.islice(itertools.cycle(pool), count)
    results = []

    async def run():
        await asyncio.gather(*(_client(port, jobs, results) for _ in range(CONNECTIONS)))

    asyncio.run(run())
    return results


@pytest.fixture(scope="module")
def pool():
    """Distinct requests with their answers computed in process by the same model."""
    return _requests(500)


def test_load_every_answer_correct_and_memory_flat(pool):
    with FunctionServer() as server:
        started = time.monotonic()
        _send(server.port, pool, WARM_UP)
        (worker,) = children(server.process.pid)
        first = _send(server.port, pool, HALF)
        rss_first = rss_kib(worker)
        second = _send(server.port, pool, HALF)
        rss_second = rss_kib(worker)
        took = time.monotonic() - started
        assert children(server.process.pid) == [worker]
    print(f"\nload: {WARM_UP + 2 * HALF} requests over {CONNECTIONS} connections in {took:.1f} s; "
          f"worker RSS {rss_first} KiB after the first half, {rss_second} KiB after the second")
    assert len(first) == len(second) == HALF
    assert first.count(True) == HALF and second.count(True) == HALF
    assert rss_second - rss_first <= RSS_TOLERANCE_KIB
