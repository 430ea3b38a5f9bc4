"""Reference (e): this project's model.joblib as a BentoML service, one worker.

POST /predict {"inputs": [[sl, sw, pl, pw], ...]} answers the predicted class indices.
"""

from pathlib import Path

import bentoml
import joblib
import numpy as np

MODEL_PATH = Path(__file__).resolve().parents[3] / "model.joblib"


@bentoml.service(workers=1)
class Iris:
    def __init__(self):
        self.model = joblib.load(MODEL_PATH)

    @bentoml.api
    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return self.model.predict(inputs)
