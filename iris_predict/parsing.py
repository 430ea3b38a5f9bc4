"""Turn a decoded JSON request into a matrix of validated measurements.

Three request shapes are accepted (README "API reference"):
- one flower: {"sl": 5.1, ...} (the tutorial's keys) or {"sepal_length": 5.1, ...};
- a batch: {"instances": [[5.1, 3.5, 1.4, 0.2], {...}], "parameters": {...}},
  the Vertex AI / KServe V1 shape;
- a BigQuery remote function call: {"calls": [[5.1, 3.5, 1.4, 0.2], ...], ...}.
Anything else raises InvalidRequest with a message that names the field, what
was expected and what came, so the client can fix its request.
"""

import itertools
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np

from iris_predict import settings
from iris_predict.features import ALIASES, MAX_VALUE, MIN_VALUE, NAMES

RANGE = f"a number greater than {MIN_VALUE:g} and at most {MAX_VALUE:g} (cm)"
BIGQUERY_OUTPUTS = ("species", "class", "json")
# BigQuery sends NUMERIC and BIGNUMERIC columns as decimal strings.
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class InvalidRequest(Exception):
    """A client error: status and a message safe to show the client."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Batch:
    """Validated rows to predict and how the answer should be shaped."""

    kind: str                      # "single", "instances" or "calls"
    X: np.ndarray                  # (rows, 4) float64
    probabilities: bool = False    # include per-class probabilities
    output: str = "species"        # BigQuery reply form
    total: int = 0                 # calls only: rows sent, including null rows
    present: list = field(default_factory=list)  # calls only: indices of non-null rows


def decode(body: bytes):
    """Parse a JSON document strictly: no NaN/Infinity, no duplicate keys."""
    try:
        return json.loads(body, parse_constant=_reject_constant,
                          object_pairs_hook=_reject_duplicates)
    except InvalidRequest:
        raise
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise InvalidRequest(f"request body is not valid JSON: {e}") from None
    except ValueError:  # Python refuses integer literals of thousands of digits
        raise InvalidRequest("request body has a number with too many digits") from None


def parse(payload) -> Batch:
    """Validate a decoded request body; raise InvalidRequest on any problem."""
    if not isinstance(payload, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {_kind(payload)}")
    if "calls" in payload:
        return _parse_calls(payload)
    if "instances" in payload:
        return _parse_instances(payload)
    return Batch("single", _row_from_object(payload, "")[None, :], probabilities=True)


def _parse_instances(payload: dict) -> Batch:
    _only_keys(payload, ("instances", "parameters"), "request body")
    rows = _rows(payload["instances"], "instances")
    parameters = payload.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"parameters must be an object, got {_kind(parameters)}")
    _only_keys(parameters, ("probabilities",), "parameters")
    probabilities = parameters.get("probabilities", False)
    if not isinstance(probabilities, bool):
        raise InvalidRequest(
            f"parameters.probabilities must be true or false, got {_show(probabilities)}")
    X = _fast_matrix(rows)
    if X is None:
        X = np.array([_row(row, f"instances[{i}]") for i, row in enumerate(rows)])
    return Batch("instances", X, probabilities=probabilities)


def _parse_calls(payload: dict) -> Batch:
    calls = _rows(payload["calls"], "calls", allow_empty=True)
    output = _bigquery_output(payload.get("userDefinedContext"))
    X = _fast_matrix(calls)
    if X is not None:
        return Batch("calls", X, output=output, total=len(calls), present=list(range(len(calls))))
    present, rows = [], []
    for i, call in enumerate(calls):
        where = f"calls[{i}]"
        if not isinstance(call, list):
            raise InvalidRequest(f"{where} must be an array of 4 arguments, got {_kind(call)}")
        if len(call) != len(NAMES):
            raise InvalidRequest(
                f"{where} has {len(call)} arguments, expected {len(NAMES)} ({', '.join(NAMES)})")
        values = [None if v is None else _number(v, f"{where}[{j}] ({NAMES[j]})", allow_string=True)
                  for j, v in enumerate(call)]
        if None in values:
            continue  # SQL NULL in, NULL out: the rest of the batch still scores
        present.append(i)
        rows.append(values)
    X = np.array(rows, dtype=float).reshape(-1, len(NAMES))
    return Batch("calls", X, output=output, total=len(calls), present=present)


def _bigquery_output(context) -> str:
    if context is None:
        return "species"
    if not isinstance(context, dict):
        raise InvalidRequest(f"userDefinedContext must be an object, got {_kind(context)}")
    _only_keys(context, ("output",), "userDefinedContext")
    output = context.get("output", "species")
    if output not in BIGQUERY_OUTPUTS:
        raise InvalidRequest(
            f"userDefinedContext.output must be one of {', '.join(BIGQUERY_OUTPUTS)}, "
            f"got {_show(output)}")
    return output


def _rows(rows, where: str, allow_empty: bool = False) -> list:
    if not isinstance(rows, list):
        raise InvalidRequest(f"{where} must be an array of rows, got {_kind(rows)}")
    if not rows and not allow_empty:
        raise InvalidRequest(f"{where} is empty; send at least one row")
    if len(rows) > settings.MAX_BATCH_ROWS:
        raise InvalidRequest(
            f"{where} has {len(rows)} rows, more than the limit of {settings.MAX_BATCH_ROWS}; "
            "split the batch", status=413)
    return rows


def _fast_matrix(rows: list):
    """The rows as a matrix if all are 4 plain in-range numbers, else None.

    The common case costs a few C-level passes instead of a Python call per
    value; anything unusual falls back to the row-by-row path, which finds and
    names the problem.
    """
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {len(NAMES)}:
        return None
    if not set(map(type, itertools.chain.from_iterable(rows))) <= {float, int}:
        return None
    try:
        X = np.fromiter(itertools.chain.from_iterable(rows), dtype=float,
                        count=len(rows) * len(NAMES)).reshape(-1, len(NAMES))
    except OverflowError:
        return None
    if not ((X > MIN_VALUE) & (X <= MAX_VALUE)).all():  # also false for inf and nan
        return None
    return X


def _row(row, where: str) -> list:
    if isinstance(row, dict):
        return _row_from_object(row, where)
    if not isinstance(row, list):
        raise InvalidRequest(
            f"{where} must be an array of {len(NAMES)} numbers or an object, got {_kind(row)}")
    if len(row) != len(NAMES):
        raise InvalidRequest(
            f"{where} has {len(row)} values, expected {len(NAMES)} ({', '.join(NAMES)})")
    return [_number(v, f"{where}[{j}] ({NAMES[j]})") for j, v in enumerate(row)]


def _row_from_object(obj: dict, where: str) -> np.ndarray:
    """Read the four features by name or by tutorial alias, not a mixture."""
    prefix = f"{where}." if where else ""
    where = where or "request body"
    keys = NAMES if any(k in obj for k in NAMES) else ALIASES
    other = ALIASES if keys is NAMES else NAMES
    unknown = [k for k in obj if k not in keys]
    if unknown:
        hint = " (use either the short or the long names, not both)" \
            if any(k in other for k in unknown) else ""
        raise InvalidRequest(
            f"{where} has unknown field {_show(unknown[0])}{hint}; expected "
            f"{', '.join(NAMES)} or {', '.join(ALIASES)}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise InvalidRequest(f"{where} is missing {', '.join(missing)}")
    return np.array([_number(obj[k], prefix + k) for k in keys])


def _number(value, where: str, allow_string: bool = False) -> float:
    if allow_string and isinstance(value, str) and DECIMAL.fullmatch(value.strip()):
        number = float(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{where} must be {RANGE}, got {_kind(value)} {_show(value)}")
    else:
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    if not MIN_VALUE < number <= MAX_VALUE:  # also false for inf and nan
        raise InvalidRequest(f"{where} must be {RANGE}, got {_show(value)}")
    return number


def _only_keys(obj: dict, allowed: tuple, where: str):
    for key in obj:
        if key not in allowed:
            raise InvalidRequest(
                f"{where} has unknown field {_show(key)}; expected {', '.join(allowed)}")


def _reject_constant(name: str):
    raise InvalidRequest(f"request body contains {name}, which is not a JSON number")


def _reject_duplicates(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise InvalidRequest(f"request body repeats the field {_show(duplicate)}")
    return obj


def _kind(value) -> str:
    return {bool: "boolean", str: "string", list: "array", dict: "object",
            type(None): "null", int: "number", float: "number"}.get(type(value), "value")


def _show(value) -> str:
    """A short rendering of a client value for an error message (never the whole thing)."""
    if isinstance(value, (dict, list)):
        return _kind(value)
    try:
        text = json.dumps(value)
    except (ValueError, TypeError, OverflowError):
        text = _kind(value)
    return clip(text, 40)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
