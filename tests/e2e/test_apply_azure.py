"""The apply phase against a real Azurite (AZURE_STORAGE_CONNECTION_STRING, --store azure):
containers created with skycompile's metadata or refused when foreign, incremental uploads
checked blob by blob through Azure's own SDK, `storage delete`, and a node that COPYs the
uploaded workdir from Azurite."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

from skycompile import stores
from skycompile.errors import ApplyError

from . import nodes
from .applied import (BIG, OUT_BUCKET, TASK, WORKDIR_BUCKET,
                      cancelled_and_changed_uploads_leave_nothing, local_tree, make_project)

ACCOUNT = nodes.AzuriteServer.ACCOUNT
OURS = {"created_by": "skycompile"}


@pytest.fixture
def azurite(serve):
    return serve(nodes.AzuriteServer, "azurite")


@pytest.fixture
def env(tmp_path, monkeypatch, azurite, cli):
    """A project (30 small files and one block-size file) and a task, in tmp_path (the
    current directory), with the state in tmp_path/state and AZURE_STORAGE_CONNECTION_STRING
    naming Azurite (set after `cli`, which unsets it)."""
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    for name in ("AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, BIG)
    (tmp_path / "task.yaml").write_text(TASK)
    return tmp_path


def apply(cli, *flags: str) -> None:
    res = cli("task.yaml", "-o", "boot.sh", "--store", "azure", *flags)
    assert res.code == 0, res.err
    assert azure_key_free(res.out + res.err)


def azure_key_free(text: str) -> bool:
    return nodes.AzuriteServer.KEY not in text and "AccountKey" not in text


def objects(azurite: nodes.AzuriteServer, container: str) -> dict[str, str]:
    return {key: hashlib.sha256(azurite.read(container, key)).hexdigest()
            for key in azurite.keys(container)}


def uploads(azurite: nodes.AzuriteServer, container: str) -> int:
    """Blobs Azurite was asked to write (a Put Blob, or the commit of staged blocks), from
    its access log."""
    return len(re.findall(rf'"PUT /{ACCOUNT}/{container}/[^?\s]+(?:\?comp=blocklist)? '
                          rf'HTTP/1.1" 201', azurite.log.read_text()))


def metadata(azurite: nodes.AzuriteServer, container: str) -> dict[str, str]:
    return azurite.client().get_container_client(container).get_container_properties().metadata


def test_first_upload_resync_and_one_change(env, azurite, cli):
    apply(cli)
    for name in (WORKDIR_BUCKET, OUT_BUCKET):
        assert metadata(azurite, name) == OURS
    # every blob is the local file: content, Content-MD5 (what listing compares; Azure
    # computes none for a blob committed from blocks) and sha256
    tree = local_tree(env / "proj")
    assert objects(azurite, WORKDIR_BUCKET) == {f"workdir/{k}": v for k, v in tree.items()}
    blobs = azurite.client().get_container_client(WORKDIR_BUCKET).list_blobs(
        include=["metadata"])
    for blob in blobs:
        key = blob.name.removeprefix("workdir/")
        md5 = hashlib.md5((env / "proj" / key).read_bytes()).hexdigest()
        assert bytes(blob.content_settings.content_md5).hex() == md5
        assert blob.metadata == {"sha256": tree[key]}
    assert uploads(azurite, WORKDIR_BUCKET) == 31
    staged = re.findall(rf'"PUT /{ACCOUNT}/{WORKDIR_BUCKET}/workdir/big.bin\?comp=block&',
                        azurite.log.read_text())
    assert len(staged) == 3
    ls = json.loads(cli("storage", "ls", "--json").out)
    assert {(r["name"], r["store"], r["endpoint"], r["status"]) for r in ls} == {
        (WORKDIR_BUCKET, "azure", azurite.endpoint, "READY"),
        (OUT_BUCKET, "azure", azurite.endpoint, "READY")}

    # no change: nothing uploaded
    apply(cli)
    assert uploads(azurite, WORKDIR_BUCKET) == 31

    # one file changed: exactly that one goes
    (env / "proj" / "src" / "m3.py").write_text("changed\n")
    apply(cli)
    assert uploads(azurite, WORKDIR_BUCKET) == 32
    assert azurite.read(WORKDIR_BUCKET, "workdir/src/m3.py") == b"changed\n"
    assert objects(azurite, WORKDIR_BUCKET) == {
        f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}

    # a file removed locally stays in the container, unless --delete
    (env / "proj" / "src" / "m4.py").unlink()
    apply(cli)
    assert "workdir/src/m4.py" in azurite.keys(WORKDIR_BUCKET)
    apply(cli, "--delete")
    assert objects(azurite, WORKDIR_BUCKET) == {
        f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}
    assert uploads(azurite, WORKDIR_BUCKET) == 32


def test_foreign_container_is_refused_before_anything_is_written(env, azurite, cli):
    azurite.create_container(OUT_BUCKET)  # exists, not created by skycompile: no metadata
    res = cli("task.yaml", "-o", "boot.sh", "--store", "azure")
    assert res.code == 1
    assert res.err.strip() == (
        f"skycompile: error: azure container {OUT_BUCKET} at {azurite.endpoint} already exists "
        f"and was not created by skycompile; to use it as it is, write `source: "
        f"https://ACCOUNT.blob.core.windows.net/{OUT_BUCKET}` instead of `name:`")
    assert not Path("boot.sh").exists()
    assert not azurite.client().get_container_client(WORKDIR_BUCKET).exists()
    assert azurite.keys(OUT_BUCKET) == [] and metadata(azurite, OUT_BUCKET) == {}
    assert json.loads(cli("storage", "ls", "--json").out) == []


def test_storage_delete_empties_and_deletes(env, azurite, cli):
    apply(cli)
    assert len(azurite.keys(WORKDIR_BUCKET)) == 31
    res = cli("storage", "delete", WORKDIR_BUCKET, OUT_BUCKET, "--yes")
    assert res.code == 0, res.err
    assert f"deleted azure bucket {WORKDIR_BUCKET} at {azurite.endpoint}" in res.err
    for name in (WORKDIR_BUCKET, OUT_BUCKET):
        assert not azurite.client().get_container_client(name).exists()
    assert json.loads(cli("storage", "ls", "--json").out) == []


def test_storage_delete_without_the_connection_string(env, azurite, cli, monkeypatch):
    """The endpoint is in the state: Azurite's public key reaches it with the variable gone."""
    apply(cli)
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    res = cli("storage", "delete", "--all", "--yes")
    assert res.code == 0, res.err
    assert not azurite.client().get_container_client(WORKDIR_BUCKET).exists()


