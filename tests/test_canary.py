"""The canary rehearsal: ./deploy.sh --canary, --promote and --rollback with the real gcloud CLI
against tests/fake_gcp/.

The fake keeps the Cloud Run service behind the function: its revisions and its traffic, which
gcloud reads and writes through Cloud Run's own API calls, recorded from gcloud and checked
here call by call. Its function URL and its tag URLs lead to real functions-framework servers:
the first revision runs the shipped model, and each later deploy the server the test points
it at, running a model trained here with scikit-learn. Expected answers come from
scikit-learn's predict_proba on the same models, never from the function.

One function lives through a whole story (`story`), each step run as from a fresh machine:
a deploy, a rollback with nothing to go back to, a canary that passes, promote, rollback,
three canaries that fail their smoke test, and a promote that refuses. The tests read what
each step did.
"""

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris

from iris_predict.model.artifact import sidecar_path
from tests.fake_gcp import FakeGoogleCloud
from tests.rehearsal import (PROJECT, REGION, assert_nothing_left_the_machine, deploy, gcloud,
                             gcloud_env, plan)
from harness import ROOT, FunctionServer, call
from train import make_estimator

NAME = "iris-predict"
PERCENT = 10
# deploy.sh's probe set for the shipped model (probes.py from model.json), written out again:
# the mean flower, the smallest and largest of each measurement at once, and each measurement
# half its training range beyond it (or halfway to 0, its bound). The tests check that this is
# what it sent.
PROBES = [[5.843333, 3.057333, 3.758, 1.199333], [4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5],
          [2.5, 3.057333, 3.758, 1.199333], [9.7, 3.057333, 3.758, 1.199333],
          [5.843333, 0.8, 3.758, 1.199333], [5.843333, 5.6, 3.758, 1.199333],
          [5.843333, 3.057333, 0.5, 1.199333], [5.843333, 3.057333, 9.85, 1.199333],
          [5.843333, 3.057333, 3.758, 0.05], [5.843333, 3.057333, 3.758, 3.7]]
PROBE_BODY = {"instances": PROBES, "parameters": {"probabilities": True}}
# The function rounds probabilities to 6 decimals (README "API reference").
DIGITS = 6
# A flower whose probabilities tell the models here apart: what a client asks after each step.
CLIENT_FLOWER = [5.9, 2.8, 4.3, 1.3]

# The calls each gcloud command makes, recorded from gcloud 528 against the fake. Regional
# calls go to REGION-run.googleapis.com, the fake's REGION-127.0.0.1:PORT.
SERVICE = f"{REGION} /apis/serving.knative.dev/v1/namespaces/{PROJECT}/services/{NAME}"
FUNCTION = f"global /v2/projects/{PROJECT}/locations/{REGION}/functions/{NAME}"
DESCRIBE = [f"GET {SERVICE}"]  # gcloud run services describe
UPDATE_TRAFFIC = [f"GET {SERVICE}", f"PUT {SERVICE}"]  # gcloud run services update-traffic
FUNCTIONS_DESCRIBE = [f"GET {FUNCTION}"]  # gcloud functions describe
REDEPLOY = [  # gcloud functions deploy, of a function that exists
    f"GET {FUNCTION}",
    f"GET global /v2/projects/{PROJECT}/locations/{REGION}/runtimes",
    f"POST global /v2/projects/{PROJECT}/locations/{REGION}/functions:generateUploadUrl",
    "PUT global /upload/OBJECT",
    f"GET global /v1/projects/{PROJECT}/services/run.googleapis.com",
    f"GET global /v1/projects/{PROJECT}/services/cloudbuild.googleapis.com",
    f"GET global /v1/projects/{PROJECT}/services/artifactregistry.googleapis.com",
    f"GET global /v1/projects/{PROJECT}/locations/{REGION}/defaultServiceAccount",
    f"GET global /v1/projects/{PROJECT}",
    f"POST global /v1/projects/{PROJECT}:getIamPolicy",
    f"PATCH {FUNCTION}",
    f"GET global /v2/projects/{PROJECT}/locations/{REGION}/operations/OPERATION",
    f"GET global /v2/projects/{PROJECT}/locations/{REGION}/operations/OPERATION",
    f"GET {FUNCTION}",
    # --no-allow-unauthenticated on an existing function: gcloud sets the invoker policy again.
    f"GET global /v1/projects/{PROJECT}/locations/{REGION}/services/{NAME}:getIamPolicy",
    f"POST global /v1/projects/{PROJECT}/locations/{REGION}/services/{NAME}:setIamPolicy",
]
SMOKE_TEST = [f"GET global /fn/candidate---{NAME}", f"POST global /fn/candidate---{NAME}",
              f"POST global /fn/{NAME}"]


