"""Runtime configuration, read from the environment once, at import.

Every variable has a default and a row in the README's Configuration table.
A malformed value stops the instance at start-up with a clear message rather
than serving with a setting nobody asked for.
"""

import math
import os
from pathlib import Path

BUNDLE_DIR = Path(__file__).resolve().parent.parent


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SystemExit(f"{name} must be a positive integer, got {raw!r}")
    return value


def _fraction(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails this too
        raise SystemExit(f"{name} must be a number from 0 to 1, got {raw!r}")
    return value


# The serialized model; its sidecar metadata sits beside it as <name>.json.
MODEL_PATH = Path(os.environ.get("MODEL_PATH", BUNDLE_DIR / "model.joblib"))

# Comma-separated origins allowed to call from a browser; "*" allows any.
ALLOWED_ORIGINS = frozenset(
    origin.strip().rstrip("/")
    for origin in os.environ.get("ALLOWED_ORIGINS", "*").split(",")
    if origin.strip()
)

# Larger bodies are refused with 413 before they are parsed.
MAX_BODY_BYTES = _positive_int("MAX_BODY_BYTES", 2 * 1024 * 1024)

# Rows accepted in one "instances" or BigQuery "calls" batch.
MAX_BATCH_ROWS = _positive_int("MAX_BATCH_ROWS", 10_000)

# Rows explained in one request; more get 413. Explaining costs far more than predicting (a
# 100-tree depth-10 forest takes ~13 ms a row, docs/performance.md), so one request cannot
# hold a CPU for long.
EXPLAIN_MAX_ROWS = _positive_int("EXPLAIN_MAX_ROWS", 100)

# Threads a tree model's batch of more than 256 rows is computed on (forest.py), as XGBoost
# and HistGradientBoosting default theirs: every CPU the instance may run on.
TREE_THREADS = _positive_int("TREE_THREADS", len(os.sched_getaffinity(0))
                             if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)  # macOS

# Seconds a connection may take to send a request's headers before it is closed with
# 408; slow-header (slowloris) clients cannot hold connections longer.
HEADER_TIMEOUT_SECONDS = _positive_int("HEADER_TIMEOUT_SECONDS", 10)

# Seconds a request's body may take to arrive, from the end of its headers, before the
# request gets a JSON 408 and its connection is closed; slow-body clients cannot hold
# connections longer. 30 s lets the largest body (MAX_BODY_BYTES, 2 MiB) arrive at about
# 560 kbit/s and still leaves half of Cloud Run's 60 s request timeout (deploy.sh
# --timeout) for the answer, so a late body is told why instead of meeting a bare 504.
BODY_TIMEOUT_SECONDS = _positive_int("BODY_TIMEOUT_SECONDS", 30)

# The Google Cloud project, so request log lines link to their trace
# (projects/<project>/traces/<id>); empty leaves the trace link out.
GOOGLE_CLOUD_PROJECT = os.environ.get("GOOGLE_CLOUD_PROJECT", "").strip()

# The share of answered rows logged with their measurements, class and probabilities, for
# drift reports (docs/drift.md). 0 logs none: those are clients' data, the owner's to opt in.
PREDICTION_LOG_SAMPLE = _fraction("PREDICTION_LOG_SAMPLE", 0.0)
