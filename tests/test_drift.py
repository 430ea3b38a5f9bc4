"""Drift reports: sampled prediction lines from a live server, and `make drift` reading them.

The server is the real functions-framework one with PREDICTION_LOG_SAMPLE set; its printed
lines are the input. Expected figures come from NumPy over the rows the test sent and from
np.histogram over model.json's bin edges, never from drift.py itself.
"""

import json
import math
import re
import subprocess
import sys
import time
from datetime import datetime, timezone

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris

import drift
from harness import ROOT, FunctionServer

NAMES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ALIASES = ("sl", "sw", "pl", "pw")
PROJECT = "iris-drift-project"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_HEADER = {"X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1"}
LABEL = {"iris_predict": "prediction_sample"}
SHIFTED, SHIFT_CM = 2, 2.0  # petal_length, 2 cm longer than any training flower's shape
ROWS, SINGLES, BATCH = 300, 100, 50  # rows sent: the first SINGLES one request each
MODEL = json.loads((ROOT / "model.json").read_text())


def json_lines(output: str) -> list:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def by_logger(lines: list, logger: str) -> list:
    return [line for line in lines if line.get("logger") == logger]


def wait_for_requests(server: FunctionServer, expected: int) -> list:
    """Every line the server printed, once `expected` request lines are among them.

    A handler writes its rows' sample lines before its request line, so when the request
    lines are all there, so are the samples.
    """
    deadline = time.monotonic() + 60
    while True:
        # Counted in the text, parsed once: parsing megabytes of sample lines at every poll
        # is what made a loaded machine miss the deadline.
        output = server.output()
        if output.count('"logger":"iris_predict.requests"') >= expected:
            lines = json_lines(output)
            if len(by_logger(lines, "iris_predict.requests")) >= expected:
                return lines
        assert time.monotonic() < deadline, f"too few request lines:\n{output[-2000:]}"
        time.sleep(0.05)


def send(server: FunctionServer, X: np.ndarray, singles: int, batch: int) -> tuple:
    """POST X's first `singles` rows one by one (tutorial body), the rest in batches.

    Returns (single answers, number of requests).
    """
    answers = []
    for row in X[:singles].tolist():
        reply = server.call("POST", dict(zip(ALIASES, row)), TRACE_HEADER)
        assert reply.status == 200
        answers.append(reply.json())
    rest = X[singles:]
    for start in range(0, len(rest), batch):
        reply = server.call("POST", {"instances": rest[start:start + batch].tolist()},
                            TRACE_HEADER)
        assert reply.status == 200
    return answers, singles + math.ceil(len(rest) / batch)


def sample_rows(lines: list) -> np.ndarray:
    samples = by_logger(lines, "iris_predict.predictions")
    return np.array([[s[name] for name in NAMES] for s in samples]).reshape(-1, 4)


@pytest.fixture(scope="module")
def sent():
    """ROWS flowers drawn from the iris data (fixed seed), petal_length shifted by SHIFT_CM."""
    rng = np.random.default_rng(2024)
    X = load_iris().data[rng.integers(0, 150, ROWS)]
    X[:, SHIFTED] += SHIFT_CM
    return X


@pytest.fixture(scope="module")
def shifted(sent):
    """A server sampling every row, fed `sent`: (its single answers, every line it printed)."""
    env = {"PREDICTION_LOG_SAMPLE": "1", "GOOGLE_CLOUD_PROJECT": PROJECT}
    with FunctionServer(env=env) as server:
        answers, requests = send(server, sent, SINGLES, BATCH)
        return answers, wait_for_requests(server, requests)


@pytest.fixture(scope="module")
def logs_file(shifted, tmp_path_factory):
    """The shifted server's lines as it printed them: JSON Lines, request lines included."""
    path = tmp_path_factory.mktemp("logs") / "served.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in shifted[1]))
    return path


# --- what the function logs ------------------------------------------------------------------

def test_every_row_is_sampled_at_rate_one_exactly_as_sent(sent, shifted):
    _, lines = shifted
    np.testing.assert_array_equal(sample_rows(lines), sent)  # bit for bit, in order


