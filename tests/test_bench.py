"""The benchmark's own code works on a tiny configuration (`make bench` gives the figures)."""

import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import joblib
import numpy as np
import xgboost

from bench import chart, cloudrun, load, report, trees, venvs
from bench.__main__ import QUICK, Bench, cold_starts
from bench.bodies import batch_bodies
from bench.servers import (ASGI_DECODING, ASGI_HELLO, BENTOML, FLASK_HELLO, FUNCTION, MLFLOW,
                           MLSERVER, MLSERVER_XGBOOST, PEER_NAMES, PIPELINE, PIPELINE_MODEL,
                           THREADED, TREE_DIRECTORY, TREE_MODELS, TUTORIAL, TUTORIAL_BODY,
                           Server)
from harness import ROOT, call

SECTIONS = ("cold_start", "warm", "memory_mib", "batch", "peak_rss_mib", "batch_concurrency",
            "stall", "concurrency", "inprocess", "targets", "unavailable")
SVG = "{http://www.w3.org/2000/svg}"
JSON = {"Content-Type": "application/json"}


def test_quick_benchmark_prints_the_tables_and_writes_json_and_chart(tmp_path):
    committed_chart = ROOT / "docs" / "bench.svg"
    before = committed_chart.stat().st_mtime_ns if committed_chart.exists() else None
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--output", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert all(section in results for section in SECTIONS)
    for name in (FUNCTION, FLASK_HELLO, ASGI_HELLO, TUTORIAL):
        assert results["cold_start"][name]["median_s"] > 0
        assert results["warm"][name]["rps"] > 0
    assert not set(PEER_NAMES) & set(results["warm"])  # --quick never installs a peer
    assert "installing" not in run.stdout + run.stderr
    assert set(results["targets"]) >= {"requests/s vs (a)", "p99 vs (a)", "cold start vs (a)",
                                       "rows/s, 1,000-row batches", "worker peak RSS, MiB"}
    assert results["warm"][FUNCTION]["cpu_us"] > 0
    assert results["batch"]["instances 1000"]["rows_per_s"] > 0
    assert set(results["concurrency"]["mix"]) == {"1", "8"}
    assert "| requests/s vs (a)" in run.stdout and "| 10,000-row batch: parse" in run.stdout
    # 1,000-row batches at each connection count, beside (b) decoding the same body.
    sweep = results["batch_concurrency"]
    for name in (FUNCTION, THREADED, ASGI_DECODING):
        assert set(sweep[name]) == {"1", "8"}
        assert all(m["rows_per_s"] == m["rps"] * 1000 > 0 for m in sweep[name].values())
    for c in ("1", "8"):
        target = results["targets"][f"1,000-row batches vs (b) decoding, {c} conns"]
        assert target["figure"] == sweep[FUNCTION][c]["rows_per_s"] / \
            sweep[ASGI_DECODING][c]["rows_per_s"]
    assert results["inprocess"]["batch_1000"]["hello_decoding_us"] > 0
    # The train.py pipeline model: cold start, one-row load and worker memory.
    assert results["cold_start"][PIPELINE]["median_s"] > 0
    assert results["warm"][PIPELINE]["rps"] > 0 and results["peak_rss_mib"][PIPELINE] > 0
    features = json.loads(PIPELINE_MODEL.with_suffix(".json").read_text())["features"]
    assert {f["type"] for f in features} == {"number", "category"}
    assert "| 1,000-row batches vs (b) decoding, 8 conns" in run.stdout
    assert "train.py pipeline (docs/garden.csv)" in run.stdout
    # MLServer's XGBoost runtime gets the function's one row as the pipeline codes it for its
    # last step, and that step's booster as XGBoost saved it.
    fitted = joblib.load(TREE_DIRECTORY / f"{trees.XGBOOST}.pkl")
    row = trees.objects([[*trees.ONE_ROW.values(), 0]])
    assert fitted[:-1].transform(row).tolist() == [trees.ONE_ROW_CODED]
    booster = xgboost.XGBClassifier()
    booster.load_model(TREE_DIRECTORY / trees.XGBOOST_BOOSTER)
    np.testing.assert_array_equal(booster.predict_proba(np.array([trees.ONE_ROW_CODED])),
                                  fitted.predict_proba(row))
    ET.parse(tmp_path / "latest.svg")  # well-formed
    after = committed_chart.stat().st_mtime_ns if committed_chart.exists() else None
    assert after == before  # only a full run redraws the committed chart


