"""What a request asks for once it is parsed: the rows to score and the answer's form.

A protocol's parse builds a Batch and its answer reads it; the request kinds and
BigQuery's reply forms are named here, once, so that both agree on them.
"""

import enum
from typing import NamedTuple

import numpy as np


class Kind(enum.Enum):
    """The request shapes of docs/api.md and each protocol's document."""

    SINGLE = "single"        # one row as an object: {"sl": 5.1, ...}, the tutorial's body
    INSTANCES = "instances"  # a batch: {"instances": [...]}, Vertex AI / KServe V1, or CSV
    CALLS = "calls"          # a BigQuery remote function call: {"calls": [...]}
    INFER = "infer"          # an Open Inference Protocol (V2) inference request
    INVOCATIONS = "invocations"  # an MLflow scoring server request


# What each BigQuery reply holds, chosen by userDefinedContext.output: the label (or, for
# a regressor, the value) under the target's name by default, the class index, or all as JSON.
CLASS, JSON = "class", "json"


class Batch(NamedTuple):
    """Validated rows to predict and how the answer should be shaped."""

    kind: Kind
    X: np.ndarray                  # (rows, features) float64, as rows.matrix() makes it
    probabilities: bool = False    # include per-class probabilities
    output: str | None = None      # BigQuery: CLASS, JSON, or None for the label
    explain: bool = False          # include each feature's contribution (docs/api.md)
    table: bool = False            # answer as a CSV table (Accept: text/csv)
    total: int = 0                 # calls only: rows sent, including NULL rows
    present: list | tuple = ()  # calls only: indices of non-NULL rows
    unknown: list | tuple = ()  # (row, feature, value): unseen categories
    passthrough: tuple = ()        # CSV: (header, rows) of columns the model does not use
    options: object = None         # V2 only: the id and outputs asked for (open_inference)

    @property
    def rows(self) -> int:
        """How many rows the client sent (BigQuery NULL rows included)."""
        return self.total if self.kind is Kind.CALLS else len(self.X)
