"""Load and soak on loopback: many keep-alive connections, every answer checked, memory flat."""

import asyncio
import itertools
import json
import random
import time

import pytest

from tests import oracle
from harness import FunctionServer, children, rss_kib

CONNECTIONS = 64
WARM_UP = 1_000
HALF = 9_500            # requests per half, after the warm-up: 20 000 in all
# Growth allowed from the end of the first half to the end of the second: the
# allocator may still settle a little, a leak of even 100 bytes a request
# (1 MB per half) would not fit.
RSS_TOLERANCE_KIB = 1024


def _requests(count: int, seed: int = 7) -> list:
    """(body bytes, expected answer) pairs: single flowers, batches and BigQuery calls.

    The expected answers are scikit-learn's (tests/oracle.py); warnings are
    compared without their message, whose text tests/test_function.py pins.
    """
    rng = random.Random(seed)

    def row():
        return [round(rng.uniform(0.5, 9.5), rng.choice((1, 2, 6))) for _ in oracle.NAMES]

    pool = []
    for i in range(count):
        kind = i % 4
        if kind in (0, 1):
            values = row()
            payload = dict(zip(oracle.ALIASES if kind == 0 else oracle.NAMES, values))
            expected = oracle.single(values)
        elif kind == 2:
            rows = [row() for _ in range(rng.randint(2, 8))]
            with_probabilities = rng.random() < 0.5
            payload = {"instances": rows, "parameters": {"probabilities": with_probabilities}}
            expected = oracle.instances(rows, with_probabilities)
        else:
            calls = [row() for _ in range(rng.randint(1, 8))]
            output = rng.choice(("species", "json"))
            payload = {"calls": calls, "userDefinedContext": {"output": output}}
            expected = oracle.replies(calls, output)
        pool.append((json.dumps(payload).encode(), expected))
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
            results.append(status_line.split()[1] == b"200" and oracle.close(
                oracle.without_messages(json.loads(answer_body)), expected))
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
    """Distinct requests with the answers scikit-learn gives them."""
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