def test_python_load_generator_fallback(live):
    result = load._python(live.url, TUTORIAL_BODY, 2, 1, None, 0)
    assert result["rps"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]


def test_python_load_generator_mix_sends_both_bodies(live):
    """A bad second body would fail the run: the mix really sends it."""
    result = load._python(live.url, TUTORIAL_BODY, 2, 1, batch_bodies(100)["instances"], 3)
    assert result["rps"] > 0
    with pytest.raises(RuntimeError, match="requests failed"):
        load._python(live.url, TUTORIAL_BODY, 1, 0.5, b'{"instances": "no"}', 2)


def test_reference_b_decoding_really_decodes_the_body():
    """A body orjson refuses fails there, where plain (b) answers any body."""
    with Server(ASGI_DECODING, Path(sys.executable).parent) as decoding, \
            Server(ASGI_HELLO, Path(sys.executable).parent) as plain:
        decoding.first_200()
        plain.first_200()
        for server, status in ((decoding, 500), (plain, 200)):
            reply = call(server.endpoint, "POST", b'{"instances": [[1, 2,', JSON)
            assert reply.status == status


def _results(**warm_rps) -> dict:
    """Minimal run results: iris-predict at 1,000 req/s, the others as given."""
    warm = {name: {"rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_us": 1e6 / rps}
            for name, rps in {FUNCTION: 1000, **warm_rps}.items()}
    return {"warm": warm, "config": {"connections": 8},
            "machine": {"cpu": "test CPU", "cpus": 2},
            "cold_start": {FUNCTION: {"median_s": 0.5}, FLASK_HELLO: {"median_s": 0.4}},
            "memory_mib": {name: {"rss": 100.0 * (i + 1)} for i, name in enumerate(warm)},
            "batch": {"instances 1000": {"rows_per_s": 999_999}},
            "peak_rss_mib": {FUNCTION: 64.0},
            "batch_concurrency": {FUNCTION: {"1": {"rows_per_s": 1000.0},
                                             "8": {"rows_per_s": 999.0}},
                                  ASGI_DECODING: {"1": {"rows_per_s": 1000.0},
                                                  "8": {"rows_per_s": 1000.0}}}}


def test_verdicts_are_same_run_ratios_against_each_target():
    found = report.verdicts(_results(**{FLASK_HELLO: 500, ASGI_HELLO: 2001, MLFLOW: 333}))
    assert found["requests/s vs (a)"]["figure"] == 2.0 and found["requests/s vs (a)"]["met"]
    assert found["requests/s vs (b)"]["met"] is False  # 1000 / 2001 < 0.5
    assert found["requests/s vs (d)"]["met"] is True  # 1000 / 333 > 3
    assert found["requests/s vs (e)"]["met"] is None  # BentoML was not measured
    assert found["p99 vs (a)"]["figure"] == 1.0 and found["p99 vs (a)"]["met"]
    assert found["cold start vs (a)"]["figure"] == 0.5 / 0.4
    assert found["rows/s, 1,000-row batches"]["met"] is False  # one short of a million
    assert found["worker peak RSS, MiB"]["met"] is True  # 64 MiB is within "at most 64"
    assert found["1,000-row batches vs (b) decoding, 1 conns"]["met"] is True  # 1.0x is enough
    assert found["1,000-row batches vs (b) decoding, 8 conns"]["met"] is False  # 0.999x


def test_the_xgboost_model_is_held_against_mlservers_xgboost_runtime():
    linear, served = TREE_MODELS[trees.LINEAR], TREE_MODELS[trees.XGBOOST]
    r = _results(**{linear: 900, served: 750, MLSERVER_XGBOOST: 250})
    r["cold_start"].update({linear: {"median_s": 0.3}, served: {"median_s": 0.3}})
    r["peak_rss_mib"].update({linear: 50.0, served: 55.0})
    found = report.verdicts(r)["xgboost: requests/s vs MLServer's XGBoost runtime"]
    assert found["figure"] == 3.0 and found["met"] is True  # "at least 3x"
    del r["warm"][MLSERVER_XGBOOST]
    assert report.verdicts(r)["xgboost: requests/s vs MLServer's XGBoost runtime"]["met"] is None
    # The iris peers' targets are the iris model's, MLServer's by (f) alone.
    assert "requests/s vs (f)" in report.verdicts(r)


