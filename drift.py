"""Drift report: the measurements the function served, from its sampled log lines, against training.

    python drift.py LOGS [--model model.json]        (make drift LOGS=FILE)

LOGS holds the lines the function writes for a PREDICTION_LOG_SAMPLE share of the rows it
answers, in any of the forms they come in:
  - what `gcloud logging read --format=json` prints: one JSON array of log entries;
  - JSON Lines of log entries (a Cloud Storage sink's files, or that array one entry a line);
  - JSON Lines as the function prints them (`make -s serve` output, a container's stdout).
Entries without the iris_predict=prediction_sample label (request lines, start-up lines) are
skipped; anything that is not JSON objects is refused. docs/drift.md explains every column.

Numbers are compared by binned shares (BINS across the training range, one below, one above),
categories by their shares (each category seen in training, plus one for those it never had);
missing values (null) are left out of both.

Exit status: 0 when no feature drifted, 1 when a feature's PSI reached SIGNIFICANT (so a
scheduled job can alert on it), 2 when LOGS or the model metadata cannot be read.
train.py records the reference bins in model.json with reference() from here, so the bins
a report compares are always cut the same way.
"""

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iris_predict.logs import LABELS_FIELD, SAMPLE_LABELS

# Equal-width bins across each feature's training range, plus one below it and one above it.
BINS = 10
# An empty bin's share, in both the ratio and the logarithm of the PSI: ln(0) has no value.
EPSILON = 1e-4
# The conventional PSI bands: below 0.1 no change worth a look, 0.1 to 0.25 moderate, above
# 0.25 significant. Only SIGNIFICANT flags drift (and sets the exit status).
MODERATE = 0.1
SIGNIFICANT = 0.25
# The bin of a category's values that training never had.
UNSEEN = "(unseen)"
# Without drift a feature's PSI still averages about (BINS - 1) / rows from sampling alone
# (0.09 at 100 rows): below this many rows the report shows figures but flags nothing.
MIN_ROWS = 100
BAR_WIDTH = 30
METADATA_FIELDS = ("features", "training_rows", "training_distribution")
USAGE_ERROR = 2
DRIFTED = 1
LABEL, VALUE = next(iter(SAMPLE_LABELS.items()))


class InputError(Exception):
    """LOGS or the model metadata cannot be read as the report needs them."""


def bin_edges(lo: float, hi: float) -> list:
    """BINS + 1 edges from lo to hi, rounded as model.json stores numbers."""
    return [round(float(edge), 12) for edge in np.linspace(lo, hi, BINS + 1)]


def bin_shares(values: np.ndarray, edges: list) -> np.ndarray:
    """The share of values in each bin: below edges[0], each [edges[i], edges[i+1]) with the
    last one closed at edges[-1], then above edges[-1]."""
    edges = np.asarray(edges)
    index = np.searchsorted(edges, values, side="right")
    index[values == edges[-1]] = len(edges) - 1  # the maximum belongs to the last inner bin
    return np.bincount(index, minlength=len(edges) + 1) / len(values)


def reference(numbers: dict) -> dict:
    """model.json's training_distribution: each number's bin edges and training shares, from
    {name: its training values (none missing)}."""
    found = {}
    for name, column in numbers.items():
        edges = bin_edges(column.min(), column.max())
        found[name] = {"edges": edges,
                       "shares": [round(float(s), 12) for s in bin_shares(column, edges)]}
    return found


def psi(served: np.ndarray, training: np.ndarray) -> float:
    """Population stability index: sum over bins of (served - training) * ln(served / training)."""
    s, t = np.maximum(served, EPSILON), np.maximum(training, EPSILON)
    return float(np.sum((s - t) * np.log(s / t)))


@dataclass
class FeatureDrift:
    """One feature's served figures beside its training figures."""

    name: str
    unit: str | None
    rows: int
    mean: float | None  # numbers only
    std: float | None
    training_mean: float | None
    training_std: float | None
    outside: float  # share of served values outside the training range (categories: unseen)
    psi: float
    labels: list  # each bin's label
    shares: np.ndarray
    training_shares: np.ndarray

    @property
    def flag(self) -> str:
        if self.rows < MIN_ROWS:
            return f"too few rows (< {MIN_ROWS})"
        if self.psi >= SIGNIFICANT:
            return "DRIFT"
        return "moderate" if self.psi >= MODERATE else ""