def test_applied_task_runs_on_a_node(env, azurite, cli, plain_node):
    apply(cli)
    script = Path("boot.sh").read_text()
    assert azure_key_free(script)
    up = plain_node.script(script, "up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.split()[:2] == ["30", "print(3)"]
    assert local_tree(plain_node.path("/root/sky_workdir")) == local_tree(env / "proj")


def test_cancelled_or_changed_uploads_leave_no_blob(tmp_path, azurite):
    """A block upload cancelled between blocks, and content that is not what was hashed
    (checked before the commit, so a Content-MD5 never vouches for other data), create
    nothing."""
    client = stores.bucket_client("azure", "sc-az-cancel", endpoint=azurite.endpoint)
    assert client.where == f"azure container sc-az-cancel at {azurite.endpoint}"
    assert not client.exists()
    client.create()
    assert client.exists() and client.tagged_ours()
    cancelled_and_changed_uploads_leave_nothing(client, tmp_path, "it changed after it was hashed")
    client.destroy()
    assert not client.exists()


def test_real_azure_without_credentials_says_what_to_set(monkeypatch):
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY",
                 "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ApplyError, match=r"^cannot reach azure container c1: no storage "
                                         r"account; write the container as https://ACCOUNT"):
        stores.bucket_client("azure", "c1")
    if importlib.util.find_spec("azure.identity") is None:  # else it is the fallback
        with pytest.raises(ApplyError, match=r"^cannot reach azure container c1 in storage "
                                             r"account acct1: no Azure credentials; set "
                                             r"AZURE_STORAGE_KEY"):
            stores.bucket_client("azure", "c1", account="acct1")
