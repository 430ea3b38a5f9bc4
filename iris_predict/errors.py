"""Every refusal the function makes, and the HTTP status it is answered with.

A step of the request path raises one of these with a message that is safe to
show the client: it names the field and what was wrong, and never echoes more
than a clipped value. The handler turns it into a JSON error with `status`.
Kept in one place, as KServe keeps its errors.py, so that a status is decided
once and every protocol answers alike.
"""


class RequestError(Exception):
    """A request the function will not answer as asked."""

    status = 400
    # Its request's log line's: a client's mistake is worth a look, not a page.
    severity = "WARNING"
    headers: dict = {}  # extra response headers the refusal calls for
    body_read = False  # refused after the body's last byte was read: nothing left to drain

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidRequest(RequestError):
    """The body or its values are not a request the function understands."""


class NotFound(RequestError):
    status = 404


class MethodNotAllowed(RequestError):
    status = 405

    def __init__(self, method: str, allow: str):
        super().__init__(f"method {method} is not allowed; use {allow}")
        self.headers = {"Allow": allow}


class PayloadTooLarge(RequestError):
    status = 413

    def __init__(self, message: str, body_read: bool = False):
        super().__init__(message)
        self.body_read = body_read


class UnsupportedMediaType(RequestError):
    status = 415


class ModelLoading(RequestError):
    """The model is still loading: a readiness probe's "not yet", safe to show as it is."""

    status = 503
    severity = "INFO"  # expected at every start: the probe asks until it is ready


class ModelUnavailable(RequestError):
    """The model cannot be served. The message says why, for the logs; clients see
    CLIENT_MESSAGE, since the cause names files and versions of the deployment."""

    status = 503
    CLIENT_MESSAGE = "the model is unavailable; see the function's logs"
    severity = "ERROR"  # the instance cannot serve at all
