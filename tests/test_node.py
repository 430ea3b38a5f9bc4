"""The Node.js client (examples/node/) run by real `node` against the live function.

The client builds itself from the function's metadata (GET /); expected answers come
from scikit-learn (tests/oracle.py), not from the client or the function.
"""

import http.server
import json
import socket
import subprocess
import threading

import pytest

from tests import oracle
from harness import ROOT, free_port

NODE_DIR = ROOT / "examples" / "node"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.test-identity-token"
API_KEY = "AIzaSyTest-api-key-0123456789abcdefghij"  # the shape of a Google API key
# (flower, its species, what the CLI prints on stderr): one known flower of each species, and
# the tutorial's flower, whose sepal length is below the training range.
KNOWN = [(oracle.FLOWERS[species], species, "") for species in oracle.CLASSES]
TUTORIAL = (oracle.TUTORIAL, "setosa", f"warning: {oracle.TUTORIAL_WARNING}\n")
CERTAIN = {"setosa": 1.0, "versicolor": 0.0, "virginica": 0.0}
# What the stand-in function answers: the iris metadata's essentials (GET), and a one-flower
# answer or a batch answer for "instances" (POST).
STAND_IN_METADATA = {
    "name": "iris", "task": "classification", "target": "species", "classes": list(oracle.CLASSES),
    "features": [{"name": name, "alias": alias, "type": "number", "unit": "cm"}
                 for name, alias in zip(oracle.NAMES, oracle.ALIASES)]}
STAND_IN_ANSWERS = (
    {"prediction": [0], "species": "setosa", "probabilities": CERTAIN, "warnings": []},
    {"predictions": [0], "species": ["setosa"], "probabilities": [CERTAIN], "warnings": []},
)


def node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", *args], capture_output=True, text=True, timeout=60)


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return node(str(NODE_DIR / "cli.mjs"), *args, "--url", url)


def flower_args(flower, names=oracle.ALIASES) -> list:
    return [part for name, value in zip(names, flower) for part in (f"--{name}", str(value))]


LONG_OPTIONS = tuple(name.replace("_", "-") for name in oracle.NAMES)  # --sepal-length, ...


def run_module(script: str, url: str):
    """Run an ES module snippet that imports iris.mjs as `iris`, and read the JSON it prints."""
    program = f'import * as iris from {json.dumps((NODE_DIR / "iris.mjs").as_uri())};\n' \
              f'const url = {json.dumps(url)};\n{script}'
    done = node("--input-type=module", "-e", program)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def expected(flower: list, species: str) -> dict:
    """What the client returns for a flower here: its species, scikit-learn's probabilities,
    and the warning for a value out of the training range (only the tutorial's has one)."""
    warnings = [{**w, "message": oracle.TUTORIAL_WARNING} for w in oracle.warnings([flower])]
    return {"species": species, "prediction": oracle.CLASSES.index(species),
            "probabilities": oracle.probabilities([flower])[0], "warnings": warnings}


@pytest.mark.parametrize("flower, species, stderr", KNOWN + [TUTORIAL])
@pytest.mark.parametrize("names", [oracle.ALIASES, LONG_OPTIONS], ids=["short", "long"])
def test_cli_prints_the_species(live, flower, species, stderr, names):
    """The short options and the long ones (issue 17: --sepal-length, as the Python CLI)."""
    done = cli(live.url, *flower_args(flower, names))
    assert done.returncode == 0, done.stderr
    assert done.stdout == species + "\n"
    assert done.stderr == stderr


def test_cli_takes_short_and_long_options_mixed(live):
    args = flower_args(oracle.FLOWERS["virginica"][:2]) \
        + flower_args(oracle.FLOWERS["virginica"][2:], LONG_OPTIONS[2:])
    done = cli(live.url, *args)
    assert (done.returncode, done.stdout) == (0, "virginica\n"), done.stderr


def test_cli_help_lists_the_served_models_options(live):
    done = cli(live.url, "--help")
    assert done.returncode == 0
    for alias, name in zip(oracle.ALIASES, oracle.NAMES):
        assert f"--{alias}, --{name.replace('_', '-')}" in done.stdout
    assert done.stdout.startswith("usage: node cli.mjs --sl CM --sw CM --pl CM --pw CM ")
    assert "Prints the predicted species" in done.stdout


def test_cli_json_is_the_whole_answer(live):
    flower, species, _ = TUTORIAL
    done = cli(live.url, *flower_args(flower), "--json")
    assert done.returncode == 0, done.stderr
    assert oracle.close(json.loads(done.stdout), expected(flower, species))


RANGE = "sl must be a number greater than 0 and at most 100 (cm), got"


