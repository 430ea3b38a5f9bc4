"""The requirements files, the bench peers' too: every pin hashed, each as compiled from its .in.

`make requirements` compiles requirements*.txt from requirements*.in (docs/security.md
"Hashes"); a pin changed by hand or by Dependabot in one of the pair alone fails here until
it is run.
"""

import re

import pytest

from harness import ROOT

COMPILED = ("requirements", "requirements-train", "requirements-dev", "requirements-lint",
            *(str(path.parent.relative_to(ROOT) / "requirements")
              for path in sorted((ROOT / "bench" / "peers").glob("*/requirements.in"))))
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#\\]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def requirements(path) -> dict:
    """{normalized name: (version, hashes)} of each pin in a requirements file."""
    pins, current = {}, None
    for line in path.read_text().splitlines():
        pin = PIN.match(line)
        if pin:
            current = re.sub(r"[-_.]+", "-", pin.group(1)).lower()
            pins[current] = (pin.group(2), [])
        if current and (found := HASH.search(line)):
            pins[current][1].append(found.group())
        if not line.endswith("\\"):
            current = None
    return pins


@pytest.mark.parametrize("name", COMPILED)
def test_every_pin_carries_hashes(name):
    pins = requirements(ROOT / f"{name}.txt")
    assert pins
    assert [pin for pin, (_, hashes) in pins.items() if not hashes] == []


@pytest.mark.parametrize("name", COMPILED)
def test_each_direct_pin_is_the_compiled_one(name):
    compiled = requirements(ROOT / f"{name}.txt")
    for pin, (version, _) in requirements(ROOT / f"{name}.in").items():
        assert compiled.get(pin, (None,))[0] == version, f"{pin}: run make requirements"


def test_the_tests_run_on_the_runtime_pins():
    runtime, dev = requirements(ROOT / "requirements.txt"), requirements(
        ROOT / "requirements-dev.txt")
    assert {pin: dev.get(pin) for pin in runtime} == runtime
