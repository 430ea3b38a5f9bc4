import functions_framework
import pytest
from starlette.testclient import TestClient

from tests.fake_gcp import FakeGoogleCloud
from tests.rehearsal import gcloud_env
from harness import ROOT, FunctionServer


@pytest.fixture(scope="session")
def app():
    """The function's ASGI app, built by functions-framework as in production."""
    return functions_framework.create_app(target="predict", source=str(ROOT / "main.py"))


@pytest.fixture
def client(app):
    """An in-process client for the app (Starlette's, over httpx)."""
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="session")
def live():
    """A real functions-framework server on a loopback port, shared by the session."""
    with FunctionServer() as server:
        yield server


@pytest.fixture
def fresh_model(monkeypatch):
    """The lazy model holder reset to a cold instance (restored afterwards)."""
    from iris_predict.model import served as model
    monkeypatch.setattr(model, "_model", None)
    monkeypatch.setattr(model, "_error", None)
    monkeypatch.setattr(model, "loads", 0)
    monkeypatch.setattr(model, "_preloading", False)
    return model


@pytest.fixture
def cloud(live):
    """A fresh fake Google Cloud whose deployed functions lead to the live local function."""
    fake = FakeGoogleCloud(backend=live.url).start()
    yield fake
    fake.stop()


@pytest.fixture
def env(cloud, tmp_path):
    """The rehearsal's environment, with the identity token the fake's front end accepts."""
    return {**gcloud_env(cloud, tmp_path), "ID_TOKEN": cloud.id_token}


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory):
    """{name: tests.models.Trained}: wine, breast_cancer, diabetes, garden_kind and
    garden_yield, each trained once by train.py --csv (tests/models.py)."""
    from tests.models import train_all
    return train_all(tmp_path_factory.mktemp("trained_models"))