def compare(columns: dict, metadata: dict) -> list:
    """A FeatureDrift per feature: the served values {name: [value, ...]} (missing ones left
    out) against the model's training data."""
    found = []
    for feature in metadata["features"]:
        name = feature["name"]
        if feature.get("type", "number") == "category":
            found.append(_category(feature, columns[name]))
            continue
        column = np.array(columns[name], dtype=float)
        bins = metadata["training_distribution"][name]
        shares, training_shares = bin_shares(column, bins["edges"]), np.array(bins["shares"])
        outside = (column < feature["min"]) | (column > feature["max"])
        found.append(FeatureDrift(
            name, feature.get("unit"), len(column), float(column.mean()), float(column.std()),
            feature["mean"], feature["std"], float(outside.mean()),
            psi(shares, training_shares), _bin_labels(bins["edges"]), shares, training_shares))
    return found


def _category(feature: dict, values: list) -> FeatureDrift:
    """A category's shares per category seen in training, then UNSEEN, served vs training."""
    known = list(feature["categories"])
    index = {c: i for i, c in enumerate(known)}
    counts = np.bincount([index.get(v, len(known)) for v in values], minlength=len(known) + 1)
    shares = counts / max(len(values), 1)
    training_shares = np.array([*feature["categories"].values(), 0.0])
    return FeatureDrift(feature["name"], None, len(values), None, None, None, None,
                        float(shares[-1]), psi(shares, training_shares), [*known, UNSEEN],
                        shares, training_shares)


# --- reading LOGS ----------------------------------------------------------------------------

def read_samples(path: Path, features: list) -> tuple:
    """({feature name: served values, missing ones left out}, rows, entries skipped) from the
    sampled lines in LOGS; features are model.json's."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from None
    entries = list(_entries(text, path))
    columns = {f["name"]: [] for f in features}
    rows = 0
    for where, entry in entries:
        payload = _sample_payload(entry)
        if payload is None:
            continue
        rows += 1
        for feature in features:
            value = _value(payload, feature, where)
            if value is not None:
                columns[feature["name"]].append(value)
    if not rows:
        raise InputError(f"{path} holds no prediction samples (entries labelled "
                         f"{LABEL}={VALUE}, which the function writes only when "
                         f"PREDICTION_LOG_SAMPLE is above 0)")
    return columns, rows, len(entries) - rows


def _entries(text: str, path: Path):
    """(where, object) for each log entry: a JSON array's items, or one per JSON line."""
    formats = ("expected the JSON array that `gcloud logging read --format=json` prints, "
               "or JSON Lines of log entries or of the function's own log lines")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as e:
            raise InputError(f"{path} is not valid JSON ({e}); {formats}") from None
        numbered = ((f"{path} item {i}", item) for i, item in enumerate(items))
    else:
        numbered = _json_lines(text, path, formats)
    for where, item in numbered:
        if not isinstance(item, dict):
            raise InputError(f"{where} is not a JSON object; {formats}")
        yield where, item


def _json_lines(text: str, path: Path, formats: str):
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path} line {number}", json.loads(line)
            except ValueError:
                raise InputError(f"{path} line {number} is not JSON: {line[:60]!r}; "
                                 f"{formats}") from None


def _sample_payload(entry: dict) -> dict | None:
    """The fields of a sampled prediction, whether the entry is Cloud Logging's or the line
    the function printed; None for any other entry."""
    if isinstance(entry.get("jsonPayload"), dict):  # a LogEntry: the label was moved out
        labels, payload = entry.get("labels"), entry["jsonPayload"]
    else:
        labels, payload = entry.get(LABELS_FIELD), entry
    if isinstance(labels, dict) and labels.get(LABEL) == VALUE:
        return payload
    return None


