"""The fake's state and its HTTP server: every API's routes, and what is not an API call."""

import http.client
import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.fake_gcp.cloud_logging import CloudLogging
from tests.fake_gcp.common import GLOBAL, Failure, Request, error
from tests.fake_gcp.functions import CloudFunctions
from tests.fake_gcp.gateway import ApiGateway
from tests.fake_gcp.keys import ApiKeys
from tests.fake_gcp.run import CloudRun


@dataclass
class FakeGoogleCloud(CloudFunctions, CloudRun, CloudLogging, ApiGateway, ApiKeys):
    """The fake's state; `start()` serves it on a free loopback port."""

    backend: str = ""  # base URL of the local function that /fn/NAME forwards to
    id_token: str = "fake-identity-token"  # what the front end accepts for private functions
    requests: list = field(default_factory=list)
    functions: dict = field(default_factory=dict)  # relative name -> Function resource
    operations: dict = field(default_factory=dict)
    uploads: dict = field(default_factory=dict)  # object name -> zip bytes
    policies: dict = field(default_factory=dict)  # Cloud Run service name -> IAM policy
    services: dict = field(default_factory=dict)  # Cloud Run service name -> Service
    # (index in `requests` of the request that changed it, service name, shares) at each change
    traffic_log: list = field(default_factory=list)
    sinks: dict = field(default_factory=dict)  # sink name -> LogSink
    entries: list = field(default_factory=list)  # LogEntry objects, as Cloud Logging holds them
    failures: list = field(default_factory=list)
    # API Gateway (docs/gateway.md): its service accounts, APIs, configs, gateways, API keys
    service_accounts: dict = field(default_factory=dict)  # email -> ServiceAccount
    apis: dict = field(default_factory=dict)  # relative name -> Api
    api_configs: dict = field(default_factory=dict)  # relative name -> ApiConfig
    gateways: dict = field(default_factory=dict)  # relative name -> Gateway
    enabled: set = field(default_factory=set)  # services enabled in the project
    keys: dict = field(default_factory=dict)  # relative name -> Key (with its keyString)
    # (index in `requests` of the request that changed it, gateway name, its config) at each change
    gateway_log: list = field(default_factory=list)
    tls: tuple = ()  # (certificate file, key file) the gateways' HTTPS answers with
    url: str = ""

    def start(self):
        fake = self

        class Handler(_Handler):
            state = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method: str, path: str, status: int, message: str):
        """Answer requests matching `method` and the `path` regex with a Google API error."""
        self.failures.append(Failure(method, path, status, message))

    def calls(self, method: str, path: str) -> list:
        """Recorded requests with this method whose path matches the regex."""
        return [r for r in self.requests if r.method == method and re.search(path, r.path)]

    def foreign(self) -> list:
        """Requests meant for any host other than this fake."""
        return [r for r in self.requests if not self.owns(r.host)]

    def owns(self, host: str) -> bool:
        """Whether this fake answers for the host: its own, or one of its gateways' (HOST:443
        as a CONNECT names it)."""
        return _is_fake_host(host, self.url) or self.gateway_at(host) is not None

    def gateway_at(self, host: str) -> dict | None:
        """The gateway whose default host name this is, if any."""
        host = host.removesuffix(":443")
        return next((g for g in self.gateways.values() if g["defaultHostname"] == host), None)

    def unhandled(self) -> list:
        """Requests the fake did not know how to answer."""
        return [r for r in self.requests if not r.handled]

    # --- the APIs -------------------------------------------------------------------------

    def route(self, request: Request):
        """(status, JSON body) for an API request, or None if no route matches."""
        for failure in self.failures:
            if failure.method == request.method and re.search(failure.path, request.path):
                return failure.status, error(failure.status, failure.message)
        for method, pattern, handler in self.ROUTES:
            match = re.fullmatch(pattern, request.path)
            if method == request.method and match:
                return handler(self, request, **match.groupdict())
        return None

    def get_operation(self, request, name):
        if name not in self.operations:
            return 404, error(404, f"Operation {name} not found")
        return 200, self.operations[name]

    # Operations of every API, by name: each API's long-running calls finish at once.
    OPERATIONS = [
        ("GET", r"/v2/(?P<name>projects/[^/]+/locations/[^/]+/operations/[^/]+)", get_operation),
        ("GET", r"/v1/(?P<name>" + GLOBAL + r"/operations/[^/]+)", get_operation),
        ("GET", r"/v1/(?P<name>operations/[^/]+)", get_operation),
        ("GET", r"/v2/(?P<name>operations/[^/]+)", get_operation),
    ]
    ROUTES = (CloudFunctions.ROUTES + CloudRun.ROUTES + CloudLogging.ROUTES + ApiGateway.ROUTES
              + ApiKeys.ROUTES + OPERATIONS)


