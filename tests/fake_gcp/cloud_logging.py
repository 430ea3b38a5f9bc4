"""Cloud Logging: the sinks a drift export creates, and the entries `gcloud logging read` lists."""

import re

from tests.fake_gcp.common import LOGGING_WRITER, error


class CloudLogging:
    """Sinks by name; entries as a test puts them in, listed through a filter."""

    def create_sink(self, request, project):
        sink = request.json()
        if sink["name"] in self.sinks:
            return 409, error(409, f"Sink {sink['name']} already exists")
        sink.update(writerIdentity=LOGGING_WRITER, createTime="2026-01-01T00:00:00Z")
        self.sinks[sink["name"]] = sink
        return 200, sink

    def get_sink(self, request, project, name):
        if name not in self.sinks:
            return 404, error(404, f"Sink {name} does not exist")
        return 200, self.sinks[name]

    def list_entries(self, request):
        """Entries matching the filter, newest first, in one page."""
        body = request.json()
        try:
            found = [e for e in self.entries if matches(body.get("filter", ""), e)]
        except ValueError as e:
            return 400, error(400, str(e))
        return 200, {"entries": sorted(found, key=lambda e: e["timestamp"], reverse=True)}

    ROUTES = [
        ("POST", r"/v2/projects/(?P<project>[^/]+)/sinks", create_sink),
        ("GET", r"/v2/projects/(?P<project>[^/]+)/sinks/(?P<name>[^/]+)", get_sink),
        ("POST", r"/v2/entries:list", list_entries),
    ]


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
