"""What a request asks for once it is parsed: the rows to score and the answer's form.

parsing builds a Batch and answers reads it; the request kinds and BigQuery's
reply forms are named here, once, so that both agree on them.
"""

import enum
from dataclasses import dataclass, field

import numpy as np


class Kind(enum.Enum):
    """The request shapes of docs/api.md and each protocol's document."""

    SINGLE = "single"        # one flower: {"sl": 5.1, ...}, the tutorial's body
    INSTANCES = "instances"  # a batch: {"instances": [...]}, Vertex AI / KServe V1, or CSV
    CALLS = "calls"          # a BigQuery remote function call: {"calls": [...]}
    INFER = "infer"          # an Open Inference Protocol (V2) inference request
    INVOCATIONS = "invocations"  # an MLflow scoring server request


class BigQueryOutput(enum.Enum):
    """What each BigQuery reply holds, chosen by userDefinedContext.output."""

    SPECIES = "species"
    CLASS = "class"
    JSON = "json"


@dataclass(slots=True)
class Batch:
    """Validated rows to predict and how the answer should be shaped."""

    kind: Kind
    X: np.ndarray                  # (rows, 4) float64, every value validated
    probabilities: bool = False    # include per-class probabilities
    output: BigQueryOutput = BigQueryOutput.SPECIES
    explain: bool = False          # include each feature's contribution (docs/api.md)
    table: bool = False            # answer as a CSV table (Accept: text/csv)
    total: int = 0                 # calls only: rows sent, including NULL rows
    present: list = field(default_factory=list)  # calls only: indices of non-NULL rows
    options: object = None         # V2 only: the id and outputs asked for (open_inference)

    @property
    def rows(self) -> int:
        """How many rows the client sent (BigQuery NULL rows included)."""
        return self.total if self.kind is Kind.CALLS else len(self.X)
