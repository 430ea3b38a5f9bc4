"""Structured logs for Cloud Logging: one JSON object per line.

Cloud Run ships each line a function prints to Cloud Logging and reads a JSON
line's `severity`, `message`, `httpRequest` and `logging.googleapis.com/trace`
fields into the log entry itself, so lines can be filtered by severity and
grouped under the request they belong to. Request lines carry the method,
status, latency, sizes and row count, never the body, the feature values or
an error message that quotes them: measurements a client sends are its data,
not ours to keep.
"""

import json
import logging
import re
import sys
import time

from iris_predict import settings

# X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS, TRACE_ID 32 hex digits.
TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
# Client-sent text inside an error message: a quoted value, or what follows "got".
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
GOT = re.compile(r"\bgot\b.*$")

log = logging.getLogger("iris_predict.requests")


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON in Cloud Logging's structured format."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:  # Error Reporting reads the stack trace from the message
            message += "\n" + self.formatException(record.exc_info)
        entry = {"severity": record.levelname, "message": message, "logger": record.name}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


def setup(stream=sys.stdout, level: int = logging.INFO):
    """Send every log record to `stream` as JSON, replacing other handlers."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def request(method: str, status: int, started: float, rows: int | None = None,
            reason: str = "", request_bytes: int | None = None,
            response_bytes: int | None = None,
            trace_header: str | None = None, exc_info=None):
    """Log one answered request; `started` is its time.perf_counter() at arrival."""
    latency = time.perf_counter() - started
    fields = {
        "httpRequest": {
            "requestMethod": method,
            "status": status,
            "latency": f"{latency:.6f}s",
        },
    }
    # LogEntry's HttpRequest holds sizes as int64 strings; unknown sizes stay out.
    for name, size in (("requestSize", request_bytes), ("responseSize", response_bytes)):
        if size is not None:
            fields["httpRequest"][name] = str(size)
    if rows is not None:
        fields["rows"] = rows
    trace = _trace(trace_header)
    if trace:
        fields["logging.googleapis.com/trace"] = trace
    message = f"{method} {status}"
    if reason:
        message += f": {redact(reason)}"
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    log.log(level, message, exc_info=exc_info, extra={"fields": fields})


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