def write_model(path: Path, strength: float = 1.0, shift: int = 0) -> Path:
    """train.py's estimator with regularisation C=strength, fitted with each label moved
    `shift` species on, saved with a sidecar the function accepts."""
    X, y = load_iris(return_X_y=True)
    joblib.dump(make_estimator().set_params(C=strength).fit(X, (y + shift) % 3), path)
    metadata = json.loads((ROOT / "model.json").read_text())
    metadata["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar_path(path).write_text(json.dumps(metadata))
    return path


def probabilities(model: Path, rows: list) -> np.ndarray:
    """scikit-learn's own answer for these rows, rounded as the function rounds."""
    return np.round(joblib.load(model).predict_proba(np.array(rows)), DIGITS)


def agreement(serving: Path, candidate: Path) -> str:
    """The line deploy.sh must print for these two models, worked out with scikit-learn."""
    ours, theirs = probabilities(serving, PROBES), probabilities(candidate, PROBES)
    agree = int((ours.argmax(axis=1) == theirs.argmax(axis=1)).sum())
    return (f"{agree}/{len(PROBES)} answers agree, "
            f"largest probability difference {np.abs(ours - theirs).max():.6f}")


def call_names(fake: FakeGoogleCloud, start: int, end: int) -> list[str]:
    """The requests fake.requests[start:end] as "METHOD WHERE PATH", ids left out."""
    names = []
    for request in fake.requests[start:end]:
        where = REGION if request.host.startswith(f"{REGION}-") else "global"
        path = re.sub(r"/operations/[^/]+$", "/operations/OPERATION", request.path)
        path = re.sub(r"^/upload/.+$", "/upload/OBJECT", path)
        names.append(f"{request.method} {where} {path}")
    return names


@dataclass
class Step:
    result: object  # the finished ./deploy.sh
    start: int  # its requests are fake.requests[start:end]
    end: int
    shares: dict  # revision -> percent of the traffic, once it finished
    answer: dict  # the function URL's answer for CLIENT_FLOWER, once it finished


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """The models the story deploys: shipped, a slightly looser retrain, mislabelled, missing."""
    folder = tmp_path_factory.mktemp("models")
    return {"shipped": ROOT / "model.joblib",
            "retrained": write_model(folder / "retrained.joblib", strength=0.8),
            "mislabelled": write_model(folder / "mislabelled.joblib", shift=1),
            "missing": folder / "missing.joblib"}


@pytest.fixture(scope="module")
def servers(live, models):
    """A functions-framework server for each candidate model; `live` runs the shipped one."""
    with FunctionServer(env={"MODEL_PATH": str(models["retrained"])}) as retrained, \
            FunctionServer(env={"MODEL_PATH": str(models["mislabelled"])}) as mislabelled, \
            FunctionServer(env={"MODEL_PATH": str(models["missing"])}) as missing:
        yield {"shipped": live, "retrained": retrained, "mislabelled": mislabelled,
               "missing": missing}


# The story: (step, the server a deploy in it runs, extra environment, deploy.sh's arguments).
STORY = [
    ("deploy", "shipped", {}, []),
    ("rollback with no record", None, {}, ["--rollback"]),
    ("canary", "retrained", {}, ["--canary", str(PERCENT)]),
    ("promote", None, {}, ["--promote"]),
    ("rollback", None, {}, ["--rollback"]),
    ("canary too far apart", "retrained", {"MAX_PROBABILITY_DIFF": "0.01"},
     ["--canary", str(PERCENT)]),
    ("canary mislabelled", "mislabelled", {}, ["--canary", str(PERCENT)]),
    ("canary with no model", "missing", {}, ["--canary", str(PERCENT)]),
    ("promote a failed canary", None, {}, ["--promote"]),
]


@pytest.fixture(scope="module")
def story(servers, tmp_path_factory):
    """The whole story on one fake: (the fake, {step: Step})."""
    fake = FakeGoogleCloud().start()
    steps = {}
    for step, server, settings, args in STORY:
        if server:
            fake.backend = servers[server].url
        # Each step from a fresh gcloud configuration: nothing carries over but Google Cloud.
        env = {**gcloud_env(fake, tmp_path_factory.mktemp("machine")), "ID_TOKEN": fake.id_token,
               **settings}
        start = len(fake.requests)
        result = deploy(env, *args)
        end = len(fake.requests)
        (service,) = fake.services.values()
        answer = call(f"{fake.url}/fn/{NAME}", "POST", {"instances": [CLIENT_FLOWER],
                                                        "parameters": {"probabilities": True}},
                      {"Authorization": f"Bearer {fake.id_token}"}).json()
        steps[step] = Step(result, start, end, service.shares(), answer)
    yield fake, steps
    fake.stop()


def revisions(fake: FakeGoogleCloud) -> list[str]:
    """The function's revisions, oldest first."""
    (service,) = fake.services.values()
    return [revision.name for revision in service.revisions]


def expected_answer(model: Path) -> dict:
    """The function's answer for CLIENT_FLOWER, probabilities included, with this model."""
    classes = json.loads((ROOT / "model.json").read_text())["classes"]
    row = probabilities(model, [CLIENT_FLOWER])[0]
    return {"predictions": [int(row.argmax())], "species": [classes[row.argmax()]],
            "probabilities": [dict(zip(classes, row.tolist()))], "warnings": []}


# --- The plan ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, commands", [
    ([], [["run", "services", "describe"], ["functions", "deploy"]]),
    (["--canary", "25"], [["run", "services", "describe"], ["run", "services", "update-traffic"],
                          ["functions", "deploy"], ["run", "services", "update-traffic"],
                          ["run", "services", "describe"], ["run", "services", "update-traffic"]]),
    (["--promote"], [["run", "services", "describe"], ["run", "services", "update-traffic"]]),
    (["--rollback"], [["functions", "describe"], ["run", "services", "update-traffic"]]),
])
def test_dry_run_prints_every_step_of_each_mode(cloud, tmp_path, mode, commands):
    result = deploy(gcloud_env(cloud, tmp_path, token=False), "--dry-run", *mode)
    assert result.returncode == 0, result.stderr
    steps = plan(result.stdout)
    assert [c[1:len(kind) + 1] for c, kind in zip(steps, commands)] == commands
    assert len(steps) == len(commands)
    assert cloud.requests == []


