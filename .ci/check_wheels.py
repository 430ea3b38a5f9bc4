"""Does every pinned runtime dependency have a binary wheel for each Python Cloud Run offers?

    python .ci/check_wheels.py [--requirements requirements.txt] [--index-url URL]
                               [--deploy deploy.sh] RUNTIME...

Cloud Run's buildpack installs requirements.txt on Linux x86_64; a pin without a wheel for
the runtime's Python is built from source there, or fails. For each RUNTIME (python311, ...)
this reads the index's file list of every pin (PEP 691 JSON) and finds a wheel whose tags
that CPython takes on manylinux x86_64. It prints one line per runtime, and exits 1 if
deploy.sh's default runtime lacks a wheel, or if a newer runtime than the default has them
all (then deploy.sh should default to it); 2 on a bad argument or an index it cannot read.
"""

import argparse
import json
import re
import sys
import urllib.request
from pathlib import Path

from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
INDEX = "https://pypi.org/simple"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
DEFAULT_RUNTIME = re.compile(r'RUNTIME="\$\{RUNTIME:-(python3\d+)\}"')
# Cloud Run's base images are Ubuntu 22.04 (glibc 2.35) or newer: manylinux_2_35 and older.
GLIBC_MINOR = 35
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def pins(requirements: Path) -> list:
    """(name, version) of every == pin in a requirements file."""
    return PIN.findall(requirements.read_text())


def python_of(runtime: str) -> tuple:
    """python313 -> (3, 13)."""
    found = re.fullmatch(r"python3(\d+)", runtime)
    if not found:
        raise ValueError(f"a runtime is python3 and its minor version (python313), "
                         f"got {runtime!r}")
    return 3, int(found[1])


def supported(python: tuple) -> set:
    return {*cpython_tags(python, platforms=PLATFORMS),
            *compatible_tags(python, f"cp{python[0]}{python[1]}", platforms=PLATFORMS)}


def wheels(index: str, name: str, version: str) -> list:
    """The tags of each wheel the index has for name==version."""
    request = urllib.request.Request(f"{index.rstrip('/')}/{canonicalize_name(name)}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    found = []
    for file in files:
        try:
            wheel, wheel_version, _, tags = parse_wheel_filename(file["filename"])
        except InvalidWheelFilename:
            continue  # an sdist
        if str(wheel_version) == version and canonicalize_name(wheel) == canonicalize_name(name):
            found.append(tags)
    return found


def missing(runtime: str, available: dict) -> list:
    """The pins with no wheel for the runtime."""
    tags = supported(python_of(runtime))
    return [pin for pin, wheel_tags in available.items()
            if not any(tags & set(t) for t in wheel_tags)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=".ci/check_wheels.py", description=__doc__.splitlines()[0])
    parser.add_argument("runtimes", nargs="+", metavar="RUNTIME")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    parser.add_argument("--index-url", default=INDEX)
    parser.add_argument("--deploy", type=Path, default=ROOT / "deploy.sh",
                        help="the script whose default runtime must pass")
    args = parser.parse_args(argv)
    try:
        for runtime in args.runtimes:
            python_of(runtime)
        default = DEFAULT_RUNTIME.search(args.deploy.read_text())
        if default is None:
            raise ValueError(f"{args.deploy} sets no default RUNTIME")
        default = default[1]
        available = {f"{n}=={v}": wheels(args.index_url, n, v)
                     for n, v in pins(args.requirements)}
    except (OSError, ValueError, KeyError) as e:
        print(f"check_wheels: {e}", file=sys.stderr)
        return 2
    passing = []
    for runtime in args.runtimes:
        lacking = missing(runtime, available)
        print(f"{runtime}: " + (f"no Linux x86_64 wheel for {', '.join(lacking)}" if lacking
                                else f"every one of the {len(available)} pins has a wheel"))
        if not lacking:
            passing.append(runtime)
    newest = max(passing, key=python_of, default=None)
    print(f"newest runtime with every wheel: {newest}; deploy.sh defaults to {default}")
    if default not in passing:
        print(f"check_wheels: deploy.sh's default {default} lacks wheels", file=sys.stderr)
        return 1
    if python_of(newest) > python_of(default):
        print(f"check_wheels: {newest} has every wheel: make it deploy.sh's default",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
