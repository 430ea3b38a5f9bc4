"""What requests cost inside the process, stage by stage (no HTTP server, no sockets).

The whole request runs through functions-framework's ASGI app, as uvicorn
would call it; the stages are timed by calling the modules the handler calls,
in its order. Also: the JSON libraries side by side, and where the time of a
10,000-row batch goes (which parts run on the event loop, which on a thread).

Run as `python -m bench.inprocess SECONDS` in a fresh process of the project
venv: each figure includes its share of Python's garbage collections, whose
cost grows with every object the process holds, so the process holds what the
serving worker holds (scikit-learn is imported last, for its comparison only).
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import functions_framework
import joblib
import orjson

from bench.bodies import batch_bodies
from bench.servers import FUNCTIONS, TUTORIAL_BODY
from harness import ROOT

BIG_ROWS = 10_000
BATCH_ROWS = 1_000
# The function and reference (b), as functions-framework builds their ASGI apps.
APPS = {"handler": (ROOT / "main.py", "predict"),
        "hello_handler": (FUNCTIONS / "hello_asgi.py", "hello")}


def per_call_us(block, seconds: float) -> float:
    """Median over blocks of the mean time of one call, in µs; `block(n)` makes n calls."""
    block(1)  # warm: first calls load the model and fill caches
    number = 1
    while True:  # size a block to ~1/10 of the budget
        start = time.perf_counter()
        block(number)
        if time.perf_counter() - start > seconds / 10 or number >= 1 << 20:
            break
        number *= 2
    blocks = []
    for _ in range(7):
        start = time.perf_counter()
        block(number)
        blocks.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(blocks)


def repeat(fn):
    """A block of calls of `fn`."""
    def block(n):
        for _ in range(n):
            fn()
    return block


def asgi_requests(app, body: bytes, loop):
    """A block of POSTs of `body` through the ASGI `app`, in one run of the event loop."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/", "raw_path": b"/",
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8080),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive():
        return message

    async def send(_):
        pass

    async def calls(n):
        for _ in range(n):
            await app(dict(scope), receive, send)

    return lambda n: loop.run_until_complete(calls(n))


def measure(seconds: float) -> dict:
    """Microseconds per request and per stage; the JSON comparison; the big batch's stages."""
    loop = asyncio.new_event_loop()
    apps = {key: functions_framework.create_app(target=target, source=str(source))
            for key, (source, target) in APPS.items()}
    os.environ["HELLO_DECODE"] = "orjson"  # read as the module runs, in create_app
    hello_decoding = functions_framework.create_app(target="hello",
                                                    source=str(FUNCTIONS / "hello_asgi.py"))
    del os.environ["HELLO_DECODE"]
    # Imported after create_app: functions-framework imports main.py inside its app.
    from iris_predict import logs, settings
    from iris_predict.model import served as model
    from iris_predict.edge.responses import json_response
    from iris_predict.protocols.native import answer

    logs.setup(open(os.devnull, "w"))  # request log lines cost time, but stay out of the output
    served = model.get()
    door = FrontDoor()
    decode, parse = door.decode, door.parse
    payload = decode(TUTORIAL_BODY)
    batch = parse(payload)
    result = {f"{key}_us": per_call_us(asgi_requests(app, TUTORIAL_BODY, loop), seconds)
              for key, app in apps.items()}
    stages = {
        "decode": lambda: decode(TUTORIAL_BODY),
        "parse": lambda: parse(payload),
        "predict": lambda: served.predict(batch.X, True),
        "answer": lambda: answer(batch, served),
        "respond": lambda: json_response(answer(batch, served)),
        "log": lambda: logs.request("POST", 200, time.perf_counter(), "native", "INFO", 1, "", "44",
                                    200),
    }
    timed = {name: per_call_us(repeat(fn), seconds) for name, fn in stages.items()}
    result.update({
        "decode_us": timed["decode"], "parse_us": timed["parse"],
        "predict_us": timed["predict"], "shape_us": timed["answer"] - timed["predict"],
        "encode_us": timed["respond"] - timed["answer"], "log_us": timed["log"]})
    result["json"] = json_libraries(served, seconds)
    body = batch_bodies(BATCH_ROWS)["instances"]
    result["batch_1000"] = {
        "handler_us": per_call_us(asgi_requests(apps["handler"], body, loop), seconds),
        "hello_decoding_us": per_call_us(asgi_requests(hello_decoding, body, loop), seconds),
        **{f"{stage}_us": ms * 1e3 for stage, ms in stages_of(body, served, seconds).items()}}
    result["big_batch_ms"] = stages_of(batch_bodies(BIG_ROWS)["instances"], served, seconds)
    estimator = joblib.load(settings.MODEL_PATH)  # scikit-learn itself, for comparison
    result["sklearn_predict_us"] = per_call_us(repeat(lambda: (
        estimator.predict(batch.X), estimator.predict_proba(batch.X))), seconds)
    loop.close()
    return result


def json_libraries(served, seconds: float) -> dict:
    """Decode a request body and encode its answer: the standard library against orjson (µs)."""
    from iris_predict.protocols.native import answer

    result = {}
    for rows, body in ((1, TUTORIAL_BODY), (1000, batch_bodies(1000)["instances"])):
        reply = answer(FrontDoor().parse(json.loads(body)), served)
        result[str(rows)] = {
            "stdlib_us": per_call_us(repeat(lambda: (json.loads(body), json.dumps(reply))),
                                     seconds),
            "orjson_us": per_call_us(repeat(lambda: (orjson.loads(body), orjson.dumps(reply))),
                                     seconds)}
    return result


def stages_of(body: bytes, served, seconds: float) -> dict:
    """Milliseconds of each stage of an `instances` request, in the handler's order.

    main.py runs decode, parse and encode on the event loop and, for batches of
    THREAD_ROWS rows or more, answer (predict and shape) on a worker thread.
    """
    from iris_predict.edge.responses import json_response
    from iris_predict.protocols.native import answer

    door = FrontDoor()
    decode, parse = door.decode, door.parse
    payload = decode(body)
    batch = parse(payload)
    reply = answer(batch, served)
    stages = {"decode": lambda: decode(body), "parse": lambda: parse(payload),
              "answer": lambda: answer(batch, served), "encode": lambda: json_response(reply)}
    return {name: per_call_us(repeat(fn), seconds) / 1e3 for name, fn in stages.items()}


class FrontDoor:
    """A JSON body posted to "/", decoded and parsed as the handler does (routes.decode, then
    the claiming protocol's parse); what it looks up is looked up once, as in the worker."""

    def __init__(self):
        from iris_predict.edge import decoding
        from iris_predict.model import served as model
        from iris_predict.protocols import routes
        from main import Incoming

        self.routes, self.media = routes, decoding.JSON
        self.route, self.served = routes.ROUTES["/"], model.get()
        self.request = Incoming(self.route, b"", {})

    def decode(self, body: bytes):
        return self.routes.decode(self.route, self.media, body, {}, self.served.signature)[1]

    def parse(self, payload):
        protocol = next(p for p in self.route.takers[self.media] if p.claims(payload))
        return protocol.parse(payload, self.request, self.served)


def measure_in(bin_dir: Path, seconds: float) -> dict:
    """measure(), in a fresh process of the venv in `bin_dir`."""
    run = subprocess.run([str(bin_dir / "python"), "-m", "bench.inprocess", str(seconds)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"bench.inprocess failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.splitlines()[-1])  # the last line: logs may precede it


if __name__ == "__main__":
    print(json.dumps(measure(float(sys.argv[1]))))
