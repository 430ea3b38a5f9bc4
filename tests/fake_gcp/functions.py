"""Cloud Functions v2 (and the project facts a deploy reads): functions, uploads, deploys."""

import json
import random
import string
import uuid
from datetime import timedelta

from tests.fake_gcp.common import (COMPUTE_SA, EPOCH, PROJECT_NUMBER, RUNTIMES, camel, copy_field,
                                   error)
from tests.fake_gcp.run import Revision, Service

FUNCTION = r"/v2/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/functions"


class CloudFunctions:
    """Each deploy stores the function and adds a revision to its Cloud Run service."""

    def get_function(self, request, project, region, name):
        key = f"projects/{project}/locations/{region}/functions/{name}"
        if key not in self.functions:
            return 404, error(404, f"Resource '{key}' was not found")
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
            return 409, error(409, f"Function {name} already exists")
        # A new service's first revision serves all traffic, whatever was asked.
        return self._deploy(project, region, name, request.json(), "create", all_to_latest=True)

    def patch_function(self, request, project, region, name):
        key = f"projects/{project}/locations/{region}/functions/{name}"
        if key not in self.functions:
            return 404, error(404, f"Resource '{key}' was not found")
        function = json.loads(json.dumps(self.functions[key]))
        body = request.json()
        mask = request.query["updateMask"][0].split(",")
        for path in mask:
            copy_field(body, function, [camel(part) for part in path.split(".")])
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
            return 400, error(400, f"Source object {source.get('object')} was not uploaded")
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

    ROUTES = [
        ("GET", FUNCTION + r"/(?P<name>[^/:]+)", get_function),
        ("PATCH", FUNCTION + r"/(?P<name>[^/:]+)", patch_function),
        ("POST", FUNCTION, create_function),
        ("POST", FUNCTION + ":generateUploadUrl", generate_upload_url),
        ("GET", r"/v2/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/runtimes",
         list_runtimes),
        ("GET", r"/v1/projects/(?P<project>[^/]+)/services/(?P<service>[^/]+)", service_state),
        ("GET", r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
                r"/defaultServiceAccount", default_build_account),
        ("GET", r"/v1/projects/(?P<project>[^/:]+)", get_project),
        ("POST", r"/v1/projects/(?P<project>[^/]+):getIamPolicy", project_policy),
    ]
