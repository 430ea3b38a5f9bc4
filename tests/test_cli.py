"""`python main.py --sl … --sw … --pl … --pw …`, the tutorial's iris.py."""

import json
import subprocess
import sys

import pytest

import train
from harness import ROOT
from tests.models import write_csv


def run(*args, env=None):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env)


def test_prints_the_class():
    done = run("--sl", "5.1", "--sw", "3.5", "--pl", "1.4", "--pw", "0.2")
    assert (done.returncode, done.stdout, done.stderr) == (0, "setosa\n", "")


def test_long_names_and_json():
    done = run("--sepal-length", "6.3", "--sepal-width", "3.3", "--petal-length", "6.0",
               "--petal-width", "2.5", "--json")
    body = json.loads(done.stdout)
    assert body["prediction"] == [2] and body["species"] == "virginica"


def test_out_of_range_value_warns_on_stderr():
    done = run("--sl", "3.0", "--sw", "2.0", "--pl", "1.0", "--pw", "1.0")
    assert done.stdout == "setosa\n" and "sepal_length 3 cm is outside" in done.stderr


@pytest.mark.parametrize("value, words", [("abc", 'got string "abc"'), ("nan", "got string"),
                                          ("-1", "got -1"), ("true", "got boolean"),
                                          ("1e999", "must be a number")])
def test_bad_values_are_refused_like_the_api(value, words):
    done = run("--sl", value, "--sw", "3.5", "--pl", "1.4", "--pw", "0.2")
    assert done.returncode == 2 and words in done.stderr and done.stdout == ""


def test_names_beyond_ascii_keep_their_letters(tmp_path):
    """A column "Accélération 0–60" is --Accélération-0-60: argparse takes any letters."""
    rows = [[7.5 + i % 5, ("lourd", "léger")[i % 2], ("rapide", "lente")[i % 5 > 1]]
            for i in range(40)]
    header = ["Accélération 0–60", "Größe_Klasse", "allure"]
    csv = write_csv(tmp_path / "voitures.csv", header, rows)
    model = tmp_path / "voitures.joblib"
    assert train.main(["--csv", str(csv), "--target", "allure", "--output", str(model)]) == 0
    env = {"MODEL_PATH": str(model), "PATH": "/usr/bin"}
    done = run("--help", env=env)
    assert "--Accélération-0-60" in done.stdout and "--Größe-Klasse" in done.stdout
    done = run("--Accélération-0-60", "8.0", "--Größe-Klasse", "léger", env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "rapide\n", "")