class _Handler(BaseHTTPRequestHandler):
    state: FakeGoogleCloud
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the test reads `state.requests` instead
        pass

    def do_CONNECT(self):
        """A tunnel to a real host (HTTPS through the proxy): recorded and refused, unless it
        is one of the fake's gateways, whose HTTPS the fake then answers itself."""
        gateway = self.state.gateway_at(self.path)
        self.state.requests.append(Request("CONNECT", self.path, "", {}, {}, b"",
                                           handled=gateway is not None))
        if gateway is None or not self.state.tls:
            return self._send(403, {"error": f"fake_gcp refuses to connect to {self.path}"})
        self.send_response(200, "Connection established")
        self.end_headers()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*self.state.tls)
        # The requests that follow on this connection come through TLS.
        self.connection = context.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb")
        self.close_connection = False  # even after an HTTP/1.0 CONNECT, as Python's client sends

    def _handle(self):
        target = urlsplit(self.path)  # absolute when gcloud uses us as its proxy
        host = target.netloc or self.headers.get("Host", "")
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(self.command, host, target.path, parse_qs(target.query),
                          {k.lower(): v for k, v in self.headers.items()},
                          self.rfile.read(length) if length else b"")
        self.state.requests.append(request)
        if self.state.gateway_at(host) is not None:
            return self._reply(*self.state.through_gateway(request))
        if not _is_fake_host(host, self.state.url):
            request.handled = False
            return self._send(502, {"error": f"fake_gcp does not serve {host}"})
        if target.path.startswith("/upload/") and self.command == "PUT":
            self.state.uploads[target.path.removeprefix("/upload/")] = request.body
            return self._send(200, {})
        if target.path.startswith("/fn/"):
            return self._invoke(request, target)
        answer = self.state.route(request)
        if answer is None:
            request.handled = False
            answer = 404, error(404, f"fake_gcp has no route for {self.command} {target.path}")
        self._send(*answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def _invoke(self, request: Request, target):
        name, _, rest = target.path.removeprefix("/fn/").partition("/")
        status, backend = self.state.destination(name, request.headers.get("authorization"))
        if status == 403:
            return self._send(403, {"error": "Your client does not have permission to get URL "
                                             f"/{rest} from this server."})
        if status == 404:
            return self._send(404, {"error": f"The requested URL /{rest} was not found on "
                                             "this server."})
        backend = urlsplit(backend)
        conn = http.client.HTTPConnection(backend.hostname, backend.port, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items()
                       if k not in ("host", "authorization", "connection")}
            conn.request(request.method, "/" + rest + (f"?{target.query}" if target.query else ""),
                         body=request.body or None, headers=headers)
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
        self._reply(reply.status, reply.getheaders(), body)

    def _reply(self, status: int, headers: list, body: bytes):
        """Pass on an answer from elsewhere, with its own headers but hop-by-hop ones."""
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding",
                                   "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _is_fake_host(host: str, url: str) -> bool:
    """This fake's own host, or its regional form (REGION-HOST, as REGION-run.googleapis.com)."""
    netloc = urlsplit(url).netloc
    return host == netloc or bool(re.fullmatch(r"[a-z]+-[a-z]+[0-9]+-" + re.escape(netloc), host))