def _value(payload: dict, feature: dict, where: str):
    """The sampled row's value of the feature: a number, a category's string, or None (missing)."""
    name = feature["name"]
    value = payload.get(name, ...)  # absent: refused below, as a value of the wrong type
    if value is None:
        return None
    if feature.get("type", "number") == "category":
        if not isinstance(value, str):
            raise InputError(f"{where}: a prediction sample without a string for {name}")
        return value
    if type(value) not in (int, float) or not math.isfinite(value):
        raise InputError(f"{where}: a prediction sample without a number for {name}")
    return float(value)


def read_metadata(path: Path) -> dict:
    """model.json, with the training figures the report compares against."""
    try:
        metadata = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read model metadata {path}: {e}") from None
    missing = [k for k in METADATA_FIELDS if k not in metadata]
    if missing:
        raise InputError(f"model metadata {path} lacks {', '.join(missing)}: "
                         f"retrain with 'make model'")
    return metadata


# --- printing --------------------------------------------------------------------------------

def render(drifts: list, logs: Path, model: Path, rows: int, skipped: int,
           training_rows: int) -> str:
    """The report: a table of every feature, then each feature's bins, training vs served."""
    lines = [
        f"Drift report: {rows} sampled rows from {logs} ({skipped} other log "
        f"entries skipped), against {model} ({training_rows} training rows).",
        f"PSI over {BINS + 2} bins ({BINS} across the training range, one below, one above); "
        f"flag: DRIFT at PSI >= {SIGNIFICANT} (significant), moderate at >= {MODERATE}.",
        "",
        f"{'feature':<13} {'served':>6} {'mean':>7} {'std':>7} {'train mean':>10} "
        f"{'train std':>9} {'outside range':>13} {'PSI':>7}  flag",
    ]
    if any(d.mean is None for d in drifts):
        lines[1] += (f" Categories: PSI over each category seen in training and {UNSEEN}, "
                     "where 'outside range' is the share unseen.")
    for d in drifts:
        figures = [_figure(v, width) for v, width in
                   ((d.mean, 7), (d.std, 7), (d.training_mean, 10), (d.training_std, 9))]
        lines.append(f"{d.name:<13} {d.rows:>6} {' '.join(figures)} "
                     f"{d.outside:>13.1%} {d.psi:>7.3f}  {d.flag}".rstrip())
    for d in drifts:
        unit = f" ({d.unit})" if d.unit else ""
        per = "bin" if d.mean is not None else "category"
        title = f"{d.name}{unit}: share of rows per {per}, PSI {d.psi:.3f} {d.flag}"
        pad = max(15, *map(len, d.labels))
        lines += ["", title.rstrip(),
                  f"  {per:<{pad}} {'training':<{BAR_WIDTH + 8}} served"]
        scale = BAR_WIDTH / max(d.shares.max(), d.training_shares.max(), EPSILON)
        for label, t, s in zip(d.labels, d.training_shares, d.shares):
            lines.append(f"  {label:<{pad}} {t:>6.1%} {'#' * round(t * scale):<{BAR_WIDTH}} "
                         f"{s:>6.1%} {'#' * round(s * scale)}".rstrip())
    return "\n".join(lines)


def _figure(value, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.3f}"


def _bin_labels(edges: list) -> list:
    inner = [f"{lo:g} to {hi:g}" for lo, hi in zip(edges, edges[1:])]
    return [f"below {edges[0]:g}", *inner, f"above {edges[-1]:g}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path, metavar="LOGS",
                        help="sampled prediction log lines (formats: see docs/drift.md)")
    parser.add_argument("--model", type=Path, default=Path(__file__).with_name("model.json"),
                        help="the served model's metadata (default: model.json beside this file)")
    args = parser.parse_args(argv)
    try:
        metadata = read_metadata(args.model)
        columns, rows, skipped = read_samples(args.logs, metadata["features"])
    except InputError as e:
        print(f"drift.py: {e}", file=sys.stderr)
        return USAGE_ERROR
    drifts = compare(columns, metadata)
    print(render(drifts, args.logs, args.model, rows, skipped, metadata["training_rows"]))
    return DRIFTED if any(d.flag == "DRIFT" for d in drifts) else 0


if __name__ == "__main__":
    sys.exit(main())
