"""The deploy rehearsal: ./deploy.sh and the real gcloud CLI against a fake Google Cloud.

Nothing leaves the machine: gcloud talks only to tests/fake_gcp/ on loopback (its endpoint
overrides, and its proxy, so a request for any other host is caught) with a throwaway config
and a fake access token. The fake's function URL leads to a real functions-framework server,
so deploy.sh's smoke test really calls the function, and the uploaded zip is installed into a
fresh venv and served, as Cloud Build and Cloud Run would. tests/test_canary.py rehearses
--canary, --promote and --rollback.
"""

import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from tests.fake_gcp import FakeGoogleCloud
from tests.rehearsal import (PROJECT, assert_nothing_left_the_machine, deploy, gcloud_env,
                             plan, smoke_calls)
from harness import ROOT, FunctionServer, call

TUTORIAL = {"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}
# The newest of the Pythons the suite runs on (3.11-3.14) that Cloud Run functions offer
# (their Python runtime page lists python310 to python314): deploy.sh's default.
DEFAULT_RUNTIME = "python314"
FUNCTIONS = rf"^/v2/projects/{PROJECT}/locations/[^/]+/functions"
CREATE = FUNCTIONS + "$"
IAM = r":setIamPolicy$"
# What the function needs at run time, and so exactly what must be uploaded.
RUNTIME_FILES = sorted(["main.py", "requirements.txt", "model.joblib", "model.json",
                        "web/index.html", "web/app.js", "web/style.css",
                        *(p.relative_to(ROOT).as_posix() for p in ROOT.glob("iris_predict/**/*.py"))])
SHELL_SCRIPTS = [ROOT / "deploy.sh", ROOT / ".ci" / "run", ROOT / ".ci" / "newest"]
TOOLS_BUT_GCLOUD = ["bash", "dirname", "sed", "curl"]

DEFAULT_SERVICE_CONFIG = {
    "availableMemory": "512Mi", "availableCpu": "1", "maxInstanceRequestConcurrency": 32,
    "minInstanceCount": 0, "maxInstanceCount": 3, "timeoutSeconds": 60,
    "allTrafficOnLatestRevision": True,  # a deploy after a rollback serves the new code
    "environmentVariables": {"ALLOWED_ORIGINS": "*", "MAX_BODY_BYTES": "2097152",
                             "MAX_BATCH_ROWS": "10000", "PREDICTION_LOG_SAMPLE": "0",
                             "GOOGLE_CLOUD_PROJECT": PROJECT},
}
CUSTOM_SERVICE_CONFIG = {
    "availableMemory": "1Gi", "availableCpu": "2", "maxInstanceRequestConcurrency": 16,
    "minInstanceCount": 1, "maxInstanceCount": 5, "timeoutSeconds": 30,
    "environmentVariables": {"ALLOWED_ORIGINS": "https://shop.example,https://www.shop.example",
                             "MAX_BODY_BYTES": "65536", "MAX_BATCH_ROWS": "500",
                             "PREDICTION_LOG_SAMPLE": "0.05", "GOOGLE_CLOUD_PROJECT": PROJECT},
}
# Every setting away from its default: (flag, environment variable, value).
CUSTOM = [
    ("--name", "FUNCTION_NAME", "iris-shop"),
    ("--region", "REGION", "europe-west1"),
    ("--runtime", "RUNTIME", "python312"),
    ("--memory", "MEMORY", "1Gi"),
    ("--cpu", "CPU", "2"),
    ("--concurrency", "CONCURRENCY", "16"),
    ("--min-instances", "MIN_INSTANCES", "1"),
    ("--max-instances", "MAX_INSTANCES", "5"),
    ("--timeout", "TIMEOUT", "30s"),
    ("--allowed-origins", "ALLOWED_ORIGINS", "https://shop.example,https://www.shop.example"),
    ("--max-body-bytes", "MAX_BODY_BYTES", "65536"),
    ("--max-batch-rows", "MAX_BATCH_ROWS", "500"),
    ("--prediction-log-sample", "PREDICTION_LOG_SAMPLE", "0.05"),
]


def repo_copy(dest: Path) -> Path:
    """deploy.sh and everything it ships, copied so a test can break them."""
    for name in ("deploy.sh", ".gcloudignore", "main.py", "requirements.txt",
                 "model.joblib", "model.json"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "iris_predict", dest / "iris_predict",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "web", dest / "web")
    return dest


def bundle_server(bundle: Path, python: str) -> FunctionServer:
    """functions-framework serving an unpacked bundle, as Cloud Run starts it."""
    # Bytecode is written even where PYTHONDONTWRITEBYTECODE is set, so that only the first
    # start of the session compiles scikit-learn and its kin.
    return FunctionServer(source=bundle / "main.py", cwd=bundle, python=python,
                          env={"PYTHONDONTWRITEBYTECODE": ""})


@pytest.fixture(scope="session")
def first_deploy(live, tmp_path_factory):
    """`./deploy.sh` with every default, once per session: (the fake, the finished process)."""
    fake = FakeGoogleCloud(backend=live.url).start()
    env = {**gcloud_env(fake, tmp_path_factory.mktemp("home")), "ID_TOKEN": fake.id_token}
    yield fake, deploy(env)
    fake.stop()


@pytest.fixture(scope="session")
def bundle(first_deploy, tmp_path_factory) -> Path:
    """The zip gcloud uploaded, unpacked as Cloud Build receives it."""
    fake, _ = first_deploy
    (upload,) = fake.uploads.values()
    path = tmp_path_factory.mktemp("bundle")
    zipfile.ZipFile(io.BytesIO(upload)).extractall(path)
    return path


def runtime_python(runtime: str) -> str | None:
    """The interpreter of a Cloud Run runtime ("python313": python3.13), if this machine has it.

    A pyenv shim exists for every version pyenv has, but runs only the selected ones (the
    Makefile selects them all), so the interpreter must also start."""
    version = runtime.removeprefix("python")
    found = shutil.which(f"python{version[0]}.{version[1:]}")
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
        return found
    return None


@pytest.fixture(scope="session")
def bundle_python(first_deploy, bundle, tmp_path_factory) -> str:
    """A fresh venv holding only what the bundle's own requirements.txt installs, hashes checked,
    on the Python of the runtime deployed to (the suite's own where that one is not installed:
    test_the_bundle_is_served_on_the_runtime_python then says so)."""
    fake, _ = first_deploy
    (create,) = fake.calls("POST", CREATE)
    base = runtime_python(create.json()["buildConfig"]["runtime"]) or sys.executable
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-compile",
                              "--require-hashes", "-r", str(bundle / "requirements.txt")],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return python