def test_chart_draws_a_bar_per_server_and_measure_scaled_to_the_largest():
    r = _results(**{FLASK_HELLO: 500, BENTOML: 250, MLSERVER: 2000})
    root = ET.fromstring(chart.draw(r))
    bars = root.findall(f"{SVG}rect")[1:]  # the first is the background
    # Four panels; the cold-start panel has only the two servers that were cold-started.
    assert len(bars) == 4 * 4 - 2
    rps_bars = [float(bar.get("width")) for bar in bars[:4]]
    longest = chart.PANEL_WIDTH - 60
    assert rps_bars == [longest * rps / 2000 for rps in (1000, 500, 250, 2000)]
    assert bars[0].get("fill") == chart.OURS and bars[1].get("fill") == chart.OTHERS
    assert "not measured" in ET.tostring(root, encoding="unicode")


def test_a_peer_that_cannot_start_is_left_out_with_the_reason(tmp_path):
    bench = Bench({**QUICK, "cold_runs": 1}, peers=False, quick=True)
    bench.bins["mlflow"] = tmp_path  # a venv without MLflow in it
    bench.peers = [MLFLOW]
    result = cold_starts(bench)
    assert MLFLOW not in result and result[FUNCTION]["median_s"] > 0
    assert "FileNotFoundError" in bench.unavailable[MLFLOW]
    assert bench.peers == []


def test_a_venv_that_cannot_install_says_why(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("this is not a requirement\n")
    monkeypatch.setattr(venvs, "VENVS", tmp_path / "venvs")
    monkeypatch.setitem(venvs.REQUIREMENTS, "broken", requirements)
    monkeypatch.setattr(venvs, "ROOT", tmp_path)
    (found,) = venvs.ensure(["broken"]).values()
    assert isinstance(found, venvs.Unavailable)
    assert "pip failed" in str(found) and "this is not a requirement" in str(found)
    assert not venvs.ready("broken")


def test_the_cloud_run_workspace_is_the_bundle_compiled_as_the_buildpack_compiles_it(tmp_path):
    """bench/cloudrun.py: what deploy.sh uploads, the lifecycle's mtimes, bytecode an instance
    loads without compiling; and with the no-bytecode condition, none found."""
    bundle = cloudrun.bundle()  # gcloud reading .gcloudignore
    files = list(bundle)
    assert {"main.py", "model.joblib", "model.json", "requirements.txt"} <= set(files)
    assert not [f for f in files if f.startswith(("tests/", "bench/")) or "__pycache__" in f]
    assert all(bundle[f] == ROOT / f for f in files)
    where = cloudrun.workspace(tmp_path / "function", bundle, Path(sys.executable))
    sources = sorted(where.rglob("*.py"))
    assert len(sources) == len([f for f in files if f.endswith(".py")])
    for source in sources:
        assert source.stat().st_mtime == cloudrun.LIFECYCLE_MTIME
        pyc = Path(importlib.util.cache_from_source(str(source))).read_bytes()
        flags, mtime = int.from_bytes(pyc[4:8], "little"), int.from_bytes(pyc[8:12], "little")
        assert (flags, mtime) == (0, cloudrun.LIFECYCLE_MTIME)  # timestamp-checked, and valid
    loads = {}
    for condition, env in cloudrun.CONDITIONS.items():
        run = subprocess.run([sys.executable, "-v", "-c", "import iris_predict.settings"],
                             cwd=where, capture_output=True, text=True, timeout=60,
                             env={**os.environ, **env})
        assert run.returncode == 0, run.stderr[-2000:]
        loads[condition] = [line for line in run.stderr.splitlines()  # bytecode it loaded
                            if "code object from" in line and ".pyc" in line
                            and str(where) in line]
    assert any("iris_predict/__pycache__/settings" in line for line in loads[cloudrun.BUILT])
    assert loads[cloudrun.NO_BYTECODE] == []