@pytest.mark.parametrize("sl, message", [
    # (what is typed after --sl, the function's refusal of what the CLI sends for it)
    ("five", f'{RANGE} string "five"'),    # not a number: sent as typed, named by the function
    ("-1", f"{RANGE} -1"),
    ("1e999", f'{RANGE} string "1e999"'),  # Infinity in JavaScript; JSON has no such number
])
def test_cli_shows_the_functions_error(live, sl, message):
    done = cli(live.url, f"--sl={sl}", "--sw", "3.5", "--pl", "1.4", "--pw", "0.2")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"error: {message} (HTTP 400)\n"


@pytest.mark.parametrize("args, message", [
    (["--sl", "5.1"], "error: missing --sw, --pl, --pw"),
    (["--sl", "5.1", "--sw", "3.5", "--pl", "1.4", "--pw", "0.2", "--colour", "blue"],
     "Unknown option '--colour'"),
    (["--sl", "5.1", "--sepal-length", "5.2", "--sw", "3.5", "--pl", "1.4", "--pw", "0.2"],
     "error: --sl and --sepal-length both give sepal_length; give it once"),
])
def test_cli_usage_errors(live, args, message):
    done = cli(live.url, *args)
    assert done.returncode == 2
    assert message in done.stderr and "usage: node cli.mjs" in done.stderr


def test_cli_unreachable_function():
    url = f"http://127.0.0.1:{free_port()}"
    done = cli(url, *flower_args(oracle.FLOWERS["setosa"]))
    assert done.returncode == 1
    assert done.stderr == f"error: could not reach the iris function at {url}: ECONNREFUSED\n"


def test_module_predict_and_predict_many(live):
    virginica, setosa, tutorial = (oracle.FLOWERS["virginica"], oracle.FLOWERS["setosa"],
                                   oracle.TUTORIAL)
    got = run_module(f"""
        const one = await iris.predict(
          {json.dumps(dict(zip(oracle.NAMES, virginica)))}, {{url}});
        const many = await iris.predictMany({json.dumps([setosa, tutorial])}, {{url}});
        console.log(JSON.stringify({{one, many}}));
    """, live.url)
    assert oracle.close(got["one"], expected(virginica, "virginica"))
    tutorial_answer = expected(tutorial, "setosa")
    tutorial_answer["warnings"] = [{**w, "row": 1} for w in tutorial_answer["warnings"]]
    assert oracle.close(got["many"], [expected(setosa, "setosa"), tutorial_answer])


def test_module_explains_when_asked(live):
    """explain: the function's explanations, base and reference, for one row and many."""
    virginica, setosa = oracle.FLOWERS["virginica"], oracle.FLOWERS["setosa"]
    got = run_module(f"""
        const one = await iris.predict(
          {json.dumps(dict(zip(oracle.NAMES, virginica)))}, {{url, explain: true}});
        const many = await iris.predictMany({json.dumps([setosa, virginica])},
                                            {{url, explain: true}});
        const plain = await iris.predict({json.dumps(dict(zip(oracle.NAMES, virginica)))}, {{url}});
        console.log(JSON.stringify({{one, many, plain}}));
    """, live.url)
    reply = live.call("POST", {"instances": [setosa, virginica], "explain": True}).json()
    assert got["one"]["explanation"] == reply["explanations"][1]
    assert got["one"]["baseValue"] == reply["base_values"][1]
    assert got["one"]["measuredFrom"] == "average training row"
    assert [m["explanation"] for m in got["many"]] == reply["explanations"]
    assert [m["baseValue"] for m in got["many"]] == reply["base_values"]
    assert "explanation" not in got["plain"]


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
    assert got == {"thrown": True, "name": "IrisError", "status": 400,
                   "message": "request body is missing pw"}


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


