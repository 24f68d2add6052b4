"""--stub without a cloud: what the stub is and how it composes with the formats, the
budgets, --check, the plan and the Python API; what is refused. The stub fetching and
running its script on a node, against a real S3 server: tests/e2e/test_stub.py."""
from __future__ import annotations

import base64
import email
import gzip
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import skycompile
from skycompile import userdata
from skycompile.errors import UsageError

from conftest import ROOT

GOLDEN = ROOT / "golden" / "stub"
MOUNTS = """\
name: big
num_nodes: 2
file_mounts:
  /data:
    source: s3://inputs/shared
    mode: MOUNT
  /checkpoints:
    source: s3://results
    mode: MOUNT_CACHED
  /copied: s3://inputs/small
run: python3 train.py --out /checkpoints
"""


@pytest.fixture
def task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def write(text: str = MOUNTS, name: str = "task.yaml") -> str:
        Path(name).write_text(text)
        return name
    return write


def constant(script: str, name: str) -> str:
    return re.search(rf"^  readonly {name}='([^']*)'$", script, re.M).group(1)


def lint(text: str) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: pip install -e '.[test]'"
    check = subprocess.run([shellcheck, "--shell=bash", "--severity=style", "-"],
                           input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_the_stub_names_its_script_by_content_and_is_small(task):
    opts = skycompile.make_options(stub=True, bucket="team-bucket")
    result = skycompile.compile_task(task(), dry_run=True, options=opts)
    [ct] = result.tasks
    plain = skycompile.compile_task("task.yaml", dry_run=True,
                                    options=skycompile.make_options(bucket="team-bucket"))
    # the uploaded scripts are the ordinary node scripts (their header names the same flags)
    assert ct.scripts == plain.tasks[0].scripts
    assert len(ct.outputs) == len(ct.stub_objects) == 2
    for node, (script, output, obj) in enumerate(zip(ct.scripts, ct.outputs, ct.stub_objects)):
        sha = hashlib.sha256(script.encode()).hexdigest()
        assert (obj.node, obj.sha256, obj.data) == (node, sha, script.encode())
        assert obj.key == f"skycompile/big/node-{node}-{sha}.sh"
        assert obj.uri == f"s3://team-bucket/{obj.key}"
        stub = output.decode()
        assert constant(stub, "FULL_SHA256") == sha
        assert constant(stub, "FULL_URI") == obj.uri
        assert constant(stub, "FULL_REMOTE") == f"sc-stub:team-bucket/{obj.key}"
        assert f"# Full script: '{obj.uri}'\n#   sha256:    '{sha}', {len(script)} bytes\n" \
            in stub
        assert "# Regenerate with: " in stub and "readonly RUN_SCRIPT" not in stub
        assert 'exec "$BASH" -- "$FULL_SCRIPT" "$@"' in stub
        lint(stub)
        assert len(output) * 3 < len(script.encode())
    # the stub's rclone config: the task's bucket alone, credentials from the node
    remote = re.search(r"RCLONE_CONF_LINES=\(\n(.*?)\n  \)", ct.outputs[0].decode(), re.S)
    assert remote.group(1).split("\n") == ["    '[sc-stub]'", "    'type = s3'",
                                           "    'provider = AWS'", "    'env_auth = true'",
                                           "    'no_check_bucket = true'"]
    # the task's bucket is created or reused, although no local source needs it
    assert [(b.bucket, b.create) for b in ct.plan.buckets][-1] == ("team-bucket", True)
    # the same bytes every time
    again = skycompile.compile_task("task.yaml", dry_run=True, options=opts)
    assert again.tasks[0].outputs == ct.outputs


def test_packaging_applies_to_the_stub(task, cli):
    name = task()
    assert cli(name, "--dry-run", "-o", "plain/", "--stub").code == 0
    stub = Path("plain/node-0.sh").read_bytes()
    result = cli(name, "--dry-run", "-o", "ci/", "--stub", "--format", "cloud-init", "--gzip",
                 "--base64")
    assert result.code == 0, result.err
    data = gzip.decompress(base64.b64decode(Path("ci/node-0.user-data.gz.b64").read_bytes()))
    msg = email.message_from_bytes(data)
    (script, hook) = [(p.get_content_type(), p.get_payload(decode=True))
                      for p in msg.get_payload()]
    # the per-instance part is the stub (its header repeats the flags), the per-boot part is
    # the usual one: it runs the copy the full script's up keeps
    assert script[0] == "text/x-shellscript"
    def same(text: bytes) -> bytes:  # but for the flags, so the script and its checksum
        text = text.replace(b" --format cloud-init --gzip --base64 --stub -o ci/",
                            b" --stub -o plain/")
        return re.sub(rb"[0-9a-f]{64}|, \d+ bytes", b"X", text)
    assert same(script[1]) == same(stub)
    assert hook[0] == "text/x-shellscript-per-boot"
    assert b"exec bash '/var/lib/skycompile/big/node.sh' remount" in hook[1]
    size = userdata.sizes(Path("ci/node-0.user-data.gz.b64").read_bytes(),
                          userdata.Packaging("cloud-init", True, True))
    assert size["targets"]["aws"]["fits"]


def test_stub_with_embedded_credentials_is_refused(task, cli, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    result = cli(task(), "-o", "out/", "--stub", "--embed-credentials")
    assert result.code == 2
    assert result.err.startswith("skycompile: error: --stub cannot go with --embed-credentials: "
                                 "the full scripts it uploads to the task's bucket would carry "
                                 "this machine's storage keys into that bucket")
    assert not Path("out").exists()
    with pytest.raises(UsageError, match="--stub cannot go with --embed-credentials"):
        skycompile.make_options(stub=True, embed_credentials=True)


def test_dry_run_plan_and_json_name_the_objects(task, cli):
    name = task()
    result = cli(name, "--dry-run", "-o", "out/", "--stub")
    assert result.code == 0, result.err
    keys = [constant(Path(f"out/node-{i}.sh").read_text(), "FULL_URI") for i in range(2)]
    lines = result.out.splitlines()
    assert "  create or reuse (skycompile's): s3://skycompile-tester-big  [store: default s3]" \
        in lines
    for i, uri in enumerate(keys):
        assert any(line.startswith(f"  node {i}'s script -> {uri}  (") and
                   line.endswith("; --stub)") for line in lines), result.out
    assert "  STUB         the output downloads the node's script (above), checks its " \
           "SHA-256 and runs it" in lines
    plan = cli("plan", name, "--json", "-o", "out/", "--stub")
    assert plan.code == 0, plan.err
    [found] = json.loads(plan.out)["tasks"]
    assert [(s["node"], s["uri"]) for s in found["stub"]] == list(enumerate(keys))
    # the sizes are the stubs'
    assert [n["bytes"] for n in found["nodes"]] == [
        Path(f"out/node-{i}.sh").stat().st_size for i in range(2)]
    plain = json.loads(cli("plan", name, "--json").out)
    assert plain["tasks"][0]["stub"] is None


def test_check_compares_the_stubs(task, cli):
    name = task()
    assert cli(name, "--dry-run", "-o", "out/", "--stub").code == 0
    assert cli(name, "-o", "out/", "--stub", "--check").code == 0
    # without --stub the outputs are the full scripts: out of date
    assert cli(name, "-o", "out/", "--check").code == 1
    # a changed task changes the script, so its key and checksum: the stub is out of date
    task(MOUNTS.replace("train.py", "train2.py"), name)
    stale = cli(name, "-o", "out/", "--stub", "--check")
    assert stale.code == 1 and "FULL_SHA256" in stale.out


def test_uploads_into_the_scripts_prefix_are_refused(task, cli):
    Path("src/skycompile").mkdir(parents=True)
    Path("src/skycompile/notes.txt").write_text("mine\n")
    name = task("name: clash\nfile_mounts:\n  /src:\n    name: skycompile-tester-clash\n"
                "    source: src\n    mode: COPY\nrun: ls /src\n")
    result = cli(name, "--dry-run", "-o", "out/", "--stub")
    assert result.code == 2
    assert ("uploads 'skycompile/notes.txt' into s3://skycompile-tester-clash, the task's "
            "bucket, where --stub keeps the node scripts (skycompile/)") in result.err
    # without --stub, or into another bucket, the file goes as any other
    assert cli(name, "--dry-run", "-o", "out/").code == 0
    assert cli(name, "--dry-run", "-o", "out/", "--stub", "--bucket", "other").code == 0


def test_the_task_bucket_is_checked_even_without_local_sources(task, cli):
    name = task("name: Bad_Name!\nrun: echo hi\n")
    assert cli(name, "--dry-run", "-o", "out/").code == 0
    result = cli(name, "--dry-run", "-o", "out2/", "--stub", "--bucket", "Bad_Name")
    assert result.code == 2 and "--bucket: the bucket for --stub, 'Bad_Name', " in result.err
    # r2 has no default service: the stub's bucket needs its endpoint
    name = task("name: r2\nresources:\n  cloud: cloudflare\nrun: echo hi\n", "r2.yaml")
    result = cli(name, "--dry-run", "-o", "out3/", "--stub")
    assert result.code == 2
    assert "--stub: the task's bucket would be on r2, which needs the account endpoint" \
        in result.err
    assert cli(name, "--dry-run", "-o", "out3/", "--stub", "--endpoint-url",
               "https://acct.r2.cloudflarestorage.com").code == 0


def test_golden_stub_is_far_smaller_than_its_script():
    """The golden case's sizes (also README's): the stub is what goes into user data."""
    stub = (GOLDEN / "expected" / "node-0.sh").read_bytes()
    full = int(re.search(rb"', (\d+) bytes\n", stub).group(1))
    assert len(stub) * 3 < full
    assert len(stub) < userdata.TARGETS["aws"]
