"""Drift report: the measurements the function served, from its sampled log lines, against training.

    python drift.py LOGS [--model model.json]        (make drift LOGS=FILE)

LOGS holds the lines the function writes for a PREDICTION_LOG_SAMPLE share of the rows it
answers, in any of the forms they come in:
  - what `gcloud logging read --format=json` prints: one JSON array of log entries;
  - JSON Lines of log entries (a Cloud Storage sink's files, or that array one entry a line);
  - JSON Lines as the function prints them (`make -s serve` output, a container's stdout).
Entries without the iris_predict=prediction_sample label (request lines, start-up lines) are
skipped; anything that is not JSON objects is refused. docs/drift.md explains every column.

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

from iris_predict.features import FEATURES, NAMES
from iris_predict.logs import LABELS_FIELD, SAMPLE_LABELS

# Equal-width bins across each feature's training range, plus one below it and one above it.
BINS = 10
# An empty bin's share, in both the ratio and the logarithm of the PSI: ln(0) has no value.
EPSILON = 1e-4
# The conventional PSI bands: below 0.1 no change worth a look, 0.1 to 0.25 moderate, above
# 0.25 significant. Only SIGNIFICANT flags drift (and sets the exit status).
MODERATE = 0.1
SIGNIFICANT = 0.25
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
    unit: str
    rows: int
    mean: float
    std: float
    training_mean: float
    training_std: float
    outside: float  # share of served values outside the training range
    psi: float
    edges: list
    shares: np.ndarray
    training_shares: np.ndarray

    @property
    def flag(self) -> str:
        if self.rows < MIN_ROWS:
            return f"too few rows (< {MIN_ROWS})"
        if self.psi >= SIGNIFICANT:
            return "DRIFT"
        return "moderate" if self.psi >= MODERATE else ""


def compare(X: np.ndarray, metadata: dict) -> list:
    """A FeatureDrift per feature: the served rows X against the model's training data."""
    reference_bins = metadata["training_distribution"]
    found = []
    for (name, _, unit), column, feature in zip(FEATURES, X.T, metadata["features"]):
        bins = reference_bins[name]
        shares, training_shares = bin_shares(column, bins["edges"]), np.array(bins["shares"])
        outside = (column < feature["min"]) | (column > feature["max"])
        found.append(FeatureDrift(
            name, unit, len(column), float(column.mean()), float(column.std()),
            feature["mean"], feature["std"], float(outside.mean()),
            psi(shares, training_shares), bins["edges"], shares, training_shares))
    return found


# --- reading LOGS ----------------------------------------------------------------------------

def read_samples(path: Path) -> tuple:
    """(rows as an (n, 4) array, entries skipped) from the sampled lines in LOGS."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from None
    entries = list(_entries(text, path))
    rows = []
    for where, entry in entries:
        payload = _sample_payload(entry)
        if payload is not None:
            rows.append([_measurement(payload, name, where) for name in NAMES])
    if not rows:
        raise InputError(f"{path} holds no prediction samples (entries labelled "
                         f"{LABEL}={VALUE}, which the function writes only when "
                         f"PREDICTION_LOG_SAMPLE is above 0)")
    return np.array(rows, dtype=float), len(entries) - len(rows)


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


def _measurement(payload: dict, name: str, where: str) -> float:
    value = payload.get(name)
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

def render(drifts: list, logs: Path, model: Path, skipped: int, training_rows: int) -> str:
    """The report: a table of every feature, then each feature's bins, training vs served."""
    lines = [
        f"Drift report: {drifts[0].rows} sampled rows from {logs} ({skipped} other log "
        f"entries skipped), against {model} ({training_rows} training rows).",
        f"PSI over {BINS + 2} bins ({BINS} across the training range, one below, one above); "
        f"flag: DRIFT at PSI >= {SIGNIFICANT} (significant), moderate at >= {MODERATE}.",
        "",
        f"{'feature':<13} {'served':>6} {'mean':>7} {'std':>7} {'train mean':>10} "
        f"{'train std':>9} {'outside range':>13} {'PSI':>7}  flag",
    ]
    for d in drifts:
        lines.append(f"{d.name:<13} {d.rows:>6} {d.mean:>7.3f} {d.std:>7.3f} "
                     f"{d.training_mean:>10.3f} {d.training_std:>9.3f} "
                     f"{d.outside:>13.1%} {d.psi:>7.3f}  {d.flag}".rstrip())
    for d in drifts:
        title = f"{d.name} ({d.unit}): share of rows per bin, PSI {d.psi:.3f} {d.flag}"
        lines += ["", title.rstrip(),
                  f"  {'bin':<15} {'training':<{BAR_WIDTH + 8}} served"]
        scale = BAR_WIDTH / max(d.shares.max(), d.training_shares.max())
        for label, t, s in zip(_bin_labels(d.edges), d.training_shares, d.shares):
            lines.append(f"  {label:<15} {t:>6.1%} {'#' * round(t * scale):<{BAR_WIDTH}} "
                         f"{s:>6.1%} {'#' * round(s * scale)}".rstrip())
    return "\n".join(lines)


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
        X, skipped = read_samples(args.logs)
    except InputError as e:
        print(f"drift.py: {e}", file=sys.stderr)
        return USAGE_ERROR
    drifts = compare(X, metadata)
    print(render(drifts, args.logs, args.model, skipped, metadata["training_rows"]))
    return DRIFTED if any(d.flag == "DRIFT" for d in drifts) else 0


if __name__ == "__main__":
    sys.exit(main())
