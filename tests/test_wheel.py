"""The built wheel carries templates/ and schema/ and works from outside the checkout."""
from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import ROOT


def test_wheel_installs_and_compiles(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-w", str(dist), str(ROOT)], check=True, capture_output=True)
    wheel = next(dist.glob("skycompile-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "skycompile/templates/node.sh.j2" in names
    assert "skycompile/schema/task.schema.json" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([venv / "bin" / "pip", "install", "--quiet", str(wheel)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "task.yaml").write_text((ROOT / "golden" / "s3-mount" / "task.yaml").read_text())
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "SKYCOMPILE_USER": "tester"}
    run = subprocess.run([venv / "bin" / "skycompile", "task.yaml", "-o", "boot.sh",
                          "--dry-run"], cwd=work, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    script = (work / "boot.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash")
    expected = (ROOT / "golden" / "s3-mount" / "expected" / "node-0.sh").read_text()
    # only the header's recompile line may differ (-o path)
    differing = [a for a, b in zip(script.splitlines(), expected.splitlines()) if a != b]
    assert len(differing) <= 1, differing
    # a real run needs the store's SDK, an extra: said before anything is touched
    (work / "boot.sh").unlink()
    real = subprocess.run([venv / "bin" / "skycompile", "task.yaml", "-o", "boot.sh"], cwd=work,
                          capture_output=True, text=True, env=env)
    assert real.returncode == 1
    assert real.stderr == ("skycompile: error: creating or filling s3 buckets needs boto3: pip install "
                           "'skycompile[s3]'\n")
    assert not (work / "boot.sh").exists()
    version = subprocess.run([venv / "bin" / "skycompile", "--version"], capture_output=True,
                             text=True)
    assert version.stdout.startswith("skycompile ")
