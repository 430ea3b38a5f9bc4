"""Save this project's model.joblib as an MLflow model, in MLflow's venv: save_model.py OUT_DIR."""

import sys
from pathlib import Path

import joblib
import mlflow.sklearn

MODEL_PATH = Path(__file__).resolve().parents[3] / "model.joblib"

if __name__ == "__main__":
    mlflow.sklearn.save_model(joblib.load(MODEL_PATH), sys.argv[1])
