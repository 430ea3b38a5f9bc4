"""Request bodies of many rows: random flowers inside the training ranges."""

import json

import numpy as np

LOW = [4.3, 2.0, 1.0, 0.1]   # the training minimum of each feature (model.json)
HIGH = [7.9, 4.4, 6.9, 2.5]  # and its maximum


def batch_bodies(rows: int) -> dict:
    """{"instances": body, "calls": body} with the same `rows` flowers, as JSON bytes."""
    rng = np.random.default_rng(rows)
    X = np.round(rng.uniform(LOW, HIGH, size=(rows, 4)), 1).tolist()
    return {"instances": json.dumps({"instances": X}).encode(),
            "calls": json.dumps({"calls": X}).encode()}
