"""Golden outputs: every golden/<case>/ compiled with --dry-run, compared whole.

A case is `task.yaml`, optional `args` (extra CLI arguments, one per line), any local
fixture tree it refers to (a `home/` folder stands in for `~`), and `expected/`: the
scripts plus `plan.txt`, the printed plan. `pytest --update-golden` rewrites expected/.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import ROOT, tree

GOLDEN = ROOT / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "task.yaml").exists())


def compile_case(name: str, tmp_path: Path, cli, monkeypatch, *flags: str,
                 prepare=None) -> tuple[dict[str, bytes], object]:
    """Compile golden case NAME in a copy under tmp_path, with its args and FLAGS;
    prepare(home) runs on the fixture's home before the compile."""
    work = tmp_path / name
    shutil.copytree(GOLDEN / name, work, symlinks=True, ignore=shutil.ignore_patterns("expected"))
    (work / "home").mkdir(exist_ok=True)
    if prepare:
        prepare(work / "home")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work / "home"))
    args_file = work / "args"
    extra = args_file.read_text().split("\n") if args_file.exists() else []
    result = cli("task.yaml", "--dry-run", "-o", "out/", *[a for a in extra if a], *flags)
    assert result.code == 0, result.err
    outputs = tree(work / "out")
    outputs["plan.txt"] = result.out.encode()
    return outputs, result


def test_enough_cases():
    assert len(CASES) >= 15, CASES


@pytest.mark.parametrize("name", CASES)
def test_golden(name, tmp_path, cli, monkeypatch, update_golden):
    outputs, _ = compile_case(name, tmp_path, cli, monkeypatch)
    expected_dir = GOLDEN / name / "expected"
    if update_golden:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, data in outputs.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_bytes(data)
    expected = tree(expected_dir)
    assert sorted(outputs) == sorted(expected), "output files differ; run pytest --update-golden"
    for rel in outputs:
        assert outputs[rel].decode() == expected[rel].decode(), f"{name}/{rel} differs"


@pytest.mark.parametrize("name", CASES)
def test_deterministic(name, tmp_path, cli, monkeypatch):
    """Two compiles in different directories give the same bytes."""
    first, _ = compile_case(name, tmp_path / "a", cli, monkeypatch)
    second, _ = compile_case(name, tmp_path / "b", cli, monkeypatch)
    first.pop("plan.txt"), second.pop("plan.txt")
    assert first == second
