"""Smoke run of the benchmark harness (`python -m bench --quick`): every scenario times every
tool, and the first upload put the whole data set into the bucket."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

from bench.scenarios import SCENARIOS
from bench.tools import TOOLS


def test_quick_bench(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "bench", "--quick", "--runs", "1",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    doc = json.loads(out.read_text())
    assert {"upload-first", "resync-nochange"} <= {s.name for s in SCENARIOS}
    assert {"skycompile", "aws", "s5cmd", "rclone", "rclone-t32"} <= {t.id for t in TOOLS}
    assert set(doc["scenarios"]) == {s.name for s in SCENARIOS}
    dataset = doc["datasets"]["A"]
    assert dataset["files"] > 0 and dataset["bytes"] > 0
    for name, scenario in doc["scenarios"].items():
        assert set(scenario["tools"]) == {t.id for t in TOOLS}, name
        for tool, result in scenario["tools"].items():
            assert len(result["times"]) == 1 and result["warmup"] > 0, (name, tool)
            assert all(t > 0 for t in result["times"]) and result["median"] > 0, (name, tool)
        assert scenario["ratios"]["skycompile/aws"] > 0
    for tool, result in doc["scenarios"]["upload-first"]["tools"].items():
        assert result["verified"] == {"objects": dataset["files"], "bytes": dataset["bytes"]}, tool
