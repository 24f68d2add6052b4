"""The systemd units a node script writes (one per MOUNT or MOUNT_CACHED entry), golden-
tested and checked by systemd's own `systemd-analyze verify`.

The units are made on the node by the script's `unit_text`, so each golden case's node-0.sh
is sourced and asked for them, as root with the task's home at /home/sky and bash at
/bin/bash. They live in golden/<case>/units/ (`pytest --update-golden` rewrites them). That
they really mount, come back at boot and drain at shutdown is tests/e2e/test_systemd.py.
"""
from __future__ import annotations

import email
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import tree
from test_golden import CASES, GOLDEN

MAKE_UNITS = r"""
SKYCOMPILE_SOURCED=1 source "$1"
BASH=/bin/bash
HOME=/home/sky
resolve_paths() { TARGET_HOME=$HOME; local i; for i in "${!M_DEST[@]}"; do
  if [[ ${M_DEST_KIND[i]} == home ]]; then DEST[i]="$HOME/${M_DEST[i]}"; else DEST[i]=${M_DEST[i]}; fi
done; }
resolve_paths
for i in "${!M_MODE[@]}"; do
  [[ ${M_MODE[i]} == COPY ]] || unit_text "$i" >"$2/$(unit_name "$i")"
done
"""


def units_of(case: str, out: Path) -> dict[str, bytes]:
    expected = GOLDEN / case / "expected"
    out.mkdir()
    script = expected / "node-0.sh"
    if (expected / "node-0.user-data").exists():  # the script part of the message
        msg = email.message_from_bytes((expected / "node-0.user-data").read_bytes())
        script = out.parent / "node-0.sh"
        script.write_bytes(next(p.get_payload(decode=True) for p in msg.get_payload()
                                if p.get_content_type() == "text/x-shellscript"))
    elif not script.exists():  # a pipeline: its first task
        script = sorted(expected.glob("*/node-0.sh"))[0]
    if "readonly -a M_MODE=" not in script.read_text():
        return {}
    res = subprocess.run(["bash", "-c", MAKE_UNITS, "units", str(script), str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return tree(out)


@pytest.mark.parametrize("name", CASES)
def test_units_golden(name, tmp_path, update_golden):
    units = units_of(name, tmp_path / "units")
    expected_dir = GOLDEN / name / "units"
    if update_golden:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, data in units.items():
            expected_dir.mkdir(exist_ok=True)
            (expected_dir / rel).write_bytes(data)
    expected = tree(expected_dir) if expected_dir.exists() else {}
    assert sorted(units) == sorted(expected), "unit files differ; run pytest --update-golden"
    for rel in units:
        assert units[rel].decode() == expected[rel].decode(), f"{name}/units/{rel} differs"


def test_units_cover_both_mount_modes():
    """The goldens hold a MOUNT and a MOUNT_CACHED unit, the latter draining on stop."""
    texts = [p.read_text() for p in GOLDEN.glob("*/units/*.service")]
    cached = [t for t in texts if "(MOUNT_CACHED)" in t]
    plain = [t for t in texts if "(MOUNT)" in t]
    assert cached and plain
    assert all("drain-service" in t and "TimeoutStopSec=" in t for t in cached)
    assert not any("ExecStop" in t for t in plain)


def test_systemd_analyze_verifies_every_unit(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (.ci/run does)")
    files = sorted(GOLDEN.glob("*/units/*.service"))
    assert len(files) >= 10, files
    for f in files:
        # verify loads the unit by its file name; each in a folder of its own (names repeat).
        d = tmp_path / f.parent.parent.name
        d.mkdir(exist_ok=True)
        shutil.copyfile(f, d / f.name)
        res = subprocess.run([tool, "verify", str(d / f.name)], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0 and not res.stderr.strip(), f"{f}:\n{res.stderr}"
