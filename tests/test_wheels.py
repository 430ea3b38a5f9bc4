"""`.ci/check_wheels.py` (make check-wheels) against an index on loopback that serves the PEP
691 JSON file lists PyPI serves: which runtimes have a wheel for every pin."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import ROOT

# name -> the files the fake index lists
FILES = {
    "numpyish": ["numpyish-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "numpyish-2.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "numpyish-2.0-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "numpyish-2.0-cp314-cp314-manylinux_2_28_x86_64.whl",
                 "numpyish-1.0-cp314-cp314-win_amd64.whl", "numpyish-2.0.tar.gz"],
    "abi-three": ["abi_three-1.5-cp311-abi3-manylinux_2_17_x86_64.whl"],  # 3.11 and later
    "pure": ["pure-0.1-py3-none-any.whl"],
    "oldjson": ["oldjson-7.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                "oldjson-7.0-cp312-cp312-manylinux_2_17_x86_64.whl",
                "oldjson-7.0-cp313-cp313-manylinux_2_17_x86_64.whl",
                "oldjson-7.0-cp314-cp314-macosx_11_0_arm64.whl",  # not Linux
                "oldjson-7.0-cp314-cp314-manylinux_2_39_x86_64.whl"],  # newer glibc than Cloud Run's
}


class Index(BaseHTTPRequestHandler):
    def do_GET(self):
        name = self.path.strip("/").split("/")[-1]
        if name not in FILES or "vnd.pypi.simple.v1+json" not in self.headers.get("Accept", ""):
            self.send_error(404)
            return
        body = json.dumps({"meta": {"api-version": "1.1"}, "name": name,
                           "files": [{"filename": f, "url": f} for f in FILES[name]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def index():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/simple"
    server.shutdown()


def check(tmp_path, index, pins, default, *runtimes):
    (tmp_path / "requirements.txt").write_text("".join(
        f"{pin} \\\n    --hash=sha256:{'0' * 64}\n" for pin in pins))
    (tmp_path / "deploy.sh").write_text(f'RUNTIME="${{RUNTIME:-{default}}}"\n')
    return subprocess.run(
        [sys.executable, ".ci/check_wheels.py", "--requirements", str(tmp_path / "requirements.txt"),
         "--deploy", str(tmp_path / "deploy.sh"), "--index-url", index, *runtimes],
        cwd=ROOT, capture_output=True, text=True, timeout=60)


RUNTIMES = ("python311", "python312", "python313", "python314")


def test_a_pin_without_a_linux_wheel_holds_the_runtime_back(tmp_path, index):
    done = check(tmp_path, index, ["numpyish==2.0", "abi-three==1.5", "pure==0.1",
                                   "oldjson==7.0"], "python313", *RUNTIMES)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "python311: every one of the 4 pins has a wheel",
        "python312: every one of the 4 pins has a wheel",
        "python313: every one of the 4 pins has a wheel",
        "python314: no Linux x86_64 wheel for oldjson==7.0",
        "newest runtime with every wheel: python313; deploy.sh defaults to python313"]


def test_a_newer_runtime_with_every_wheel_asks_for_the_default(tmp_path, index):
    done = check(tmp_path, index, ["numpyish==2.0", "pure==0.1"], "python313", *RUNTIMES)
    assert done.returncode == 1
    assert "python314 has every wheel: make it deploy.sh's default" in done.stderr


def test_a_default_without_its_wheels_fails(tmp_path, index):
    done = check(tmp_path, index, ["numpyish==1.0"], "python313", "python313", "python314")
    assert done.returncode == 1
    assert "no Linux x86_64 wheel for numpyish==1.0" in done.stdout
    assert "deploy.sh's default python313 lacks wheels" in done.stderr


@pytest.mark.parametrize("runtimes, words", [(["py313"], "a runtime is python3"),
                                             (["python313"], "HTTP Error 404")])
def test_bad_runtimes_and_unknown_pins_say_so(tmp_path, index, runtimes, words):
    done = check(tmp_path, index, ["absent==1.0"], "python313", *runtimes)
    assert done.returncode == 2 and words in done.stderr


def test_deploy_sh_defaults_to_the_newest_runtime_the_pins_allow():
    """The real pins' wheels, as make check-wheels reads them, are the upgrades workflow's
    job (it needs PyPI); here: deploy.sh's default is one of the runtimes it checks."""
    makefile = (ROOT / "Makefile").read_text()
    deploy = (ROOT / "deploy.sh").read_text()
    default = deploy.split('RUNTIME="${RUNTIME:-')[1].split("}")[0]
    assert f" {default}" in makefile.split("RUNTIMES ?=")[1].splitlines()[0]