def test_dry_run_canary_plan_says_what_moves_when(cloud, tmp_path):
    result = deploy(gcloud_env(cloud, tmp_path, token=False), "--dry-run", "--canary", "25")
    _, pin, functions_deploy, tag, _, route = plan(result.stdout)
    assert "--to-revisions=LATEST_REVISION=100" in pin
    assert "--serve-all-traffic-latest-revision" not in functions_deploy
    assert "--update-labels=rollback-revision=SERVING_REVISION" in functions_deploy
    assert "--update-tags=candidate=NEW_REVISION" in tag
    assert "--to-revisions=NEW_REVISION=25" in route
    assert ("# 4. Smoke-testing CANDIDATE_URL: GET, then the probe rows beside FUNCTION_URL"
            in result.stdout)


# --- A canary that passes, then promote and rollback -----------------------------------------

def test_canary_makes_its_calls_in_order(story):
    fake, steps = story
    canary = steps["canary"]
    assert canary.result.returncode == 0, canary.result.stderr
    assert call_names(fake, canary.start, canary.end) == [
        *DESCRIBE,  # 0. read the traffic
        *UPDATE_TRAFFIC,  # 1. all of it followed the latest revision: pin it by name
        *REDEPLOY,  # 2. the candidate, with no traffic
        *UPDATE_TRAFFIC, *DESCRIBE,  # 3. tag it, read the tag's URL
        *SMOKE_TEST,  # 4.
        *UPDATE_TRAFFIC,  # 5. route PERCENT % to it
    ]
    assert_nothing_left_the_machine(fake)


def test_canary_moves_no_traffic_before_its_smoke_test_passes(story):
    fake, steps = story
    canary = steps["canary"]
    first, candidate = revisions(fake)[:2]
    smoke_test = next(i for i in range(canary.start, canary.end)
                      if fake.requests[i].path.startswith("/fn/"))
    moves = [(i, shares) for i, _, shares in fake.traffic_log if canary.start <= i < canary.end]
    before = [shares for i, shares in moves if i < smoke_test]
    after = [shares for i, shares in moves if i > smoke_test]
    assert len(before) == 3  # the pin, the deploy, the tag
    assert all(shares == {first: 100} for shares in before)
    assert after == [{first: 100 - PERCENT, candidate: PERCENT}]
    assert canary.shares == {first: 100 - PERCENT, candidate: PERCENT}


