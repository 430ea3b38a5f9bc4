"""The Node.js client (examples/node/) run by real `node` against the live function."""

import json
import socket
import subprocess

import pytest

from harness import ROOT, free_port

NODE_DIR = ROOT / "examples" / "node"
FLOWERS = [  # (sl, sw, pl, pw): one textbook flower per species, and one out of range
    (5.1, 3.5, 1.4, 0.2),
    (7.0, 3.2, 4.7, 1.4),
    (6.3, 3.3, 6.0, 2.5),
    (3.0, 2.0, 1.0, 1.0),
]


def node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", *args], capture_output=True, text=True, timeout=60)


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return node(str(NODE_DIR / "cli.mjs"), *args, "--url", url)


def flower_args(flower) -> list:
    return [part for name, value in zip(("sl", "sw", "pl", "pw"), flower)
            for part in (f"--{name}", str(value))]


def run_module(script: str, url: str):
    """Run an ES module snippet that imports iris.mjs as `iris`, and read the JSON it prints."""
    program = f'import * as iris from {json.dumps((NODE_DIR / "iris.mjs").as_uri())};\n' \
              f'const url = {json.dumps(url)};\n{script}'
    done = node("--input-type=module", "-e", program)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("flower", FLOWERS)
def test_cli_prints_the_functions_species(live, flower):
    truth = live.call("POST", dict(zip(("sl", "sw", "pl", "pw"), flower))).json()
    done = cli(live.url, *flower_args(flower))
    assert done.returncode == 0, done.stderr
    assert done.stdout == truth["species"] + "\n"
    assert done.stderr == "".join(f"warning: {w['message']}\n" for w in truth["warnings"])


def test_cli_json_is_the_whole_answer(live):
    flower = FLOWERS[3]
    truth = live.call("POST", dict(zip(("sl", "sw", "pl", "pw"), flower))).json()
    done = cli(live.url, *flower_args(flower), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"species": truth["species"],
                                       "prediction": truth["prediction"][0],
                                       "probabilities": truth["probabilities"],
                                       "warnings": truth["warnings"]}


@pytest.mark.parametrize("sl, sent", [
    # (what is typed after --sl, what the CLI sends for it)
    ("five", "five"),    # not a number: sent as typed, so the function names the problem
    ("-1", -1),
    ("1e999", "1e999"),  # Infinity in JavaScript; JSON has no such number
])
def test_cli_shows_the_functions_error(live, sl, sent):
    refusal = live.call("POST", {"sl": sent, "sw": 3.5, "pl": 1.4, "pw": 0.2})
    assert refusal.status == 400
    done = cli(live.url, f"--sl={sl}", "--sw", "3.5", "--pl", "1.4", "--pw", "0.2")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"error: {refusal.json()['error']} (HTTP 400)\n"


@pytest.mark.parametrize("args, message", [
    (["--sl", "5.1"], "error: missing --sw, --pl, --pw"),
    (["--sl", "5.1", "--sw", "3.5", "--pl", "1.4", "--pw", "0.2", "--colour", "blue"],
     "Unknown option '--colour'"),
])
def test_cli_usage_errors(live, args, message):
    done = cli(live.url, *args)
    assert done.returncode == 2
    assert message in done.stderr and "usage: node cli.mjs" in done.stderr


def test_cli_unreachable_function():
    url = f"http://127.0.0.1:{free_port()}"
    done = cli(url, *flower_args(FLOWERS[0]))
    assert done.returncode == 1
    assert done.stderr == f"error: could not reach the iris function at {url}: ECONNREFUSED\n"


def test_module_predict_and_predict_many(live):
    got = run_module("""
        const one = await iris.predict(
          {sepal_length: 6.3, sepal_width: 3.3, petal_length: 6.0, petal_width: 2.5}, {url});
        const many = await iris.predictMany([[5.1, 3.5, 1.4, 0.2], [3.0, 2.0, 1.0, 1.0]], {url});
        console.log(JSON.stringify({one, many}));
    """, live.url)
    one = live.call("POST", {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0,
                             "petal_width": 2.5}).json()
    assert got["one"] == {"species": one["species"], "prediction": one["prediction"][0],
                          "probabilities": one["probabilities"], "warnings": one["warnings"]}
    batch = live.call("POST", {"instances": [[5.1, 3.5, 1.4, 0.2], [3.0, 2.0, 1.0, 1.0]],
                               "parameters": {"probabilities": True}}).json()
    assert [row["species"] for row in got["many"]] == batch["species"]
    assert [row["probabilities"] for row in got["many"]] == batch["probabilities"]
    assert got["many"][0]["warnings"] == []
    assert got["many"][1]["warnings"] == [w for w in batch["warnings"] if w["row"] == 1]


def test_module_throws_the_functions_error_with_its_status(live):
    got = run_module("""
        try {
          await iris.predict({sl: 5.1, sw: 3.5, pl: 1.4}, {url});
          console.log(JSON.stringify({thrown: false}));
        } catch (error) {
          console.log(JSON.stringify({thrown: error instanceof iris.IrisError,
                                      name: error.name, status: error.status,
                                      message: error.message}));
        }
    """, live.url)
    refusal = live.call("POST", {"sl": 5.1, "sw": 3.5, "pl": 1.4})
    assert got == {"thrown": True, "name": "IrisError", "status": 400,
                   "message": refusal.json()["error"]}


def test_module_gives_up_on_a_function_that_never_answers():
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        got = run_module("""
            try {
              await iris.predict({sl: 5.1, sw: 3.5, pl: 1.4, pw: 0.2}, {url, timeoutMs: 300});
            } catch (error) {
              console.log(JSON.stringify({status: error.status, message: error.message}));
            }
        """, url)
    assert got == {"status": 0,
                   "message": f"could not reach the iris function at {url}: "
                              "no answer within 300 ms"}