def test_the_fake_catches_requests_for_any_other_host(cloud, tmp_path):
    # An API the fake does not override: gcloud goes for the real host, through the fake.
    result = subprocess.run(["gcloud", "compute", "regions", "list"], capture_output=True,
                            text=True, env=gcloud_env(cloud, tmp_path), timeout=120)
    assert result.returncode != 0
    foreign = [(r.method, r.host) for r in cloud.foreign()]
    assert foreign == [("CONNECT", "compute.googleapis.com:443")]


# --- The script itself -------------------------------------------------------------------

@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_are_shellcheck_clean(script):
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run([str(shellcheck), str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_help_needs_nothing(tmp_path):
    result = subprocess.run([str(ROOT / "deploy.sh"), "--help"], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"], "CLOUDSDK_CONFIG": str(tmp_path)})
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: ./deploy.sh")
    for flag, variable, _ in CUSTOM:
        assert flag in result.stdout and f"[{variable}]" in result.stdout
    for mode in ("--canary PERCENT", "--promote", "--rollback", "--dry-run", "--public"):
        assert mode in result.stdout
    assert "[MAX_PROBABILITY_DIFF] (0.05)" in result.stdout
    # The function serves on functions-framework's ASGI path: THREADS means nothing to it.
    assert "THREADS" not in result.stdout


def functions_deploy(stdout: str) -> list[str]:
    """The `gcloud functions deploy` command of a --dry-run plan."""
    (command,) = [c for c in plan(stdout) if c[:3] == ["gcloud", "functions", "deploy"]]
    return command


def test_dry_run_prints_the_plan_without_credentials(cloud, tmp_path):
    result = deploy(gcloud_env(cloud, tmp_path, token=False), "--dry-run")
    assert result.returncode == 0, result.stderr
    describe, command = plan(result.stdout)
    # First it reads which revision serves, to record it for --rollback.
    assert describe[:5] == ["gcloud", "run", "services", "describe", "iris-predict"]
    assert command[:4] == ["gcloud", "functions", "deploy", "iris-predict"]
    for arg in ("--gen2", f"--project={PROJECT}", "--region=us-central1",
                f"--runtime={DEFAULT_RUNTIME}",
                "--entry-point=predict", "--trigger-http", "--source=.", "--max-instances=3",
                "--no-allow-unauthenticated", "--serve-all-traffic-latest-revision",
                "--update-labels=rollback-revision=SERVING_REVISION"):
        assert arg in command
    assert "# Smoke-testing FUNCTION_URL: GET, then POST the model's probe rows" in result.stdout
    assert cloud.requests == []


@pytest.mark.parametrize("form", ["flag value", "flag=value", "environment"])
def test_every_setting_by_flag_or_environment(cloud, tmp_path, form):
    env = gcloud_env(cloud, tmp_path, token=False)
    args = []
    for flag, variable, value in CUSTOM:
        if form == "environment":
            env[variable] = value
        else:
            args += [flag, value] if form == "flag value" else [f"{flag}={value}"]
    result = deploy(env, "--dry-run", *args)
    assert result.returncode == 0, result.stderr
    command = functions_deploy(result.stdout)
    assert command[3] == "iris-shop"
    for arg in ("--region=europe-west1", "--runtime=python312", "--memory=1Gi", "--cpu=2",
                "--concurrency=16", "--min-instances=1", "--max-instances=5", "--timeout=30s",
                "--set-env-vars=^;^ALLOWED_ORIGINS=https://shop.example,https://www.shop.example"
                ";MAX_BODY_BYTES=65536;MAX_BATCH_ROWS=500;PREDICTION_LOG_SAMPLE=0.05"
                f";GOOGLE_CLOUD_PROJECT={PROJECT}"):
        assert arg in command


@pytest.mark.parametrize("args, message", [
    (["--concurrency", "0"], "--concurrency must be a positive integer, got '0'"),
    (["--max-instances", "many"], "--max-instances must be a positive integer, got 'many'"),
    (["--min-instances", "4", "--max-instances", "2"],
     "--min-instances (4) exceeds --max-instances (2)"),
    (["--allowed-origins", "https://a.example;https://b.example"], "must not contain ';'"),
    (["--prediction-log-sample", "1.5"], "--prediction-log-sample must be a number from 0 to 1"),
    (["--region"], "--region needs a value"),
    (["--region", "--public"], "--region needs a value"),
    (["--regoin", "europe-west1"], "unknown argument '--regoin'"),
    (["--canary"], "--canary needs a value"),
    (["--canary", "0"], "--canary needs a percentage from 1 to 100, got '0'"),
    (["--canary", "101"], "--canary needs a percentage from 1 to 100, got '101'"),
    (["--canary", "10", "--promote"], "--canary and --promote cannot go together"),
    (["--promote", "--rollback"], "--promote and --rollback cannot go together"),
    (["--max-probability-diff", "1.5"],
     "--max-probability-diff must be a number from 0 to 1, got '1.5'"),
])
def test_bad_arguments_are_refused_before_anything_runs(cloud, env, args, message):
    result = deploy(env, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert cloud.requests == []


def _trained_with() -> str:
    return json.loads((ROOT / "model.json").read_text())["versions"]["scikit-learn"]


@pytest.mark.parametrize("breakage, message", [
    ("delete model.joblib", "model.joblib is missing"),
    ("delete model.json", "model.json is missing"),
    ("delete .gcloudignore", ".gcloudignore is missing"),
    ("pin scikit-learn 0.0.1",
     f"trained with scikit-learn {_trained_with()} but requirements.txt pins 0.0.1"),
    ("no project", "no Google Cloud project"),
])
def test_preflight_refuses_before_uploading(cloud, tmp_path, breakage, message):
    repo = repo_copy(tmp_path)
    env = gcloud_env(cloud, tmp_path, project=None)
    if breakage.startswith("delete "):
        (repo / breakage.removeprefix("delete ")).unlink()
    elif breakage.startswith("pin "):
        requirements = (repo / "requirements.txt").read_text()
        (repo / "requirements.txt").write_text(
            requirements.replace(f"scikit-learn=={_trained_with()}", "scikit-learn==0.0.1"))
    project = [] if breakage == "no project" else ["--project", PROJECT]
    result = deploy(env, *project, repo=repo)
    assert result.returncode == 1
    assert message in result.stderr
    assert cloud.requests == []


def test_preflight_needs_gcloud(cloud, env, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS_BUT_GCLOUD:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = deploy({**env, "PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "gcloud not found" in result.stderr


# --- The rehearsal -----------------------------------------------------------------------

def test_deploy_prints_the_url_and_passes_its_smoke_test(first_deploy):
    fake, result = first_deploy
    assert result.returncode == 0, result.stderr
    url = f"{fake.url}/fn/iris-predict"
    assert f"URL: {url}\n" in result.stdout
    assert "Smoke test passed" in result.stdout
    # The smoke test called the URL gcloud reported, as a private function's caller must.
    calls = smoke_calls(fake)
    assert [(r.method, r.path) for r in calls] == [("GET", "/fn/iris-predict"),
                                                  ("POST", "/fn/iris-predict")]
    assert all(r.headers["authorization"] == f"Bearer {fake.id_token}" for r in calls)
    # The model's probe rows (probes.py), the first the average training flower.
    probes = calls[1].json()["instances"]
    assert len(probes) > 1
    np.testing.assert_allclose(probes[0], load_iris().data.mean(axis=0), atol=1e-6)
    # Nothing served before, so nothing is recorded for --rollback.
    assert "has no traffic to read (a first deploy?): nothing to record" in result.stderr
    (create,) = fake.calls("POST", CREATE)
    assert create.json()["labels"] == {"deployment-tool": "cli-gcloud"}
    assert_nothing_left_the_machine(fake)


def test_create_request_carries_the_defaults(first_deploy):
    fake, _ = first_deploy
    (create,) = fake.calls("POST", CREATE)
    assert create.query["functionId"] == ["iris-predict"]
    function = create.json()
    assert function["buildConfig"]["runtime"] == DEFAULT_RUNTIME
    assert function["buildConfig"]["entryPoint"] == "predict"
    assert "eventTrigger" not in function  # an HTTP function
    for key, value in DEFAULT_SERVICE_CONFIG.items():
        assert function["serviceConfig"][key] == value, key


def test_private_by_default(first_deploy):
    fake, _ = first_deploy
    assert fake.calls("POST", IAM) == []
    (function,) = fake.functions.values()
    assert not fake.public(function["serviceConfig"]["service"])
    assert call(function["url"], "POST", TUTORIAL).status == 403  # without the token


def test_upload_holds_exactly_the_runtime_files(first_deploy):
    fake, _ = first_deploy
    (upload,) = fake.uploads.values()
    names = [n for n in zipfile.ZipFile(io.BytesIO(upload)).namelist() if not n.endswith("/")]
    assert sorted(names) == RUNTIME_FILES
    (create,) = fake.calls("POST", CREATE)
    source = create.json()["buildConfig"]["source"]["storageSource"]
    assert fake.uploads.keys() == {source["object"]}  # the function is built from that zip


def test_uploaded_bundle_serves_the_tutorial_from_a_fresh_venv(bundle, bundle_python, live):
    with bundle_server(bundle, bundle_python) as server:
        answer = server.call("POST", TUTORIAL)
        metadata = server.call("GET")
    assert answer.status == 200
    assert answer.json() == live.call("POST", TUTORIAL).json()
    assert answer.json()["prediction"] == [0]
    assert metadata.status == 200
    assert metadata.json()["sha256"] == json.loads((bundle / "model.json").read_text())["sha256"]


def test_the_bundle_is_served_on_the_runtime_python(bundle_python):
    wanted = runtime_python(DEFAULT_RUNTIME)
    if wanted is None:
        pytest.skip(f"no Python of {DEFAULT_RUNTIME} here: the rehearsal served the bundle on "
                    f"the suite's Python {sys.version_info.major}.{sys.version_info.minor}")
    version = subprocess.run([bundle_python, "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert "python" + "".join(version) == DEFAULT_RUNTIME


def test_bundle_missing_a_runtime_file_does_not_serve(bundle, bundle_python, tmp_path):
    broken = tmp_path / "bundle"
    shutil.copytree(bundle, broken)
    (broken / "iris_predict" / "edge" / "cors.py").unlink()
    with pytest.raises(RuntimeError, match="cannot import name 'cors'"):
        with bundle_server(broken, bundle_python):
            pass


def test_custom_settings_reach_the_create_request(cloud, env):
    args = [f"{flag}={value}" for flag, _, value in CUSTOM]
    result = deploy(env, *args)
    assert result.returncode == 0, result.stderr
    (create,) = cloud.calls("POST", CREATE)
    assert create.path == f"/v2/projects/{PROJECT}/locations/europe-west1/functions"
    assert create.query["functionId"] == ["iris-shop"]
    function = create.json()
    assert function["buildConfig"]["runtime"] == "python312"
    for key, value in CUSTOM_SERVICE_CONFIG.items():
        assert function["serviceConfig"][key] == value, key
    assert f"URL: {cloud.url}/fn/iris-shop\n" in result.stdout
    assert_nothing_left_the_machine(cloud)


def test_public_then_private_redeploy_updates_in_place(cloud, env):
    first = deploy(env, "--public")
    assert first.returncode == 0, first.stderr
    (function,) = cloud.functions.values()
    service = function["serviceConfig"]["service"]
    assert cloud.public(service)  # allUsers may invoke: what browsers need
    assert all("authorization" not in r.headers for r in smoke_calls(cloud))

    second = deploy(env)
    assert second.returncode == 0, second.stderr
    assert len(cloud.calls("POST", CREATE)) == 1  # created once...
    (patch,) = cloud.calls("PATCH", FUNCTIONS + "/iris-predict$")  # ...then updated
    update_mask = set(patch.query["updateMask"][0].split(","))
    assert {"build_config.source", "service_config.all_traffic_on_latest_revision",
            "labels"} <= update_mask
    # The revision that served until now is recorded on the function for --rollback.
    first_revision = cloud.services[service].revisions[0].name
    assert patch.json()["labels"]["rollback-revision"] == first_revision
    assert len(cloud.uploads) == 2
    assert not cloud.public(service)  # deploying private again takes allUsers away
    assert call(function["url"], "POST", TUTORIAL).status == 403
    assert "Smoke test passed" in second.stdout
    assert_nothing_left_the_machine(cloud)


def test_api_error_fails_the_deploy_with_gclouds_message(cloud, env):
    message = (f"Permission 'cloudfunctions.functions.create' denied on resource "
               f"'projects/{PROJECT}/locations/us-central1/functions/iris-predict'")
    cloud.fail("POST", CREATE, 403, message)
    result = deploy(env)
    assert result.returncode == 1
    assert message in result.stderr
    assert "gcloud functions deploy failed" in result.stderr
    assert "URL:" not in result.stdout
    assert smoke_calls(cloud) == []
    assert_nothing_left_the_machine(cloud)


@pytest.mark.parametrize("token, message", [
    ("not-the-token", "smoke test: GET"),
    # With an access token alone gcloud cannot mint an identity token: deploy.sh says so.
    (None, "could not get an identity token"),
])
def test_failed_smoke_test_fails_the_deploy(cloud, env, token, message):
    env = {**env, "ID_TOKEN": token} if token else {k: v for k, v in env.items()
                                                    if k != "ID_TOKEN"}
    result = deploy(env)
    assert result.returncode == 1
    assert f"URL: {cloud.url}/fn/iris-predict" in result.stdout  # deployed, then refused
    assert message in result.stderr
    assert "Smoke test passed" not in result.stdout
    assert_nothing_left_the_machine(cloud)


def test_a_function_answering_without_predictions_fails_the_smoke_test(tmp_path):
    """A deployed function that answers 200 but not the model's probe rows (here, an old
    build that only knows the tutorial's one-flower answer) fails the deploy."""

    class Old(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self._send({"features": [{"name": "sepal_length"}], "classes": ["setosa"]})

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send({"prediction": [0]})

        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Old)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake = FakeGoogleCloud(backend=f"http://127.0.0.1:{server.server_port}").start()
    try:
        result = deploy({**gcloud_env(fake, tmp_path), "ID_TOKEN": fake.id_token})
    finally:
        fake.stop()
        server.shutdown()
    assert result.returncode != 0
    assert "answered no predictions" in result.stderr
