"""A small fake of the Google Cloud APIs that `gcloud functions deploy` calls, on loopback.

gcloud is pointed at it with CLOUDSDK_API_ENDPOINT_OVERRIDES_* and also uses it as its HTTP
proxy (CLOUDSDK_PROXY_*), so every request gcloud makes arrives here: one for any other host
(an HTTPS CONNECT to a real Google host, the metadata server) is refused and recorded, and a
test can prove that nothing left the machine.

It keeps just enough state for a deploy: functions, operations (done at once, with stages),
uploaded zips, Cloud Run IAM policies, and the Cloud Run service behind each function with its
revisions and traffic, which `gcloud run` reads and writes through Cloud Run's regional
Knative-style API (`REGION-run.googleapis.com/apis/serving.knative.dev/v1/...`, here
`REGION-127.0.0.1:PORT`). Every deploy creates a revision that leads to the `backend` set at
that moment. It also plays Cloud Run's front end: /fn/NAME (the function's URL) and
/fn/TAG---NAME (a tag's URL) let in callers as Cloud Run would (anyone once allUsers may invoke,
else only a bearer of the identity token) and forward them to the revision's real local
functions-framework server. For drift exports (docs/drift.md) it also keeps Cloud Logging's
sinks and the log entries a test puts in, which `gcloud logging read` lists through a filter.

For `deploy.sh --gateway` (docs/gateway.md) it keeps IAM service accounts, API Gateway's APIs,
configs and gateways, the services enabled and API keys, and plays each gateway's proxy at its
host name (NAME-HASH.uc.gateway.dev): a CONNECT to it through the fake is answered over TLS
with the certificate in `tls`, and each request is checked against the gateway's current
config (its operation, its API key) and passed to the function with the identity token of the
config's service account, which the front end accepts only if that account may invoke it.
"""

import base64
import fnmatch
import http.client
import json
import random
import re
import ssl
import string
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

INVOKER = "roles/run.invoker"
PROJECT_NUMBER = "123456789012"
COMPUTE_SA = f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"
LOGGING_WRITER = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-logging.iam.gserviceaccount.com"
RUNTIMES = ["python310", "python311", "python312", "python313", "python314", "nodejs20", "nodejs22"]

FUNCTION = r"/v2/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/functions"
KNATIVE = r"/apis/serving\.knative\.dev/v1/namespaces/(?P<project>[^/]+)"
SERVICE_LABEL = "serving.knative.dev/service"
LOCATION = r"projects/[^/]+/locations/[^/]+"
GLOBAL = r"projects/[^/]+/locations/global"
KEYS = r"/v2/projects/(?P<project>[^/]+)/locations/global/keys"
# What Google appends to an API's managed service name and a gateway's host name.
GATEWAY_HASH = "0a1b2c3d4e5f6"
APIGATEWAY_TYPE = "type.googleapis.com/google.cloud.apigateway.v1"
KEY_ALPHABET = string.ascii_letters + string.digits + "-_"
# The identity token a gateway's proxy sends its backend: "GATEWAY_TOKEN:ACCOUNT for AUDIENCE".
GATEWAY_TOKEN = "fake-gateway-identity-token"
UNREGISTERED = ("Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.")
# Cloud Run writes a tag's URL as TAG---HOST; the fake's front end reads it from the path.
TAG_SEPARATOR = "---"
# The fake's clock: revision n is created n minutes after it, so their order is plain.
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class Revision:
    name: str
    backend: str  # base URL of the local function server this revision runs
    created: datetime


