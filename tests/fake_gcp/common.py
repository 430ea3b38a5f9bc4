"""What every API of the fake shares: its constants, the request it records, Google's errors."""

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

INVOKER = "roles/run.invoker"
PROJECT_NUMBER = "123456789012"
COMPUTE_SA = f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"
LOGGING_WRITER = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-logging.iam.gserviceaccount.com"
RUNTIMES = ["python310", "python311", "python312", "python313", "python314", "nodejs20", "nodejs22"]

LOCATION = r"projects/[^/]+/locations/[^/]+"
GLOBAL = r"projects/[^/]+/locations/global"
# Cloud Run writes a tag's URL as TAG---HOST; the fake's front end reads it from the path.
TAG_SEPARATOR = "---"
# The fake's clock: revision n is created n minutes after it, so their order is plain.
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


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


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(word.title() for word in rest)


def copy_field(source: dict, target: dict, path: list):
    """Copy the field at `path` (as an update mask names it) from source to target."""
    for part in path[:-1]:
        source = source.get(part, {})
        target = target.setdefault(part, {})
    if path[-1] in source:
        target[path[-1]] = source[path[-1]]
    else:
        target.pop(path[-1], None)


def without(resource: dict, key: str) -> dict:
    return {k: v for k, v in resource.items() if k != key}


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error(status: int, message: str) -> dict:
    reason = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              409: "ALREADY_EXISTS"}.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message, "status": reason}}


def region_of(host: str) -> str:
    """The region of a regional endpoint's host (REGION-HOST)."""
    match = re.match(r"([a-z]+-[a-z]+[0-9]+)-", host)
    return match[1] if match else ""
