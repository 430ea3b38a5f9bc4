"""The drift export as docs/drift.md gives it: the sink, `gcloud logging read`, the SQL.

The gcloud commands are taken from docs/drift.md and run with the real gcloud CLI against
tests/fake_gcp/ (nothing leaves the machine). The log entries are a live server's sampled
lines as Cloud Logging makes entries of them (tests/test_drift.py log_entry). The SQL is
written for BigQuery: sqlglot parses it as BigQuery SQL, and DuckDB runs it over a table laid
out as Cloud Logging's BigQuery export (lower-cased payload fields, numbers as FLOAT64). That
proves its arithmetic and its field names against the export rules; BigQuery itself is not run.
"""

import json
import re
import shlex
import subprocess

import duckdb
import numpy as np
import pytest
import sqlglot
from sklearn.datasets import load_iris

import drift
from tests.fake_gcp import LOGGING_WRITER, FakeGoogleCloud, matches
from harness import ROOT, FunctionServer
from tests.test_deploy import gcloud_env
from tests.test_drift import (MODEL, NAMES, PROJECT, SHIFT_CM, SHIFTED, log_entry,
                              send, wait_for_requests)

DOC = (ROOT / "docs" / "drift.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
SH = "\n".join(body.replace("\\\n", " ") for lang, body in FENCE.findall(DOC) if lang == "sh")
SQL = next(body for lang, body in FENCE.findall(DOC) if lang == "sql")
SINK_CREATE = next(line for line in SH.splitlines() if line.startswith("gcloud logging sinks create"))
SINK_WRITER = next(line for line in SH.splitlines() if "gcloud logging sinks describe" in line)
LOGS_READ = next(line for line in SH.splitlines() if line.startswith("gcloud logging read"))
ROWS = 200


def flag(command: list, name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}="))


def documented(line: str) -> list:
    """A command from the document, for this test's project."""
    return shlex.split(line.replace("PROJECT_ID", PROJECT))


@pytest.fixture(scope="module")
def served():
    """(rows sent, the LogEntry of every line printed) from a server sampling every row."""
    rng = np.random.default_rng(99)
    X = drift_rows(rng)
    env = {"PREDICTION_LOG_SAMPLE": "1", "GOOGLE_CLOUD_PROJECT": PROJECT}
    with FunctionServer(env=env) as server:
        _, requests = send(server, X, 20, 60)
        lines = wait_for_requests(server, requests)
    return X, [log_entry(line) for line in lines]


def drift_rows(rng) -> np.ndarray:
    X = load_iris().data[rng.integers(0, 150, ROWS)]
    X[:, SHIFTED] += SHIFT_CM
    return X


@pytest.fixture
def cloud(served, tmp_path):
    """The fake Google Cloud holding the served entries, and gcloud's environment for it."""
    fake = FakeGoogleCloud().start()
    fake.entries.extend(served[1])
    env = gcloud_env(fake, tmp_path, project=PROJECT)
    env["CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING"] = fake.url + "/"
    yield fake, env
    fake.stop()


def is_sample(entry: dict) -> bool:
    return entry["jsonPayload"].get("logger") == "iris_predict.predictions"


def test_the_sink_sends_the_sampled_lines_and_nothing_else_to_bigquery(served, cloud):
    fake, env = cloud
    command = documented(SINK_CREATE)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (sink,) = fake.sinks.values()
    dataset = sink["destination"].rsplit("/", 1)[1]
    assert sink["destination"] == f"bigquery.googleapis.com/projects/{PROJECT}/datasets/{dataset}"
    assert sink["bigqueryOptions"] == {"usePartitionedTables": True}
    _, entries = served
    selected = [e for e in entries if matches(sink["filter"], e)]
    assert len(selected) == ROWS and all(map(is_sample, selected))
    assert not fake.foreign() and not fake.unhandled()
    # Step 3 grants that sink's writer identity on that same dataset.
    writer = subprocess.run(documented(SINK_WRITER.split('"$(', 1)[1].rsplit(')"', 1)[0]),
                            env=env, capture_output=True, text=True, timeout=120)
    assert writer.stdout.strip() == LOGGING_WRITER
    assert f"ON SCHEMA \\`PROJECT_ID.{dataset}\\` TO '$writer'" in SH


def test_gcloud_logging_read_as_documented_feeds_make_drift(served, cloud, tmp_path, capsys):
    fake, env = cloud
    command = documented(LOGS_READ.split(">", 1)[0])
    assert command[-1] == flag(documented(SINK_CREATE), "log-filter")  # one filter, not two
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    exported = tmp_path / "samples.json"
    exported.write_text(done.stdout)
    assert len(json.loads(done.stdout)) == ROWS  # the filter let through the samples only
    assert drift.main([str(exported)]) == drift.DRIFTED
    report = capsys.readouterr().out
    assert re.search(rf"^petal_length +{ROWS} .* DRIFT$", report, re.MULTILINE)


def test_the_sql_inlines_model_json_training_figures():
    rows = re.findall(r"\('(\w+)', ([\d.]+), ([\d.]+), ([\d.]+), ([\d.]+)\)", SQL)
    assert rows == [(f["name"], *(repr(f[k]) for k in ("mean", "std", "min", "max")))
                    for f in MODEL["features"]], \
        "docs/drift.md: copy model.json's features (mean, std, min, max) into the SQL"


def bigquery_record(value):
    """A JSON value as Cloud Logging's BigQuery export stores it: names lower-cased, every
    number FLOAT64 (a payload number is a protobuf double)."""
    if isinstance(value, dict):
        return {k.lower(): bigquery_record(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def test_the_sql_on_the_exported_table_agrees_with_numpy(served, cloud, tmp_path):
    fake, env = cloud
    subprocess.run(documented(SINK_CREATE), env=env, capture_output=True, timeout=120, check=True)
    (sink,) = fake.sinks.values()
    X, entries = served
    table = tmp_path / "export.jsonl"
    table.write_text("".join(json.dumps(bigquery_record(e)) + "\n" for e in entries
                             if matches(sink["filter"], e)))
    dataset = sink["destination"].rsplit("/", 1)[1]
    db = duckdb.connect()
    db.execute(f"ATTACH ':memory:' AS {PROJECT.replace('-', '_')}")
    db.execute(f"CREATE SCHEMA {PROJECT.replace('-', '_')}.{dataset}")
    db.execute(f"CREATE TABLE {PROJECT.replace('-', '_')}.{dataset}.run_googleapis_com_stdout "
               f"AS SELECT * FROM read_json('{table}', format = 'newline_delimited')")
    query = sqlglot.transpile(SQL.replace("PROJECT_ID", PROJECT.replace("-", "_")),
                              read="bigquery", write="duckdb")[0]
    cursor = db.execute(query)
    columns = [c[0] for c in cursor.description]
    results = {row[0]: dict(zip(columns, row)) for row in cursor.fetchall()}
    assert list(results) == sorted(NAMES)
    for j, (name, feature) in enumerate(zip(NAMES, MODEL["features"])):
        column, got = X[:, j], results[name]
        outside = ((column < feature["min"]) | (column > feature["max"])).mean()
        # Sums of ROWS doubles in another order: equal to ~1e-15 relative; 1e-12 is ample.
        assert got["served_rows"] == ROWS
        assert got["served_mean"] == pytest.approx(column.mean(), rel=1e-12)
        assert got["served_std"] == pytest.approx(column.std(), rel=1e-12)
        assert (got["training_mean"], got["training_std"]) == (feature["mean"], feature["std"])
        assert got["outside_training_range"] == pytest.approx(outside, abs=1e-15)
        assert got["mean_shift_in_training_stds"] == pytest.approx(
            (column.mean() - feature["mean"]) / feature["std"], rel=1e-9)
    assert results["petal_length"]["mean_shift_in_training_stds"] > 1  # the shifted one
