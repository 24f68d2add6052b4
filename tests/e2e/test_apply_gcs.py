"""The apply phase against a real gcp-storage-emulator (STORAGE_EMULATOR_HOST, --store gcs):
buckets created with skycompile's label or refused when foreign, incremental uploads
checked object by object through the JSON API, `storage delete`, and a node that COPYs
the uploaded workdir from the emulator.

The emulator ignores labels (and location) on bucket insert, so `create` patches the label
in; it cannot delete a bucket while a resumable upload into it is unfinished, and an
object cannot share its name with a "directory" of other objects (its store is files)."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from skycompile import stores
from skycompile.errors import ApplyError

from . import nodes
from .applied import (BIG, OUT_BUCKET, TASK, WORKDIR_BUCKET,
                      cancelled_and_changed_uploads_leave_nothing, local_tree, make_project)


@pytest.fixture
def gcs(serve):
    return serve(nodes.GCSServer, "gcs")


@pytest.fixture
def env(tmp_path, monkeypatch, gcs, cli):
    """A project (30 small files and one resumable-size file) and a task, in tmp_path (the
    current directory), with the state in tmp_path/state and STORAGE_EMULATOR_HOST set
    (after `cli`, which unsets it)."""
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, BIG)
    (tmp_path / "task.yaml").write_text(TASK)
    return tmp_path


def apply(cli, *flags: str) -> None:
    res = cli("task.yaml", "-o", "boot.sh", "--store", "gcs", *flags)
    assert res.code == 0, res.err


def uploads(gcs: nodes.GCSServer, bucket: str) -> int:
    """Objects the emulator was asked to write (one POST per multipart upload or resumable
    session), from its access log."""
    return len(re.findall(rf'"POST /upload/storage/v1/b/{bucket}/o\?uploadType=\w+ HTTP/1.1" 200',
                          gcs.log.read_text()))


def test_first_upload_resync_and_one_change(env, gcs, cli):
    apply(cli)
    client = gcs.client()
    for name in (WORKDIR_BUCKET, OUT_BUCKET):
        assert client.get_bucket(name).labels == {"created-by": "skycompile"}
    # every object is the local file: content, MD5 (what listing compares) and sha256
    tree = local_tree(env / "proj")
    assert gcs.objects(WORKDIR_BUCKET) == {f"workdir/{k}": v for k, v in tree.items()}
    for blob in client.list_blobs(WORKDIR_BUCKET):
        local = env / "proj" / blob.name.removeprefix("workdir/")
        assert base64.b64decode(blob.md5_hash).hex() == hashlib.md5(local.read_bytes()).hexdigest()
        assert blob.metadata == {"sha256": tree[blob.name.removeprefix("workdir/")]}
    assert uploads(gcs, WORKDIR_BUCKET) == 31
    # big.bin went up resumable, in more than one chunk
    assert re.search(rf'"PUT /upload/storage/v1/b/{WORKDIR_BUCKET}/o\?uploadType=resumable&'
                     rf'upload_id=\S+ HTTP/1.1" 308', gcs.log.read_text())
    ls = json.loads(cli("storage", "ls", "--json").out)
    assert {(r["name"], r["store"], r["endpoint"], r["status"]) for r in ls} == {
        (WORKDIR_BUCKET, "gcs", gcs.endpoint, "READY"), (OUT_BUCKET, "gcs", gcs.endpoint, "READY")}

    # no change: nothing uploaded
    apply(cli)
    assert uploads(gcs, WORKDIR_BUCKET) == 31

    # one file changed: exactly that one goes
    (env / "proj" / "src" / "m3.py").write_text("changed\n")
    apply(cli)
    assert uploads(gcs, WORKDIR_BUCKET) == 32
    assert gcs.read(WORKDIR_BUCKET, "workdir/src/m3.py") == b"changed\n"
    assert gcs.objects(WORKDIR_BUCKET) == {
        f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}

    # a file removed locally stays in the bucket, unless --delete
    (env / "proj" / "src" / "m4.py").unlink()
    apply(cli)
    assert "workdir/src/m4.py" in gcs.keys(WORKDIR_BUCKET)
    apply(cli, "--delete")
    assert gcs.objects(WORKDIR_BUCKET) == {
        f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}
    assert uploads(gcs, WORKDIR_BUCKET) == 32


def test_foreign_bucket_is_refused_before_anything_is_written(env, gcs, cli):
    gcs.create_bucket(OUT_BUCKET)  # exists, not created by skycompile: no label
    res = cli("task.yaml", "-o", "boot.sh", "--store", "gcs")
    assert res.code == 1
    assert res.err.strip() == (
        f"skycompile: error: gcs bucket {OUT_BUCKET} at {gcs.endpoint} already exists and was "
        f"not created by skycompile; to use it as it is, write `source: gs://{OUT_BUCKET}` "
        f"instead of `name:`")
    assert not Path("boot.sh").exists()
    assert gcs.client().lookup_bucket(WORKDIR_BUCKET) is None  # the other one not created
    assert gcs.keys(OUT_BUCKET) == [] and gcs.client().get_bucket(OUT_BUCKET).labels == {}
    assert json.loads(cli("storage", "ls", "--json").out) == []


def test_storage_delete_empties_and_deletes(env, gcs, cli):
    apply(cli)
    assert len(gcs.keys(WORKDIR_BUCKET)) == 31
    res = cli("storage", "delete", WORKDIR_BUCKET, OUT_BUCKET, "--yes")
    assert res.code == 0, res.err
    assert f"deleted gcs bucket {WORKDIR_BUCKET} at {gcs.endpoint}" in res.err
    assert gcs.client().lookup_bucket(WORKDIR_BUCKET) is None
    assert gcs.client().lookup_bucket(OUT_BUCKET) is None
    assert json.loads(cli("storage", "ls", "--json").out) == []
    # and the next apply creates them again, labelled, and uploads everything
    apply(cli)
    assert gcs.client().get_bucket(WORKDIR_BUCKET).labels == {"created-by": "skycompile"}
    assert gcs.objects(WORKDIR_BUCKET) == {
        f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}


def test_applied_task_runs_on_a_node(env, gcs, cli, plain_node):
    apply(cli)
    up = plain_node.script(Path("boot.sh").read_text(), "up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.split()[:2] == ["30", "print(3)"]
    node_tree = plain_node.path("/root/sky_workdir")
    assert local_tree(node_tree) == local_tree(env / "proj")


def test_cancelled_or_refused_uploads_leave_no_object(tmp_path, gcs):
    """A resumable upload cancelled between chunks, and content that is not what was
    hashed (the server checks the md5Hash sent with it), create nothing."""
    client = stores.bucket_client("gcs", "sc-gcs-cancel", endpoint=gcs.endpoint)
    assert client.where == f"gcs bucket sc-gcs-cancel at {gcs.endpoint}"
    assert not client.exists()
    client.create()
    assert client.exists() and client.tagged_ours()
    cancelled_and_changed_uploads_leave_nothing(client, tmp_path,
                                                "the file changed after it was hashed")

def test_google_cloud_storage_without_credentials_says_what_to_set(tmp_path, monkeypatch):
    missing = tmp_path / "missing-key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing))
    with pytest.raises(ApplyError) as failed:
        stores.bucket_client("gcs", "sc-gcs-real")
    assert str(failed.value) == (
        f"cannot reach gcs bucket sc-gcs-real: GOOGLE_APPLICATION_CREDENTIALS: File {missing} "
        f"was not found; run `gcloud auth application-default login`, or set "
        f"GOOGLE_APPLICATION_CREDENTIALS to a service account key file")