def test_a_sample_line_carries_class_species_and_probabilities(sent, shifted):
    """Each line's prediction is scikit-learn's, rounded to the API's 6 digits."""
    answers, lines = shifted
    samples = by_logger(lines, "iris_predict.predictions")
    estimator = joblib.load(ROOT / "model.joblib")
    classes = MODEL["classes"]
    expected_proba = np.round(estimator.predict_proba(sent), 6)
    for sample, label, proba in zip(samples, estimator.predict(sent), expected_proba):
        assert (sample["severity"], sample["message"]) == ("INFO", "prediction sample")
        assert sample["logging.googleapis.com/labels"] == LABEL
        assert sample["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"
        assert (sample["class"], sample["species"]) == (label, classes[label])
        assert sample["probabilities"] == dict(zip(classes, proba))
    for sample, answer in zip(samples, answers):  # what the client was told
        assert sample["probabilities"] == answer["probabilities"]


def test_request_lines_stay_free_of_measurements(shifted):
    _, lines = shifted
    requests = by_logger(lines, "iris_predict.requests")
    allowed = {"severity", "message", "logger", "httpRequest", "protocol", "rows",
               "logging.googleapis.com/trace"}
    assert requests and all(set(line) <= allowed for line in requests)


def test_nothing_is_sampled_by_default(live):
    """The session's server runs with the default: no line of it, ever, is a sample."""
    before = len(by_logger(json_lines(live.output()), "iris_predict.requests"))
    _, requests = send(live, load_iris().data[:20], 10, 5)
    lines = wait_for_requests(live, before + requests)
    assert not by_logger(lines, "iris_predict.predictions")
    assert not any("logging.googleapis.com/labels" in line for line in lines)


# At rate 0.5 the number of sampled rows out of n is Binomial(n, 0.5): mean n/2, standard
# deviation sqrt(n)/2. Six standard deviations either side fail a correct sampler about twice
# in a billion runs, and still catch per-request sampling (a batch all in or all out) and
# rates off by a few per cent.
HALF_RATE_SINGLES, HALF_RATE_BATCH_ROWS = 400, 4000
SIGMAS = 6


def test_half_rate_samples_about_half_of_the_rows_each_on_its_own():
    rng = np.random.default_rng(7)
    n = HALF_RATE_SINGLES + HALF_RATE_BATCH_ROWS
    X = rng.uniform(1, 7, (n, 4))  # distinct rows, so each sample names the row it came from
    with FunctionServer(env={"PREDICTION_LOG_SAMPLE": "0.5"}) as server:
        _, requests = send(server, X, HALF_RATE_SINGLES, HALF_RATE_BATCH_ROWS)
        sampled = sample_rows(wait_for_requests(server, requests))
    position = {tuple(row): i for i, row in enumerate(X.tolist())}
    indices = [position[tuple(row)] for row in sampled.tolist()]  # KeyError: a row not sent
    assert indices == sorted(set(indices))  # each row at most once, in the order answered
    for low, high in ((0, HALF_RATE_SINGLES), (HALF_RATE_SINGLES, n)):
        k, rows = sum(low <= i < high for i in indices), high - low
        assert abs(k - rows / 2) <= SIGMAS * math.sqrt(rows) / 2, (k, rows)


@pytest.mark.parametrize("rate", ["2", "-0.1", "nan", "half"])
def test_a_bad_rate_stops_the_instance_at_start(rate):
    with pytest.raises(RuntimeError, match=re.escape(
            f"PREDICTION_LOG_SAMPLE must be a number from 0 to 1, got '{rate}'")):
        with FunctionServer(env={"PREDICTION_LOG_SAMPLE": rate}):
            pass


# --- the reference distribution in model.json -------------------------------------------------

def test_model_json_bins_are_the_training_histogram():
    X = load_iris().data
    for name, column in zip(NAMES, X.T):
        recorded = MODEL["training_distribution"][name]
        edges = np.linspace(column.min(), column.max(), drift.BINS + 1)
        np.testing.assert_allclose(recorded["edges"], edges, rtol=0, atol=1e-12)
        assert recorded["edges"][0] == column.min() and recorded["edges"][-1] == column.max()
        counts, _ = np.histogram(column, bins=recorded["edges"])
        assert recorded["shares"][0] == recorded["shares"][-1] == 0  # nothing outside the range
        np.testing.assert_allclose(recorded["shares"][1:-1], counts / len(column), atol=1e-12)


def test_psi_known_answers():
    # (0.5 - 0.25) ln 2 + (0.5 - 0.75) ln(2/3), by hand
    assert drift.psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(
        0.25 * math.log(2) - 0.25 * math.log(2 / 3), abs=1e-15)
    # An empty bin counts as EPSILON: (1 - 1e-4) ln(1e4) from each of the two bins.
    assert drift.psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(
        2 * (1 - 1e-4) * math.log(1e4), abs=1e-12)
    assert drift.psi(np.array([0.2, 0.8]), np.array([0.2, 0.8])) == 0


# --- the report ----------------------------------------------------------------------------

def expected_figures(X: np.ndarray) -> dict:
    """Per feature, what the report must print, computed here from the rows sent."""
    figures = {}
    for j, (name, feature) in enumerate(zip(NAMES, MODEL["features"])):
        column, bins = X[:, j], MODEL["training_distribution"][name]
        inner, _ = np.histogram(column, bins=bins["edges"])
        served = np.array([(column < bins["edges"][0]).sum(), *inner,
                           (column > bins["edges"][-1]).sum()]) / len(column)
        training = np.maximum(bins["shares"], 1e-4)
        served = np.maximum(served, 1e-4)
        psi = float(np.sum((served - training) * np.log(served / training)))
        outside = ((column < feature["min"]) | (column > feature["max"])).mean()
        figures[name] = {"served": len(column), "mean": column.mean(), "std": column.std(),
                         "train mean": feature["mean"], "train std": feature["std"],
                         "outside": 100 * outside, "psi": psi}
    return figures


def report_table(stdout: str) -> dict:
    """The report's first table, as {feature: {column: number, "flag": text}}."""
    rows = {}
    for line in stdout.splitlines():
        match = re.fullmatch(r"(\w+)\s+(\d+)\s+([\d.-]+)\s+([\d.]+)\s+([\d.-]+)\s+([\d.]+)"
                             r"\s+([\d.]+)%\s+([\d.]+)\s*(.*)", line)
        if match and match.group(1) in NAMES:
            numbers = [float(x) for x in match.groups()[1:8]]
            rows[match.group(1)] = {**dict(zip(
                ("served", "mean", "std", "train mean", "train std", "outside", "psi"), numbers)),
                "flag": match.group(9)}
    return rows


def make_drift(logs) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "drift", f"LOGS={logs}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_make_drift_flags_the_shifted_feature_and_only_it(sent, logs_file):
    done = make_drift(logs_file)
    assert done.returncode != 0 and "drift] Error 1" in done.stderr  # drift.py exits 1: drift
    table = report_table(done.stdout)
    assert list(table) == list(NAMES), done.stdout
    for name, expected in expected_figures(sent).items():
        printed = table[name]
        # Printed to 3 decimals (1 for the percentage): equal within half the last digit.
        for column in ("mean", "std", "train mean", "train std", "psi"):
            assert printed[column] == pytest.approx(expected[column], abs=5e-4), (name, column)
        assert printed["outside"] == pytest.approx(expected["outside"], abs=0.05)
        assert printed["served"] == expected["served"]
        drifted = expected["psi"] >= 0.25
        assert drifted == (name == "petal_length")  # the data really is as the test means
        assert printed["flag"] == ("DRIFT" if drifted else "")


def test_the_report_shows_where_served_values_sit(logs_file):
    done = subprocess.run([sys.executable, "drift.py", str(logs_file)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == drift.DRIFTED
    section = done.stdout.split("\npetal_length (cm)")[1].split("\n\n")[0]
    bins = [line for line in section.splitlines() if line.startswith("  ") and "%" in line]
    assert len(bins) == drift.BINS + 2
    assert bins[-1].split()[:2] == ["above", "6.9"]
    # Training put no flower above 6.9 cm; shifted by 2 cm, a good share of served ones are.
    training_share, served_share = re.findall(r"([\d.]+)%", bins[-1])
    assert float(training_share) == 0 and float(served_share) > 20
    assert "#" in bins[-1]


def log_entry(line: dict) -> dict:
    """The LogEntry Cloud Logging makes of a printed line: special fields moved out of the
    payload (Google's structured logging documentation), the rest as jsonPayload."""
    payload = dict(line)
    entry = {"logName": f"projects/{PROJECT}/logs/run.googleapis.com%2Fstdout",
             "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
             "resource": {"type": "cloud_run_revision",
                          "labels": {"service_name": "iris-predict", "project_id": PROJECT}},
             "severity": payload.pop("severity"),
             "labels": {"instanceId": "0069c7a988", **payload.pop(
                 "logging.googleapis.com/labels", {})}}
    if "logging.googleapis.com/trace" in payload:
        entry["trace"] = payload.pop("logging.googleapis.com/trace")
    if "httpRequest" in payload:
        entry["httpRequest"] = payload.pop("httpRequest")
    entry["jsonPayload"] = payload
    return entry


@pytest.mark.parametrize("form", ["gcloud logging read --format=json", "log entries, one a line"])
def test_the_report_reads_cloud_logging_exports_alike(shifted, logs_file, tmp_path, capsys, form):
    entries = [log_entry(line) for line in shifted[1]]
    path = tmp_path / "export.json"
    if form.startswith("gcloud"):
        path.write_text(json.dumps(entries, indent=2))
    else:
        path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    status = drift.main([str(logs_file)])
    as_printed = capsys.readouterr().out
    assert drift.main([str(path)]) == status == drift.DRIFTED
    exported = capsys.readouterr().out
    assert report_table(exported) == report_table(as_printed)
    assert exported.split("\n", 1)[1] == as_printed.split("\n", 1)[1]  # all but the file name


BAD_LOGS = [
    # (file content, what the message must say)
    ("", "holds no prediction samples"),
    ('{"severity": "INFO", "message": "POST 200"}\n', "holds no prediction samples"),
    ("Starting gunicorn 23.0.0\n", "line 1 is not JSON"),
    ("[2024-05-01 12:00:00] [INFO] Starting gunicorn\n", "is not valid JSON"),
    ('{"severity": "INFO"}\nnot json\n', "line 2 is not JSON"),
    ('[{"severity": "INFO"}, 3]', "item 1 is not a JSON object"),
    ('[{"severity": ', "is not valid JSON"),
    ("[1, 2]\n", "item 0 is not a JSON object"),
    (json.dumps({"logging.googleapis.com/labels": LABEL, "sepal_length": 5.1}),
     "without a number for sepal_width"),
    (json.dumps({"labels": LABEL, "jsonPayload": {**dict.fromkeys(NAMES, 1.0),
                                                  "petal_width": "1.0"}}),
     "without a number for petal_width"),
]


@pytest.mark.parametrize("content, message", BAD_LOGS)
def test_unreadable_logs_are_refused_with_a_reason(tmp_path, capsys, content, message):
    path = tmp_path / "logs.jsonl"
    path.write_text(content)
    assert drift.main([str(path)]) == drift.USAGE_ERROR
    err = capsys.readouterr().err
    assert err.startswith("drift.py: ") and message in err


def test_a_model_without_reference_bins_is_refused(tmp_path, logs_file, capsys):
    old = tmp_path / "model.json"
    old.write_text(json.dumps({k: v for k, v in MODEL.items() if k != "training_distribution"}))
    assert drift.main([str(logs_file), "--model", str(old)]) == drift.USAGE_ERROR
    assert "lacks training_distribution: retrain with 'make model'" in capsys.readouterr().err


def test_few_rows_are_not_flagged(sent, tmp_path):
    lines = [{"logging.googleapis.com/labels": LABEL, **dict(zip(NAMES, row))}
             for row in sent[:drift.MIN_ROWS - 1].tolist()]
    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = subprocess.run([sys.executable, "drift.py", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    table = report_table(done.stdout)
    assert table["petal_length"]["psi"] >= 0.25  # drifted, but too few rows to say so
    assert all(row["flag"] == f"too few rows (< {drift.MIN_ROWS})" for row in table.values())


def _psi(column: np.ndarray, bins: dict) -> float:
    """PSI of served values against model.json's training shares, computed here."""
    inner, _ = np.histogram(column, bins=bins["edges"])
    served = np.array([(column < bins["edges"][0]).sum(), *inner,
                       (column > bins["edges"][-1]).sum()]) / len(column)
    served, training = np.maximum(served, 1e-4), np.maximum(bins["shares"], 1e-4)
    return float(np.sum((served - training) * np.log(served / training)))


def _moved(column: np.ndarray, bins: dict, below: float | None, above: float | None):
    """`column` with as many of its values moved past the training maximum as bring its PSI
    just below `below` (the most that stay under it) or just above `above` (the fewest that
    reach it)."""
    for count in range(len(column)):
        moved = column.copy()
        moved[:count + 1] = bins["edges"][-1] + 1.0
        if below is not None and _psi(moved, bins) >= below:
            moved[count] = column[count]
            return moved
        if above is not None and _psi(moved, bins) >= above:
            return moved
    raise AssertionError("no such shift")


def test_psi_bands_on_both_sides_of_their_bounds(tmp_path):
    """One feature just under 0.1, one just over, one just under 0.25, one just over."""
    X = np.vstack([load_iris().data] * 2)  # served exactly as trained: PSI 0, before the moves
    cases = {"sepal_length": ((0.1, None), ""), "sepal_width": ((None, 0.1), "moderate"),
             "petal_length": ((0.25, None), "moderate"), "petal_width": ((None, 0.25), "DRIFT")}
    expected = {}
    for j, (name, ((below, above), flag)) in enumerate(cases.items()):
        bins = MODEL["training_distribution"][name]
        X[:, j] = _moved(X[:, j], bins, below, above)
        expected[name] = (_psi(X[:, j], bins), flag)
    psis = [psi for psi, _ in expected.values()]
    # The data really is as the test means, close to each bound.
    assert 0.07 < psis[0] < 0.1 <= psis[1] < 0.13 and 0.22 < psis[2] < 0.25 <= psis[3] < 0.28
    lines = [{"logging.googleapis.com/labels": LABEL, **dict(zip(NAMES, row))}
             for row in X.tolist()]
    path = tmp_path / "bands.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = subprocess.run([sys.executable, "drift.py", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr  # petal_width drifted
    table = report_table(done.stdout)
    for name, (psi, flag) in expected.items():
        assert table[name]["psi"] == pytest.approx(psi, abs=5e-4), name
        assert table[name]["flag"] == flag, (name, psi)


def test_make_drift_without_logs_prints_its_usage():
    done = subprocess.run(["make", "--no-print-directory", "drift"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "usage: make drift LOGS=FILE" in done.stdout + done.stderr


def test_the_report_shown_in_docs_is_the_one_for_these_flowers(logs_file):
    """docs/drift.md shows the report for the flowers `sent` holds: it must stay that report."""
    doc = (ROOT / "docs" / "drift.md").read_text()
    shown = re.search(r"^```\n(feature .*?)\n```$", doc, re.DOTALL | re.MULTILINE).group(1)
    done = subprocess.run([sys.executable, "drift.py", str(logs_file)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    for block in shown.split("\n\n"):
        assert block in done.stdout


# --- categories --------------------------------------------------------------------------------

def category_lines(trained, colours: list) -> str:
    """Sample lines as the function writes them for a model with categories: the row as
    {feature: value}, a category as its string, a missing value as null."""
    lines = []
    for row, colour in zip(trained.rows.tolist(), colours):
        values = [None if isinstance(v, float) and math.isnan(v) else v for v in row]
        values[1] = colour
        entry = {"severity": "INFO", "message": "prediction sample",
                 "logging.googleapis.com/labels": LABEL,
                 **dict(zip(["height", "colour", "soil", "width"], values))}
        lines.append(json.dumps(entry) + "\n")
    return "".join(lines)


def test_a_shifted_category_is_flagged_by_the_psi_of_its_shares(trained_models, tmp_path, capsys):
    """The training rows served again, with colour shifted: white 4x as often, and a colour
    training never had. Only colour drifts; its PSI, computed here from model.json's shares."""
    trained = trained_models["garden_kind"]
    meta = trained.metadata
    rng = np.random.default_rng(5)
    colours = rng.choice(["red", "green", "blue", "white", "purple", None], len(trained.rows),
                         p=[0.2, 0.2, 0.1, 0.4, 0.05, 0.05]).tolist()
    logs = tmp_path / "served.jsonl"
    logs.write_text(category_lines(trained, colours))
    model = tmp_path / "model.json"
    model.write_text(json.dumps(meta))
    assert drift.main([str(logs), "--model", str(model)]) == drift.DRIFTED
    out = capsys.readouterr().out
    present = [c for c in colours if c is not None]
    known = list(meta["features"][1]["categories"])
    served = np.array([present.count(c) for c in known] + [present.count("purple")]) / len(present)
    training = np.array([*meta["features"][1]["categories"].values(), 0.0])
    s, t = np.maximum(served, 1e-4), np.maximum(training, 1e-4)
    expected = float(np.sum((s - t) * np.log(s / t)))
    row = re.search(r"^colour\s+(\d+)\s+-\s+-\s+-\s+-\s+([\d.]+)%\s+([\d.]+)\s+DRIFT$", out, re.M)
    assert row, out
    assert int(row.group(1)) == len(present)
    assert float(row.group(2)) == pytest.approx(100 * present.count("purple") / len(present),
                                                abs=0.05)
    assert float(row.group(3)) == pytest.approx(expected, abs=5e-4)
    for name in ("height", "soil", "width"):  # served as trained: nothing moved
        assert re.search(rf"^{name}\s+\d+ .* 0\.000$", out, re.M), (name, out)
    assert f"  (unseen)          0.0% {' ' * 30} {100 * served[-1]:>5.1f}%" in out
