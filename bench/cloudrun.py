"""Cold starts as Cloud Run runs them: the bundle and its dependencies compiled as Google's
Python buildpack compiles them, built here.

What the buildpack does at build time (GoogleCloudPlatform/buildpacks, read at its main of
2026-08-22):
- pkg/python/python.go, compileBytecode: the requirements are installed with
  `pip install --no-compile`, then `python3 -m compileall --invalidation-mode unchecked-hash
  -qq` runs over their layer: every dependency has bytecode, used without a look at its source.
- cmd/python/functions_framework/lib/lib.go: `python3 -m compileall -f -q .` in the function's
  own directory, to stop a syntax error before it deploys. That leaves timestamp-checked
  bytecode beside the bundle's sources, in the image.
- The buildpacks lifecycle gives every app file one fixed mtime during the build and in the
  image (buildpacks/lifecycle#249, buildpacks/spec#111): that bytecode is still valid when an
  instance starts.
So an instance compiles nothing at start (BUILT). NO_BYTECODE is what a start costs where no
bytecode is found at all, every module compiled from its source: the bundle without
`__pycache__` on a venv installed with --no-compile, as `make serve` runs on a machine that
sets PYTHONDONTWRITEBYTECODE.

Here: the "cloudrun" venv (bench/venvs.py) is installed and compiled as that layer is, and
each server of servers.CLOUD_RUN_SOURCES has a workspace under bench/.venvs/cloudrun-workspaces/
holding what deploy.sh uploads (`gcloud meta list-files-for-upload`, which reads .gcloudignore)
or the reference's one file, its mtimes set as the lifecycle sets them, compiled as the
buildpack compiles it. Every start runs with PYTHONDONTWRITEBYTECODE=1: an instance's writes
die with it, so each start here is a first one, as each instance's is.
"""

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from bench.venvs import VENVS
from harness import ROOT

WORKSPACES = VENVS / "cloudrun-workspaces"
EMPTY_PYCACHE = VENVS / "cloudrun-no-bytecode"  # PYTHONPYCACHEPREFIX: bytecode looked for here
BUILT = "as Cloud Run builds it"
NO_BYTECODE = "with no bytecode"
CONDITIONS = {
    BUILT: {"PYTHONDONTWRITEBYTECODE": "1"},
    NO_BYTECODE: {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(EMPTY_PYCACHE)},
}
# 1980-01-01 00:00:01 UTC: the lifecycle's mtime for every file it exports.
LIFECYCLE_MTIME = 315532801
# The functions buildpack's compile step, in the function's directory (its lib.go); the
# dependencies' is venvs.COMPILE_AS_THE_BUILDPACK.
COMPILE_FUNCTION = ("-m", "compileall", "-f", "-q", ".")


@functools.cache
def bundle() -> dict:
    """The files deploy.sh uploads, as gcloud lists them from .gcloudignore: {path: file}."""
    run = subprocess.run(["gcloud", "meta", "list-files-for-upload", str(ROOT)],
                         capture_output=True, text=True, timeout=120, check=True)
    return {path: ROOT / path for path in sorted(run.stdout.split())}


def workspace(where: Path, files: dict, python: Path) -> Path:
    """`where`, made anew of `files` ({path in it: source file}) as the buildpack builds it."""
    shutil.rmtree(where, ignore_errors=True)
    for path, source in files.items():
        (where / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, where / path)
    for path in [where, *where.rglob("*")]:
        os.utime(path, (LIFECYCLE_MTIME, LIFECYCLE_MTIME))
    subprocess.run([str(python), *COMPILE_FUNCTION], cwd=where, check=True,
                   capture_output=True, timeout=300)
    return where


def directory(server: str) -> Path:
    """The workspace of a server: "(a) Flask hello" starts in .../a-flask-hello."""
    return WORKSPACES / re.sub(r"[^a-z0-9]+", "-", server.lower()).strip("-")


def prepare(bin_dir: Path, sources: dict) -> None:
    """Each server's workspace, from the sources as they are now ({server: its one source
    file as main.py, or None for the bundle}); `bin_dir` is the "cloudrun" venv's."""
    EMPTY_PYCACHE.mkdir(parents=True, exist_ok=True)
    for server, source in sources.items():
        files = bundle() if source is None else {"main.py": source,
                                                 "requirements.txt": ROOT / "requirements.txt"}
        workspace(directory(server), files, bin_dir / "python")
