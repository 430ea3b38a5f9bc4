"""The canary's probe rows, read from a model's signature: deploy.sh --canary sends them to the
candidate and to the serving revision and compares the answers.

    python3 probes.py [model.json]    prints the request body: {"instances": [[...], ...], ...}

Rows where a changed model shows first, built from model.json alone (no training data):
  - the average training row (numbers at their mean, categories at the most common one);
  - every number at its training minimum, then every number at its maximum;
  - each number alone outside its training range, half the range below and above (halfway to a
    bound instead where that would break it), the others at their mean;
  - each category feature's other categories in turn (at most CATEGORIES of them);
  - where features may be missing, the average row with all of those missing (null).
Standard library only: deploy.sh runs it with the deploying machine's python3.
"""

import json
import math
import sys
from pathlib import Path

CATEGORIES = 5  # per category feature, beyond the most common one
DIGITS = 6


def probes(metadata: dict) -> list:
    """The probe rows for a model.json's contents, each a list in feature order."""
    features = metadata["features"]
    average = [_average(f) for f in features]
    rows = [average]
    if any(_number(f) for f in features):
        rows.append([_round(f["min"]) if _number(f) else a for f, a in zip(features, average)])
        rows.append([_round(f["max"]) if _number(f) else a for f, a in zip(features, average)])
    for j, feature in enumerate(features):
        if _number(feature):
            spread = (feature["max"] - feature["min"]) / 2 or 1.0
            for value in (feature["min"] - spread, feature["max"] + spread):
                rows.append(_with(average, j, _round(_within(feature, value))))
        else:
            others = [c for c in feature["categories"] if c != average[j]]
            rows += [_with(average, j, c) for c in others[:CATEGORIES]]
    if any(f.get("missing") for f in features):
        rows.append([None if f.get("missing") else a for f, a in zip(features, average)])
    return rows


def _number(feature: dict) -> bool:
    return feature.get("type", "number") == "number"


def _average(feature: dict):
    if _number(feature):
        return _round(feature["mean"])
    shares = feature["categories"]
    return max(shares, key=shares.get)


def _within(feature: dict, value: float) -> float:
    """value, or halfway from the training range to the bound it would break."""
    bounds = feature.get("bounds", {})
    low = max((bounds[k] for k in ("minimum", "exclusiveMinimum") if k in bounds),
              default=-math.inf)
    high = min((bounds[k] for k in ("maximum", "exclusiveMaximum") if k in bounds),
               default=math.inf)
    if value <= low:
        return (low + feature["min"]) / 2
    if value >= high:
        return (high + feature["max"]) / 2
    return value


def _with(row: list, j: int, value) -> list:
    return [value if i == j else v for i, v in enumerate(row)]


def _round(value: float) -> float:
    return round(value, DIGITS)


def main(argv: list) -> int:
    path = Path(argv[0]) if argv else Path(__file__).with_name("model.json")
    try:
        metadata = json.loads(path.read_text())
        rows = probes(metadata)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        print(f"probes.py: {path} is not a model signature: {e!r}", file=sys.stderr)
        return 2
    print(json.dumps({"instances": rows, "parameters": {"probabilities": True}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
