"""Fixtures of the end-to-end tests: servers on loopback, nodes, and compiling a task."""
from __future__ import annotations

import pytest

from . import nodes


@pytest.fixture(scope="session", autouse=True)
def _preflight():
    nodes.preflight()


@pytest.fixture
def serve(tmp_path):
    """serve(ServerClass, name) -> a started server with its data in tmp_path/NAME-data and
    its log in tmp_path/NAME.log, stopped after the test."""
    started = []

    def start(cls: type[nodes.Server], name: str) -> nodes.Server:
        server = cls(tmp_path / f"{name}-data", tmp_path / f"{name}.log")
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def s3(serve) -> nodes.S3Server:
    return serve(nodes.S3Server, "s3")


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
def plain_node(tmp_path):
    """A node without any credentials or emulator settings: whatever reaches a server was
    baked into the script at compile time."""
    node = nodes.Node("plain-node", tmp_path).start()
    yield node
    node.stop()


@pytest.fixture
def mirror(tmp_path):
    """An rclone mirror on loopback (--rclone-mirror) for nodes that install rclone."""
    m = nodes.Mirror(tmp_path / "mirror")
    m.start()
    yield m
    m.stop()


@pytest.fixture
def compile_task(tmp_path, s3, monkeypatch):
    """compile_task(yaml_text, *flags, apply=False, raw=False) -> the node scripts (node 0
    first; with raw=True every output as bytes),
    compiled by the real CLI against the test server (`--endpoint-url`). With apply=True it
    is a real run: buckets created and local sources uploaded (state in tmp_path)."""
    from skycompile.cli import main

    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    counter = iter(range(1000))

    def run(text: str, *flags: str, endpoint: bool = True, apply: bool = False,
            raw: bool = False) -> list:
        n = next(counter)
        task = tmp_path / f"task{n}.yaml"
        task.write_text(text)
        out = tmp_path / f"out{n}"
        args = [str(task), "-o", f"{out}/", *([] if apply else ["--dry-run"]), *flags]
        if endpoint:
            args += ["--endpoint-url", s3.endpoint]
        try:
            main(args)
        except SystemExit as e:
            if e.code:
                raise AssertionError(f"skycompile {' '.join(args)} exited {e.code}") from None
        if raw:  # every output as bytes, whatever its format
            return [p.read_bytes() for p in sorted(out.glob("node-*"))]
        return [p.read_text() for p in sorted(out.glob("node-*.sh"))] or [
            p.read_text() for p in sorted(out.glob("*.sh"))]

    return run


@pytest.fixture
def compile_user_data(compile_task):
    """compile_user_data(yaml_text, *flags) -> node 0's output as bytes (any --format)."""
    return lambda text, *flags: compile_task(text, *flags, raw=True)[0]


@pytest.fixture
def compile_with_env(tmp_path, monkeypatch, capsys):
    """compile_with_env(yaml_text, *flags, env={VAR: value or None}, code=0) ->
    (scripts, plan and messages), compiled by the real CLI with VAR set (None: unset). With
    `code=N` the compile must exit N; then it returns ([], stderr) and nothing was written."""
    from skycompile.cli import main

    from skycompile.stores import store_envs

    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    for name in ("AWS_ENDPOINT_URL", *store_envs(), "AZURE_STORAGE_KEY",
                 "AZURE_STORAGE_ACCOUNT_KEY"):
        monkeypatch.delenv(name, raising=False)
    counter = iter(range(1000))

    def run(text: str, *flags: str, env: dict[str, str | None], code: int = 0):
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        n = next(counter)
        task = tmp_path / f"task{n}.yaml"
        task.write_text(text)
        out = tmp_path / f"out{n}"
        args = [str(task), "-o", f"{out}/", "--dry-run", *flags]
        capsys.readouterr()
        try:
            main(args)
            exit_code = 0
        except SystemExit as e:
            exit_code = e.code or 0
        captured = capsys.readouterr()
        assert exit_code == code, f"skycompile {' '.join(args)} exited {exit_code}:\n{captured.err}"
        if code:
            assert not out.exists()
            return [], captured.err
        return [p.read_text() for p in sorted(out.glob("node-*.sh"))], captured.out + captured.err

    return run
