"""Shared test plumbing: the --update-golden flag and an in-process CLI runner."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite golden/<case>/expected/ from the current compiler output")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `skycompile ARGS` in-process in the current directory; returns code/out/err."""
    from skycompile.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    from skycompile.stores import store_envs
    for var in ["AWS_ENDPOINT_URL", *store_envs()]:  # emulators, OCI_NAMESPACE
        monkeypatch.delenv(var, raising=False)
    return run


def tree(root: Path) -> dict[str, bytes]:
    """Every file below root (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


os.environ.setdefault("SKYCOMPILE_USER", "tester")
# Every compile reads (and a successful one writes) the hash cache in the state directory:
# the tests' own one, never the developer's. Tests that need a fresh state set their own.
os.environ["SKYCOMPILE_STATE_DIR"] = tempfile.mkdtemp(prefix="skycompile-test-state-")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(os.environ["SKYCOMPILE_STATE_DIR"], ignore_errors=True)
