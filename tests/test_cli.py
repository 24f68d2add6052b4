"""The front door: output layouts, --check, overrides, --version, and no network in
--dry-run or --check."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

TWO_NODES = "name: two\nnum_nodes: 2\nrun: echo hi\n"
ONE_NODE = "name: one\nrun: echo hi\n"


@pytest.fixture
def task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def write(text: str, name: str = "task.yaml") -> str:
        Path(name).write_text(text)
        return name
    return write


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_single_file_atomic_and_executable(task, cli):
    result = cli(task(ONE_NODE), "-o", "boot.sh")
    assert result.code == 0, result.err
    mode = stat.S_IMODE(os.stat("boot.sh").st_mode)
    assert mode == 0o755
    assert Path("boot.sh").read_text().startswith("#!/usr/bin/env bash\n")
    assert [p.name for p in Path(".").iterdir() if p.name.startswith(".boot.sh")] == []


# Runs the CLI with every file-system step of the output write (temp file created, fsync,
# chmod, rename, directory open) counted, and SIGKILLs itself at step KILL_AT: no cleanup
# code runs, as when the machine or the user kills the compile.
KILL_AT_STEP = """
import os, signal, sys, tempfile
from skycompile import cli, output
at, steps, writing = int(sys.argv[1]), [0], [False]
def counted(real):
    def step(*args, **kwargs):
        if writing[0]:
            steps[0] += 1
            if steps[0] == at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return step
for name in ("fsync", "chmod", "replace", "open"):
    setattr(os, name, counted(getattr(os, name)))
tempfile.mkstemp = counted(tempfile.mkstemp)
real_write_all = output.write_all
def write_all(*args, **kwargs):
    writing[0] = True
    return real_write_all(*args, **kwargs)
output.write_all = write_all
sys.exit(cli.main(sys.argv[2:]))
"""


def test_a_compile_killed_at_any_step_leaves_no_partial_script(task, cli, monkeypatch, tmp_path):
    """SIGKILL at each step of writing a two-node task over the outputs of an older
    version, and into an empty directory: every script is then the old one or the new
    one, whole (all old until the renames start), and a re-run completes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    old, new = TWO_NODES, TWO_NODES.replace("echo hi", "echo new")

    def scripts(out: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in out.glob("node-*.sh")} if out.exists() else {}

    def compiled(text: str) -> dict[str, bytes]:
        monkeypatch.chdir(tmp_path / "ref")
        task(text)
        assert cli("task.yaml", "-o", "out/").code == 0
        return scripts(Path("out"))
    (tmp_path / "ref").mkdir()
    was, want = compiled(old), compiled(new)
    for start in ("over-old", "empty"):
        killed = 0
        for at in range(1, 100):
            work = tmp_path / f"{start}-{at}"
            work.mkdir()
            monkeypatch.chdir(work)
            task(new)
            out = work / "out"
            if start == "over-old":
                out.mkdir()
                for name, data in was.items():
                    (out / name).write_bytes(data)
            proc = subprocess.run([sys.executable, "-c", KILL_AT_STEP, str(at), "task.yaml",
                                   "-o", "out/"], env=env, capture_output=True)
            found = scripts(out)
            for name, data in found.items():
                assert data in (was.get(name), want[name]), (start, at, name)
            if proc.returncode == 0:
                assert found == want
                break
            assert proc.returncode == -9, proc.stderr
            killed += 1
            if killed <= 8:  # before the first rename: only temps were written
                assert found == (was if start == "over-old" else {}), (start, at)
            leftovers = [p.name for p in out.iterdir() if not p.name.startswith("node-")]
            assert all(n.startswith(".node-") and n.endswith(".tmp") for n in leftovers)
            assert cli("task.yaml", "-o", "out/").code == 0
            assert scripts(out) == want
        # 2 files x (mkstemp, its os.open, fsync, chmod), 2 renames, the directory's open
        # and fsync
        assert killed == 12, (start, killed)


