"""Structured logs for Cloud Logging: one JSON object per line.

Cloud Run ships each line a function prints to Cloud Logging and reads a JSON
line's `severity`, `message`, `httpRequest` and `logging.googleapis.com/trace`
fields into the log entry itself, so lines can be filtered by severity and
grouped under the request they belong to. Request lines carry the method,
status, latency, sizes, row count and protocol (routes.py), never the body, the feature values or
an error message that quotes them: measurements a client sends are its data,
not ours to keep. Only where the owner sets PREDICTION_LOG_SAMPLE above 0 are
some answered rows logged, each on a line of its own under a label that a log
sink selects (iris_predict/sampling.py, docs/drift.md).

Request lines are encoded by orjson and written straight to the stream, not
through the logging module (which cost a third of a one-flower request's time);
the lines of one turn of the event loop leave together in one system call at
its end. Everything else goes through logging, formatted alike.
"""

import asyncio
import functools
import logging
import os
import re
import select
import sys
import time

import numpy as np
import orjson

from iris_predict import settings

# X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS, TRACE_ID 32 hex digits.
TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
# Client-sent text inside an error message: a quoted value, or what follows "got".
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
GOT = re.compile(r"\bgot\b.*$")
REQUESTS_LOGGER = "iris_predict.requests"
PREDICTIONS_LOGGER = "iris_predict.predictions"
# Cloud Logging moves this special field into the entry's labels, where a sink's filter
# (labels.iris_predict="prediction_sample") selects the sampled predictions and nothing else.
LABELS_FIELD = "logging.googleapis.com/labels"
TRACE_FIELD = "logging.googleapis.com/trace"
SAMPLE_LABELS = {"iris_predict": "prediction_sample"}

_write = None  # writes one encoded line to the log stream; set by setup()


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON in Cloud Logging's structured format."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:  # Error Reporting reads the stack trace from the message
            message += "\n" + self.formatException(record.exc_info)
        entry = {"severity": record.levelname, "message": message, "logger": record.name}
        entry.update(getattr(record, "fields", {}))
        return orjson.dumps(entry, default=str).decode()


def setup(stream=sys.stdout, level: int = logging.INFO):
    """Send every log record to `stream` as JSON, replacing other handlers."""
    global _write
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    try:
        fd = stream.fileno()
    except (AttributeError, OSError):  # a stream without a file: a test's StringIO
        _write = lambda line: (stream.write(line.decode()), stream.flush())  # noqa: E731
    else:
        stream.flush()
        _write = functools.partial(_write_this_turn, fd)


_this_turn = []  # the lines written during this turn of the event loop


def _write_this_turn(fd: int, line: bytes):
    """Queue `line` for one write with the others of this turn of the event loop, at its end.

    Under load a turn answers several requests: one system call for all their lines.
    Where no event loop runs (the CLI), the line is written at once.
    """
    if not _this_turn:
        try:
            asyncio.get_running_loop().call_soon(_write_turn, fd)
        except RuntimeError:
            write_all(fd, line)
            return
    _this_turn.append(line)


def _write_turn(fd: int):
    lines = b"".join(_this_turn)
    _this_turn.clear()
    write_all(fd, lines)


def write_all(fd: int, data: bytes):
    """Write every byte of `data`, as the logging handler's stream would.

    One os.write may take only part of it (a pipe nearly full, a signal), or refuse with
    BlockingIOError where the descriptor was made non-blocking (stdout's pipe is shared with
    whatever else holds it): the rest would be lost, and the next line would land glued to a
    cut one. So write on, waiting for room, as a blocking write would.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


def request(method: str, status: int, started: float, protocol: str, severity: str = "INFO",
            rows: int | None = None, reason: str = "", request_bytes: str | None = None,
            response_bytes: int | None = None,
            trace_header: str | None = None, exc_info=None):
    """Log one answered request; `started` is its time.perf_counter() at arrival, and
    `severity` the refusal's (errors.py), ERROR for a bug of ours."""
    latency = time.perf_counter() - started
    http = {"requestMethod": method, "status": status, "latency": f"{latency:.6f}s"}
    # LogEntry's HttpRequest holds sizes as int64 strings; unknown sizes stay out.
    if request_bytes is not None:
        http["requestSize"] = str(request_bytes)
    if response_bytes is not None:
        http["responseSize"] = str(response_bytes)
    message = f"{method} {status}: {redact(reason)}" if reason else f"{method} {status}"
    if exc_info:  # Error Reporting reads the stack trace from the message
        message += "\n" + logging.Formatter().formatException(exc_info)
    entry = {"severity": severity, "message": message, "logger": REQUESTS_LOGGER,
             "httpRequest": http, "protocol": protocol}
    if rows is not None:
        entry["rows"] = rows
    trace = _trace(trace_header)
    if trace:
        entry[TRACE_FIELD] = trace
    _write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))


def predictions(rows: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray | None,
                signature, trace_header: str | None = None):
    """Log one line per row: its values by feature (categories as text, null where
    missing), then a classifier's class, label and probabilities or a regressor's value."""
    trace = _trace(trace_header)
    names, target, classes = signature.names, signature.target, signature.classes
    for i, (values, k) in enumerate(zip(rows.tolist(), predicted.tolist())):
        entry = {"severity": "INFO", "message": "prediction sample",
                 "logger": PREDICTIONS_LOGGER, LABELS_FIELD: SAMPLE_LABELS,
                 **dict(zip(names, values))}
        if classes:
            entry.update({"class": k, target: classes[k],
                          "probabilities": dict(zip(classes, probabilities[i].tolist()))})
        else:
            entry[target] = k
        if trace:
            entry[TRACE_FIELD] = trace
        _write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))


def redact(message: str) -> str:
    """An error message without the client's values it quotes (field names stay)."""
    return GOT.sub("got …", QUOTED.sub('"…"', message))


def _trace(header: str | None) -> str | None:
    """Cloud Logging's trace name for an X-Cloud-Trace-Context header, if any."""
    if not header or not settings.GOOGLE_CLOUD_PROJECT:
        return None
    trace_id = header.split("/", 1)[0].split(";", 1)[0]
    if not TRACE_ID.fullmatch(trace_id):
        return None
    return f"projects/{settings.GOOGLE_CLOUD_PROJECT}/traces/{trace_id.lower()}"
