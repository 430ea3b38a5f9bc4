"""Only the shipped model ever loads: poisoned, damaged and mismatched artifacts fail safe."""

import hashlib
import json
import os
import pickle
import re
import shutil

import joblib
import numpy as np
import pytest

from iris_predict.model import artifact, safe_unpickle
from iris_predict import settings
from iris_predict.model.artifact import ModelUnavailable
from harness import FunctionServer, children

TUTORIAL = {"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}


class Payload:
    """Pickles as a call to `function(*args)`, run by whoever unpickles it."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _touch_with_exec(sentinel):
    return Payload(exec, f"open({str(sentinel)!r}, 'w').close()")


def _touch_with_system(sentinel):
    return Payload(os.system, f"touch '{sentinel}'")


def _poison_attribute(estimator, sentinel, tmp_path):
    estimator.poison_ = _touch_with_system(sentinel)


def _poison_object_array(estimator, sentinel, tmp_path):
    # joblib writes object arrays as a nested pickle after the wrapper.
    estimator.classes_ = np.array([_touch_with_exec(sentinel)], dtype=object)


def _poison_joblib_gadget(estimator, sentinel, tmp_path):
    # A function from an "allowed-looking" module that unpickles another file,
    # unrestricted: why the allowlist names classes, not modules.
    inner = tmp_path / "inner.joblib"
    joblib.dump(_touch_with_exec(sentinel), inner)
    estimator.poison_ = Payload(joblib.load, str(inner))


def _poison_replace_model(estimator, sentinel, tmp_path):
    return _touch_with_exec(sentinel)


POISONS = {
    "os.system in an attribute": (_poison_attribute, "posix.system"),
    # joblib routes an object array's nested pickle through the allowlist: refused before exec.
    "exec inside an object array": (_poison_object_array, "builtins.exec"),
    "joblib.load of a second file": (_poison_joblib_gadget, "joblib.numpy_pickle.load"),
    "the whole file is exec": (_poison_replace_model, "builtins.exec"),
}


def _copy_bundle(tmp_path):
    model = tmp_path / "model.joblib"
    shutil.copy(settings.MODEL_PATH, model)
    shutil.copy(settings.MODEL_PATH.with_suffix(".json"), model.with_suffix(".json"))
    return model


def _record_digest(model):
    """Rewrite the sidecar's SHA-256 to match the file, as an attacker holding both would."""
    sidecar = model.with_suffix(".json")
    metadata = json.loads(sidecar.read_text())
    metadata["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(metadata))


def _poisoned(tmp_path, poison):
    """A bundle whose model pickle runs code, with a digest that matches it."""
    model, sentinel = _copy_bundle(tmp_path), tmp_path / "PWNED"
    estimator = joblib.load(settings.MODEL_PATH)
    replaced = poison(estimator, sentinel, tmp_path)
    joblib.dump(replaced if replaced is not None else estimator, model)
    _record_digest(model)
    return model, sentinel


@pytest.mark.parametrize("case", POISONS)
def test_the_poison_works_with_plain_joblib(case, tmp_path):
    """The control: without the allowlist, loading these files runs the payload."""
    model, sentinel = _poisoned(tmp_path, POISONS[case][0])
    joblib.load(model)
    assert sentinel.exists()


@pytest.mark.parametrize("case", POISONS)
def test_poisoned_model_is_refused_naming_the_global(case, tmp_path):
    poison, refused = POISONS[case]
    model, sentinel = _poisoned(tmp_path, poison)
    with pytest.raises(ModelUnavailable, match=f"refused global {re.escape(refused)}") as e:
        artifact.load(model)
    assert not sentinel.exists()
    assert "nearest served" not in e.value.message  # no estimator to suggest instead


def test_poisoned_model_gets_503_from_the_live_function(tmp_path):
    model, sentinel = _poisoned(tmp_path, _poison_attribute)
    with FunctionServer(env={"MODEL_PATH": str(model)}) as server:
        for method, body in (("POST", TUTORIAL), ("GET", None), ("POST", TUTORIAL)):
            reply = server.call(method, body)
            assert reply.status == 503
            assert reply.headers["content-type"] == "application/json"
            assert "unavailable" in reply.json()["error"]
        output = server.output()
    assert not sentinel.exists()
    assert output.count("model unavailable") == 1
    assert "refused global posix.system" in output


def _truncate(model):
    model.write_bytes(model.read_bytes()[:300])


def _cut_inside_an_array(model):
    """The file ends in the middle of intercept_'s bytes: a header promising more than is
    there."""
    data = model.read_bytes()
    at = data.index(joblib.load(model).intercept_.tobytes())
    model.write_bytes(data[:at + 8])


def _other_sklearn_inside(model):
    """The pickle's own _sklearn_version differs from the sidecar's (same length bytes)."""
    import sklearn
    data = model.read_bytes()
    assert data.count(sklearn.__version__.encode()) == 1
    model.write_bytes(data.replace(sklearn.__version__.encode(), b"0" * len(sklearn.__version__)))


def _other_sklearn_in_sidecar(model):
    sidecar = model.with_suffix(".json")
    metadata = json.loads(sidecar.read_text())
    metadata["versions"]["scikit-learn"] = "0.24.2"
    sidecar.write_text(json.dumps(metadata))


DAMAGED = {
    # (damage(model path), record the new digest?, words in the logged cause)
    "missing file": (lambda m: m.unlink(), False, "cannot be read"),
    "truncated, digest stale": (_truncate, False, "SHA-256"),
    "truncated, digest rewritten": (_truncate, True, "cannot be loaded"),
    "cut inside an array": (_cut_inside_an_array, True, "the file ends inside an array"),
    "sidecar names another sklearn": (_other_sklearn_in_sidecar, False, "0.24.2"),
    "pickle from another sklearn": (_other_sklearn_inside, True, "pickled by scikit-learn 00000"),
}


def _damaged(tmp_path, case):
    damage, rewrite_digest, _ = DAMAGED[case]
    model = _copy_bundle(tmp_path)
    damage(model)
    if rewrite_digest:
        _record_digest(model)
    return model


@pytest.mark.parametrize("case", DAMAGED)
def test_damaged_model_fails_with_a_clear_cause(case, tmp_path):
    with pytest.raises(ModelUnavailable, match=re.escape(DAMAGED[case][2])):
        artifact.load(_damaged(tmp_path, case))


# Over the live server, the cases that reach the unpickler or never reach it at all.
@pytest.mark.parametrize("case", ["missing file", "truncated, digest rewritten",
                                  "pickle from another sklearn"])
def test_damaged_model_is_503_logged_once_without_crash_loop(case, tmp_path):
    with FunctionServer(env={"MODEL_PATH": str(_damaged(tmp_path, case))}) as server:
        workers = []
        for _ in range(5):
            reply = server.call("POST", TUTORIAL)
            assert reply.status == 503 and "unavailable" in reply.json()["error"]
            workers.append(children(server.process.pid))
        assert server.process.poll() is None
        assert len(workers[0]) == 1 and workers == workers[:1] * 5  # never restarted
        logged = [json.loads(line) for line in server.output().splitlines()
                  if "model unavailable" in line]
    assert len(logged) == 1
    assert logged[0]["severity"] == "ERROR" and DAMAGED[case][2] in logged[0]["message"]


@pytest.mark.parametrize("stand_ins", [True, False], ids=["stand-ins", "scikit-learn's"])
def test_an_array_of_negative_shape_is_refused_before_it_is_read(stand_ins):
    """A wrapper whose shape multiplies out positive from negative sizes, as no array's
    does: refused, whichever unpickler reads it (the C one with stand-ins)."""
    from joblib.numpy_pickle import NumpyArrayWrapper
    wrapper = NumpyArrayWrapper(np.ndarray, (-2, -3), "C", np.dtype(np.float64),
                                numpy_array_alignment_bytes=None)
    with pytest.raises(pickle.UnpicklingError, match=r"an array of shape \(-2, -3\)"):
        safe_unpickle.loads(pickle.dumps(wrapper, protocol=5) + bytes(48), stand_ins)


def test_stand_ins_read_the_arrays_in_place(tmp_path):
    """With stand-ins, a forest's arrays are read-only views of the file's bytes (no second
    copy at the load's peak), equal to scikit-learn's."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    joblib.dump(forest, tmp_path / "forest.joblib")
    data = (tmp_path / "forest.joblib").read_bytes()
    loaded = safe_unpickle.loads(data)
    for fitted, read in zip(forest.estimators_, loaded.estimators_):
        state = read.tree_.__dict__
        assert not state["nodes"].flags.writeable
        assert np.shares_memory(state["nodes"], np.frombuffer(data, np.uint8))
        np.testing.assert_array_equal(state["nodes"], fitted.tree_.__getstate__()["nodes"])
        np.testing.assert_array_equal(state["values"], fitted.tree_.value)
    own = safe_unpickle.loads(data, stand_ins=False)  # scikit-learn's, with copies
    np.testing.assert_array_equal(own.predict_proba(X), forest.predict_proba(X))