def test_directory_layout_for_many_nodes(task, cli):
    result = cli(task(TWO_NODES), "-o", "out/")
    assert result.code == 0, result.err
    assert sorted(p.name for p in Path("out").iterdir()) == ["node-0.sh", "node-1.sh"]
    a, b = (Path("out") / "node-0.sh").read_text(), (Path("out") / "node-1.sh").read_text()
    assert "readonly NODE_INDEX='0'" in a and "readonly NODE_INDEX='1'" in b
    diff = [(x, y) for x, y in zip(a.splitlines(), b.splitlines()) if x != y]
    assert all("0" in x and "1" in y for x, y in diff) and len(diff) <= 4, diff


def test_existing_directory_without_slash(task, cli):
    Path("out").mkdir()
    assert cli(task(TWO_NODES), "-o", "out").code == 0
    assert (Path("out") / "node-1.sh").exists()


def test_stdout(task, cli):
    result = cli(task(ONE_NODE), "-o", "-")
    assert result.code == 0
    assert result.out.startswith("#!/usr/bin/env bash\n")
    assert not any(Path(".").glob("*.sh"))


def test_dry_run_stdout_keeps_plan_off_stdout(task, cli):
    result = cli(task(ONE_NODE), "--dry-run", "-o", "-")
    assert result.out.startswith("#!/usr/bin/env bash\n")
    assert "task one: 1 node(s)" in result.err


def test_num_nodes_override(task, cli):
    assert cli(task(ONE_NODE), "--num-nodes", "3", "-o", "out/").code == 0
    assert len(list(Path("out").glob("node-*.sh"))) == 3


def test_check_identical_then_different(task, cli, no_network):
    name = task(TWO_NODES)
    assert cli(name, "--dry-run", "-o", "out/").code == 0
    same = cli(name, "-o", "out/", "--check")
    assert same.code == 0, same.err + same.out
    assert "2 script(s) up to date" in same.err
    Path(name).write_text(TWO_NODES.replace("echo hi", "echo bye"))
    changed = cli(name, "-o", "out/", "--check")
    assert changed.code == 1
    assert "--- out/node-0.sh" in changed.out and "+++ out/node-0.sh (compiled)" in changed.out
    assert "-  readonly RUN_SCRIPT='echo hi'" in changed.out
    assert "+  readonly RUN_SCRIPT='echo bye'" in changed.out
    # --check never writes
    assert "echo hi" in (Path("out") / "node-0.sh").read_text()


def test_check_sees_local_data_change_through_the_hash_cache(tmp_path, cli, no_network,
                                                             monkeypatch):
    """The header records the manifest of the local sources; the second compile answers
    from the hash cache, yet a same-size edit (new mtime) is seen."""
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    Path("proj").mkdir()
    Path("proj/a.txt").write_text("aaaa\n")
    Path("t.yaml").write_text("name: data\nworkdir: proj\nrun: cat a.txt\n")
    assert cli("t.yaml", "--dry-run", "-o", "out/").code == 0
    assert (tmp_path / "state" / "state.db").exists()  # the cache was kept
    assert cli("t.yaml", "-o", "out/", "--check").code == 0
    Path("proj/a.txt").write_text("bbbb\n")
    changed = cli("t.yaml", "-o", "out/", "--check")
    assert changed.code == 1 and "manifest" in changed.out, changed.out


def test_check_reports_missing_file(task, cli):
    result = cli(task(ONE_NODE), "-o", "boot.sh", "--check")
    assert result.code == 1
    assert "boot.sh (missing)" in result.out
    assert not Path("boot.sh").exists()


@pytest.mark.parametrize("case", ["env-substitution", "git-workdir", "local-file-mounts",
                                  "azure-modes", "ibm-oci", "s3-endpoint"])
def test_dry_run_touches_no_network(case, cli, monkeypatch, no_network, tmp_path):
    """Stores of every kind, a git workdir, endpoints, uploads: no socket is opened."""
    monkeypatch.chdir(ROOT / "golden" / case)
    monkeypatch.setenv("HOME", str(ROOT / "golden" / case / "home"))
    result = cli("task.yaml", "--dry-run", "-o", f"{tmp_path}/out/")
    assert result.code == 0, result.err


def test_env_override_and_env_from_environment(task, cli, monkeypatch):
    name = task("envs:\n  A: one\n  B: two\nrun: echo\n")
    monkeypatch.setenv("B", "from-env")
    result = cli(name, "--env", "A=over", "--env", "B", "--env", "C=new", "-o", "-")
    assert result.code == 0, result.err
    assert "readonly -a ENV_VALUES=('over' 'from-env' 'new')" in result.out