def test_canary_deploys_without_taking_traffic_and_records_the_serving_revision(story):
    fake, steps = story
    canary = steps["canary"]
    (patch,) = [r for r in fake.requests[canary.start:canary.end] if r.method == "PATCH"]
    mask = patch.query["updateMask"][0].split(",")
    assert "service_config.all_traffic_on_latest_revision" not in mask  # no --serve-all-...
    assert patch.json()["labels"]["rollback-revision"] == revisions(fake)[0]


def test_canary_compares_the_probes_on_both_urls(story, models):
    fake, steps = story
    canary = steps["canary"]
    candidate_get, candidate_post, serving_post = [
        r for r in fake.requests[canary.start:canary.end] if r.path.startswith("/fn/")]
    assert candidate_post.json() == PROBE_BODY == serving_post.json()
    for request in (candidate_get, candidate_post, serving_post):
        assert request.headers["authorization"] == f"Bearer {fake.id_token}"
    # The tag URL reached the retrained model's server, the function URL the shipped one.
    line = agreement(models["shipped"], models["retrained"])
    assert line == "11/11 answers agree, largest probability difference 0.017605"
    assert f"Smoke test passed: {line}\n" in canary.result.stdout
    tag_url = f"{fake.url}/fn/candidate---{NAME}"
    assert (f"Canary: {revisions(fake)[1]} serves {PERCENT}% of the traffic; its own URL: "
            f"{tag_url}\n") in canary.result.stdout


def test_promote_sends_all_traffic_to_the_latest_revision(story, models):
    fake, steps = story
    promote = steps["promote"]
    candidate = revisions(fake)[1]
    assert promote.result.returncode == 0, promote.result.stderr
    assert call_names(fake, promote.start, promote.end) == [*DESCRIBE, *UPDATE_TRAFFIC]
    assert promote.shares == {candidate: 100}
    (put,) = [r for r in fake.requests[promote.start:promote.end] if r.method == "PUT"]
    # All of it follows the latest revision, as after a plain deploy.
    assert {"latestRevision": True, "percent": 100} in put.json()["spec"]["traffic"]
    assert promote.result.stdout == f"Promoted: {candidate} serves all traffic\n"
    assert promote.answer == expected_answer(models["retrained"])  # what clients now get


def test_rollback_returns_to_the_revision_that_served_before_the_last_deploy(story, models):
    fake, steps = story
    rollback = steps["rollback"]
    first = revisions(fake)[0]
    assert rollback.result.returncode == 0, rollback.result.stderr
    # It reads the record on the function, not anything on this machine.
    assert call_names(fake, rollback.start, rollback.end) == [*FUNCTIONS_DESCRIBE,
                                                             *UPDATE_TRAFFIC]
    assert rollback.shares == {first: 100}
    assert rollback.result.stdout == f"Rolled back: {first} serves all traffic\n"
    assert rollback.answer == expected_answer(models["shipped"])


def test_revisions_list_shows_which_revisions_serve(story, tmp_path):
    fake, _ = story
    start = len(fake.requests)
    result = gcloud(gcloud_env(fake, tmp_path), "run", "revisions", "list", f"--service={NAME}",
                    f"--region={REGION}", "--format=csv[no-heading](metadata.name,active)")
    assert result.returncode == 0, result.stderr
    (request,) = fake.requests[start:]
    assert (request.method, request.path, request.query["labelSelector"]) == (
        "GET", f"/apis/serving.knative.dev/v1/namespaces/{PROJECT}/revisions",
        [f"serving.knative.dev/service = {NAME}"])
    # After the story only the first revision serves (the failed canaries got nothing).
    first, *later = revisions(fake)
    assert sorted(result.stdout.splitlines()) == sorted(
        [f"{first},yes"] + [f"{name}," for name in later])


# --- What refuses, and what fails safely -------------------------------------------------

def test_rollback_with_no_record_refuses(story):
    fake, steps = story
    step = steps["rollback with no record"]
    assert step.result.returncode == 1
    assert "records no revision to roll back to" in step.result.stderr
    assert call_names(fake, step.start, step.end) == FUNCTIONS_DESCRIBE
    assert step.shares == {revisions(fake)[0]: 100}


