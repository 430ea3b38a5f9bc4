"""A fitted LogisticRegression's state, read from its pickle without scikit-learn.

Importing scikit-learn costs about 0.9 s and 100 MB of memory, nearly all of an
instance's cold start, and the request path never calls it: Model.predict does
LogisticRegression's arithmetic with NumPy. So the unpickler builds this plain
object in its place (safe_unpickle.ALLOWED). A pickle rebuilds an estimator by
creating an empty instance and handing it the attributes `fit` set, so this
class only has to keep them.
"""


class LogisticRegressionState:
    """The attributes of a pickled sklearn.linear_model.LogisticRegression."""

    def __setstate__(self, state: dict):
        self.__dict__.update(state)
        # BaseEstimator.__getstate__ records the version that pickled the estimator.
        self.sklearn_version = state.get("_sklearn_version")

    def __repr__(self) -> str:
        return "LogisticRegression state (loaded without scikit-learn)"
