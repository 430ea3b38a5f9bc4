"""The Open Inference Protocol (V2) paths, driven by tritonclient.http as its users run it.

tritonclient is Triton's own HTTP client, which none of us wrote; expected answers
come from scikit-learn itself (joblib.load of model.joblib) computed here.
"""

import hashlib
import json
import threading

import joblib
import numpy as np
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_iris
from tritonclient.utils import InferenceServerException

from iris_predict.model import artifact
from harness import ROOT, FunctionServer

MODEL = "iris"
VERSION = hashlib.sha256((ROOT / "model.joblib").read_bytes()).hexdigest()[:12]
IRIS = load_iris()
# Every training flower, plus flowers outside the training range (still valid requests).
ROWS = np.vstack([IRIS.data, [[3.0, 2.0, 1.0, 1.0], [9.5, 4.8, 8.1, 3.3]]])


@pytest.fixture(scope="module")
def estimator():
    """The shipped model as scikit-learn itself loads it: the oracle."""
    return joblib.load(ROOT / "model.joblib")


@pytest.fixture(scope="module")
def triton_client(live):
    """Triton's HTTP client pointed at the live function."""
    client = triton.InferenceServerClient(url=live.url.removeprefix("http://"))
    yield client
    client.close()


def infer(client, X, datatype: str, binary: bool, outputs=None, **kwargs):
    tensor = triton.InferInput("input-0", list(X.shape), datatype)
    tensor.set_data_from_numpy(X, binary_data=binary)
    requested = None if outputs is None else [
        triton.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    return client.infer(MODEL, [tensor], outputs=requested, **kwargs)


def test_health(triton_client):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL)
    assert triton_client.is_model_ready(MODEL, VERSION)
    assert not triton_client.is_model_ready("other")
    assert not triton_client.is_model_ready(MODEL, "0" * 12)


def test_model_metadata_states_the_feature_order(triton_client):
    meta = triton_client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and meta["versions"] == [VERSION]
    (tensor,) = meta["inputs"]
    assert tensor["shape"] == [-1, 4] and tensor["datatype"] == "FP64"
    # scikit-learn's own column order: "sepal length (cm)" -> sepal_length
    assert tensor["parameters"]["features"].split(",") == [
        name.removesuffix(" (cm)").replace(" ", "_") for name in IRIS.feature_names]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("predict", "INT64", [-1]), ("predict_proba", "FP64", [-1, 3])]
    assert meta["outputs"][1]["parameters"]["classes"].split(",") == list(IRIS.target_names)
    assert triton_client.get_model_metadata(MODEL, VERSION) == meta


def test_server_metadata(triton_client):
    meta = triton_client.get_server_metadata()
    assert meta == {"name": "iris-predict", "version": VERSION,
                    "extensions": ["binary_tensor_data"]}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype, dtype", [("FP32", np.float32), ("FP64", np.float64)])
def test_infer_matches_scikit_learn(triton_client, estimator, datatype, dtype, binary):
    X = ROWS.astype(dtype)
    result = infer(triton_client, X, datatype, binary, ["predict", "predict_proba"],
                   request_id="flowers-1")
    assert result.get_response()["id"] == "flowers-1"
    assert result.get_response()["model_version"] == VERSION
    exact = X.astype(np.float64)  # the client's values, widened exactly
    labels = result.as_numpy("predict")
    assert labels.dtype == np.int64 and labels.tolist() == estimator.predict(exact).tolist()
    proba = result.as_numpy("predict_proba")
    assert proba.dtype == np.float64 and proba.shape == (len(X), 3)
    # The same arithmetic as scikit-learn's (tests/test_fast_path.py proves it bitwise);
    # the tolerance is only for a BLAS that sums a batch in another order.
    np.testing.assert_allclose(proba, estimator.predict_proba(exact), rtol=1e-12, atol=1e-15)


def test_no_outputs_listed_means_both(triton_client, estimator):
    """tritonclient then asks for every output in binary (parameters.binary_data_output)."""
    X = IRIS.data[::10]
    result = infer(triton_client, X, "FP64", binary=True)
    assert result.as_numpy("predict").tolist() == estimator.predict(X).tolist()
    assert result.as_numpy("predict_proba").shape == (len(X), 3)


def test_no_outputs_listed_answers_predict_then_predict_proba(live, estimator):
    """The documented order (docs/open-inference.md), read from the raw JSON: tritonclient
    looks outputs up by name, so it cannot tell."""
    X = IRIS.data[:2]
    body = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                        "data": X.tolist()}]}
    reply = live.call("POST", body, path=f"/v2/models/{MODEL}/infer")
    assert reply.status == 200
    outputs = json.loads(reply.body)["outputs"]
    assert [output["name"] for output in outputs] == ["predict", "predict_proba"]
    assert outputs[0]["data"] == estimator.predict(X).tolist()


def test_outputs_select(triton_client, estimator):
    X = IRIS.data[:3]
    result = infer(triton_client, X, "FP64", binary=False, outputs=["predict_proba"])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_proba"]
    assert result.as_numpy("predict") is None