@pytest.mark.parametrize("step, candidate", [
    ("canary too far apart", "retrained"),  # all species agree, a probability moved too far
    ("canary mislabelled", "mislabelled"),  # every species differs
])
def test_canary_whose_answers_differ_moves_no_traffic(story, models, step, candidate):
    fake, steps = story
    failed = steps[step]
    first = revisions(fake)[0]
    assert failed.result.returncode == 1
    assert agreement(models["shipped"], models[candidate]) in failed.result.stderr
    assert_moved_nothing(fake, failed, first)


def test_canary_that_cannot_answer_moves_no_traffic(story):
    fake, steps = story
    failed = steps["canary with no model"]
    assert failed.result.returncode == 1
    unavailable = '{"error":"the model is unavailable; see the function\'s logs"}'
    assert f"GET {fake.url}/fn/candidate---{NAME} answered: {unavailable}" in failed.result.stderr
    # It stopped at the first smoke-test call, which curl tried 4 times (--retry 3: a 503 may
    # pass).
    smoke_test = [c for c in call_names(fake, failed.start, failed.end) if " /fn/" in c]
    assert smoke_test == [SMOKE_TEST[0]] * 4
    assert_moved_nothing(fake, failed, revisions(fake)[0])


def assert_moved_nothing(fake: FakeGoogleCloud, failed: Step, serving: str):
    """A failed canary: calls as planned up to the smoke test, then none; traffic untouched."""
    calls = call_names(fake, failed.start, failed.end)
    # The traffic was pinned by name already (by the rollback): no pin this time.
    planned = [*DESCRIBE, *REDEPLOY, *UPDATE_TRAFFIC, *DESCRIBE]
    assert calls[:len(planned)] == planned
    assert all(" /fn/" in call for call in calls[len(planned):])  # smoke test, no routing
    moves = [shares for i, _, shares in fake.traffic_log if failed.start <= i < failed.end]
    assert moves and all(shares == {serving: 100} for shares in moves)
    assert failed.shares == {serving: 100}
    assert "so no traffic moved to it: it serves none" in failed.result.stderr
    assert "Canary:" not in failed.result.stdout


def test_promote_refuses_a_revision_whose_canary_failed(story):
    fake, steps = story
    step = steps["promote a failed canary"]
    assert step.result.returncode == 1
    assert (f"--promote refuses: the latest revision {revisions(fake)[-1]} serves no traffic"
            in step.result.stderr)
    assert call_names(fake, step.start, step.end) == DESCRIBE
    assert step.shares == {revisions(fake)[0]: 100}


def test_canary_needs_a_serving_revision(cloud, env):
    result = deploy(env, "--canary", str(PERCENT))
    assert result.returncode == 1
    assert "Cannot find service [iris-predict]" in result.stderr  # gcloud's own words
    assert "--canary needs the function deployed: deploy it once with ./deploy.sh" in result.stderr
    assert call_names(cloud, 0, len(cloud.requests)) == DESCRIBE


def test_probe_rows_come_from_the_signature(trained_models):
    """probes.py, as deploy.sh runs it, on a model with categories and missing cells: rows
    worked out here from its model.json."""
    meta = trained_models["garden_kind"].metadata
    done = subprocess.run(["python3", "probes.py", str(trained_models["garden_kind"].path
                                                       .with_suffix(".json"))],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    body = json.loads(done.stdout)
    height, colour, soil, width = meta["features"]
    top = {f["name"]: max(f["categories"], key=f["categories"].get) for f in (colour, soil)}
    mean = [round(height["mean"], 6), top["colour"], top["soil"], round(width["mean"], 6)]
    half = {f["name"]: (f["max"] - f["min"]) / 2 for f in (height, width)}
    expected = [
        mean,
        [height["min"], top["colour"], top["soil"], width["min"]],
        [height["max"], top["colour"], top["soil"], width["max"]],
        [round(height["min"] - half["height"], 6), *mean[1:]],
        [round(height["max"] + half["height"], 6), *mean[1:]],
        *[[mean[0], c, *mean[2:]] for c in colour["categories"] if c != top["colour"]],
        *[[*mean[:2], s, mean[3]] for s in soil["categories"] if s != top["soil"]],
        [*mean[:3], round(width["min"] - half["width"], 6)],
        [*mean[:3], round(width["max"] + half["width"], 6)],
        [None, None, top["soil"], None],  # soil had no missing cells
    ]
    assert body == {"instances": expected, "parameters": {"probabilities": True}}
