"""A small fake of the Google Cloud APIs that `gcloud functions deploy` calls, on loopback.

gcloud is pointed at it with CLOUDSDK_API_ENDPOINT_OVERRIDES_* and also uses it as its HTTP
proxy (CLOUDSDK_PROXY_*), so every request gcloud makes arrives here: one for any other host
(an HTTPS CONNECT to a real Google host, the metadata server) is refused and recorded, and a
test can prove that nothing left the machine.

It keeps just enough state for a deploy: functions, operations (done at once, with stages),
uploaded zips, Cloud Run IAM policies; and for drift exports (docs/drift.md), Cloud Logging's
sinks and the log entries a test puts in, which `gcloud logging read` lists through a filter. It also plays Cloud Run's front end for the deployed
function: /fn/NAME lets in callers as Cloud Run would (anyone once allUsers may invoke, else
only a bearer of the identity token) and forwards them to a real local functions-framework
server (`backend`).
"""

import http.client
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INVOKER = "roles/run.invoker"
PROJECT_NUMBER = "123456789012"
COMPUTE_SA = f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"
LOGGING_WRITER = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-logging.iam.gserviceaccount.com"
RUNTIMES = ["python310", "python311", "python312", "python313", "nodejs20", "nodejs22"]

FUNCTION = r"/v2/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/functions"


@dataclass
class Request:
    method: str
    host: str
    path: str
    query: dict
    headers: dict  # lower-case names
    body: bytes
    handled: bool = True

    def json(self):
        return json.loads(self.body)


@dataclass
class Failure:
    method: str
    path: str  # a regular expression the request path must match
    status: int
    message: str


