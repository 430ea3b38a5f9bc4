"""The OpenAPI contract of the served model: what all protocols share, and the document's assembly.

Each protocol module writes its own part of the document (its `openapi(c)`: paths,
operations, request and answer schemas) from a Contract `c`, which holds what every
part is made from: the model's signature (model.json), the served limits, and the
schemas and helpers all of them use (a feature's value, a row by name, the error
body, the CORS preflight). document() gathers the parts in the order the protocols
are tried (protocols/routes.py) and adds what is shared. GET /openapi.json answers
it; the committed openapi.yaml is the one for the bundled model (`make openapi`
writes it, tests/test_openapi.py checks that it is current). Plain dicts, no YAML
here: only requirements.txt is installed where it is served.

Usage: python -m iris_predict.contract [MODEL_JSON]   (prints the document as JSON)
"""

import functools
import json
import math
import re
import sys
from dataclasses import dataclass, field

from iris_predict import SERVER_NAME
from iris_predict.edge import cors
from iris_predict.model import signature as sig

NOSNIFF = {"$ref": "#/components/headers/Nosniff"}
MAX_INT_DIGITS = 300  # a longer decimal string is past float64's range: not a finite number
EXPLAIN = "explain"  # also asked for in a body, beside a row's values or instances
FRACTION = "(\\.[0-9]*)?"  # "5." is 5, as float() reads it
# What a regular expression must escape, as ECMA-262 (and so JSON Schema) reads it.
REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\/-])")


def ref(name: str, kind: str = "schemas") -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


@dataclass
class Part:
    """One protocol's share of the document; each dict in the order the document lists it.

    `about` is (what the protocol is, where it answers), for the document's description.
    An operation on a path several protocols answer may be a function of `takes` and
    `gives`, every part's {(path, method): {media type: [schema]}} for that path: it is
    called with the request bodies and the answers they all take and give.
    """

    about: tuple
    paths: dict = field(default_factory=dict)
    takes: dict = field(default_factory=dict)
    gives: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    responses: dict = field(default_factory=dict)
    requests: dict = field(default_factory=dict)  # request schemas
    answers: dict = field(default_factory=dict)   # answer schemas
    schemas: dict = field(default_factory=dict)   # the protocol's other schemas


@functools.lru_cache(maxsize=4)
def document(signature: sig.Signature, max_body_bytes: int, max_batch_rows: int,
             protocols: tuple) -> dict:
    """The OpenAPI 3.1 document for a model with this signature, served with these limits by
    these protocol modules (routes.PROTOCOLS; routes.contract passes them)."""
    c = Contract(signature, max_body_bytes, max_batch_rows)
    parts = [protocol.openapi(c) for protocol in protocols]
    takes, gives = _merged(parts, "takes"), _merged(parts, "gives")
    paths = {}
    for part in parts:
        for path, operations in part.paths.items():
            paths[path] = {method: operation(takes[path, method], gives[path, method])
                           if callable(operation) else operation
                           for method, operation in operations.items()}
    # Values, requests, answers (what they share first), each protocol's own, then the shared.
    schemas = {c.keys[f.name]: _value(f) for f in signature.features}
    for part in parts:
        schemas.update(part.requests)
    schemas.update(c.answer_schemas())
    for part in parts:
        schemas.update(part.answers)
    for part in parts:
        schemas.update(part.schemas)
    schemas.update(c.metadata())
    schemas["Error"] = ERROR
    return {
        "openapi": "3.1.0",
        "info": {
            "title": SERVER_NAME,
            "version": "1.0",
            "summary": c.summary(),
            "description": (
                f"A Google Cloud Run function serving the model {signature.name!r}, generated "
                "from its model.json. It answers several protocols, each on its own paths: "
                f"{_protocols([part.about for part in parts])}. A browser asking `/` for HTML "
                "gets the web page. Any other path is a 404. Every answer carries "
                "`X-Content-Type-Options: nosniff`. docs/api.md explains each field."),
        },
        "servers": [{"url": "http://localhost:8080"}],
        "paths": paths,
        "components": {
            "headers": {"Nosniff": {"required": True,
                                    "schema": {"type": "string", "const": "nosniff"}}},
            "parameters": {k: v for part in parts for k, v in part.parameters.items()},
            "responses": {**c.responses(), **{k: v for part in parts
                                              for k, v in part.responses.items()}},
            "schemas": schemas,
        },
    }


