"""Smoke run of the benchmark harness (`python -m bench --quick`): every scenario times each
of its tools, every check ran (buckets hold the data set, the ignore lists equal git's, the
re-sync opened no data file, the dry run imported no SDK, the nodes hold what they fetched,
the drain's lag was measured), and every target has a value."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

from bench.scenarios import SCENARIOS
from bench.tools import BY_ID


def test_quick_bench(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "bench", "--quick", "--runs", "1",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    doc = json.loads(out.read_text())
    names = {s.name for s in SCENARIOS}
    assert {"upload-first", "resync-nochange", "upload-first-B", "resync-nochange-C",
            "ignore-filter", "compile", "node-copy", "node-cached-write-drain",
            "node-mount-read", "scale-upload-100k", "scale-resync-100k"} <= names
    assert set(doc["scenarios"]) == names
    assert set(doc["datasets"]) == {"A", "B", "C", "S1k", "S10k", "S100k"}
    for ds in doc["datasets"].values():
        assert ds["files"] > 0 and ds["bytes"] > 0
    assert 0 < doc["datasets"]["C"]["kept"] < doc["datasets"]["C"]["files"]
    for scenario in SCENARIOS:
        got = doc["scenarios"][scenario.name]
        assert set(got["tools"]) == set(scenario.tools), scenario.name
        for tool, result in got["tools"].items():
            assert len(result["times"]) == 1 and result["warmup"] > 0, (scenario.name, tool)
            assert result["median"] > 0 and result["rss_mib_median"] > 0, (scenario.name, tool)
        assert len(got["goals"]) == len(scenario.goals), scenario.name
        for goal in got["goals"]:
            assert goal["value"] > 0 and goal["met"] == (goal["value"] <= goal["bound"])
    for name in ("upload-first", "upload-first-B", "resync-nochange-C"):
        got = doc["scenarios"][name]
        ds = doc["datasets"][got["dataset"]]
        for tool, result in got["tools"].items():
            objects = ds["kept"] if "kept" in ds and BY_ID[tool].filters else ds["files"]
            assert result["verified"]["objects"] == objects, (name, tool)
    for name in ("resync-nochange", "resync-nochange-C", "scale-resync-100k"):
        assert doc["scenarios"][name]["tools"]["skycompile"]["verified"][
            "data_files_opened"] == 0
    assert doc["scenarios"]["ignore-filter"]["tools"]["git"]["verified"]["files"] == \
        doc["datasets"]["C"]["kept"]
    assert doc["scenarios"]["compile"]["tools"]["skycompile-dry-run"]["verified"][
        "sdk_modules_imported"] == 0
    a, b = doc["datasets"]["A"], doc["datasets"]["B"]
    for tool, result in doc["scenarios"]["node-copy"]["tools"].items():
        assert result["verified"] == {"files": a["files"], "bytes": a["bytes"]}, tool
    drain = doc["scenarios"]["node-cached-write-drain"]["tools"]["script-drain"]
    assert drain["verified"]["objects"] == a["files"]
    assert len(drain["figures"]["drain_lag_s"]["values"]) == 1
    for tool, result in doc["scenarios"]["node-mount-read"]["tools"].items():
        assert result["verified"] == {"bytes": b["bytes"]}, tool
    assert "scaling (skycompile)" in res.stdout
