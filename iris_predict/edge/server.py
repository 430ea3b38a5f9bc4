"""The HTTP server under the function, tuned where functions-framework leaves it open.

For an @aio.http function, functions-framework serves with gunicorn and
uvicorn_worker.UvicornWorker, locally and in Google's buildpack alike, and takes
no server options. The worker builds uvicorn's Config from its class attribute
CONFIG_KWARGS, so tune() sets that when main.py is imported: in gunicorn's
master, before it forks the worker.

- httptools and uvloop by name rather than by detection: a missing wheel stops
  the start instead of quietly halving throughput (README "Performance").
- A deadline for each request's headers (HEADER_TIMEOUT_SECONDS): uvicorn waits
  forever for headers that never end, so slowloris clients could hold
  connections open indefinitely.
- A deadline for each request's body (BODY_TIMEOUT_SECONDS), from the end of its
  headers: uvicorn waits as long for a body that trickles in, and a body the
  function never reads (a GET's, one refused early) kept its connection open
  for as long as the client kept sending.
- The requests the framework would refuse itself (its 404 for /favicon.ico and
  /robots.txt and for paths with a newline, which its route pattern cannot match,
  its plain-text 405 for methods outside its route list) go to the handler
  instead, to be answered in JSON and logged like every other; bytes
  that are not HTTP get a JSON 400 too, instead of uvicorn's plain text.
- A response's head and the start of its body leave in one write: uvicorn writes
  them separately, two system calls and two TCP segments for every small answer.
- Shutdown finishes requests in flight, within Cloud Run's 10 s after SIGTERM.
"""

import logging

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker
from starlette.requests import Request

from iris_predict import settings

# The methods functions-framework's routes take; it answers any other with 405 itself.
FRAMEWORK_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"})
# Paths browsers and crawlers ask every host for, which functions-framework answers 404
# itself: handed to the handler instead, whose 404 says what is there.
FRAMEWORK_NOT_FOUND = ("/favicon.ico", "/robots.txt")
# Requests still running this long after SIGTERM are cancelled; Cloud Run kills at 10 s,
# and the process needs about a second more to exit on a loaded machine.
GRACEFUL_SHUTDOWN_SECONDS = 7
# Answers written straight to the connection, before there is a request to hand on.
REFUSAL = (b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nx-content-type-options: nosniff"
           b"\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s")


def tune(handler) -> None:
    """Serve with httptools, uvloop and Protocol; `handler` answers what the framework won't."""
    Protocol.handler = staticmethod(handler)
    UvicornWorker.CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "loop": "uvloop",
                                   "http": Protocol,
                                   "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
                                   # Cloud Run's front end sets Date and Server itself; ours
                                   # would only cost time and name the server software.
                                   "date_header": False, "server_header": False}


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus header and body deadlines and the framework's refusals.

    It relies on these of uvicorn's (tests/test_upgrades.py checks each is still there):
    the callbacks it extends, `loop`, `transport`, `app`, `cycle` and the cycle's `scope`,
    `transport`, `response_started` and `response_complete`.
    """

    handler = None  # the function's handler: Request -> Response

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._framework_app = self.app
        self.app = self._route
        self._header_deadline = None
        self._body_deadline = None

    def _route(self, scope, receive, send):
        """The ASGI app for one request: the framework's, or the handler for what it refuses.

        A plain function returning the app's coroutine, so the usual case adds no frame.
        """
        path = scope["path"]
        if scope["method"] in FRAMEWORK_METHODS and path not in FRAMEWORK_NOT_FOUND \
                and "\n" not in path:
            return self._framework_app(scope, receive, send)
        return self._answer_directly(scope, receive, send)

    async def _answer_directly(self, scope, receive, send):
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)

    # The header deadline runs from a connection's start, or a request's first byte,
    # to the end of that request's headers.
    def connection_made(self, transport):
        super().connection_made(transport)
        self._start_header_deadline()

    def on_message_begin(self):
        super().on_message_begin()
        if self._header_deadline is None:
            self._start_header_deadline()

    def on_headers_complete(self):
        self._stop_header_deadline()
        previous = self.cycle
        super().on_headers_complete()  # makes the request's cycle, whose task has yet to run
        if self.cycle is previous:  # an upgrade request: no cycle, and no body of HTTP/1.1
            return
        # The body deadline runs from here to the end of the message; a request without a
        # body ends within this same call to the parser.
        self._body_deadline = self.loop.call_later(settings.BODY_TIMEOUT_SECONDS,
                                                   self._body_timed_out)
        # An answer to HEAD has no body to wait for (uvicorn writes none).
        if self.cycle.scope["method"] != "HEAD":
            self.cycle.transport = HeadWithBody(self.transport, self.cycle)

    def on_message_complete(self):
        self._stop_body_deadline()
        super().on_message_complete()

    def connection_lost(self, exc):
        self._stop_header_deadline()
        self._stop_body_deadline()
        super().connection_lost(exc)

    def _start_header_deadline(self):
        self._header_deadline = self.loop.call_later(settings.HEADER_TIMEOUT_SECONDS,
                                                     self._headers_timed_out)

    def _stop_header_deadline(self):
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_timed_out(self):
        self._header_deadline = None
        self._refuse(b"408 Request Timeout",
                     f"request headers not received within {settings.HEADER_TIMEOUT_SECONDS} s")

    def _stop_body_deadline(self):
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_timed_out(self):
        """Refuse the request whose body is late, or end the connection its answer left open.

        Once an answer has started (a refusal sent before the body was read, an answer
        to a GET that came with a body), no other can follow: the connection just closes.
        """
        self._body_deadline = None
        message = f"request body not received within {settings.BODY_TIMEOUT_SECONDS} s"
        logging.getLogger(__name__).warning("%s: %s; connection closed",
                                            self.cycle.scope["method"], message)
        if self.cycle.response_started:
            self.transport.close()
        else:
            self._refuse(b"408 Request Timeout", message)

    def send_400_response(self, msg: str):
        """uvicorn's answer to bytes its parser rejects, as JSON."""
        self._refuse(b"400 Bad Request", "the request is not valid HTTP/1.1")

    def _refuse(self, status: bytes, message: str):
        if not self.transport.is_closing():
            body = orjson.dumps({"error": message})
            self.transport.write(REFUSAL % (status, len(body), body))
            self.transport.close()


class HeadWithBody:
    """One response's view of the connection: its head is held until its body's first bytes.

    uvicorn writes a response's status line and headers, then its body, each as
    soon as the application sends them; for the small answers this function gives,
    that is two system calls and two TCP segments where one does. Only the head is
    held, and only once the response has started: a 100 Continue, written while
    the request body is awaited, goes at once. Closing sends what is held first.
    """

    __slots__ = ("_transport", "_cycle", "_head")

    def __init__(self, transport, cycle):
        self._transport = transport
        self._cycle = cycle
        self._head = None  # None: nothing held yet; b"": the head has gone

    def write(self, data: bytes):
        if self._head is None and self._cycle.response_started:
            self._head = data
            return
        if self._head:
            data, self._head = self._head + data, b""
        self._transport.write(data)

    def close(self):
        if self._head:
            self._transport.write(self._head)
            self._head = b""
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
