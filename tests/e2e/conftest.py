"""Fixtures of the end-to-end tests: servers on loopback, nodes, and compiling a task."""
from __future__ import annotations

from pathlib import Path

import pytest

from . import nodes


@pytest.fixture(scope="session", autouse=True)
def _preflight():
    nodes.preflight()


@pytest.fixture
def s3(tmp_path):
    server = nodes.S3Server(tmp_path / "s3-data", tmp_path / "s3.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_node(tmp_path, s3):
    """make_node(name, **kw) -> a started Node with the S3 server's credentials."""
    made = []

    def make(name: str = "node", **kw) -> nodes.Node:
        env = {**s3.env(), **kw.pop("env", {})}
        node = nodes.Node(name, tmp_path, env=env, **kw).start()
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


@pytest.fixture
def node(make_node):
    return make_node()


@pytest.fixture
def compile_task(tmp_path, s3, monkeypatch):
    """compile_task(yaml_text, *flags) -> the node scripts (node 0 first), compiled by the
    real CLI against the test server (`--endpoint-url`)."""
    from skycompile.cli import main

    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    counter = iter(range(1000))

    def run(text: str, *flags: str, endpoint: bool = True) -> list[str]:
        n = next(counter)
        task = tmp_path / f"task{n}.yaml"
        task.write_text(text)
        out = tmp_path / f"out{n}"
        args = [str(task), "-o", f"{out}/", "--dry-run", *flags]
        if endpoint:
            args += ["--endpoint-url", s3.endpoint]
        try:
            main(args)
        except SystemExit as e:
            if e.code:
                raise AssertionError(f"skycompile {' '.join(args)} exited {e.code}") from None
        return [p.read_text() for p in sorted(out.glob("node-*.sh"))] or [
            p.read_text() for p in sorted(out.glob("*.sh"))]

    return run


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}