@dataclass
class Service:
    """A Cloud Run service behind a function: its revisions (oldest first) and traffic."""

    name: str
    project: str
    region: str
    revisions: list = field(default_factory=list)
    traffic: list = field(default_factory=list)  # spec.traffic: TrafficTarget dicts
    generation: int = 0

    @property
    def latest(self) -> str:
        return self.revisions[-1].name

    def shares(self) -> dict:
        """Revision name -> percent of the traffic it serves, for each that serves some."""
        shares = {}
        for target in self.traffic:
            name = self.latest if target.get("latestRevision") else target["revisionName"]
            shares[name] = shares.get(name, 0) + target.get("percent", 0)
        return {name: percent for name, percent in shares.items() if percent}

    def serving(self) -> str:
        """The revision the service's URL leads to: the one with the largest share.

        Cloud Run splits requests at random by share; the fake sends them all to one revision
        so that what a caller gets is plain."""
        shares = self.shares()
        return max(shares, key=shares.get)

    def revision(self, name: str) -> Revision:
        return next(r for r in self.revisions if r.name == name)

    def tagged(self, tag: str) -> str | None:
        """The revision this tag names, if any."""
        for target in self.traffic:
            if target.get("tag") == tag:
                return self.latest if target.get("latestRevision") else target["revisionName"]
        return None


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
        return 200, self._function_view(key)

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
        # A new service's first revision serves all traffic, whatever was asked.
        return self._deploy(project, region, name, request.json(), "create", all_to_latest=True)

    def patch_function(self, request, project, region, name):
        key = f"projects/{project}/locations/{region}/functions/{name}"
        if key not in self.functions:
            return 404, _error(404, f"Resource '{key}' was not found")
        function = json.loads(json.dumps(self.functions[key]))
        body = request.json()
        mask = request.query["updateMask"][0].split(",")
        for path in mask:
            _copy_field(body, function, [_camel(part) for part in path.split(".")])
        # Cloud Functions: only `true` in the update moves all traffic to the new revision;
        # otherwise the service keeps its traffic split.
        all_to_latest = ("service_config.all_traffic_on_latest_revision" in mask
                         and body["serviceConfig"].get("allTrafficOnLatestRevision") is True)
        return self._deploy(project, region, name, function, "update", all_to_latest)

    def _deploy(self, project, region, name, function, verb, all_to_latest):
        """Store the function as deployed, with a new revision of its service, and answer
        with its (already finished) operation."""
        key = f"projects/{project}/locations/{region}/functions/{name}"
        source = function.get("buildConfig", {}).get("source", {}).get("storageSource", {})
        if source.get("object") not in self.uploads:
            return 400, _error(400, f"Source object {source.get('object')} was not uploaded")
        service_key = f"projects/{project}/locations/{region}/services/{name}"
        service = self.services.setdefault(service_key, Service(name, project, region))
        number = len(service.revisions) + 1
        suffix = "".join(random.choices(string.ascii_lowercase, k=3))
        service.revisions.append(Revision(f"{name}-{number:05d}-{suffix}", self.backend,
                                          EPOCH + timedelta(minutes=number)))
        if all_to_latest:
            service.traffic = [{"latestRevision": True, "percent": 100}]
        service.generation += 1
        self._log_traffic(service)
        function.update(name=key, environment="GEN_2", state="ACTIVE",
                        url=f"{self.url}/fn/{name}")
        function.setdefault("serviceConfig", {}).update(
            service=service_key, uri=f"{self.url}/fn/{name}")
        self.functions[key] = function
        self.policies.setdefault(service_key, {"etag": "BwYAAAA=", "bindings": []})
        op = f"projects/{project}/locations/{region}/operations/{uuid.uuid4()}"
        stages = [{"name": s, "state": "COMPLETE", "message": ""}
                  for s in ("BUILD", "SERVICE")]
        self.operations[op] = {
            "name": op, "done": True, "response": self._function_view(key),
            "metadata": {"@type": "type.googleapis.com/google.cloud.functions.v2.OperationMetadata",
                         "target": key, "verb": verb, "stages": stages}}
        return 200, {"name": op, "done": False, "metadata": self.operations[op]["metadata"]}

    def _function_view(self, key: str) -> dict:
        """The function as GetFunction shows it: its latest revision and whether that
        revision serves all traffic."""
        function = json.loads(json.dumps(self.functions[key]))
        service = self.services[function["serviceConfig"]["service"]]
        function["serviceConfig"].update(
            revision=service.latest,
            allTrafficOnLatestRevision=service.shares().get(service.latest) == 100)
        return function

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

    # --- Cloud Run: the regional Knative-style API that `gcloud run` calls ----------------

    def _service(self, request, project, name) -> Service | None:
        # The namespace is the project's id or number (Cloud Run answers with the number).
        region = _region(request.host)
        for service in self.services.values():
            if (service.name == name and service.region == region
                    and project in (service.project, PROJECT_NUMBER)):
                return service
        return None

    def get_service(self, request, project, name):
        service = self._service(request, project, name)
        if service is None:
            return 404, _not_found(request, project, name)
        return 200, self._knative_service(service)

    def replace_service(self, request, project, name):
        """PUT of the whole service, as gcloud sends it: only its traffic may change here."""
        service = self._service(request, project, name)
        if service is None:
            return 404, _not_found(request, project, name)
        body = request.json()
        if body["spec"]["template"] != self._knative_service(service)["spec"]["template"]:
            return 400, _error(400, "fake_gcp: only spec.traffic may change; "
                                    "new revisions come from Cloud Functions")
        traffic = [{k: v for k, v in target.items()
                    if k in ("revisionName", "latestRevision", "percent", "tag")}
                   for target in body["spec"].get("traffic", [])]
        known = {r.name for r in service.revisions}
        unknown = [t["revisionName"] for t in traffic
                   if not t.get("latestRevision") and t.get("revisionName") not in known]
        if unknown:
            return 400, _error(400, f"Revision {unknown[0]} does not exist")
        if sum(t.get("percent", 0) for t in traffic) != 100:
            return 400, _error(400, "Traffic targets' percents must add up to 100")
        tags = [t["tag"] for t in traffic if t.get("tag")]
        if len(tags) != len(set(tags)):
            return 400, _error(400, f"Traffic tags must be unique, got {tags}")
        service.traffic = traffic
        service.generation += 1
        self._log_traffic(service)
        return 200, self._knative_service(service)

    def list_revisions(self, request, project):
        selector = request.query.get("labelSelector", [""])[0]
        match = re.fullmatch(rf"{re.escape(SERVICE_LABEL)}\s*=\s*(\S+)", selector)
        if not match:
            return 400, _error(400, f"fake_gcp: unsupported labelSelector {selector!r}")
        service = self._service(request, project, match[1])
        revisions = [] if service is None else [
            self._knative_revision(service, r) for r in reversed(service.revisions)]
        return 200, {"apiVersion": "serving.knative.dev/v1", "kind": "RevisionList",
                     "metadata": {}, "items": revisions}

    def _log_traffic(self, service: Service):
        self.traffic_log.append((len(self.requests) - 1, service.name, service.shares()))

    def _knative_service(self, service: Service) -> dict:
        url = f"{self.url}/fn/{service.name}"
        status_traffic = []
        for target in service.traffic:
            entry = {"revisionName": target.get("revisionName") or service.latest}
            for key in ("percent", "latestRevision", "tag"):
                if target.get(key):  # proto3 JSON leaves out zeros and false
                    entry[key] = target[key]
            if target.get("tag"):
                entry["url"] = f"{self.url}/fn/{target['tag']}{TAG_SEPARATOR}{service.name}"
            status_traffic.append(entry)
        ready = [{"type": t, "status": "True", "lastTransitionTime": _timestamp(EPOCH)}
                 for t in ("Ready", "ConfigurationsReady", "RoutesReady")]
        return {
            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": service.name, "namespace": PROJECT_NUMBER,
                         "generation": service.generation,
                         "labels": {"cloud.googleapis.com/location": service.region},
                         "creationTimestamp": _timestamp(service.revisions[0].created)},
            "spec": {"template": {"metadata": {"name": service.latest},
                                  "spec": {"containers": [{"image": _image(service)}]}},
                     "traffic": service.traffic},
            # The fake's Cloud Run reconciles at once: the status is already the new one.
            "status": {"observedGeneration": service.generation, "conditions": ready,
                       "latestCreatedRevisionName": service.latest,
                       "latestReadyRevisionName": service.latest,
                       "traffic": status_traffic, "url": url, "address": {"url": url}},
        }

    def _knative_revision(self, service: Service, revision: Revision) -> dict:
        # Active: whether it serves traffic (the ACTIVE column of `gcloud run revisions list`).
        serving = revision.name in service.shares()
        conditions = [{"type": "Ready", "status": "True"},
                      {"type": "Active", "status": "True" if serving else "False"}]
        return {
            "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
            "metadata": {"name": revision.name, "namespace": PROJECT_NUMBER, "generation": 1,
                         "creationTimestamp": _timestamp(revision.created),
                         "labels": {SERVICE_LABEL: service.name,
                                    "serving.knative.dev/configuration": service.name,
                                    "cloud.googleapis.com/location": service.region}},
            "spec": {"containers": [{"image": _image(service)}]},
            "status": {"observedGeneration": 1, "conditions": conditions},
        }

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

    # --- IAM service accounts, API Gateway, Service Usage and API keys ---------------------

    def get_account(self, request, project, email):
        if email not in self.service_accounts:
            return 404, _error(404, f"Unknown service account {email}")
        return 200, self.service_accounts[email]

    def create_account(self, request, project):
        body = request.json()
        email = f"{body['accountId']}@{project}.iam.gserviceaccount.com"
        if email in self.service_accounts:
            return 409, _error(409, f"Service account {body['accountId']} already exists")
        self.service_accounts[email] = {
            "name": f"projects/{project}/serviceAccounts/{email}", "projectId": project,
            "email": email, "uniqueId": str(10**20 + len(self.service_accounts)),
            "displayName": body.get("serviceAccount", {}).get("displayName", "")}
        return 200, self.service_accounts[email]

    def get_api(self, request, name):
        return self._get(self.apis, name)

    def create_api(self, request, parent):
        api_id = request.query["apiId"][0]
        project = parent.split("/")[1]
        return self._create(self.apis, f"{parent}/apis/{api_id}", {
            "displayName": api_id, "state": "ACTIVE",
            "managedService": f"{api_id}-{GATEWAY_HASH}.apigateway.{project}.cloud.goog"})

    def get_api_config(self, request, name):
        return self._get(self.api_configs, name)

    def create_api_config(self, request, parent):
        body = request.json()
        api = self.apis.get(parent.rsplit("/configs", 1)[0])
        if api is None:
            return 404, _error(404, f"Resource '{parent}' was not found")
        for document in body.get("openapiDocuments", []):
            try:
                _openapi(document)
            except ValueError as e:
                return 400, _error(400, f"Cannot convert to service config: {e}")
        body.update(state="ACTIVE", serviceConfigId=f"{request.query['apiConfigId'][0]}-0")
        return self._create(self.api_configs, f"{parent}/{request.query['apiConfigId'][0]}",
                            body)

    def get_gateway(self, request, name):
        return self._get(self.gateways, name)

    def create_gateway(self, request, parent):
        gateway_id = request.query["gatewayId"][0]
        name = f"{parent}/gateways/{gateway_id}"
        region = parent.rsplit("/", 1)[1]
        body = request.json()
        if body.get("apiConfig") not in self.api_configs:
            return 400, _error(400, f"API config {body.get('apiConfig')} does not exist")
        body.update(state="ACTIVE", defaultHostname=_gateway_host(gateway_id, region))
        answer = self._create(self.gateways, name, body)
        self.gateway_log.append((len(self.requests) - 1, name, body["apiConfig"]))
        return answer

    def patch_gateway(self, request, name):
        if name not in self.gateways:
            return 404, _error(404, f"Resource '{name}' was not found")
        body = request.json()
        gateway = dict(self.gateways[name])
        for path in request.query["updateMask"][0].split(","):
            _copy_field(body, gateway, [_camel(part) for part in path.split(".")])
        if gateway.get("apiConfig") not in self.api_configs:
            return 400, _error(400, f"API config {gateway.get('apiConfig')} does not exist")
        self.gateways[name] = gateway
        self.gateway_log.append((len(self.requests) - 1, name, gateway["apiConfig"]))
        return 200, self._operation(name.split("/")[1], name, "update", gateway)

    def _get(self, store: dict, name: str):
        if name not in store:
            return 404, _error(404, f"Resource '{name}' was not found")
        return 200, store[name]

    def _create(self, store: dict, name: str, resource: dict):
        if name in store:
            return 409, _error(409, f"Resource '{name}' already exists")
        resource.update(name=name, createTime=_timestamp(EPOCH), updateTime=_timestamp(EPOCH))
        store[name] = resource
        return 200, self._operation(name.split("/")[1], name, "create", resource)

    def _operation(self, project: str, target: str, verb: str, resource: dict) -> dict:
        """An API Gateway long-running operation, done at once."""
        op = f"projects/{project}/locations/global/operations/operation-{uuid.uuid4()}"
        kind = target.split("/")[-2].rstrip("s").capitalize().replace("Config", "ApiConfig")
        self.operations[op] = {
            "name": op, "done": True,
            "metadata": {"@type": f"{APIGATEWAY_TYPE}.OperationMetadata", "target": target,
                         "verb": verb, "apiVersion": "v1"},
            "response": {"@type": f"{APIGATEWAY_TYPE}.{kind}", **resource}}
        return {"name": op, "done": False, "metadata": self.operations[op]["metadata"]}

    def enable_service(self, request, project, service):
        self.enabled.add(service)
        op = f"operations/acf.p2-{uuid.uuid4()}"
        self.operations[op] = {
            "name": op, "done": True,
            "response": {"@type": "type.googleapis.com/google.api.serviceusage.v1"
                                  ".EnableServiceResponse",
                         "service": {"name": f"projects/{PROJECT_NUMBER}/services/{service}",
                                     "state": "ENABLED"}}}
        return 200, {"name": op}

    def list_keys(self, request, project):
        return 200, {"keys": [_without(key, "keyString") for key in self.keys.values()]}

    def create_key(self, request, project):
        uid = str(uuid.uuid4())
        name = f"projects/{PROJECT_NUMBER}/locations/global/keys/{uid}"
        body = request.json()
        key = {"name": name, "uid": uid, "displayName": body.get("displayName", ""),
               "restrictions": body.get("restrictions", {}), "etag": f'W/"{uid[:8]}"',
               "createTime": _timestamp(EPOCH), "updateTime": _timestamp(EPOCH),
               "keyString": "AIza" + "".join(random.choices(KEY_ALPHABET, k=35))}
        self.keys[name] = key
        return 200, self._key_operation(key)

    def get_key_string(self, request, project, uid):
        key = self._key(uid)
        if key is None:
            return 404, _error(404, f"Key {uid} not found")
        return 200, {"keyString": key["keyString"]}

    def delete_key(self, request, project, uid):
        key = self._key(uid)
        if key is None:
            return 404, _error(404, f"Key {uid} not found")
        del self.keys[key["name"]]
        return 200, self._key_operation(key)

    def _key(self, uid: str) -> dict | None:
        return next((key for key in self.keys.values() if key["uid"] == uid), None)

    def _key_operation(self, key: dict) -> dict:
        op = f"operations/akmf.p7-{uuid.uuid4()}"
        self.operations[op] = {
            "name": op, "done": True,
            "response": {"@type": "type.googleapis.com/google.api.apikeys.v2.Key",
                         **_without(key, "keyString")}}
        return {"name": op}


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
        ("GET", KNATIVE + r"/services/(?P<name>[^/]+)", get_service),
        ("PUT", KNATIVE + r"/services/(?P<name>[^/]+)", replace_service),
        ("GET", KNATIVE + r"/revisions", list_revisions),
        ("POST", r"/v2/projects/(?P<project>[^/]+)/sinks", create_sink),
        ("GET", r"/v2/projects/(?P<project>[^/]+)/sinks/(?P<name>[^/]+)", get_sink),
        ("POST", r"/v2/entries:list", list_entries),
        ("GET", r"/v1/projects/(?P<project>[^/]+)/serviceAccounts/(?P<email>[^/]+)", get_account),
        ("POST", r"/v1/projects/(?P<project>[^/]+)/serviceAccounts", create_account),
        ("GET", r"/v1/(?P<name>" + GLOBAL + r"/apis/[^/]+)", get_api),
        ("POST", r"/v1/(?P<parent>" + GLOBAL + r")/apis", create_api),
        ("GET", r"/v1/(?P<name>" + GLOBAL + r"/apis/[^/]+/configs/[^/]+)", get_api_config),
        ("POST", r"/v1/(?P<parent>" + GLOBAL + r"/apis/[^/]+/configs)", create_api_config),
        ("GET", r"/v1/(?P<name>" + LOCATION + r"/gateways/[^/]+)", get_gateway),
        ("PATCH", r"/v1/(?P<name>" + LOCATION + r"/gateways/[^/]+)", patch_gateway),
        ("POST", r"/v1/(?P<parent>" + LOCATION + r")/gateways", create_gateway),
        ("GET", r"/v1/(?P<name>" + GLOBAL + r"/operations/[^/]+)", get_operation),
        ("POST", r"/v1/projects/(?P<project>[^/]+)/services/(?P<service>[^/:]+):enable",
         enable_service),
        ("GET", r"/v1/(?P<name>operations/[^/]+)", get_operation),
        ("GET", KEYS, list_keys),
        ("POST", KEYS, create_key),
        ("DELETE", KEYS + r"/(?P<uid>[^/]+)", delete_key),
        ("GET", KEYS + r"/(?P<uid>[^/]+)/keyString", get_key_string),
        ("GET", r"/v2/(?P<name>operations/[^/]+)", get_operation),
    ]

    # --- Cloud Run's front end for the deployed function ----------------------------------

    def public(self, service: str) -> bool:
        """Whether allUsers may invoke this Cloud Run service."""
        return any(b["role"] == INVOKER and "allUsers" in b.get("members", [])
                   for b in self.policies.get(service, {}).get("bindings", []))

    def invoker_token(self, service: str, url: str, authorization: str | None) -> bool:
        """Whether the caller bears a gateway's identity token for this URL (its JWT audience)
        and that gateway's service account may invoke the service."""
        prefix = f"Bearer {GATEWAY_TOKEN}:"
        if not (authorization or "").startswith(prefix):
            return False
        account, _, audience = authorization.removeprefix(prefix).partition(" for ")
        members = [m for b in self.policies.get(service, {}).get("bindings", [])
                   if b["role"] == INVOKER for m in b.get("members", [])]
        return audience == url and f"serviceAccount:{account}" in members

    def destination(self, name: str, authorization: str | None):
        """(status, backend URL) for a call to /fn/NAME or /fn/TAG---NAME: 403 unless allUsers
        may invoke or the caller bears the identity token, 404 for an unknown name or tag."""
        tag, _, function_name = name.rpartition(TAG_SEPARATOR)
        for key, function in self.functions.items():
            if key.endswith(f"/functions/{function_name}"):
                service_key = function["serviceConfig"]["service"]
                if not (self.public(service_key) or authorization == f"Bearer {self.id_token}"
                        or self.invoker_token(service_key, function["url"], authorization)):
                    return 403, ""
                service = self.services[service_key]
                revision = service.tagged(tag) if tag else service.serving()
                if revision is None:
                    return 404, ""
                return 200, service.revision(revision).backend
        return 404, ""

    # --- API Gateway's proxy: what Google runs at a gateway's host name -------------------
    # It enforces what the rehearsal can check here: the operation is in the config, an API
    # key of this project restricted as the key says, and the backend called with the
    # config's service account. Quotas are counted by Google's Service Control: not here.

    def through_gateway(self, request: Request):
        """(status, headers, body) of a request to a gateway, as its current config says."""
        gateway = self.gateway_at(request.host)
        config = self.api_configs[gateway["apiConfig"]]
        spec = _openapi(config["openapiDocuments"][0])
        operation = _operation_for(spec, request.method, request.path)
        if operation is None:
            return _gateway_error(404, "NOT_FOUND", "The current request is not defined by "
                                                    "this API.")
        service = self.apis[gateway["apiConfig"].split("/configs/")[0]]["managedService"]
        if operation.get("security", spec.get("security", [])):
            refusal = self._check_key(request, spec, service, operation)
            if refusal:
                return refusal
        management = spec["x-google-api-management"]
        backend = management["backends"][operation.get("x-google-backend",
                                                       spec["x-google-backend"])]
        audience = backend.get("jwtAudience", backend["address"])
        token = f"Bearer {GATEWAY_TOKEN}:{config['gatewayServiceAccount']} for {audience}"
        target = urlsplit(backend["address"].rstrip("/") + request.path)
        headers = {k: v for k, v in request.headers.items()
                   if k not in ("host", "authorization", "connection", "x-api-key")}
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            query = "&".join(f"{k}={v}" for k, values in request.query.items() for v in values)
            conn.request(request.method, target.path + (f"?{query}" if query else ""),
                         body=request.body or None, headers={**headers, "authorization": token})
            reply = conn.getresponse()
            return reply.status, reply.getheaders(), reply.read()
        finally:
            conn.close()

    def _check_key(self, request: Request, spec: dict, service: str, operation: dict):
        """The gateway's refusal of this request's API key, or None if the key may call."""
        schemes = spec.get("components", {}).get("securitySchemes", {})
        names = [name for requirement in operation.get("security", spec.get("security", []))
                 for name in requirement]
        given = None
        for scheme in (schemes[name] for name in names):
            given = given or (request.headers.get(scheme["name"].lower())
                              if scheme["in"] == "header"
                              else request.query.get(scheme["name"], [None])[0])
        if not given:
            return _gateway_error(401, "UNAUTHENTICATED", UNREGISTERED)
        key = next((k for k in self.keys.values() if k["keyString"] == given), None)
        if key is None:
            return _gateway_error(400, "INVALID_ARGUMENT",
                                  "API key not valid. Please pass a valid API key.")
        if service not in self.enabled:
            return _gateway_error(403, "PERMISSION_DENIED",
                                  f"API {service} is not enabled for the project.")
        restrictions = key.get("restrictions", {})
        targets = [t["service"] for t in restrictions.get("apiTargets", [])]
        if targets and service not in targets:
            return _gateway_error(403, "PERMISSION_DENIED", f"Requests to this API {service} "
                                  f"method {operation['operationId']} are blocked.")
        referrers = restrictions.get("browserKeyRestrictions", {}).get("allowedReferrers")
        referer = request.headers.get("referer", "")
        if referrers and not any(fnmatch.fnmatchcase(referer, p) for p in referrers):
            return _gateway_error(403, "PERMISSION_DENIED",
                                  f"Requests from referer {referer or '<empty>'} are blocked.")
        return None


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


