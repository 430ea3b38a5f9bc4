"""Every curl example in README.md, run against the live function, must print what it shows.

An example is a ```sh block that starts with `curl`, followed by a ```json block
with the output. http://localhost:8080 (what `make serve` listens on) is replaced by
the live server's URL; the outputs are compared as parsed JSON.
"""

import json
import re
import shlex
import subprocess

import pytest

from harness import ROOT

README = ROOT / "README.md"
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


EXAMPLES = curl_examples(README.read_text())


def test_every_curl_line_in_the_readme_is_a_checked_example():
    lines = re.findall(r"^curl ", README.read_text(), re.MULTILINE)
    assert len(EXAMPLES) == len(lines) >= 7


@pytest.mark.parametrize("command, shown", EXAMPLES,
                         ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_curl_example(live, command, shown):
    args = [arg.replace(SERVE_URL, live.url) for arg in shlex.split(command)]
    assert SERVE_URL in command and args[0] == "curl"
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(shown)
