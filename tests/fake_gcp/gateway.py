"""API Gateway (with the IAM service accounts and the Service Usage it needs): APIs, configs and
gateways, and each gateway's proxy at its host name, which checks a request against its
config and calls the function as the config's service account."""

import base64
import fnmatch
import http.client
import json
import re
import uuid
from urllib.parse import urlsplit

import yaml

from tests.fake_gcp.common import (EPOCH, GLOBAL, LOCATION, PROJECT_NUMBER, Request, camel,
                                   copy_field, error, timestamp)
from tests.fake_gcp.run import GATEWAY_TOKEN

# What Google appends to an API's managed service name and a gateway's host name.
GATEWAY_HASH = "0a1b2c3d4e5f6"
APIGATEWAY_TYPE = "type.googleapis.com/google.cloud.apigateway.v1"
UNREGISTERED = ("Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.")


class ApiGateway:
    """Service accounts, APIs, configs and gateways, each created by a finished operation."""

    def get_account(self, request, project, email):
        if email not in self.service_accounts:
            return 404, error(404, f"Unknown service account {email}")
        return 200, self.service_accounts[email]

    def create_account(self, request, project):
        body = request.json()
        email = f"{body['accountId']}@{project}.iam.gserviceaccount.com"
        if email in self.service_accounts:
            return 409, error(409, f"Service account {body['accountId']} already exists")
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
            return 404, error(404, f"Resource '{parent}' was not found")
        for document in body.get("openapiDocuments", []):
            try:
                _openapi(document)
            except ValueError as e:
                return 400, error(400, f"Cannot convert to service config: {e}")
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
            return 400, error(400, f"API config {body.get('apiConfig')} does not exist")
        body.update(state="ACTIVE", defaultHostname=_gateway_host(gateway_id, region))
        answer = self._create(self.gateways, name, body)
        self.gateway_log.append((len(self.requests) - 1, name, body["apiConfig"]))
        return answer

    def patch_gateway(self, request, name):
        if name not in self.gateways:
            return 404, error(404, f"Resource '{name}' was not found")
        body = request.json()
        gateway = dict(self.gateways[name])
        for path in request.query["updateMask"][0].split(","):
            copy_field(body, gateway, [camel(part) for part in path.split(".")])
        if gateway.get("apiConfig") not in self.api_configs:
            return 400, error(400, f"API config {gateway.get('apiConfig')} does not exist")
        self.gateways[name] = gateway
        self.gateway_log.append((len(self.requests) - 1, name, gateway["apiConfig"]))
        return 200, self._operation(name.split("/")[1], name, "update", gateway)

    def _get(self, store: dict, name: str):
        if name not in store:
            return 404, error(404, f"Resource '{name}' was not found")
        return 200, store[name]

    def _create(self, store: dict, name: str, resource: dict):
        if name in store:
            return 409, error(409, f"Resource '{name}' already exists")
        resource.update(name=name, createTime=timestamp(EPOCH), updateTime=timestamp(EPOCH))
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
    ROUTES = [
        ("GET", r"/v1/projects/(?P<project>[^/]+)/serviceAccounts/(?P<email>[^/]+)", get_account),
        ("POST", r"/v1/projects/(?P<project>[^/]+)/serviceAccounts", create_account),
        ("GET", r"/v1/(?P<name>" + GLOBAL + r"/apis/[^/]+)", get_api),
        ("POST", r"/v1/(?P<parent>" + GLOBAL + r")/apis", create_api),
        ("GET", r"/v1/(?P<name>" + GLOBAL + r"/apis/[^/]+/configs/[^/]+)", get_api_config),
        ("POST", r"/v1/(?P<parent>" + GLOBAL + r"/apis/[^/]+/configs)", create_api_config),
        ("GET", r"/v1/(?P<name>" + LOCATION + r"/gateways/[^/]+)", get_gateway),
        ("PATCH", r"/v1/(?P<name>" + LOCATION + r"/gateways/[^/]+)", patch_gateway),
        ("POST", r"/v1/(?P<parent>" + LOCATION + r")/gateways", create_gateway),
        ("POST", r"/v1/projects/(?P<project>[^/]+)/services/(?P<service>[^/:]+):enable",
         enable_service),
    ]

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