def _merged(parts: list, kind: str) -> dict:
    """{(path, method): {media type: a schema, or anyOf them}} over every part's `kind`."""
    found = {}
    for part in parts:
        for where, media_types in getattr(part, kind).items():
            for media, schemas in media_types.items():
                found.setdefault(where, {}).setdefault(media, []).extend(schemas)
    return {where: {media: {"schema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas}}
                    for media, schemas in media_types.items()}
            for where, media_types in found.items()}


def _protocols(abouts: list) -> str:
    """"A (and B) on `/`, C under `/v2`, and D on ...": who answers where, in order."""
    groups = []
    for what, where in abouts:
        if groups and groups[-1][1] == where:
            groups[-1][0].append(what)
        else:
            groups.append(([what], where))
    said = [f"{whats[0]} (and {', and '.join(whats[1:])}) {where}" if len(whats) > 1
            else f"{whats[0]} {where}" for whats, where in groups]
    return said[0] if len(said) == 1 else ", ".join(said[:-1]) + ", and " + said[-1]


class Contract:
    """One document's facts, and the schemas and pieces every protocol's part uses."""

    def __init__(self, signature: sig.Signature, max_body_bytes: int, max_batch_rows: int):
        self.s = signature
        self.max_body_bytes = max_body_bytes
        self.rows = max_batch_rows
        self.width = len(signature.features)
        self.keys = _component_keys(signature.names)  # a feature's value schema, by feature name
        self.target = signature.target

    # What a protocol's openapi(c) reads of this module through `c`: the protocols import
    # nothing of the contract's, which serving never needs until GET /openapi.json.
    Part = Part
    ref = staticmethod(ref)
    NOSNIFF = NOSNIFF

    def summary(self) -> str:
        s = self.s
        what = (f"one of {words(s.classes)}" if s.classifier else "a number")
        return (f"Predict {self.target} ({what}) from {self.width} feature"
                f"{'s' if self.width > 1 else ''}: {', '.join(s.names)}.")

    def value(self, name: str) -> dict:
        """The reference to a feature's value schema."""
        return ref(self.keys[name])

    def row_object(self, names: tuple, description: str, explain: bool = False) -> dict:
        """A row as an object of values, by `names` (the features' names or aliases)."""
        features = self.s.features
        properties = {n: self.value(f.name) for n, f in zip(names, features)}
        if explain and EXPLAIN not in properties:  # a feature may be called "explain"
            properties[EXPLAIN] = {"description": "true adds `explanations` (as ?explain=true "
                                                  "does).", "type": "boolean"}
        return {"description": description, "type": "object",
                "required": [n for n, f in zip(names, features) if not f.missing],
                "additionalProperties": False, "properties": properties}

    def responses(self) -> dict:
        """The refusals every protocol's paths may give, in its own words or these."""
        error = {"application/json": {"schema": ref("Error")}}
        nosniff = {"X-Content-Type-Options": NOSNIFF}
        return {
            "Invalid": {"description": "The request is malformed; the message names the "
                                       "problem.", "headers": nosniff, "content": error},
            "TooLarge": {"description": "The body is over MAX_BODY_BYTES "
                                        f"({self.max_body_bytes}) or a batch over "
                                        f"MAX_BATCH_ROWS ({self.rows}).",
                         "headers": nosniff, "content": error},
            "NotJson": {"description": "The body is not sent in a type the path takes.",
                        "headers": nosniff, "content": error},
            "NotFound": {"description": "Nothing here, another model, or another version of it.",
                         "headers": nosniff, "content": error},
            "Unavailable": {"description": "The model cannot be loaded (the cause is in the "
                                           "function's log, once), or, for readiness probes, "
                                           "is still loading.",
                            "headers": nosniff, "content": error},
        }

    def answer_schemas(self) -> dict:
        """What every protocol's answers are made of: warnings, explanations, the classes."""
        s = self.s
        names = list(s.names)
        found = {
            "Warning": {
                "description": "A value the training data never had: a number outside the "
                               "training range (the prediction extrapolates), or a category "
                               "not seen in training.",
                "type": "object", "required": ["row", "feature", "value", "message"],
                "properties": {"row": {"type": "integer", "minimum": 0},
                               **self.warning_properties()}},
            "Explanations": {
                "description": "Only when asked for: one object per row, each feature's part of "
                               "the prediction's score (the predicted class's, or the value) "
                               "relative to its base value (`base_values`): a row's parts "
                               "and its base add up to its score.",
                "type": "array", "items": {
                    "type": "object", "required": names, "additionalProperties": False,
                    "properties": {n: {"type": "number"} for n in names}}},
        }
        if s.classifier:
            found["Label"] = {"type": "string", "enum": list(s.classes)}
            found["ClassIndex"] = {"type": "integer", "minimum": 0,
                                   "maximum": len(s.classes) - 1}
            found["Probabilities"] = {
                "type": "object", "required": list(s.classes), "additionalProperties": False,
                "properties": {c: {"type": "number", "minimum": 0, "maximum": 1}
                               for c in s.classes}}
        return found

    def warning_properties(self) -> dict:
        """A warning's fields but its row (an answer that is one row's has no other)."""
        return {"feature": {"type": "string", "enum": list(self.s.names)},
                "value": {"type": ["number", "string"]},
                "min": {"type": "number"}, "max": {"type": "number"},
                "message": {"type": "string"}}

    def metadata(self) -> dict:
        """The model's description (GET /'s metadata): what a client builds its form from."""
        s = self.s
        properties = {
            "name": {"type": "string", "const": s.name},
            "task": {"type": "string", "const": s.task},
            "target": {"type": "string", "const": self.target},
            "features": {"type": "array", "minItems": self.width, "maxItems": self.width,
                         "prefixItems": [_feature(f) for f in s.features],
                         "items": False},
            "aliases": {"type": "object", "additionalProperties": {"type": "string",
                                                                   "enum": list(s.names)}},
            "classes": {"type": "array", "items": ref("Label")} if s.classifier else None,
            "estimator": {"type": "string"},
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "versions": {"type": "object", "required": ["python", "scikit-learn", "joblib",
                                                        "numpy"],
                         "additionalProperties": {"type": "string"}},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "limits": {"type": "object", "required": ["max_body_bytes", "max_batch_rows"],
                       "additionalProperties": False,
                       "properties": {"max_body_bytes": {"type": "integer", "minimum": 1},
                                      "max_batch_rows": {"type": "integer", "minimum": 1}}},
        }
        properties = {k: v for k, v in properties.items() if v is not None}
        return {"Metadata": {"type": "object", "required": list(properties),
                             "additionalProperties": False, "properties": properties}}

    # Pieces of operations.

    @staticmethod
    def get(operation: str, summary: str, ok: dict, unavailable: bool = False) -> dict:
        responses = {"200": ok}
        if unavailable:
            responses["503"] = ref("Unavailable", "responses")
        return {"operationId": operation, "summary": summary, "responses": responses}

    @staticmethod
    def json_ok(description: str, schema: dict) -> dict:
        return {"description": description, "headers": {"X-Content-Type-Options": NOSNIFF},
                "content": {"application/json": {"schema": schema}}}

    @staticmethod
    def content_ok(description: str, media_type: str) -> dict:
        return {"description": description, "headers": {"X-Content-Type-Options": NOSNIFF},
                "content": {media_type: {"schema": {"type": "string"}}}}

    @staticmethod
    def const_object(key: str, value) -> dict:
        return {"type": "object", "required": [key], "additionalProperties": False,
                "properties": {key: {"type": "boolean", "const": value}}}

    @staticmethod
    def refusals(*statuses: str) -> dict:
        names = {"400": "Invalid", "404": "NotFound", "413": "TooLarge", "415": "NotJson",
                 "503": "Unavailable"}
        return {status: ref(names[status], "responses") for status in statuses}

    @staticmethod
    def preflight() -> dict:
        allow = ", ".join(("GET", "POST", "OPTIONS"))
        return {
            "operationId": "preflight", "summary": "CORS preflight.",
            "responses": {"204": {
                "description": "No body. For an allowed origin, the Access-Control-Allow-* "
                               "headers say which methods and headers a browser may use.",
                "headers": {
                    "Allow": {"required": True, "schema": {"type": "string", "const": allow}},
                    "X-Content-Type-Options": NOSNIFF,
                    "Access-Control-Allow-Origin": {"schema": {"type": "string"}},
                    "Access-Control-Allow-Methods": {"schema": {"type": "string",
                                                                "const": allow}},
                    "Access-Control-Allow-Headers": {"schema": {
                        "type": "string", "const": cors.ALLOWED_HEADERS}},
                    "Access-Control-Max-Age": {"schema": {"type": "string",
                                                          "pattern": "^[0-9]+$"}}}}},
        }

    @staticmethod
    def escape(text: str) -> str:
        """`text` as a regular expression that matches it alone."""
        return REGEX_SPECIAL.sub(r"\\\1", text)

    @staticmethod
    def decimal_pattern(f: sig.Feature) -> str | None:
        return decimal_pattern(f)


ERROR = {
    "description": "What is wrong, which field, what was expected, what came; never more than "
                   "a few hundred characters, never the request echoed back. BigQuery "
                   "requests get errorMessage, which BigQuery shows instead of retrying.",
    "type": "object", "minProperties": 1, "maxProperties": 1,
    "additionalProperties": False,
    "properties": {"error": {"type": "string", "minLength": 1, "maxLength": 400},
                   "errorMessage": {"type": "string", "minLength": 1, "maxLength": 400}}}


def _value(f: sig.Feature) -> dict:
    """The JSON Schema of a feature's value in a request."""
    if f.number:
        schema = {"type": ["number", "null"] if f.missing else "number", **dict(f.bounds)}
        unit = f" ({f.unit})" if f.unit else ""
        schema = {"description": f"{f.name}{unit}: training range {f.min:g} to {f.max:g}; "
                                 f"outside it the answer carries a warning.", **schema}
    else:
        shown = ", ".join(f.categories)
        schema = {"description": f"{f.name}: a category. Seen in training: {shown}. Any "
                                 f"other is answered, with a warning.",
                  "type": ["string", "null"] if f.missing else "string",
                  "examples": list(f.categories)}
    if f.missing:
        schema["description"] += " May be missing (null, or left out)."
    return schema


def _feature(f: sig.Feature) -> dict:
    """A feature as the metadata describes it (model.json's entry)."""
    common = {"name": {"const": f.name}, "type": {"const": f.type},
              "alias": {"type": "string"}, "unit": {"type": "string"},
              "missing": {"type": "boolean"}}
    if f.number:
        specific = {"bounds": {"type": "object", "additionalProperties": {"type": "number"}},
                    **{k: {"type": "number"} for k in ("min", "max", "mean")},
                    "std": {"type": "number", "minimum": 0}}
        required = ["name", "type", "min", "max", "mean", "std"]
    else:
        specific = {"categories": {"type": "object", "additionalProperties": {
            "type": "number", "minimum": 0, "maximum": 1}}}
        required = ["name", "type", "categories"]
    return {"type": "object", "required": required, "additionalProperties": False,
            "properties": {**common, **specific}}


def _component_keys(names: tuple) -> dict:
    """A component name for each feature's value schema: OpenAPI allows [A-Za-z0-9._-]."""
    keys = {}
    for i, name in enumerate(names):
        key = "Value." + re.sub(r"[^A-Za-z0-9._-]", "_", name)
        keys[name] = key if key not in keys.values() else f"{key}.{i}"
    return keys


def words(items) -> str:
    """"a, b or c"."""
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


# Decimal strings within a feature's bounds, as regular expressions. BigQuery sends NUMERIC
# columns and CSV cells come as such strings; the pattern says exactly which are answered.

def decimal_pattern(f: sig.Feature) -> str | None:
    """The decimal strings (no exponent) within f's bounds; None if no simple one says that.

    Written out for no bounds at all and for whole-number bounds of at least 0, which
    model.json's bounds usually are (iris: greater than 0, at most 100).
    """
    low, high = f.low, f.high
    if low == -math.inf and high == math.inf:
        return f"-?([0-9]{{1,{MAX_INT_DIGITS}}}{FRACTION}|\\.[0-9]+)"
    if low < 0 or not low.is_integer() or not (high == math.inf or high.is_integer()) \
            or low >= high:
        return None
    low = int(low)
    choices = []
    if high != math.inf and f.high_inclusive:  # the upper bound itself, and nothing above
        choices.append(f"{int(high)}(\\.0*)?")
    # Whole parts strictly between the bounds take any fraction.
    if high == math.inf:
        digits = len(str(low + 1))
        choices += [_group(_int_range(low + 1, 10 ** digits - 1)) + FRACTION,
                    f"[1-9][0-9]{{{digits},{MAX_INT_DIGITS - 1}}}{FRACTION}"]
    elif low + 1 <= high - 1:
        choices.append(_group(_int_range(low + 1, int(high) - 1)) + FRACTION)
    # The lower bound's whole part: any fraction if the bound is allowed, else a nonzero one.
    whole = "" if low == 0 else str(low)
    if not f.low_inclusive:
        choices.append(f"{whole}\\.[0-9]*[1-9][0-9]*")
    else:
        choices += [f"{whole or 0}{FRACTION}"] + (["\\.[0-9]+"] if low == 0 else [])
    # Leading zeros, as float() reads them ("007.5"); and a negative zero, where 0 is allowed.
    negative_zero = "|-(0+(\\.0*)?|\\.0+)" if low == 0 and f.low_inclusive else ""
    return f"0*({'|'.join(choices)}){negative_zero}"


def _group(choices: list) -> str:
    return choices[0] if len(choices) == 1 else f"({'|'.join(choices)})"


def _int_range(low: int, high: int) -> list:
    """Regular expressions that together match the whole numbers low..high (no leading zeros)."""
    found = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        a = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        b = min(high, 10 ** digits - 1)
        if a <= b:
            found += _same_length(str(a), str(b))
    return found


def _same_length(a: str, b: str) -> list:
    """Expressions for the numbers a..b, both written with the same number of digits."""
    if a == b:
        return [a]
    if len(a) == 1:
        return [f"[{a}-{b}]"]
    if a[0] == b[0]:
        return [a[0] + _group(_same_length(a[1:], b[1:]))]
    rest = len(a) - 1
    found, first, last = [], int(a[0]), int(b[0])
    if a[1:] != "0" * rest:
        found.append(a[0] + _group(_same_length(a[1:], "9" * rest)))
        first += 1
    tail = b[0] + _group(_same_length("0" * rest, b[1:])) if b[1:] != "9" * rest else None
    if tail:
        last -= 1
    if first <= last:
        digit = str(first) if first == last else f"[{first}-{last}]"
        found.append(f"{digit}[0-9]" + (f"{{{rest}}}" if rest > 1 else ""))
    if tail:
        found.append(tail)
    return found


def main(argv: list) -> int:
    from pathlib import Path

    from iris_predict import settings
    from iris_predict.model import artifact
    from iris_predict.protocols import routes

    path = Path(argv[0]) if argv else artifact.sidecar_path(settings.MODEL_PATH)
    signature = sig.from_metadata(json.loads(path.read_text()))
    print(json.dumps(routes.contract(signature, settings.MAX_BODY_BYTES,
                                     settings.MAX_BATCH_ROWS), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
