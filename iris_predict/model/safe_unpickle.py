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
unpickler here reads that format itself, as joblib's NumpyUnpickler does (the
wrapper's BUILD is followed by the array's bytes), so serving never imports
joblib (~17 ms of a cold start, docs/performance.md). With stand-ins it is
Python's C unpickler (a third of the Python one's time: a HistGradientBoosting
of 300 trees, 21 -> 5 ms), whose arrays are read-only views of the file's bytes
(no second copy of a forest at its load's peak); for scikit-learn's own classes
it is the Python one, with copies they may write to. An array's bytes are
checked to be in the file before anything is allocated for them, and the
nested pickles of object arrays (a OneHotEncoder's categories) go through the
same `find_class`, so their contents are checked too. Only plain
(uncompressed) joblib files of the current format are read: the older format
keeps arrays in companion files and is refused.

What it does not cover: numpy.dtype and numpy's array and scalar
constructors still run their own reconstruction code (random states do only
without stand-ins), the fallback
estimators' Cython classes run their own __setstate__, and a file may still
ask numpy for a huge array; the digest check is what binds the bytes to the
training run. Serving another estimator means adding its classes here, on
purpose, after recording what its pickles name.
"""

import difflib
import functools
import io
import math
import pickle
import sys

import numpy as np

from iris_predict.model import estimators

# A random state (ensembles keep theirs) is never read by a stand-in: with stand-ins its
# globals are RandomState, which runs none of NumPy's code and keeps nothing.
RANDOM = {
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
}
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
    *RANDOM,
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
EAGER = PLAIN | FALLBACK | set(estimators.STAND_INS)


@functools.cache
def stand_ins() -> dict:
    """Every stand-in, {(module, name): what it resolves to}. The tree families' modules
    are imported on the first call, when a pickle names a global the linear models'
    allowlist (EAGER) lacks: so loading a linear model imports none of the tree
    evaluator (~5 ms of its cold start, docs/performance.md)."""
    from iris_predict.model import boosters, trees  # noqa: PLC0415 (on purpose, above)
    return {**estimators.STAND_INS, **trees.STAND_INS, **boosters.STAND_INS}


def allowed() -> set:
    """Every global a pickle may name."""
    return EAGER | set(stand_ins())
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
    served = {(tuple(m.split(".")[:2]), n) for m, n in allowed() - PLAIN
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


class RandomState:
    """A random state read with stand-ins: its arguments and state are dropped."""

    def __init__(self, *args):
        pass

    def __setstate__(self, state):
        pass


class ArrayWrapper:
    """joblib's NumpyArrayWrapper: the dtype, shape and order of the array whose bytes
    follow it in the file (after a byte of padding length and the padding, which aligns
    them). Its BUILD reads them: joblib ends the pickle's frame right after that BUILD and
    writes the bytes there, so the file is at them while its state is set. Each load makes
    a subclass whose `reader` is that load's Reader."""

    reader: "Reader"

    def __setstate__(self, state: dict):
        self.array = self.reader.array(state["dtype"], state["shape"], state["order"],
                                       state.get("numpy_array_alignment_bytes"))


class Reader:
    """A joblib file's bytes: the arrays in it, as views of them (`views`, read-only; the
    stand-ins only read) or copies (scikit-learn's own classes may write to theirs)."""

    def __init__(self, data: bytes, views: bool, find_class):
        self.data, self.file = data, io.BytesIO(data)
        self.views, self.find_class = views, find_class

    def array(self, dtype: np.dtype, shape, order: str, alignment) -> np.ndarray:
        """The array whose bytes are next in the file, in the host's byte order."""
        file, shape = self.file, tuple(int(n) for n in shape)
        if dtype.hasobject:  # a nested pickle of the objects, read by the same allowlist
            array = _Nested(file, self.find_class).load()
        else:
            if alignment is not None:
                file.seek(file.read(1)[0], io.SEEK_CUR)
            start, count = file.tell(), math.prod(shape)
            size = dtype.itemsize * count
            if min(shape, default=0) < 0:
                raise pickle.UnpicklingError(f"an array of shape {shape}")
            if size > len(self.data) - start:
                raise pickle.UnpicklingError("the file ends inside an array")
            file.seek(size, io.SEEK_CUR)
            array = (np.frombuffer(self.data, dtype, count, offset=start) if self.views else
                     np.frombuffer(bytearray(memoryview(self.data)[start:start + size]), dtype))
            array = (array.reshape(shape[::-1]).transpose() if order == "F"
                     else array.reshape(shape))
        if array.dtype.byteorder == NON_NATIVE:
            array = array.byteswap().view(array.dtype.newbyteorder("="))
        return array


class _Nested(pickle.Unpickler):
    def __init__(self, file, find_class):
        super().__init__(file)
        self.allowed = find_class

    def find_class(self, module, name):
        return self.allowed(module, name)


NON_NATIVE = ">" if sys.byteorder == "little" else "<"
WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")


class _Allowlist:
    """find_class restricted to the allowed globals, with stand-ins or without."""

    def __init__(self, data: bytes, stand_ins: bool):
        reader = Reader(data, views=stand_ins, find_class=self.find_class)
        super().__init__(reader.file)
        self.stand_ins = stand_ins
        self.wrapper = type("ArrayWrapper", (ArrayWrapper,), {"reader": reader})

    def find_class(self, module, name):
        key = (module, name)
        stand_in = estimators.STAND_INS.get(key) or (
            None if key in EAGER else stand_ins().get(key))
        if stand_in is None and key not in EAGER:
            nearest = nearest_served(module, name)
            raise RefusedGlobal(f"refused global {module}.{name}: not in the allowlist" + (
                f"; the nearest served: {', '.join(nearest)}" if nearest else ""))
        if key == WRAPPER:
            return self.wrapper
        if self.stand_ins:
            if stand_in is not None:
                return stand_in
            if key in FALLBACK:
                raise NeedsScikitLearn(f"{module}.{name}")
            if key in RANDOM:
                return RandomState
        return super().find_class(module, name)


class StandInUnpickler(_Allowlist, pickle.Unpickler):
    """Python's C unpickler, three times as fast as its Python one (docs/performance.md):
    it has no BUILD to hook, so each array stays in its wrapper until load() swaps them
    through the plain containers and stand-ins, the only objects that hold them here."""

    def load(self):
        return _unwrapped(super().load(), self.wrapper, {})


class OwnClassesUnpickler(_Allowlist, pickle._Unpickler):
    """Python's own unpickler, whose BUILD swaps a wrapper for its array at once: the
    classes of scikit-learn's own estimators (a KDTree, in C) must get arrays from their
    state, never a wrapper."""

    dispatch = pickle._Unpickler.dispatch.copy()

    def load_build(self):
        super().load_build()
        if isinstance(self.stack[-1], self.wrapper):
            self.stack.append(self.stack.pop().array)

    dispatch[pickle.BUILD[0]] = load_build


CONTAINERS = (list, dict, tuple)


def _unwrapped(value, wrapper: type, done: dict):
    """value with every wrapper in it replaced by its array (lists, dicts, object arrays
    and stand-ins changed in place, tuples made anew); `done`: what each object visited
    became. With stand-ins, an object with a __dict__ is a stand-in (or a RandomState):
    the allowlist lets no other class be made."""
    kind = type(value)
    if kind is wrapper:
        return value.array
    if id(value) in done:
        return done[id(value)]
    if kind is tuple:
        done[id(value)] = tuple(_unwrapped(v, wrapper, done) for v in value)
        return done[id(value)]
    if kind is list:
        done[id(value)] = value
        value[:] = [_unwrapped(v, wrapper, done) for v in value]
    elif kind is np.ndarray:
        if value.dtype.hasobject:  # GradientBoosting's trees
            done[id(value)] = value
            for i, v in enumerate(value.flat):
                value.flat[i] = _unwrapped(v, wrapper, done)
    else:
        items = value if kind is dict else None if isinstance(value, type) else getattr(
            value, "__dict__", None)
        if items is not None:
            done[id(value)] = value
            for key, v in items.items():
                items[key] = _unwrapped(v, wrapper, done)
    return value


def loads(data: bytes, stand_ins: bool = True):
    """The object pickled (by joblib.dump, uncompressed) in `data`: with stand-ins for
    estimators.STAND_INS (NeedsScikitLearn if it names a FALLBACK class), or with
    scikit-learn's own classes."""
    return (StandInUnpickler if stand_ins else OwnClassesUnpickler)(data, stand_ins).load()
