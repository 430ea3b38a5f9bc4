"""The cost of one prediction inside the process, stage by stage (no HTTP, no server).

The handler runs in functions-framework's own Flask app through its test client;
the stages are timed by calling the modules the handler calls, in its order.
"""

import os
import statistics
import time

import functions_framework

from bench.servers import SERVERS, TUTORIAL_BODY

JSON = "application/json"


def per_call_us(fn, seconds: float) -> float:
    """Median over blocks of the mean time of one call of `fn`, in microseconds."""
    fn()  # warm: first calls load the model and fill caches
    number = 1
    while True:  # size a block to ~1/10 of the budget
        start = time.perf_counter()
        for _ in range(number):
            fn()
        took = time.perf_counter() - start
        if took > seconds / 10 or number >= 1 << 20:
            break
        number *= 2
    blocks = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        blocks.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(blocks)


def measure(seconds: float) -> dict:
    """Microseconds per tutorial request: the whole handler and its four stages."""
    clients = {}
    for name in ("iris-predict", "hello world"):
        source, target = SERVERS[name]
        app = functions_framework.create_app(target=target, source=str(source))
        clients[name] = app.test_client()

    # Imported after create_app: functions-framework imports main.py inside its app.
    from iris_predict import logs, model, parsing

    # Request log lines are part of the cost, but not of the benchmark's output.
    logs.setup(open(os.devnull, "w"))
    from iris_predict.answers import answer
    from iris_predict.responses import json_response

    served = model.get()
    payload = parsing.decode(TUTORIAL_BODY)
    batch = parsing.parse(payload)
    app = clients["iris-predict"].application
    estimator = served.estimator

    def request(client):
        return lambda: client.post("/", data=TUTORIAL_BODY, content_type=JSON)

    def sklearn_methods():
        estimator.predict(batch.X)
        estimator.predict_proba(batch.X)

    with app.test_request_context():
        stages = {
            "parse": lambda: parsing.decode(TUTORIAL_BODY),
            "validate": lambda: parsing.parse(payload),
            "predict": lambda: served.predict(batch.X, True),
            "predict + serialize": lambda: json_response(answer(batch, served)),
        }
        timed = {name: per_call_us(fn, seconds) for name, fn in stages.items()}
    return {
        "handler_us": per_call_us(request(clients["iris-predict"]), seconds),
        "hello_handler_us": per_call_us(request(clients["hello world"]), seconds),
        "parse_us": timed["parse"],
        "validate_us": timed["validate"],
        "predict_us": timed["predict"],
        "serialize_us": timed["predict + serialize"] - timed["predict"],
        "sklearn_predict_us": per_call_us(sklearn_methods, seconds),
    }
