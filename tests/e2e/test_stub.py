"""--stub against a real S3 server (rclone serve s3) and a real node: the compile uploads
each node's full script to the task's bucket, content-addressed; the stub on a node
without rclone installs it from a mirror (SHA-256 checked), fetches the script, checks its
SHA-256 and runs it with its own arguments; a re-run downloads nothing; a script changed
in the bucket is refused and nothing runs; --delete never removes the scripts."""
from __future__ import annotations

import email
import hashlib
import re

import pytest

from . import nodes

BUCKET = "skycompile-tester-stubbed"  # skycompile-<SKYCOMPILE_USER>-<task name>

TASK = """\
name: stubbed
workdir: proj
file_mounts:
  /in: s3://inputs/in
run: |
  cat ~/sky_workdir/hello.txt /in/a.txt >> /root/runs
"""


@pytest.fixture
def project(tmp_path, monkeypatch, s3):
    """The workdir (relative paths of the task start at tmp_path) and the input bucket."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "hello.txt").write_text("hello from the workdir\n")
    (s3.bucket("inputs") / "in").mkdir()
    (s3.root / "inputs" / "in" / "a.txt").write_text("input a\n")
    return tmp_path


@pytest.fixture
def compile_stub(tmp_path, monkeypatch, s3):
    """compile_stub(*flags) -> node 0's output of `skycompile task.yaml -o out/ --stub
    --endpoint-url ...` (a real run: the bucket created, the workdir and the script
    uploaded), always the same command line, as a user re-runs it."""
    from skycompile.cli import main

    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    (tmp_path / "task.yaml").write_text(TASK)

    def run(*flags: str) -> str:
        try:
            main(["task.yaml", "-o", "out/", "--stub", "--endpoint-url", s3.endpoint, *flags])
        except SystemExit as e:
            assert not e.code, f"skycompile exited {e.code}"
        return (tmp_path / "out" / "node-0.sh").read_text()
    return run


def full_object(stub: str) -> tuple[str, str]:
    """(key in BUCKET, sha256) of the full script a stub fetches."""
    key = re.search(rf"^  readonly FULL_URI='s3://{BUCKET}/([^']+)'$", stub, re.M).group(1)
    sha = re.search(r"^  readonly FULL_SHA256='([0-9a-f]{64})'$", stub, re.M).group(1)
    return key, sha


def test_stub_fetches_checks_and_runs_the_full_script(s3, project, make_node, mirror,
                                                     compile_stub):
    digest = mirror.publish(nodes.rclone_zip())
    flags = ("--rclone-mirror", mirror.url, "--rclone-sha256", f"amd64={digest}")
    stub = compile_stub(*flags)
    key, sha = full_object(stub)
    assert key == f"skycompile/stubbed/node-0-{sha}.sh"
    objects = s3.objects(BUCKET)
    # the workdir travelled through the same bucket, beside the script
    assert objects == {key: sha, "workdir/hello.txt": hashlib.sha256(
        b"hello from the workdir\n").hexdigest()}
    full = s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    assert full.startswith("#!/usr/bin/env bash\n") and "readonly RUN_SCRIPT=" in full
    assert "readonly RUN_SCRIPT=" not in stub and len(stub) < len(full)

    node = make_node("stub-node", rclone=False)
    assert node.sh("command -v rclone").returncode != 0
    up = node.script(stub, "up")
    assert up.returncode == 0, up.stderr
    assert f"downloading s3://{BUCKET}/{key}" in up.stderr
    assert node.path("/root/runs").read_text() == "hello from the workdir\ninput a\n"
    assert node.path("/usr/local/bin/rclone").exists()  # from the mirror
    copy = node.path("/var/lib/skycompile/stubbed/full-node-0.sh")
    assert copy.read_text() == full and copy.stat().st_mode & 0o777 == 0o700
    assert not list(node.path("/var/lib/skycompile/stubbed").glob(".fetch.*"))
    conf = node.path("/etc/skycompile/stubbed/stub-rclone.conf").read_text()
    assert conf.startswith("[sc-stub]\ntype = s3\n") and conf.count("[") == 1
    assert "secret" not in conf.lower()

    # arguments pass through: status is the full script's
    status = node.script(stub, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("skycompile ") and "node 0 of 1" in status.stdout
    assert "workdir: /root/sky_workdir: copied" in status.stdout

    # the object is changed in the bucket: a re-run that finds its verified copy does not
    # download (it would refuse those bytes) and runs the task again
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=full.replace(
        "cat ~/sky_workdir/hello.txt", "touch /root/pwned; cat ~/sky_workdir/hello.txt"
    ).encode())
    stat = copy.stat()
    again = node.script(stub, "up")
    assert again.returncode == 0, again.stderr
    assert "downloading" not in again.stderr
    assert node.path("/root/runs").read_text() == "hello from the workdir\ninput a\n" * 2
    assert (copy.stat().st_ino, copy.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)

    # without the copy, the changed object is fetched, refused, removed; nothing runs
    copy.unlink()
    refused = node.script(stub, "up")
    assert refused.returncode != 0
    assert f"SHA-256 mismatch for s3://{BUCKET}/{key}: expected {sha}, got " in refused.stderr
    assert "nothing ran" in refused.stderr
    assert not node.path("/root/pwned").exists()
    assert node.path("/root/runs").read_text() == "hello from the workdir\ninput a\n" * 2
    assert not copy.exists()
    assert not list(node.path("/var/lib/skycompile/stubbed").glob(".fetch.*"))

    # compiling again puts the right bytes back (the size or the hash differ), and the stub
    # is the same
    again_stub = compile_stub(*flags)
    assert again_stub == stub and s3.objects(BUCKET)[key] == sha
    fixed = node.script(stub, "up")
    assert fixed.returncode == 0, fixed.stderr
    assert node.path("/root/runs").read_text() == "hello from the workdir\ninput a\n" * 3


def test_a_missing_object_is_an_error_that_names_it(s3, project, node, compile_task):
    """A --dry-run stub whose script nobody uploaded: the stub says what to check."""
    s3.bucket(BUCKET)
    [stub] = compile_task(TASK, "--stub")
    key, _ = full_object(stub)
    res = node.script(stub, "up", env={"SKYCOMPILE_RETRIES": "1"})
    assert res.returncode != 0
    assert f"could not download s3://{BUCKET}/{key}: check that it exists" in res.stderr
    assert not node.path("/root/runs").exists()
    assert not node.path("/var/lib/skycompile/stubbed/full-node-0.sh").exists()


def test_unchanged_scripts_are_not_sent_again_and_delete_keeps_them(s3, project, monkeypatch,
                                                                   tmp_path):
    """Through the Python API: a second compile finds every script in place; a task whose
    own source fills the task's bucket from its root, compiled with --delete, removes its
    stale files there but never the scripts of this compile or of an older one."""
    import skycompile
    from skycompile.state import State

    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    (tmp_path / "root-src").mkdir()
    (tmp_path / "root-src" / "keep.txt").write_text("keep\n")
    (tmp_path / "root-src" / "stale.txt").write_text("stale\n")
    task = {"name": "stubbed", "num_nodes": 2,
            "file_mounts": {"/src": {"name": BUCKET, "source": str(tmp_path / "root-src"),
                                     "mode": "COPY"}},
            "run": "echo one"}
    state = State(tmp_path / "state.db")
    try:
        def compile_it(data: dict, **flags):
            opts = skycompile.make_options(stub=True, endpoint_url=s3.endpoint, **flags)
            return skycompile.compile_task(data, options=opts, state=state)

        first = compile_it(task)
        [ct] = first.tasks
        keys = [o.key for o in ct.stub_objects]
        assert [o.node for o in ct.stub_objects] == [0, 1]
        assert first.applied == {"uploaded": 4, "skipped": 0,
                                 "bytes": 11 + sum(len(s.encode()) for s in ct.scripts),
                                 "deleted": 0}
        assert {k: v for k, v in s3.objects(BUCKET).items() if k.startswith("skycompile/")} \
            == {o.key: hashlib.sha256(s.encode()).hexdigest()
                for o, s in zip(ct.stub_objects, ct.scripts)}
        assert compile_it(task).applied == {"uploaded": 0, "skipped": 4, "bytes": 0,
                                            "deleted": 0}
        [record] = state.buckets()  # created by skycompile, as for local sources
        assert (record.name, record.status) == (BUCKET, "READY")

        (tmp_path / "root-src" / "stale.txt").unlink()
        changed = {**task, "run": "echo two"}
        second = compile_it(changed, delete=True)
        assert second.applied["deleted"] == 1 and second.applied["uploaded"] == 2
        left = s3.objects(BUCKET)
        assert "stale.txt" not in left and "keep.txt" in left
        new_keys = [o.key for o in second.tasks[0].stub_objects]
        assert set(keys).isdisjoint(new_keys)
        assert set(keys + new_keys) <= set(left)  # old and new scripts both stay
    finally:
        state.close()


def test_on_gcs(serve, tmp_path, monkeypatch, cli, plain_node):
    """Another store: the scripts go through google-cloud-storage to a gcp-storage-emulator,
    and the stub fetches with rclone's gcs backend (anonymous at the emulator)."""
    gcs = serve(nodes.GCSServer, "gcs")
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)  # after `cli`, which unsets it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "task.yaml").write_text("name: gstub\nrun: echo ran >> /root/runs\n")

    def compile_it() -> str:
        res = cli("task.yaml", "-o", "boot.sh", "--store", "gcs", "--stub")
        assert res.code == 0, res.err
        return (tmp_path / "boot.sh").read_text()
    stub = compile_it()
    uri = re.search(r"^  readonly FULL_URI='([^']+)'$", stub, re.M).group(1)
    sha = re.search(r"^  readonly FULL_SHA256='([0-9a-f]{64})'$", stub, re.M).group(1)
    bucket = "skycompile-tester-gstub"
    assert uri == f"gs://{bucket}/skycompile/gstub/node-0-{sha}.sh"
    assert gcs.keys(bucket) == [uri.removeprefix(f"gs://{bucket}/")]
    assert hashlib.sha256(gcs.read(bucket, gcs.keys(bucket)[0])).hexdigest() == sha
    sent = len(re.findall(r'"POST /upload/storage/v1/b/', gcs.log.read_text()))
    assert compile_it() == stub
    assert len(re.findall(r'"POST /upload/storage/v1/b/', gcs.log.read_text())) == sent

    up = plain_node.script(stub, "up")
    assert up.returncode == 0, up.stderr
    assert plain_node.path("/root/runs").read_text() == "ran\n"
    conf = plain_node.path("/etc/skycompile/gstub/stub-rclone.conf").read_text()
    assert "type = google cloud storage" in conf and "anonymous = true" in conf


def test_cloud_init_stub_then_a_reboot(s3, node, compile_task):
    """--stub --format cloud-init: the per-instance part (the stub) brings the node up
    through the full script, whose up keeps the copy that the unchanged per-boot part runs
    with remount after a reboot."""
    from .test_cloud_init import TASK as BOOTED, run_part

    (s3.bucket("inputs") / "hello.txt").write_text("hello\n")
    s3.bucket("results")
    [data] = compile_task(BOOTED, "--stub", "--format", "cloud-init", apply=True, raw=True)
    msg = email.message_from_bytes(data)
    parts = {p.get_content_type(): (p.get_filename(), p.get_payload(decode=True))
             for p in msg.get_payload()}
    _, stub = parts["text/x-shellscript"]
    assert b"# A stub (--stub)" in stub

    up = run_part(node, parts, "instance")
    assert up.returncode == 0, up.stderr
    assert node.path("/root/runs").read_text() == "ran\n"
    assert node.path("/data/hello.txt").read_text() == "hello\n"
    kept = node.path("/var/lib/skycompile/booted/node.sh")
    assert kept.exists()  # the full script's copy for remount, not the stub's
    assert b"readonly RUN_SCRIPT=" in kept.read_bytes()

    node.reboot()
    boot = run_part(node, parts, "boot")
    assert boot.returncode == 0, boot.stderr
    assert "remount: done" in boot.stderr
    assert node.path("/data/hello.txt").read_text() == "hello\n"
    assert node.path("/root/runs").read_text() == "ran\n"