@dataclass
class FakeGoogleCloud:
    """The fake's state; `start()` serves it on a free loopback port."""

    backend: str = ""  # base URL of the local function that /fn/NAME forwards to
    id_token: str = "fake-identity-token"  # what the front end accepts for private functions
    requests: list = field(default_factory=list)
    functions: dict = field(default_factory=dict)  # relative name -> Function resource
    operations: dict = field(default_factory=dict)
    uploads: dict = field(default_factory=dict)  # object name -> zip bytes
    policies: dict = field(default_factory=dict)  # Cloud Run service name -> IAM policy
    sinks: dict = field(default_factory=dict)  # sink name -> LogSink
    entries: list = field(default_factory=list)  # LogEntry objects, as Cloud Logging holds them
    failures: list = field(default_factory=list)
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
        return [r for r in self.requests if not _is_fake_host(r.host, self.url)]

    def unhandled(self) -> list:
        """Requests the fake did not know how to answer."""
        return [r for r in self.requests if not r.handled]

    # --- the APIs -------------------------------------------------------------------------

    def route(self, request: Request):
        """(status, JSON body) for an API request, or None if no route matches."""
        for failure in self.failures:
            if failure.method == request.method and re.search(failure.path, request.path):
                return failure.status, _error(failure.status, failure.message)
        for method, pattern, handler in self.ROUTES:
            match = re.fullmatch(pattern, request.path)
            if method == request.method and match:
                return handler(self, request, **match.groupdict())
        return None

    def get_function(self, request, project, region, name):
        key = f"projects/{project}/locations/{region}/functions/{name}"
        if key not in self.functions:
            return 404, _error(404, f"Resource '{key}' was not found")
        return 200, self.functions[key]

    def list_runtimes(self, request, project, region):
        return 200, {"runtimes": [{"name": r, "displayName": r, "stage": "GA",
                                   "environment": "GEN_2"} for r in RUNTIMES]}

    def generate_upload_url(self, request, project, region):
        obj = f"{uuid.uuid4()}.zip"
        return 200, {"uploadUrl": f"{self.url}/upload/{obj}",
                     "storageSource": {"bucket": f"gcf-v2-uploads-{PROJECT_NUMBER}.{region}",
                                       "object": obj}}

    def create_function(self, request, project, region):
        name = request.query["functionId"][0]
        key = f"projects/{project}/locations/{region}/functions/{name}"
        if key in self.functions:
            return 409, _error(409, f"Function {name} already exists")
        return self._deploy(project, region, name, request.json(), "create")

    def patch_function(self, request, project, region, name):
        key = f"projects/{project}/locations/{region}/functions/{name}"
        if key not in self.functions:
            return 404, _error(404, f"Resource '{key}' was not found")
        function = json.loads(json.dumps(self.functions[key]))
        body = request.json()
        for path in request.query["updateMask"][0].split(","):
            _copy_field(body, function, [_camel(part) for part in path.split(".")])
        return self._deploy(project, region, name, function, "update")

    def _deploy(self, project, region, name, function, verb):
        """Store the function as deployed and answer with its (already finished) operation."""
        key = f"projects/{project}/locations/{region}/functions/{name}"
        source = function.get("buildConfig", {}).get("source", {}).get("storageSource", {})
        if source.get("object") not in self.uploads:
            return 400, _error(400, f"Source object {source.get('object')} was not uploaded")
        service = f"projects/{project}/locations/{region}/services/{name}"
        function.update(name=key, environment="GEN_2", state="ACTIVE",
                        url=f"{self.url}/fn/{name}")
        function.setdefault("serviceConfig", {}).update(
            service=service, uri=f"{self.url}/fn/{name}")
        self.functions[key] = function
        self.policies.setdefault(service, {"etag": "BwYAAAA=", "bindings": []})
        op = f"projects/{project}/locations/{region}/operations/{uuid.uuid4()}"
        stages = [{"name": s, "state": "COMPLETE", "message": ""}
                  for s in ("BUILD", "SERVICE")]
        self.operations[op] = {
            "name": op, "done": True, "response": function,
            "metadata": {"@type": "type.googleapis.com/google.cloud.functions.v2.OperationMetadata",
                         "target": key, "verb": verb, "stages": stages}}
        return 200, {"name": op, "done": False, "metadata": self.operations[op]["metadata"]}

    def get_operation(self, request, name):
        if name not in self.operations:
            return 404, _error(404, f"Operation {name} not found")
        return 200, self.operations[name]

    def service_state(self, request, project, service):
        return 200, {"name": f"projects/{PROJECT_NUMBER}/services/{service}",
                     "state": "ENABLED", "parent": f"projects/{PROJECT_NUMBER}"}

    def default_build_account(self, request, project, region):
        return 200, {"name": f"projects/{project}/locations/{region}/defaultServiceAccount",
                     "serviceAccountEmail": f"projects/{project}/serviceAccounts/{COMPUTE_SA}"}

    def get_project(self, request, project):
        return 200, {"projectId": project, "projectNumber": PROJECT_NUMBER,
                     "lifecycleState": "ACTIVE", "name": project}

    def project_policy(self, request, project):
        builder = {"role": "roles/cloudbuild.builds.builder",
                   "members": [f"serviceAccount:{COMPUTE_SA}"]}
        return 200, {"etag": "BwYAAAA=", "bindings": [builder]}

    def get_run_policy(self, request, service):
        return 200, self.policies.get(service, {"etag": "BwYAAAA="})

    def set_run_policy(self, request, service):
        self.policies[service] = request.json()["policy"]
        return 200, self.policies[service]

    def create_sink(self, request, project):
        sink = request.json()
        if sink["name"] in self.sinks:
            return 409, _error(409, f"Sink {sink['name']} already exists")
        sink.update(writerIdentity=LOGGING_WRITER, createTime="2026-01-01T00:00:00Z")
        self.sinks[sink["name"]] = sink
        return 200, sink

    def get_sink(self, request, project, name):
        if name not in self.sinks:
            return 404, _error(404, f"Sink {name} does not exist")
        return 200, self.sinks[name]

    def list_entries(self, request):
        """Entries matching the filter, newest first, in one page."""
        body = request.json()
        try:
            found = [e for e in self.entries if matches(body.get("filter", ""), e)]
        except ValueError as e:
            return 400, _error(400, str(e))
        return 200, {"entries": sorted(found, key=lambda e: e["timestamp"], reverse=True)}

    ROUTES = [
        ("GET", FUNCTION + r"/(?P<name>[^/:]+)", get_function),
        ("PATCH", FUNCTION + r"/(?P<name>[^/:]+)", patch_function),
        ("POST", FUNCTION, create_function),
        ("POST", FUNCTION + ":generateUploadUrl", generate_upload_url),
        ("GET", r"/v2/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/runtimes",
         list_runtimes),
        ("GET", r"/v2/(?P<name>projects/[^/]+/locations/[^/]+/operations/[^/]+)", get_operation),
        ("GET", r"/v1/projects/(?P<project>[^/]+)/services/(?P<service>[^/]+)", service_state),
        ("GET", r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
                r"/defaultServiceAccount", default_build_account),
        ("GET", r"/v1/projects/(?P<project>[^/:]+)", get_project),
        ("POST", r"/v1/projects/(?P<project>[^/]+):getIamPolicy", project_policy),
        ("GET", r"/v1/(?P<service>projects/[^/]+/locations/[^/]+/services/[^/]+):getIamPolicy",
         get_run_policy),
        ("POST", r"/v1/(?P<service>projects/[^/]+/locations/[^/]+/services/[^/]+):setIamPolicy",
         set_run_policy),
        ("POST", r"/v2/projects/(?P<project>[^/]+)/sinks", create_sink),
        ("GET", r"/v2/projects/(?P<project>[^/]+)/sinks/(?P<name>[^/]+)", get_sink),
        ("POST", r"/v2/entries:list", list_entries),
    ]

    # --- Cloud Run's front end for the deployed function ----------------------------------

    def public(self, service: str) -> bool:
        """Whether allUsers may invoke this Cloud Run service."""
        return any(b["role"] == INVOKER and "allUsers" in b.get("members", [])
                   for b in self.policies.get(service, {}).get("bindings", []))

    def allowed(self, name: str, authorization: str | None) -> bool:
        """Whether the caller may invoke: anyone if allUsers may, else a valid identity token."""
        for key, function in self.functions.items():
            if key.endswith(f"/functions/{name}"):
                return (self.public(function["serviceConfig"]["service"])
                        or authorization == f"Bearer {self.id_token}")
        return False