@pytest.mark.parametrize("case, tensor, outputs, message", [
    ("wrong shape", np.ones((2, 3)), None, "shape must be [N, 4]"),
    ("wrong datatype", np.ones((2, 4), dtype=np.int32), None, "datatype must be FP32 or FP64"),
    ("unknown output", np.ones((2, 4)), ["probabilities"], "outputs[0].name must be one of"),
    ("out of bounds", np.array([[5.1, 3.5, 1.4, 150.0]]), None,
     "inputs[0].data[0][3] (petal_width) must be a number greater than 0"),
    ("not a number", np.array([[5.1, np.nan, 1.4, 0.2]]), None,
     "inputs[0].data[0][1] (sepal_width) must be a number"),
])
def test_a_bad_tensor_is_400_with_a_message(triton_client, case, tensor, outputs, message):
    datatype = {np.dtype(np.int32): "INT32"}.get(tensor.dtype, "FP64")
    with pytest.raises(InferenceServerException) as refused:
        infer(triton_client, tensor, datatype, binary=True, outputs=outputs)
    assert refused.value.status() == "400"
    assert message in refused.value.message()


def test_another_model_is_404(triton_client):
    with pytest.raises(InferenceServerException) as refused:
        triton_client.infer("other", [triton.InferInput("input-0", [1, 4], "FP64")
                                      .set_data_from_numpy(np.ones((1, 4)), binary_data=False)])
    assert refused.value.status() == "404" and "not served here" in refused.value.message()


INFER = f"/v2/models/{MODEL}/infer"
TENSOR = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}

RAW_REFUSALS = {
    # name: (path, body, status, message fragment)
    "data shorter than shape": (INFER, {"inputs": [{**TENSOR, "shape": [2, 4]}]}, 400,
                                "data has 4 values, but its shape [2, 4] needs 8"),
    "nested rows miscounted": (INFER, {"inputs": [{**TENSOR, "data": [[1, 2, 3, 4]] * 2}]}, 400,
                               "data has 2 rows, but its shape says 1"),
    "two inputs": (INFER, {"inputs": [TENSOR, TENSOR]}, 400, "got 2 inputs"),
    "no inputs": (INFER, {"id": "x"}, 400, "inputs must be an array of one tensor"),
    "string values": (INFER, {"inputs": [{**TENSOR, "data": ["5.1", 3.5, 1.4, 0.2]}]}, 400,
                      "inputs[0].data[0][0] (sepal_length) must be a number"),
    "numeric id": (INFER, {"id": 7, "inputs": [TENSOR]}, 400, "id must be a string"),
    "classification output": (INFER, {"inputs": [TENSOR], "outputs": [
        {"name": "predict", "parameters": {"classification": 2}}]}, 400, "unknown field"),
    "too many rows": (INFER, {"inputs": [{**TENSOR, "shape": [10**12, 4]}]}, 413,
                      "more than the limit"),
    "another version": (f"/v2/models/{MODEL}/versions/0/infer", {"inputs": [TENSOR]}, 404,
                        "has no version"),
    "another model": ("/v2/models/mnist/infer", {"inputs": [TENSOR]}, 404, "not served here"),
}


@pytest.mark.parametrize("name", RAW_REFUSALS)
def test_refusals_are_v2_errors(live, name):
    path, body, status, message = RAW_REFUSALS[name]
    reply = live.call("POST", body, path=path)
    assert reply.status == status
    assert list(reply.json()) == ["error"] and message in reply.json()["error"]


def test_binary_data_must_match_its_declared_size(live):
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    values = np.array([5.1, 3.5, 1.4, 0.2], dtype="<f4").tobytes()
    for tail, status in ((values, 200), (values[:12], 400), (values + b"\0" * 4, 400)):
        reply = live.call("POST", header + tail, {"Inference-Header-Content-Length":
                                                  str(len(header))}, path=INFER)
        assert reply.status == status, reply.body


def test_readiness_fails_while_the_model_cannot_load(tmp_path):
    with FunctionServer(env={"MODEL_PATH": str(tmp_path / "gone.joblib")}) as broken:
        client = triton.InferenceServerClient(url=broken.url.removeprefix("http://"))
        assert client.is_server_live()
        assert not client.is_server_ready()
        assert not client.is_model_ready(MODEL)
        reply = broken.call("GET", path="/v2/health/ready")
        assert reply.status == 503 and "unavailable" in reply.json()["error"]
        client.close()


def test_readiness_answers_at_once_while_the_model_loads(client, fresh_model, monkeypatch):
    """A probe never waits for the load: 503 while it runs, 200 once it is done."""
    release = threading.Event()
    real_load = artifact.load

    def slow_load(path):
        release.wait(timeout=30)
        return real_load(path)

    monkeypatch.setattr(artifact, "load", slow_load)
    for path in ("/v2/health/ready", f"/v2/models/{MODEL}/ready", "/ping", "/health"):
        reply = client.get(path)
        assert reply.status_code == 503 and "still loading" in json.dumps(reply.json())
    assert client.get("/v2/health/live").status_code == 200
    release.set()
    client.get("/")  # waits for the load (GET / metadata waits; probes do not)
    assert client.get("/v2/health/ready").status_code == 200
    assert fresh_model.loads == 1
