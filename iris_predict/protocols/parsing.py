"""Turn a decoded JSON request into a Batch of validated measurements.

Three request shapes are accepted on "/" (docs/api.md, docs/bigquery.md):
- one flower: {"sl": 5.1, ...} (the tutorial's keys) or {"sepal_length": 5.1, ...};
- a batch: {"instances": [[5.1, 3.5, 1.4, 0.2], {...}], "parameters": {...}},
  the Vertex AI / KServe V1 shape;
- a BigQuery remote function call: {"calls": [[5.1, 3.5, 1.4, 0.2], ...], ...}.
Anything else raises InvalidRequest with a message that names the field, what
was expected and what came, so the client can fix its request. The other
protocols' parsers validate their rows with matrix(), row_values() and number().
"""

import itertools
import math
import re
from urllib.parse import parse_qsl

import numpy as np

from iris_predict import settings
from iris_predict.protocols.batch import Batch, BigQueryOutput, Kind
from iris_predict.errors import InvalidRequest, PayloadTooLarge
from iris_predict.features import ALIASES, MAX_VALUE, MIN_VALUE, NAMES
from iris_predict.text import kind, show

RANGE = f"a number greater than {MIN_VALUE:g} and at most {MAX_VALUE:g} (cm)"
# BigQuery sends NUMERIC and BIGNUMERIC columns as decimal strings.
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
WIDTH = len(NAMES)
NAME_SET = frozenset(NAMES)
KEY_SETS = {NAMES: NAME_SET, ALIASES: frozenset(ALIASES)}
PARAMETERS = ("probabilities", "explain")  # what an instances request may ask for
QUERY_BOOLEANS = {"true": True, "false": False}


def parse(payload, explain: bool = False) -> Batch:
    """Validate a decoded request body; raise InvalidRequest on any problem.

    `explain` is the request's ?explain=true (query()).
    """
    if type(payload) is not dict:
        raise InvalidRequest(f"request body must be a JSON object, got {kind(payload)}")
    if "calls" in payload:
        if explain:
            raise InvalidRequest("explanations are not available to BigQuery calls")
        return _parse_calls(payload)
    if "instances" in payload:
        return _parse_instances(payload, explain)
    return Batch(Kind.SINGLE, np.array([row_from_object(payload, "")]), probabilities=True,
                 explain=explain)


def query(query_string: bytes) -> bool:
    """Whether a request's query string asks for explanations (?explain=true)."""
    explain = False
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name != "explain":
            raise InvalidRequest(f"unknown query parameter {show(name)}; expected explain")
        if value not in QUERY_BOOLEANS:
            raise InvalidRequest(f"explain must be true or false, got {show(value)}")
        explain = QUERY_BOOLEANS[value]
    return explain


def _parse_instances(payload: dict, explain: bool) -> Batch:
    only_keys(payload, ("instances", "parameters"), "request body")
    X, _ = matrix(payload["instances"], "instances")
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"parameters must be an object, got {kind(parameters)}")
    only_keys(parameters, PARAMETERS, "parameters")
    return Batch(Kind.INSTANCES, X, probabilities=_boolean(parameters, "probabilities", False),
                 explain=_boolean(parameters, "explain", explain))


def _boolean(parameters: dict, name: str, default: bool) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"parameters.{name} must be true or false, got {show(value)}")
    return value


def _parse_calls(payload: dict) -> Batch:
    calls = payload["calls"]
    X, present = matrix(calls, "calls", bigquery=True)
    output = _bigquery_output(payload.get("userDefinedContext"))
    return Batch(Kind.CALLS, X, output=output, total=len(calls), present=present)


def _bigquery_output(context) -> BigQueryOutput:
    if context is None:
        return BigQueryOutput.SPECIES
    if not isinstance(context, dict):
        raise InvalidRequest(f"userDefinedContext must be an object, got {kind(context)}")
    only_keys(context, ("output",), "userDefinedContext")
    output = context.get("output", BigQueryOutput.SPECIES.value)
    try:
        return BigQueryOutput(output)
    except (ValueError, TypeError):
        raise InvalidRequest(
            f"userDefinedContext.output must be one of "
            f"{', '.join(o.value for o in BigQueryOutput)}, got {show(output)}") from None


def matrix(rows, where: str, bigquery: bool = False) -> tuple[np.ndarray, list]:
    """The rows as a validated (n, 4) float64 matrix, and the indices of the rows in it.

    Every row is in it, but for BigQuery calls with a NULL argument: SQL NULL in,
    NULL out, while the rest of the batch still scores.
    """
    if not isinstance(rows, list):
        raise InvalidRequest(f"{where} must be an array of rows, got {kind(rows)}")
    if not rows and not bigquery:  # BigQuery may send an empty batch
        raise InvalidRequest(f"{where} is empty; send at least one row")
    check_rows(len(rows), where)
    X = _fast_matrix(rows)
    if X is not None:
        return X, list(range(len(rows)))
    present, values = [], []
    for i, row in enumerate(rows):
        checked = row_values(row, f"{where}[{i}]", bigquery)
        if checked is not None:
            present.append(i)
            values.append(checked)
    return np.array(values, dtype=float).reshape(-1, WIDTH), present