def test_env_from_environment_must_be_text(task, cli, monkeypatch):
    monkeypatch.setenv("FOO", "a\udcff")  # bytes that are not UTF-8, as Python decodes them
    result = cli(task(ONE_NODE), "-o", "boot.sh", "--dry-run", "--env", "FOO")
    assert result.code == 2, result.err
    assert "--env FOO (from your environment): a value cannot contain a lone surrogate" in \
        result.err
    assert not Path("boot.sh").exists()


def test_env_from_missing_environment_is_usage_error(task, cli, monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    result = cli(task(ONE_NODE), "--env", "NOPE_NOT_SET", "-o", "-")
    assert result.code == 2
    assert "NOPE_NOT_SET is not set in your environment" in result.err


def test_git_overrides(task, cli):
    name = task("workdir: .\nrun: echo\n")
    result = cli(name, "--git-url", "https://example.com/r.git", "--git-ref", "v1", "-o", "-")
    assert result.code == 0, result.err
    assert "'https://example.com/r.git'" in result.out and "'v1'" in result.out


def test_version_matches_package():
    import skycompile
    out = subprocess.run([sys.executable, "-m", "skycompile", "--version"], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.stdout.strip() == f"skycompile {skycompile.__version__}"


def test_help_documents_every_flag():
    """Every flag of `skycompile` and `skycompile plan` is in its --help and, in backticks,
    in the README (taken from the parsers, so a new flag cannot be left out)."""
    from skycompile import cli as cli_mod

    readme = (ROOT / "README.md").read_text()
    for argv, parser in (([], cli_mod.parser()), (["plan"], cli_mod.plan_parser())):
        out = subprocess.run([sys.executable, "-m", "skycompile", *argv, "--help"],
                             capture_output=True, text=True, cwd=ROOT).stdout
        flags = [f for action in parser._actions for f in action.option_strings]
        assert len(flags) > 10
        for flag in flags:
            assert flag in out, flag
            assert f"`{flag}" in readme, f"README does not document {flag}"


def test_several_task_files(task, cli):
    """`skycompile examples/*.yaml -o out/`: one folder per file; --check covers all."""
    a, b = task(ONE_NODE, "a.yaml"), task(TWO_NODES, "b.yaml")
    result = cli(a, b, "--dry-run", "-o", "out/")
    assert result.code == 0, result.err
    assert "== a.yaml" in result.out and "== b.yaml" in result.out
    assert sorted(str(p.relative_to("out")) for p in Path("out").rglob("*.sh")) == \
        ["a/node-0.sh", "b/node-0.sh", "b/node-1.sh"]
    assert cli(a, b, "-o", "out/", "--check").code == 0
    Path(b).write_text(TWO_NODES.replace("hi", "bye"))
    assert cli(a, b, "-o", "out/", "--check").code == 1


def test_several_task_files_report_all_problems(task, cli):
    a, b = task("num_nodes: 0\n", "a.yaml"), task("run: [1]\n", "b.yaml")
    result = cli(a, b, "--dry-run")
    assert result.code == 2
    assert result.err.splitlines() == [
        "a.yaml:1:12: num_nodes: must be at least 1, not 0. Use a value at least 1.",
        "b.yaml:1:6: run: must be a string, not a list. Quote it as a string.",
    ]


def test_examples_glob_dry_run(cli, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
    result = cli(*examples, "--dry-run", "-o", f"{tmp_path}/out/")
    assert result.code == 0, result.err
    assert len(list((tmp_path / "out").rglob("node-*.sh"))) >= len(examples)


NODE_FLAG_ERRORS = [
    (["--user", "Bad User"], "--user 'Bad User': not a valid user name"),
    (["--node-ips", "10.0.0.1,nope"], "--node-ips: 'nope' is not an IP address"),
    (["--node-ips", "10.0.0.1,10.0.0.2"], "--node-ips lists 2 address(es), but task.yaml runs on "
                                          "1 node(s) (num_nodes)"),
    (["--rclone-sha256", "amd64=" + "a" * 64], "--rclone-sha256 describes a mirror's archive"),
    (["--rclone-mirror", "ftp://mirror"], "give an http://, https:// or file:// base URL"),
    (["--rclone-mirror", "http://m", "--rclone-sha256", "x86=" + "a" * 64],
     "expected amd64=HEX or arm64=HEX"),
    (["--rclone-mirror", "http://m", "--rclone-sha256", "amd64=bad",
      "--rclone-sha256", "amd64=" + "a" * 64], "--rclone-sha256 amd64=... is given twice"),
    (["--env", "X=\udcff"], "an argument must be UTF-8 text"),
]


@pytest.mark.parametrize("flags,message", NODE_FLAG_ERRORS, ids=lambda v: str(v)[:30])
def test_node_flags_are_checked(task, cli, flags, message):
    result = cli(task(ONE_NODE), "-o", "boot.sh", *flags)
    assert result.code == 2
    assert result.err.startswith("skycompile: error: ") and message in result.err
    assert not Path("boot.sh").exists()


def test_rclone_mirror_and_node_ips_reach_the_script(task, cli):
    digest = "ab" * 32
    result = cli(task("file_mounts:\n  /d: s3://b\nnum_nodes: 2\n"), "-o", "out/",
                 "--rclone-mirror", "http://10.1.2.3/rclone/", "--rclone-sha256",
                 f"amd64={digest.upper()}", "--node-ips", "10.0.0.1, 10.0.0.2")
    assert result.code == 0, result.err
    text = Path("out/node-1.sh").read_text()
    assert "readonly RCLONE_BASE_URL='http://10.1.2.3/rclone'" in text
    assert f"readonly RCLONE_SHA256_AMD64='{digest}'" in text
    assert "readonly RCLONE_HTTPS_ONLY='0'" in text
    assert "readonly NODE_IPS='10.0.0.1\n10.0.0.2'" in text


def test_embed_credentials_needs_keys_and_writes_0700(task, cli, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    name = task("file_mounts:\n  /d: s3://b\n")
    missing = cli(name, "-o", "boot.sh", "--embed-credentials")
    assert missing.code == 2 and "--embed-credentials: s3: no S3 keys" in missing.err
    assert not Path("boot.sh").exists()
    creds = tmp_path / "home/.aws/credentials"
    creds.parent.mkdir(parents=True)
    creds.write_text("[default]\naws_access_key_id = AKIAFAKE\naws_secret_access_key = s3cr3t\n")
    ok = cli(name, "-o", "boot.sh", "--embed-credentials")
    assert ok.code == 0, ok.err
    assert "warning: --embed-credentials" in ok.err
    assert stat.S_IMODE(os.stat("boot.sh").st_mode) == 0o700
    text = Path("boot.sh").read_text()
    assert "'secret_access_key = s3cr3t'" in text and "'env_auth = false'" in text
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bad\nline")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKE")
    bad = cli(name, "-o", "boot.sh", "--embed-credentials")
    assert bad.code == 2 and "contains a line break" in bad.err


def test_oci_namespace_from_the_environment(task, cli, monkeypatch):
    """OCI_NAMESPACE names the tenancy's namespace in the node's rclone remote and the plan;
    a malformed one is refused against the variable."""
    name = task("file_mounts:\n  /o:\n    source: oci://b1@us-ashburn-1\n    mode: MOUNT\n"
                "run: x\n")
    monkeypatch.setenv("OCI_NAMESPACE", "tenancy1")
    result = cli(name, "--dry-run", "-o", "boot.sh")
    assert result.code == 0, result.err
    assert "use existing: oci://b1@us-ashburn-1, region us-ashburn-1, namespace tenancy1" \
        in result.out
    assert "namespace = tenancy1" in Path("boot.sh").read_text()
    monkeypatch.setenv("OCI_NAMESPACE", "ten ancy;rm")
    result = cli(name, "--dry-run", "-o", "boot2.sh")
    assert result.code == 2 and "OCI_NAMESPACE='ten ancy;rm' is not a valid oci namespace" \
        in result.err and "oci os ns get" in result.err, result.err
    assert not Path("boot2.sh").exists()
