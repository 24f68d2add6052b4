"""Local workdir and local file_mounts reach the node two-hop: through the bucket the local
side uploads them to. Includes SkyPilot's own storage smoke test, run for real."""
from __future__ import annotations

import os
from pathlib import Path

import jinja2
import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """The compiling user's home, prepared as SkyPilot's smoke tests prepare it."""
    home = tmp_path / "home"
    wd = home / "tmp-workdir"
    wd.mkdir(parents=True)
    (home / "tmpfile").write_text("tmpfile\n")
    (wd / "tmp file").write_text("tmp file\n")
    (wd / "tmp file2").write_text("tmp file2\n")
    (wd / "foo").write_text("foo\n")
    (home / "empty-workdir").mkdir()
    os.symlink(wd, wd / "circle-link")
    monkeypatch.setenv("HOME", str(home))
    return home


def test_local_workdir_and_file_mounts(s3, node, home, compile_task):
    proj = home / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "train.py").write_text("print('training')\n")
    (proj / "README").write_text("readme\n")
    [script] = compile_task("""
name: local
workdir: ~/proj
file_mounts:
  /opt/tmpfile: ~/tmpfile
  ~/wd-copy: ~/tmp-workdir
setup: test -f src/train.py
run: |
  set -e
  pwd
  cat src/train.py
  cat /opt/tmpfile
  ls ~/wd-copy
""", "--bucket", "sc-local", apply=True)
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "/root/sky_workdir", "print('training')", "tmpfile", "foo", "tmp file", "tmp file2"]
    # a re-run copies nothing again and keeps what run left in the workdir
    node.sh("echo output > /root/sky_workdir/result.txt", check=True)
    inode = node.sh("stat -c %i /root/sky_workdir/src/train.py", check=True).stdout
    assert node.script(script, "up").returncode == 0
    assert node.sh("stat -c %i /root/sky_workdir/src/train.py", check=True).stdout == inode
    assert node.path("/root/sky_workdir/result.txt").read_text() == "output\n"


def smoke_task(mount_cached: bool) -> str:
    path = SHARED / "corpus/skypilot/tests/test_yamls/test_storage_mounting.yaml.j2"
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests need ../shared beside the checkout")
    return jinja2.Template(path.read_text()).render(
        include_s3_mount=False, include_gcs_mount=False, include_azure_mount=False,
        include_mount_cached=mount_cached, storage_name="sky-smoke-storage",
        empty_storage_name="sky-smoke-empty", store_type="s3")


@pytest.mark.parametrize("mount_cached", [False, True], ids=["copy-mount", "with-mount-cached"])
def test_skypilot_storage_mounting_smoke_test(s3, node, home, compile_task, mount_cached):
    """SkyPilot's test_storage_mounting with the public buckets switched off and the store
    pointed at the local server: its `run:` assertions must pass on our node."""
    [script] = compile_task(smoke_task(mount_cached), apply=True)
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    objects = s3.objects("sky-smoke-storage")
    assert {"foo", "tmp file", "tmp file2", "hello.txt"} <= set(objects)
    assert "circle-link" not in " ".join(objects)
