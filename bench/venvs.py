"""The benchmark's own virtualenvs, one per requirements file, created once and then reused.

bench/.venvs/<name>/ holds a venv with exactly the pins of its requirements file;
a copy of that file inside it marks a finished install, so a changed file (or an
install that failed half-way) installs again. Peers cannot share a venv with
this project or with each other: each pins its own versions of the same
libraries (starlette, uvloop, ...).
"""

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import ROOT

VENVS = Path(__file__).resolve().parent / ".venvs"
PEERS = Path(__file__).resolve().parent / "peers"
REQUIREMENTS = {
    # The function and the references on its own stack: exactly what Cloud Build installs.
    "project": ROOT / "requirements.txt",
    "mlflow": PEERS / "mlflow" / "requirements.txt",
    "bentoml": PEERS / "bentoml" / "requirements.txt",
    "mlserver": PEERS / "mlserver" / "requirements.txt",
    # What a Cloud Run instance has (bench/cloudrun.py): the same pins, compiled otherwise.
    "cloudrun": ROOT / "requirements.txt",
}
CLOUD_RUN = "cloudrun"
# Google's Python buildpack installs with --no-compile, then compiles the layer so
# (pkg/python/python.go, compileBytecode), taking exit status 1 (a file that does not
# compile) as pip install does.
COMPILE_AS_THE_BUILDPACK = ("-m", "compileall", "--invalidation-mode", "unchecked-hash", "-qq")
INSTALLED = "bench-requirements.txt"  # inside the venv: the file it was installed from
PIP_TAIL_LINES = 15
INSTALL_TIMEOUT_S = 1800


class Unavailable(Exception):
    """A server that cannot run here; the message says why."""


def bin_dir(name: str) -> Path:
    return VENVS / name / "bin"


def ready(name: str) -> bool:
    """True if the venv exists and was installed from its requirements file as it is now."""
    marker = VENVS / name / INSTALLED
    return marker.exists() and marker.read_text() == REQUIREMENTS[name].read_text()


def ensure(names) -> dict:
    """{name: bin directory or Unavailable} for each venv, installing the missing ones at once.

    Installs run side by side (they mostly wait on downloads); a failure is
    reported with the end of pip's output, and the others go on.
    """
    missing = [name for name in names if not ready(name)]
    for name in missing:
        print(f"bench: installing the {name} venv into {VENVS / name} (first run only: "
              "minutes)", flush=True)
    with ThreadPoolExecutor(max(1, len(missing))) as pool:
        installed = dict(zip(missing, pool.map(_install, missing)))
    return {name: installed.get(name, bin_dir(name)) for name in names}


def _install(name: str):
    """Create and fill one venv; its bin directory, or Unavailable saying why not."""
    shutil.rmtree(VENVS / name, ignore_errors=True)
    VENVS.mkdir(exist_ok=True)
    python = str(bin_dir(name) / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--require-hashes", "-r", str(REQUIREMENTS[name])]
    steps = [([sys.executable, "-m", "venv", str(VENVS / name)], {0}), (pip, {0})]
    if name == CLOUD_RUN:
        steps[1:] = [(pip + ["--no-compile"], {0}),
                     ([python, *COMPILE_AS_THE_BUILDPACK, str(VENVS / name)], {0, 1})]
    for step, succeeded in steps:
        try:
            run = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return Unavailable(f"python -m {step[2]} took over {INSTALL_TIMEOUT_S} s")
        if run.returncode not in succeeded:
            return Unavailable(f"python -m {step[2]} failed ({run.returncode}) for "
                               f"{REQUIREMENTS[name].relative_to(ROOT)}:\n"
                               f"{_tail(run.stdout + run.stderr)}")
    (VENVS / name / INSTALLED).write_text(REQUIREMENTS[name].read_text())
    return bin_dir(name)


def _tail(output: str) -> str:
    """The end of pip's output, less its notices about configured index folders that are absent."""
    lines = [line for line in output.splitlines() if "is ignored: it is neither" not in line]
    return "\n".join(lines[-PIP_TAIL_LINES:])


def versions(name: str) -> list:
    """`pip freeze` of a venv: what the figures were measured with."""
    run = subprocess.run([str(bin_dir(name) / "python"), "-m", "pip", "freeze",
                          "--disable-pip-version-check"],
                         capture_output=True, text=True, timeout=120)
    return run.stdout.split()