# One comparison of Cloud Logging's query language: a field path, = or >=, a quoted value.
FILTER_TERM = re.compile(r'\s*\(*\s*([\w.]+)\s*(>=|=)\s*"([^"]*)"\s*\)*\s*')


def matches(log_filter: str, entry: dict) -> bool:
    """Whether a LogEntry matches a filter of comparisons joined by AND, the only form the
    fake reads (anything else is refused, so a document cannot rely on more unnoticed)."""
    for term in filter(None, log_filter.split(" AND ")):
        match = FILTER_TERM.fullmatch(term)
        if not match:
            raise ValueError(f"fake_gcp cannot evaluate the filter term {term!r}")
        path, operator, expected = match.groups()
        value = entry
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or (value != expected if operator == "=" else str(value) < expected):
            return False
    return True


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def _copy_field(source: dict, target: dict, path: list):
    """Copy the field at `path` (as an update mask names it) from source to target."""
    for part in path[:-1]:
        source = source.get(part, {})
        target = target.setdefault(part, {})
    if path[-1] in source:
        target[path[-1]] = source[path[-1]]
    else:
        target.pop(path[-1], None)


def _error(status: int, message: str) -> dict:
    reason = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              409: "ALREADY_EXISTS"}.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message, "status": reason}}


class _Handler(BaseHTTPRequestHandler):
    state: FakeGoogleCloud
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the test reads `state.requests` instead
        pass

    def do_CONNECT(self):
        """A tunnel to a real host (HTTPS through the proxy): recorded and refused."""
        self.state.requests.append(Request("CONNECT", self.path, "", {}, {}, b"", handled=False))
        self._send(403, {"error": f"fake_gcp refuses to connect to {self.path}"})

    def _handle(self):
        target = urlsplit(self.path)  # absolute when gcloud uses us as its proxy
        host = target.netloc or self.headers.get("Host", "")
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(self.command, host, target.path, parse_qs(target.query),
                          {k.lower(): v for k, v in self.headers.items()},
                          self.rfile.read(length) if length else b"")
        self.state.requests.append(request)
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
            answer = 404, _error(404, f"fake_gcp has no route for {self.command} {target.path}")
        self._send(*answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def _invoke(self, request: Request, target):
        name, _, rest = target.path.removeprefix("/fn/").partition("/")
        if not self.state.allowed(name, request.headers.get("authorization")):
            return self._send(403, {"error": "Your client does not have permission to get URL "
                                             f"/{rest} from this server."})
        backend = urlsplit(self.state.backend)
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
        self.send_response(reply.status)
        for key, value in reply.getheaders():
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
    return host == urlsplit(url).netloc
