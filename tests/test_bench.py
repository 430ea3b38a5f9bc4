"""The benchmark's own code works on a tiny configuration (`make bench` gives the figures)."""

import json
import subprocess
import sys

from bench import load
from bench.servers import TUTORIAL_BODY
from tests.server import ROOT

SECTIONS = ("cold_start", "warm", "batch", "peak_rss_mib", "inprocess_us", "targets")


def test_quick_benchmark_prints_the_table_and_writes_json(tmp_path):
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--output", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert all(section in results for section in SECTIONS)
    for name in ("iris-predict", "lazy joblib", "hello world", "tutorial baseline"):
        assert results["cold_start"][name]["median_s"] > 0
    assert results["warm"]["iris-predict"]["8"]["rps"] > 0
    assert set(results["targets"]) >= {"cold_start_ratio", "warm_rps_ratio", "peak_rss_mib"}
    assert "| cold start, spawn to first 200" in run.stdout
    assert "predict vs sklearn" in run.stdout


def test_python_load_generator_fallback(live):
    result = load._python(live.url, TUTORIAL_BODY, connections=2, seconds=1)
    assert result["rps"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