def check_rows(count: int, where: str):
    """Refuse a batch of more than MAX_BATCH_ROWS rows with 413."""
    if count > settings.MAX_BATCH_ROWS:
        raise PayloadTooLarge(
            f"{where} has {count} rows, more than the limit of {settings.MAX_BATCH_ROWS}; "
            "split the batch")


def _fast_matrix(rows: list):
    """The rows as a matrix if all are 4 plain in-range numbers, else None.

    The common case costs a few C-level passes instead of a Python call per
    value; anything unusual falls back to the row-by-row path, which finds and
    names the problem.
    """
    if not rows or set(map(type, rows)) != {list} or set(map(len, rows)) != {WIDTH}:
        return None
    if not set(map(type, itertools.chain.from_iterable(rows))) <= {float, int}:
        return None
    try:
        X = np.fromiter(itertools.chain.from_iterable(rows), dtype=float,
                        count=len(rows) * WIDTH).reshape(-1, WIDTH)
    except OverflowError:
        return None
    if not ((X > MIN_VALUE) & (X <= MAX_VALUE)).all():  # also false for inf and nan
        return None
    return X


def row_values(row, where: str, bigquery: bool = False) -> list | None:
    """One row's four measurements, validated; None for a BigQuery call with a NULL.

    Instances may be arrays or objects with named features; BigQuery calls are
    arrays of arguments, which may be NULL or decimal strings. A NULL excuses
    no garbage elsewhere in its call.
    """
    if isinstance(row, dict) and not bigquery:
        return row_from_object(row, where)
    noun = "arguments" if bigquery else "values"
    if not isinstance(row, list):
        expected = f"an array of {WIDTH} arguments" if bigquery \
            else f"an array of {WIDTH} numbers or an object"
        raise InvalidRequest(f"{where} must be {expected}, got {kind(row)}")
    if len(row) != WIDTH:
        raise InvalidRequest(
            f"{where} has {len(row)} {noun}, expected {WIDTH} ({', '.join(NAMES)})")
    values = [None if v is None and bigquery else
              number(v, f"{where}[{j}] ({NAMES[j]})", allow_string=bigquery)
              for j, v in enumerate(row)]
    return None if None in values else values


def row_from_object(obj: dict, where: str) -> list:
    """Read the four features by name or by tutorial alias, not a mixture."""
    keys = NAMES if not NAME_SET.isdisjoint(obj) else ALIASES
    if obj.keys() != KEY_SETS[keys]:
        _refuse_fields(obj, keys, where)
    prefix = f"{where}." if where else ""
    return [number(obj[k], prefix + k) for k in keys]


def _refuse_fields(obj: dict, keys: tuple, where: str):
    """Name the first unknown or missing field of a flower given as an object."""
    where = where or "request body"
    other = ALIASES if keys is NAMES else NAMES
    unknown = [k for k in obj if k not in keys]
    if unknown:
        hint = " (use either the short or the long names, not both)" \
            if any(k in other for k in unknown) else ""
        raise InvalidRequest(
            f"{where} has unknown field {show(unknown[0])}{hint}; expected "
            f"{', '.join(NAMES)} or {', '.join(ALIASES)}")
    missing = [k for k in keys if k not in obj]
    raise InvalidRequest(f"{where} is missing {', '.join(missing)}")


def number(value, where: str, allow_string: bool = False) -> float:
    """A measurement in centimetres, checked to be a plausible one."""
    if type(value) is float and MIN_VALUE < value <= MAX_VALUE:  # the usual case, at once
        return value
    if allow_string and isinstance(value, str) and DECIMAL.fullmatch(value.strip()):
        result = float(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{where} must be {RANGE}, got {kind(value)} {show(value)}")
    else:
        try:
            result = float(value)
        except OverflowError:
            result = math.inf
    if not MIN_VALUE < result <= MAX_VALUE:  # also false for inf and nan
        raise InvalidRequest(f"{where} must be {RANGE}, got {show(value)}")
    return result


def only_keys(obj: dict, allowed: tuple, where: str):
    """Refuse the first key of `obj` that is not `allowed`, naming what is."""
    for key in obj:
        if key not in allowed:
            raise InvalidRequest(
                f"{where} has unknown field {show(key)}; expected {', '.join(allowed)}")
