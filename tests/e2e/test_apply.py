"""The apply phase against a real S3 server: buckets created or reused (never a foreign
one), incremental uploads through the hash cache, then a node that uses what was uploaded."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from skycompile import apply as apply_mod
from skycompile import cli, compiler
from skycompile.state import State


@pytest.fixture
def env(tmp_path, monkeypatch, s3):
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env()["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env()["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    monkeypatch.chdir(tmp_path)
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    for i in range(30):
        (proj / "src" / f"m{i}.py").write_text(f"print({i})\n" * (i + 1))
    (proj / "big.bin").write_bytes(os.urandom(70 * 2**20))  # multipart
    (tmp_path / "task.yaml").write_text(
        "name: applied\nworkdir: proj\nfile_mounts:\n  /out:\n    name: sc-applied-out\n"
        "    mode: MOUNT\nrun: ls ~/sky_workdir/src | wc -l; cat /out/seen 2>/dev/null || true\n")
    return tmp_path


def run_apply(s3, *extra):
    args = cli.parser().parse_args(["task.yaml", "-o", "boot.sh", "--endpoint-url",
                                    s3.endpoint, *extra])
    opts = cli.options(args)
    compiled = compiler.compile_file("task.yaml", opts)
    state = State()
    try:
        return apply_mod.apply([t.plan for t in compiled.tasks], opts, state=state), state
    finally:
        state.close()


def local_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def test_first_upload_resync_and_one_change(env, s3):
    counts, _ = run_apply(s3)
    assert counts["uploaded"] == 31 and counts["skipped"] == 0 and counts["hashed"] == 31
    bucket = "skycompile-tester-applied"
    objects = s3.objects(bucket)
    assert objects == {f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}
    records = {r.name: r for r in State().buckets()}
    assert records[bucket].status == "READY" and records["sc-applied-out"].status == "READY"
    # no change: nothing uploaded, no hash recomputed by the upload step (all cached)
    counts, _ = run_apply(s3)
    assert counts == {"uploaded": 0, "skipped": 31, "bytes": 0, "hashed": 0}
    # one file changed: only it goes
    (env / "proj" / "src" / "m3.py").write_text("changed\n")
    counts, _ = run_apply(s3)
    assert counts["uploaded"] == 1 and counts["skipped"] == 30 and counts["hashed"] == 1
    assert s3.objects(bucket)["workdir/src/m3.py"] == hashlib.sha256(b"changed\n").hexdigest()
    # a file removed locally stays in the bucket (no --delete)
    (env / "proj" / "src" / "m4.py").unlink()
    run_apply(s3)
    assert "workdir/src/m4.py" in s3.objects(bucket)


def test_foreign_bucket_is_refused_before_any_upload(env, s3, cli):
    s3.bucket("sc-applied-out")  # exists, not created by skycompile
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint)
    assert res.code == 1
    assert ("s3 bucket sc-applied-out at " + s3.endpoint + " already exists and was not "
            "created by skycompile; to use it as it is, write `source: s3://sc-applied-out` "
            "instead of `name:`") in res.err
    assert not Path("boot.sh").exists()


def test_no_access_names_the_bucket(env, s3, cli, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint)
    assert res.code == 1
    assert res.err.startswith("skycompile: error: cannot check s3 bucket sc-applied-out at ")
    assert "403: check that your credentials may access it" in res.err, res.err
    assert "Traceback" not in res.err


def test_applied_task_runs_on_a_node(env, s3, cli, node):
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint)
    assert res.code == 0, res.err
    up = node.script(Path("boot.sh").read_text(), "up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.split()[0] == "30"
    assert node.path("/root/sky_workdir/big.bin").read_bytes() == (env / "proj/big.bin").read_bytes()
