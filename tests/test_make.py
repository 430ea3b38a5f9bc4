"""The Makefile's installs and `make serve`, run for real (issue 17 item 1, issue 18 items 1-2).

`make serve` runs here with `-o .venv/.runtime` (make takes the runtime install as done) and
BIN set to this session's venv, so it serves from the venv the suite runs in and never
installs into it. The install targets run in a scratch copy of the Makefile.
"""

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ROOT, Server
from tests.test_deploy import runtime_python

BIN = str(Path(sys.executable).parent)
# An unhashed pin of a small package that every requirements file here would let through.
UNHASHED = "idna==3.20\n"


def _serve(port: int) -> list:
    return ["make", "--no-print-directory", "-o", ".venv/.runtime", "serve", f"PORT={port}",
            f"BIN={BIN}"]


def test_make_serve_says_where_it_serves_and_answers_there():
    with Server(_serve) as server:
        reply = server.call("GET")
        output = server.output()
    assert reply.status == 200 and "sha256" in reply.json()
    assert f"make serve: serving the function on http://localhost:{server.port}/" in output


def test_make_serve_on_a_taken_port_fails_at_once_naming_the_way_out():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(_serve(port), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert (f"make serve: port {port} is taken; stop what listens there, or serve on another "
            "port: make serve PORT=8081") in run.stderr
    # At once: the message comes instead of gunicorn's start and its retries to bind.
    assert "functions-framework" not in run.stdout + run.stderr
    assert "Connection in use" not in run.stdout + run.stderr


def test_make_serve_installs_the_runtime_alone():
    plan = subprocess.run(["make", "-n", "-B", "serve", f"PYTHON={sys.executable}"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    installs = [line for line in plan.splitlines() if "pip install" in line]
    assert installs == [".venv/bin/python -m pip install --quiet --require-hashes --no-compile "
                        "-r requirements.txt"]


def test_make_refuses_a_pin_without_its_hashes(tmp_path):
    """Each install target, in turn, given a requirements file with an unhashed pin."""
    for name in ("Makefile", "requirements.txt", "requirements-train.txt",
                 "requirements-dev.txt", "requirements-lint.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    for target, unhashed in ((".venv/.runtime", "requirements.txt"),
                             (".venv/.installed", "requirements-dev.txt")):
        hashed = (tmp_path / unhashed).read_text()
        (tmp_path / unhashed).write_text(UNHASHED)
        run = subprocess.run(["make", target, f"PYTHON={sys.executable}"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        (tmp_path / unhashed).write_text(hashed)
        assert run.returncode != 0, f"make {target} installed an unhashed pin"
        assert "Hashes are required in --require-hashes mode" in run.stderr
        assert not list((tmp_path / ".venv" / "lib").glob("python*/site-packages/idna"))


def _venv_python(root: Path) -> str:
    return subprocess.run([str(root / ".venv" / "bin" / "python"), "-c",
                           "import sys; print(*sys.version_info[:2], sep='.')"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_venv_is_made_anew_when_python_changes(tmp_path):
    others = [v for v in ("3.12", "3.13") if runtime_python("python" + v.replace(".", ""))]
    if len(others) < 2:
        pytest.skip("needs python3.12 and python3.13 (pyenv's, say)")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    stamps = []
    for version in (others[0], others[0], others[1]):
        subprocess.run(["make", ".venv/.python", f"PYTHON=python{version}"], cwd=tmp_path,
                       capture_output=True, check=True, timeout=120)
        assert _venv_python(tmp_path) == version
        stamps.append((tmp_path / ".venv" / ".python").stat().st_mtime_ns)
    assert stamps[1] == stamps[0], "the venv was made again for the same Python"
