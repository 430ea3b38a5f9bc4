"""A reference for cold start: the minimal function that lazily joblib.loads the same model."""

from pathlib import Path

import functions_framework

MODEL_PATH = Path(__file__).resolve().parents[2] / "model.joblib"
_model = None


@functions_framework.http
def predict(request):
    global _model
    if _model is None:
        import joblib
        _model = joblib.load(MODEL_PATH)
    body = request.get_json()
    row = [[body["sl"], body["sw"], body["pl"], body["pw"]]]
    return {"prediction": _model.predict(row).tolist()}
