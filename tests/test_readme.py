"""Every curl example in README.md and docs/, run against the live function, prints what it shows.

An example is a ```sh block that starts with `curl`, followed by a block with the
output: ```json (compared as parsed JSON), or ```csv or ```text (compared as text).
http://localhost:8080 (what `make serve` listens on) is replaced by the live server's
URL, and curl runs in the repository root, so an example may send a file the docs
ship (`--data-binary @docs/flowers.csv`). http://localhost:8081 is the README's own
model: a server of the model `make model CSV=docs/garden.csv TARGET=kind` writes.
"""

import json
import math
import re
import shlex
import subprocess
import sys

import pytest

from harness import ROOT, FunctionServer

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SERVE_URL = "http://localhost:8080"
GARDEN_URL = "http://localhost:8081"  # README "Serve your own model"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
OUTPUTS = ("json", "csv", "text")
# Open Inference answers carry unrounded FP64 probabilities, whose last bits may differ
# on another BLAS; every other number shown is exact.
FLOAT_TOLERANCE = 1e-12


def curl_examples(text: str) -> list:
    """(command, output language, shown output); a curl block without an output is an error."""
    blocks = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    examples = []
    for i, (language, body) in enumerate(blocks):
        if language != "sh" or not body.startswith("curl "):
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
        if following[0] not in OUTPUTS:
            raise ValueError(f"curl example has no ```json, ```csv or ```text output after it: "
                             f"{body[:80]}")
        examples.append((body.replace("\\\n", " ").strip(), *following))
    return examples


def same(got, shown) -> bool:
    """Equal JSON values, floats within FLOAT_TOLERANCE of each other."""
    if isinstance(shown, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and math.isclose(got, shown, rel_tol=FLOAT_TOLERANCE,
                                                               abs_tol=FLOAT_TOLERANCE)
    if isinstance(shown, dict):
        return isinstance(got, dict) and got.keys() == shown.keys() and all(
            same(got[k], shown[k]) for k in shown)
    if isinstance(shown, list):
        return isinstance(got, list) and len(got) == len(shown) and all(
            same(a, b) for a, b in zip(got, shown))
    return type(got) is type(shown) and got == shown


EXAMPLES = [(f"{path.relative_to(ROOT)}:{i}", *example) for path in DOCUMENTS
            for i, example in enumerate(curl_examples(path.read_text()))]
FILES = re.compile(r"(?:-d|--data|--data-binary) @([\w./-]+)")  # a body read from a file


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_curl_line_is_a_checked_example(path):
    text = path.read_text()
    assert len(re.findall(r"^curl ", text, re.MULTILINE)) == len(curl_examples(text))


def test_the_readme_has_its_examples():
    assert sum(name.startswith("README.md") for name, *_ in EXAMPLES) >= 2


def test_every_file_an_example_sends_is_in_the_repository():
    for name, command, *_ in EXAMPLES:
        for path in FILES.findall(command):
            assert (ROOT / path).is_file(), f"{name} sends {path}, which is not in the repository"


@pytest.fixture(scope="module")
def garden(tmp_path_factory):
    """The README's own model, trained as it says and served."""
    path = tmp_path_factory.mktemp("garden") / "garden.joblib"
    subprocess.run([sys.executable, "train.py", "--csv", "docs/garden.csv", "--target", "kind",
                    "--output", str(path)], cwd=ROOT, check=True, capture_output=True)
    with FunctionServer(env={"MODEL_PATH": str(path)}) as server:
        yield server


@pytest.mark.parametrize("name, command, language, shown", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_curl_example(request, live, name, command, language, shown):
    url, server = (GARDEN_URL, request.getfixturevalue("garden")) if GARDEN_URL in command \
        else (SERVE_URL, live)
    args = [arg.replace(url, server.url) for arg in shlex.split(command)]
    assert url in command and args[0] == "curl"
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    if language == "json":
        assert same(json.loads(done.stdout), json.loads(shown)), done.stdout
    else:
        assert done.stdout.rstrip("\n") == shown.rstrip("\n")
