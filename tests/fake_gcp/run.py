"""Cloud Run: the service behind each function, its revisions and traffic, its IAM policy, and
its front end, which lets callers in as Cloud Run would."""

import re
from dataclasses import dataclass, field
from datetime import datetime

from tests.fake_gcp.common import (EPOCH, INVOKER, PROJECT_NUMBER, TAG_SEPARATOR, Request, error,
                                   region_of, timestamp)

KNATIVE = r"/apis/serving\.knative\.dev/v1/namespaces/(?P<project>[^/]+)"
SERVICE_LABEL = "serving.knative.dev/service"
# The identity token a gateway's proxy sends its backend; the front end reads the account
# and audience from it (tests/fake_gcp/gateway.py makes it).
GATEWAY_TOKEN = "fake-gateway-identity-token"


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



class CloudRun:
    """The regional Knative-style API that `gcloud run` calls, and the function's front end."""

    def get_run_policy(self, request, service):
        return 200, self.policies.get(service, {"etag": "BwYAAAA="})

    def set_run_policy(self, request, service):
        self.policies[service] = request.json()["policy"]
        return 200, self.policies[service]

    def _service(self, request, project, name) -> Service | None:
        # The namespace is the project's id or number (Cloud Run answers with the number).
        region = region_of(request.host)
        for service in self.services.values():
            if (service.name == name and service.region == region
                    and project in (service.project, PROJECT_NUMBER)):
                return service
        return None

    def get_service(self, request, project, name):
        service = self._service(request, project, name)
        if service is None:
            return 404, service_not_found(request, project, name)
        return 200, self._knative_service(service)

    def replace_service(self, request, project, name):
        """PUT of the whole service, as gcloud sends it: only its traffic may change here."""
        service = self._service(request, project, name)
        if service is None:
            return 404, service_not_found(request, project, name)
        body = request.json()
        if body["spec"]["template"] != self._knative_service(service)["spec"]["template"]:
            return 400, error(400, "fake_gcp: only spec.traffic may change; "
                                    "new revisions come from Cloud Functions")
        traffic = [{k: v for k, v in target.items()
                    if k in ("revisionName", "latestRevision", "percent", "tag")}
                   for target in body["spec"].get("traffic", [])]
        known = {r.name for r in service.revisions}
        unknown = [t["revisionName"] for t in traffic
                   if not t.get("latestRevision") and t.get("revisionName") not in known]
        if unknown:
            return 400, error(400, f"Revision {unknown[0]} does not exist")
        if sum(t.get("percent", 0) for t in traffic) != 100:
            return 400, error(400, "Traffic targets' percents must add up to 100")
        tags = [t["tag"] for t in traffic if t.get("tag")]
        if len(tags) != len(set(tags)):
            return 400, error(400, f"Traffic tags must be unique, got {tags}")
        service.traffic = traffic
        service.generation += 1
        self._log_traffic(service)
        return 200, self._knative_service(service)

    def list_revisions(self, request, project):
        selector = request.query.get("labelSelector", [""])[0]
        match = re.fullmatch(rf"{re.escape(SERVICE_LABEL)}\s*=\s*(\S+)", selector)
        if not match:
            return 400, error(400, f"fake_gcp: unsupported labelSelector {selector!r}")
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
        ready = [{"type": t, "status": "True", "lastTransitionTime": timestamp(EPOCH)}
                 for t in ("Ready", "ConfigurationsReady", "RoutesReady")]
        return {
            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": service.name, "namespace": PROJECT_NUMBER,
                         "generation": service.generation,
                         "labels": {"cloud.googleapis.com/location": service.region},
                         "creationTimestamp": timestamp(service.revisions[0].created)},
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
                         "creationTimestamp": timestamp(revision.created),
                         "labels": {SERVICE_LABEL: service.name,
                                    "serving.knative.dev/configuration": service.name,
                                    "cloud.googleapis.com/location": service.region}},
            "spec": {"containers": [{"image": _image(service)}]},
            "status": {"observedGeneration": 1, "conditions": conditions},
        }
    ROUTES = [
        ("GET", r"/v1/(?P<service>projects/[^/]+/locations/[^/]+/services/[^/]+):getIamPolicy",
         get_run_policy),
        ("POST", r"/v1/(?P<service>projects/[^/]+/locations/[^/]+/services/[^/]+):setIamPolicy",
         set_run_policy),
        ("GET", KNATIVE + r"/services/(?P<name>[^/]+)", get_service),
        ("PUT", KNATIVE + r"/services/(?P<name>[^/]+)", replace_service),
        ("GET", KNATIVE + r"/revisions", list_revisions),
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


def _image(service: Service) -> str:
    return (f"{service.region}-docker.pkg.dev/{service.project}/gcf-artifacts/"
            f"{service.name.replace('-', '--')}:version_1")



def service_not_found(request: Request, project: str, name: str) -> dict:
    return error(404, f"Resource '{name}' of kind 'SERVICE' in region "
                       f"'{region_of(request.host)}' in project '{project}' does not exist.")
