"""Every curl example in README.md and docs/, run against the live function, prints what it shows.

An example is a ```sh block that starts with `curl`, followed by a ```json block
with the output. http://localhost:8080 (what `make serve` listens on) is replaced by
the live server's URL; the outputs are compared as parsed JSON.
"""

import json
import re
import shlex
import subprocess

import pytest

from tests.server import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SERVE_URL = "http://localhost:8080"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def curl_examples(text: str) -> list:
    """(command, shown output) pairs; a curl block without an output block is an error."""
    blocks = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    examples = []
    for i, (language, body) in enumerate(blocks):
        if language != "sh" or not body.startswith("curl "):
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
        if following[0] != "json":
            raise ValueError(f"README curl example has no ```json output after it: {body[:80]}")
        examples.append((body.replace("\\\n", " ").strip(), following[1]))
    return examples


EXAMPLES = [(f"{path.relative_to(ROOT)}:{i}", *example) for path in DOCUMENTS
            for i, example in enumerate(curl_examples(path.read_text()))]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_curl_line_is_a_checked_example(path):
    text = path.read_text()
    assert len(re.findall(r"^curl ", text, re.MULTILINE)) == len(curl_examples(text))


def test_the_readme_has_its_examples():
    assert sum(name.startswith("README.md") for name, _, _ in EXAMPLES) >= 2


@pytest.mark.parametrize("name, command, shown", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_curl_example(live, name, command, shown):
    args = [arg.replace(SERVE_URL, live.url) for arg in shlex.split(command)]
    assert SERVE_URL in command and args[0] == "curl"
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(shown)