@pytest.fixture(scope="module")
def recorder():
    """A stand-in function on loopback that records each request's headers."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the metadata the client builds itself from
            seen.append(dict(self.headers.items()))
            self._send(STAND_IN_METADATA)

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(dict(self.headers.items()))
            self._send(STAND_IN_ANSWERS["instances" in request])

        def _send(self, answer):
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.seen = seen
    yield server
    server.shutdown()
    server.server_close()


CALLS = {  # the module's functions, called with `options`
    "predict": "iris.predict({sl: 5.1, sw: 3.5, pl: 1.4, pw: 0.2}, options)",
    "predictMany": "iris.predictMany([[5.1, 3.5, 1.4, 0.2]], options)",
}


def _headers_received(recorder, how: str, token: str | None, api_key: str | None = None) -> list:
    """The headers of each request (the metadata's GET, the POST) the recorder got when the
    client called it as `how` says (lower-case names)."""
    url = f"http://127.0.0.1:{recorder.server_port}"
    recorder.seen.clear()
    if how == "cli":
        done = cli(url, *flower_args(oracle.FLOWERS["setosa"]),
                   *(["--token", token] if token else []),
                   *(["--api-key", api_key] if api_key else []))
        assert done.returncode == 0, done.stderr
    else:
        options = {"url": url, **({"token": token} if token else {}),
                   **({"apiKey": api_key} if api_key else {})}
        run_module(f"const options = {json.dumps(options)};\n"
                   f"await {CALLS[how]};\nconsole.log('{{}}');", url)
    assert len(recorder.seen) == 2  # the metadata once, then the prediction
    return [{name.lower(): value for name, value in headers.items()} for headers in recorder.seen]


@pytest.mark.parametrize("how", ["predict", "predictMany", "cli"])
def test_a_token_is_sent_as_a_bearer_authorization(recorder, how):
    for headers in _headers_received(recorder, how, TOKEN):
        assert headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("how", ["predict", "predictMany", "cli"])
def test_no_token_no_authorization_header(recorder, how):
    for headers in _headers_received(recorder, how, None):
        assert "authorization" not in headers


@pytest.fixture(scope="module", params=["garden_kind", "diabetes", "garden_kind_boosted"])
def other(request, trained_models):
    """A model that is not iris, trained by train.py --csv (tests/models.py) and served."""
    import joblib

    from harness import FunctionServer
    trained = trained_models[request.param]
    features = [f["name"] for f in trained.metadata["features"]]
    with FunctionServer(env={"MODEL_PATH": str(trained.path)}) as server:
        yield server, joblib.load(trained.path), features, trained.target


def test_the_client_and_cli_follow_any_model(other):
    import numpy as np
    server, pipeline, features, target = other
    meta = json.loads(node("--input-type=module", "-e",
                           f'import * as iris from {json.dumps((NODE_DIR / "iris.mjs").as_uri())};'
                           f'console.log(JSON.stringify(await iris.describe({{url: '
                           f'{json.dumps(server.url)}}})));').stdout)
    row = {f["name"]: ("red" if f["type"] == "category"
                       else round(f["min"] + 0.7 * (f["max"] - f["min"]), 4))
           for f in meta["features"]}
    X = np.array([[row[f] for f in features]], dtype=object)
    got = run_module(f"console.log(JSON.stringify(await iris.predict({json.dumps(row)}, "
                     "{url})));",
                     server.url)
    args = [part for name, value in row.items() for part in (f"--{name.replace('_', '-')}",
                                                             str(value))]
    done = cli(server.url, *args)
    assert done.returncode == 0, done.stderr
    if meta["task"] == "regression":
        (value,) = pipeline.predict(X)
        assert got[target] == pytest.approx(value, rel=1e-9) and "probabilities" not in got
        assert float(done.stdout) == pytest.approx(value, rel=1e-9)
    else:
        (k,) = pipeline.predict(X)
        assert (got[target], got["prediction"]) == (meta["classes"][k], int(k))
        assert oracle.close(got["probabilities"], dict(zip(
            meta["classes"], (round(p, 6) for p in pipeline.predict_proba(X)[0].tolist()))))
        assert done.stdout == meta["classes"][k] + "\n"
    # Explained, for the class answered: the shares plus the base are the model's score.
    explained = run_module(f"console.log(JSON.stringify(await iris.predict({json.dumps(row)}, "
                           "{url, explain: true})));", server.url)
    score = (pipeline.predict(X)[0] if meta["task"] == "regression"
             else np.atleast_2d(pipeline.decision_function(X))[0])
    if meta["task"] != "regression":
        score = score[int(k)] if len(score) > 1 else (score[0] if k == 1 else -score[0])
    total = sum(explained["explanation"].values()) + explained["baseValue"]
    assert total == pytest.approx(score, abs=1e-6 * (len(features) + 1))


@pytest.mark.parametrize("how", ["predict", "predictMany", "cli"])
def test_an_api_key_is_sent_as_x_api_key_beside_the_token(recorder, how):
    # What API Gateway reads a key from (docs/gateway.md); the token still goes as before.
    for headers in _headers_received(recorder, how, TOKEN, API_KEY):
        assert headers["x-api-key"] == API_KEY
        assert headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("how", ["predict", "predictMany", "cli"])
def test_no_api_key_no_x_api_key_header(recorder, how):
    for headers in _headers_received(recorder, how, TOKEN):
        assert "x-api-key" not in headers
