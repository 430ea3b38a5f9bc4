"""Unpickle model.joblib through an allowlist of the globals our estimator needs.

The threat: a pickle is a program. Its GLOBAL/STACK_GLOBAL opcodes import any
callable by name (os.system, builtins.exec, subprocess.Popen, ...) and REDUCE
calls it with arguments from the file, so `joblib.load` on a file an attacker
could write (a tampered bundle, a MODEL_PATH pointing elsewhere, a swapped
artifact in CI) runs the attacker's code with the function's identity and
credentials. The SHA-256 check in artifact.py stops a file that differs from
the one recorded at training time, but the digest and the file travel
together, so whoever can replace one can usually replace both.

The design: every global a pickle names passes through `find_class`; ours
resolves only the handful that a fitted LogisticRegression stored by joblib
actually names, and refuses anything else before it is imported or called,
with an error naming the refused global. The estimator class itself resolves
to a plain stand-in (logistic.py), so serving never imports scikit-learn;
an allowed global mapped to None is imported for real, which is how another
estimator falls back to scikit-learn. joblib stores numpy arrays as a
NumpyArrayWrapper followed by raw bytes, so we subclass joblib's own
NumpyUnpickler (which swaps the wrappers for arrays) instead of plain
pickle.Unpickler; joblib 1.6 routes the nested pickles of object arrays
through the same `find_class`. Only plain (uncompressed) joblib files of the
current format are read: the older format keeps arrays in companion files and
is refused.

What it does not cover: numpy.dtype still runs its own reconstruction code,
and a file may still ask numpy for a huge array; the digest check is what
binds the bytes to the training run. Retraining with another estimator means
adding its classes here, on purpose.
"""

import io
import pickle

from joblib.numpy_pickle import NumpyUnpickler

from iris_predict.model.logistic import LogisticRegressionState

# (module, name) of every global the shipped model's pickle names, found by
# recording find_class while loading the artifact train.py writes, and what it
# resolves to: a stand-in, or None for the real global.
ALLOWED = {
    ("sklearn.linear_model._logistic", "LogisticRegression"): LogisticRegressionState,
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): None,
    ("numpy", "ndarray"): None,
    ("numpy", "dtype"): None,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allowlist."""


class AllowlistUnpickler(NumpyUnpickler):
    """joblib's unpickler, restricted to ALLOWED globals."""

    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise RefusedGlobal(f"refused global {module}.{name}: not in the allowlist")
        return ALLOWED[module, name] or super().find_class(module, name)


def loads(data: bytes):
    """The object pickled (by joblib.dump, uncompressed) in `data`."""
    return AllowlistUnpickler("", io.BytesIO(data), ensure_native_byte_order=True).load()
