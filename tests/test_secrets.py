"""No credential reaches any output unless --embed-credentials says so.

Every golden case is compiled with fake keys planted everywhere skycompile (or a user's
other tools) keeps them: the environment, ~/.aws/credentials (profiles default, oci, r2),
~/.cloudflare/r2.credentials, a GCS service-account key file, gcloud's user credentials,
Azure keys and a connection string, git and other tokens. Then every byte written (the
scripts, the plan, stderr, the state and cache directories) is scanned for each fake,
raw and base64-encoded. With --embed-credentials the keys may appear only inside the
script's RCLONE_CONF_LINES array (which the node writes to its 0600 rclone config), and
the scripts are written 0700.
"""
from __future__ import annotations

import base64
import email
import json
import os
import re
from pathlib import Path

import pytest

from conftest import tree
from test_golden import CASES, compile_case

TOKENS = {
    name: f"SCFAKE{name.replace('_', '')}{n:04d}x"
    for n, name in enumerate([
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "file_default_key", "file_default_secret", "file_oci_key", "file_oci_secret",
        "file_r2_profile_key", "file_r2_profile_secret", "r2_key", "r2_secret",
        "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "azure_conn_key",
        "gcs_private_key", "gcs_private_key_id", "gcloud_refresh_token",
        "GIT_TOKEN", "GITHUB_TOKEN", "HF_TOKEN", "WANDB_API_KEY", "git_credentials",
    ])
}
ENV = {name: TOKENS[name] for name in (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY", "GIT_TOKEN", "GITHUB_TOKEN", "HF_TOKEN", "WANDB_API_KEY")}


def plant(home: Path, monkeypatch, *, aws_env: bool) -> None:
    """Fake keys in the environment and in home's credential files."""
    t = TOKENS
    files = {
        ".aws/credentials": (
            f"[default]\naws_access_key_id = {t['file_default_key']}\n"
            f"aws_secret_access_key = {t['file_default_secret']}\n"
            f"[oci]\naws_access_key_id = {t['file_oci_key']}\n"
            f"aws_secret_access_key = {t['file_oci_secret']}\n"
            f"[r2]\naws_access_key_id = {t['file_r2_profile_key']}\n"
            f"aws_secret_access_key = {t['file_r2_profile_secret']}\n"),
        ".cloudflare/r2.credentials": (
            f"[r2]\naws_access_key_id = {t['r2_key']}\n"
            f"aws_secret_access_key = {t['r2_secret']}\n"),
        ".config/gcloud/application_default_credentials.json": json.dumps({
            "type": "authorized_user", "client_id": "x.apps.googleusercontent.com",
            "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty", "refresh_token": t["gcloud_refresh_token"]}),
        "gcs-key.json": json.dumps({
            "type": "service_account", "project_id": "fake-project",
            "private_key_id": t["gcs_private_key_id"],
            "private_key": f"-----BEGIN PRIVATE KEY-----\n{t['gcs_private_key']}\n"
                           "-----END PRIVATE KEY-----\n",
            "client_email": "fake@fake-project.iam.gserviceaccount.com"}),
        ".git-credentials": f"https://user:{t['git_credentials']}@github.com\n",
    }
    for rel, text in files.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(text)
    env = dict(ENV)
    if not aws_env:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(name)
            monkeypatch.delenv(name, raising=False)
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(home / "gcs-key.json")
    env["AZURE_STORAGE_CONNECTION_STRING"] = (
        "DefaultEndpointsProtocol=https;AccountName=fakeacct;"
        f"AccountKey={t['azure_conn_key']};EndpointSuffix=core.windows.net")
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def forms(token: str) -> list[bytes]:
    """The token and its base64 encodings at each of the three alignments."""
    raw = token.encode()
    out = [raw]
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw)[4 if pad else 0:]
        out.append(enc[:len(enc) - 4])  # the tail depends on what follows
    return out


def found(data: bytes) -> list[str]:
    return [name for name, token in TOKENS.items() if any(f in data for f in forms(token))]


def outputs(tmp_path: Path, name: str, result) -> dict[str, bytes]:
    """Every byte the compile wrote, beside the fixture copy and the planted files: the
    output directory, stdout, stderr, and the state/cache directory."""
    work = tmp_path / name
    written = {f"out/{k}": v for k, v in tree(work / "out").items()}
    written["stdout"] = result.out.encode()
    written["stderr"] = result.err.encode()
    state = Path(os.environ["SKYCOMPILE_STATE_DIR"])
    written.update({f"state/{k}": v for k, v in tree(state).items()})
    return written


def compile_planted(name, tmp_path, cli, monkeypatch, *args, aws_env=True):
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    return compile_case(name, tmp_path, cli, monkeypatch, *args,
                        prepare=lambda home: plant(home, monkeypatch, aws_env=aws_env))


@pytest.mark.parametrize("aws_env", [True, False], ids=["keys-in-env", "keys-in-files"])
@pytest.mark.parametrize("name", CASES)
def test_no_credential_in_any_output(name, aws_env, tmp_path, cli, monkeypatch):
    _, result = compile_planted(name, tmp_path, cli, monkeypatch, aws_env=aws_env)
    written = outputs(tmp_path, name, result)
    assert any(k.startswith("out/") for k in written)
    leaks = {k: found(v) for k, v in written.items() if found(v)}
    assert not leaks, f"credentials in the output: {leaks}"


CONF = re.compile(rb"\n  readonly -a RCLONE_CONF_LINES=\(\n.*?\n  \)\n", re.S)
@pytest.mark.parametrize("aws_env", [True, False], ids=["keys-in-env", "keys-in-files"])
# --stub refuses --embed-credentials (test_stub_refuses_to_embed_credentials)
@pytest.mark.parametrize("name", [c for c in CASES if c != "stub"])
def test_embedded_credentials_only_in_the_rclone_config(name, aws_env, tmp_path, cli,
                                                        monkeypatch):
    _, result = compile_planted(name, tmp_path, cli, monkeypatch, "--embed-credentials",
                                aws_env=aws_env)
    written = outputs(tmp_path, name, result)
    embedded = set()
    for key, data in written.items():
        if key.endswith(".user-data"):  # --format cloud-init: the parts, decoded
            data = b"\n".join(p.get_payload(decode=True)
                              for p in email.message_from_bytes(data).get_payload())
        conf = CONF.search(data) if key.endswith((".sh", ".user-data")) else None
        if conf:
            embedded |= set(found(conf.group()))
            data = data[:conf.start()] + data[conf.end():]
        assert not found(data), f"{key}: credentials outside RCLONE_CONF_LINES: {found(data)}"
    scripts = [p for p in (tmp_path / name / "out").rglob("node-*")]
    mode = 0o700 if embedded else 0o755
    assert scripts and all(p.stat().st_mode & 0o777 == mode for p in scripts)
    remotes = b"".join(written[k] for k in written if k.endswith((".sh", ".user-data")))
    expect = set()
    if re.search(rb"'type = s3'", remotes) and b"Cloudflare" not in remotes:
        expect |= ({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
                   if aws_env else {"file_default_key", "file_default_secret"})
    if b"provider = Cloudflare" in remotes:
        expect |= ({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} if aws_env
                   else {"r2_key", "r2_secret"})
    if b"'type = google cloud storage'" in remotes:
        expect |= {"gcs_private_key", "gcs_private_key_id"}
    if b"'type = azureblob'" in remotes:
        expect |= {"AZURE_STORAGE_KEY"}
    assert expect <= embedded, f"missing from the rclone config: {expect - embedded}"
    never = {"GIT_TOKEN", "GITHUB_TOKEN", "HF_TOKEN", "WANDB_API_KEY", "git_credentials",
             "gcloud_refresh_token", "azure_conn_key", "file_oci_key", "file_oci_secret",
             "file_r2_profile_key", "file_r2_profile_secret"}
    assert not embedded & never, embedded & never


def test_stub_refuses_to_embed_credentials(tmp_path, cli, monkeypatch):
    """The golden --stub case with --embed-credentials: refused before anything is
    written, and the message carries no key."""
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(AssertionError, match="--stub cannot go with --embed-credentials"):
        compile_case("stub", tmp_path, cli, monkeypatch, "--embed-credentials",
                     prepare=lambda home: plant(home, monkeypatch, aws_env=True))
    assert not (tmp_path / "stub" / "out").exists()
    result = cli("task.yaml", "--dry-run", "-o", "out/", "--stub", "--embed-credentials")
    assert result.code == 2 and not found((result.out + result.err).encode())


def test_oci_has_nothing_to_embed(tmp_path, cli, monkeypatch):
    """OCI nodes authenticate as instance principals: nothing is embedded, the message
    says so, and the [oci] keys of this machine are not written anywhere."""
    monkeypatch.setenv("OCI_NAMESPACE", "fakens")
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    plant(home, monkeypatch, aws_env=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "task.yaml").write_text(
        "resources: {region: us-ashburn-1}\nfile_mounts:\n  /d: oci://bkt\n")
    result = cli("task.yaml", "--dry-run", "--embed-credentials", "-o", "out/")
    assert result.code == 0, result.err
    assert "nothing embedded" in result.err and "storage keys are in" not in result.err
    script = tmp_path / "out" / "node-0.sh"
    assert script.stat().st_mode & 0o777 == 0o755
    assert b"'provider = instance_principal_auth'" in script.read_bytes()
    assert not found(script.read_bytes() + result.out.encode() + result.err.encode())