def _operation_for(spec: dict, method: str, path: str) -> dict | None:
    """The config's operation for this method and path (its templates match one segment)."""
    for template, item in spec.get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in item:
            return item[method.lower()]
    return None


def _gateway_error(status: int, code: str, message: str):
    """A refusal as Google's gateway proxy words it."""
    body = json.dumps({"code": status, "message": f"{code}:{message}"}).encode()
    return status, [("Content-Type", "application/json")], body


def _without(resource: dict, key: str) -> dict:
    return {k: v for k, v in resource.items() if k != key}


def _gateway_host(gateway_id: str, region: str) -> str:
    """A gateway's host name as Google makes it: us-central1 is "uc", europe-west1 "ew"."""
    code = "".join(part[0] for part in region.rstrip("0123456789").split("-"))
    return f"{gateway_id}-{GATEWAY_HASH}.{code}.gateway.dev"


def _openapi(document: dict) -> dict:
    """An API config's OpenAPI document, as gcloud uploads it (base64 YAML or JSON)."""
    try:
        spec = yaml.safe_load(base64.b64decode(document["document"]["contents"]))
    except (KeyError, ValueError, yaml.YAMLError) as e:
        raise ValueError(f"unreadable OpenAPI document ({e})") from e
    if not isinstance(spec, dict) or "x-google-api-management" not in spec:
        raise ValueError("the document has no x-google-api-management")
    return spec


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _image(service: Service) -> str:
    return (f"{service.region}-docker.pkg.dev/{service.project}/gcf-artifacts/"
            f"{service.name.replace('-', '--')}:version_1")


def _not_found(request: Request, project: str, name: str) -> dict:
    return _error(404, f"Resource '{name}' of kind 'SERVICE' in region "
                       f"'{_region(request.host)}' in project '{project}' does not exist.")


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
            answer = 404, _error(404, f"fake_gcp has no route for {self.command} {target.path}")
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


def _region(host: str) -> str:
    """The region of a regional endpoint's host (REGION-HOST)."""
    match = re.match(r"([a-z]+-[a-z]+[0-9]+)-", host)
    return match[1] if match else ""
