"""Which answered rows to log for drift reports: a random PREDICTION_LOG_SAMPLE share of them.

Each row is drawn on its own (a batch's rows in one vectorised draw), so a report sees
served rows, not requests: a 10 000-row batch counts 10 000 times. At the default 0
nothing is drawn and nothing is logged. docs/drift.md says what a line holds and why
turning this on is the owner's choice.
"""

import os

import numpy as np

from iris_predict import logs, settings
from iris_predict.model import served as model
from iris_predict.protocols.answers import PROBABILITY_DIGITS
from iris_predict.protocols.batch import Batch

RATE = settings.PREDICTION_LOG_SAMPLE
# PCG64, seeded from the operating system; only made when sampling is on, since
# numpy.random costs every instance's cold start ~5 ms to import.
_rng = np.random.default_rng() if RATE else None


def log(batch: Batch, trace_header: str | None = None):
    """Log a random RATE share of the batch's rows, after they were answered."""
    if not RATE:
        return
    if RATE == 1:
        X, unknown = batch.X, batch.unknown
    else:
        drawn = np.flatnonzero(_rng.random(len(batch.X)) < RATE)
        X, at = batch.X[drawn], {row: i for i, row in enumerate(drawn.tolist())}
        unknown = [(at[row], j, text) for row, j, text in batch.unknown if row in at]
    if not len(X):
        return
    served = model.get()  # loaded: it has just answered these rows
    predicted, probabilities = served.predict(X, True, unknown)
    if probabilities is not None:  # rounded as the answer rounds them: what the client was told
        probabilities = np.round(probabilities, PROBABILITY_DIGITS)
    logs.predictions(served.rows(X, unknown), predicted, probabilities, served.signature,
                     trace_header)


def _reseed():
    """A forked worker draws its own rows, not a copy of its parent's sequence."""
    global _rng
    _rng = np.random.default_rng()


if RATE:
    os.register_at_fork(after_in_child=_reseed)
