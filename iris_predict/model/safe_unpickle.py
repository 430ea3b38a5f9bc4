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
resolves only the globals that the estimators below name when joblib stores
them (found by recording find_class while loading real pickles of each), and
refuses anything else before it is imported or called, with an error naming
the refused global. The classes NumPy computes (linear models and their
imputers, scalers and encoders: estimators.STAND_INS; trees, forests and
gradient boosting: trees.STAND_INS; XGBoost and LightGBM models converted by
train.py: boosters.STAND_INS) resolve to plain stand-ins, so serving them
never imports scikit-learn. A short list of other common estimators
(FALLBACK) is served by scikit-learn itself: a pickle that names one raises
NeedsScikitLearn when read with stand-ins, and artifact.py reads it again
with stand_ins=False, where every allowed global is imported for real.
joblib stores numpy arrays as a NumpyArrayWrapper followed by raw bytes; the
unpickler here reads that format itself, as joblib's NumpyUnpickler does (a
BUILD that leaves a wrapper on the stack is followed by the array's bytes), so
serving never imports joblib (~17 ms of a cold start, docs/performance.md).
An array's bytes are checked to be in the file before anything is allocated
for them, and the nested pickles of object arrays (a OneHotEncoder's
categories) go through the same `find_class`, so their contents are checked
too. Only plain (uncompressed) joblib files of the current format are read:
the older format keeps arrays in companion files and is refused.

What it does not cover: numpy.dtype and numpy's array and scalar
constructors still run their own reconstruction code, the fallback
estimators' Cython classes run their own __setstate__, and a file may still
ask numpy for a huge array; the digest check is what binds the bytes to the
training run. Serving another estimator means adding its classes here, on
purpose, after recording what its pickles name.
"""

import difflib
import io
import pickle
import sys

import numpy as np

from iris_predict.model import boosters, estimators, trees

STAND_INS = {**estimators.STAND_INS, **trees.STAND_INS, **boosters.STAND_INS}

# numpy's, joblib's and Python's globals that the pickles of the estimators here name:
# arrays, dtypes, scalars (a Ridge's intercept_), slices (a ColumnTransformer's
# output_indices_), random states (ensembles), object arrays (category names).
PLAIN = {
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy", "float64"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "slice"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
}
# The common estimators that only scikit-learn's own predict and predict_proba serve
# (docs/model.md), with the classes their pickles name.
FALLBACK = {
    ("sklearn.neighbors._classification", "KNeighborsClassifier"),
    ("sklearn.neighbors._regression", "KNeighborsRegressor"),
    ("sklearn.neighbors._kd_tree", "KDTree"),
    ("sklearn.neighbors._kd_tree", "newObj"),
    ("sklearn.neighbors._ball_tree", "BallTree"),
    ("sklearn.neighbors._ball_tree", "newObj"),
    ("sklearn.metrics._dist_metrics", "EuclideanDistance64"),
    ("sklearn.metrics._dist_metrics", "newObj"),
    ("sklearn.svm._classes", "SVC"),
    ("sklearn.svm._classes", "SVR"),
}
ALLOWED = PLAIN | set(STAND_INS) | FALLBACK
# Allowed classes that are parts of an estimator, never one a user fits.
PARTS = {"Tree", "KDTree", "BallTree", "EuclideanDistance64", "TreePredictor", "Interval",
         "Booster"}
CLASSIFIERS = ("Classifier", "SVC", "LogisticRegression")
REGRESSORS = ("Regressor", "Regression", "SVR", "Ridge", "Lasso", "ElasticNet")
SUGGESTED = 3


def nearest_served(module: str, name: str) -> list:
    """The served classes most like a refused one: of its scikit-learn subpackage, or else a
    classifier for a classifier (a regressor for a regressor), nearest by name first; []
    for a class that looks like neither (os.system)."""
    package, kind = tuple(module.split(".")[:2]), _kind(name)
    served = {(tuple(m.split(".")[:2]), n) for m, n in ALLOWED - PLAIN
              if m.startswith("sklearn.") and not m.startswith("sklearn._")
              and n[:1].isupper() and n not in PARTS}
    near = [(found, n) for found, n in served
            if found == package and module.startswith("sklearn.")
            or kind is not None and _kind(n) == kind]
    near.sort(key=lambda f: (f[0] != package, _kind(f[1]) != kind,
                             -difflib.SequenceMatcher(None, f[1], name).ratio(), f[1]))
    return [n for _, n in near[:SUGGESTED]]


def _kind(name: str) -> str | None:
    return ("classifier" if name.endswith(CLASSIFIERS) else
            "regressor" if name.endswith(REGRESSORS) else None)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allowlist."""


class NeedsScikitLearn(Exception):
    """The pickle names an allowed class that has no stand-in: read it with scikit-learn."""


class ArrayWrapper:
    """joblib's NumpyArrayWrapper: the dtype, shape and order of the array whose bytes
    follow it in the file (after a byte of padding length and the padding, which aligns
    them)."""

    def read(self, unpickler) -> np.ndarray:
        """The array, from the bytes after the wrapper, in the host's byte order."""
        file = unpickler.file
        dtype, shape = self.dtype, tuple(int(n) for n in self.shape)
        if dtype.hasobject:  # a nested pickle of the objects, read by the same allowlist
            inner = pickle._Unpickler(file)
            inner.find_class = unpickler.find_class
            array = inner.load()
        else:
            if getattr(self, "numpy_array_alignment_bytes", None) is not None:
                file.read(int.from_bytes(file.read(1), "little"))
            size = dtype.itemsize * int(np.prod(shape, dtype=object))
            if size > unpickler.size - file.tell():
                raise pickle.UnpicklingError("the file ends inside an array")
            data = bytearray(size)
            file.readinto(data)
            array = np.frombuffer(data, dtype=dtype)
            array = (array.reshape(shape[::-1]).transpose() if self.order == "F"
                     else array.reshape(shape))
        if array.dtype.byteorder == NON_NATIVE:
            array = array.byteswap().view(array.dtype.newbyteorder("="))
        return array


NON_NATIVE = ">" if sys.byteorder == "little" else "<"
WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")


class AllowlistUnpickler(pickle._Unpickler):
    """Python's own unpickler (the C one has no BUILD to hook) reading joblib's format,
    restricted to ALLOWED globals, with stand-ins or without."""

    dispatch = pickle._Unpickler.dispatch.copy()

    def __init__(self, data: bytes, stand_ins: bool):
        self.file, self.size = io.BytesIO(data), len(data)
        super().__init__(self.file)
        self.stand_ins = stand_ins

    def load_build(self):
        super().load_build()
        if isinstance(self.stack[-1], ArrayWrapper):
            self.stack.append(self.stack.pop().read(self))

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            nearest = nearest_served(module, name)
            raise RefusedGlobal(f"refused global {module}.{name}: not in the allowlist" + (
                f"; the nearest served: {', '.join(nearest)}" if nearest else ""))
        if (module, name) == WRAPPER:
            return ArrayWrapper
        if self.stand_ins:
            if (module, name) in STAND_INS:
                return STAND_INS[module, name]
            if (module, name) in FALLBACK:
                raise NeedsScikitLearn(f"{module}.{name}")
        return super().find_class(module, name)


def loads(data: bytes, stand_ins: bool = True):
    """The object pickled (by joblib.dump, uncompressed) in `data`: with stand-ins for
    estimators.STAND_INS (NeedsScikitLearn if it names a FALLBACK class), or with
    scikit-learn's own classes."""
    return AllowlistUnpickler(data, stand_ins).load()
