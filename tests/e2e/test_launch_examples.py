"""examples/launch/: each way of handing the scripts to a machine, run as far as this
machine allows. aws-run-instances.sh runs for real against moto's EC2 and S3 (the AWS CLI
and skycompile both talk to it); the launcher runs a job on a node between `up --no-run`
and `drain`; the CI job's command runs as written; main.tf's file is the one its command
writes. gcloud and terraform are not installable here: their commands are checked for the
files they name, not run."""
from __future__ import annotations

import base64
import email
import gzip
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import nodes

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "examples" / "launch"
BIN = Path(sys.executable).parent  # aws of this environment


def tool_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The examples call `skycompile`: this checkout's, through a wrapper on PATH."""
    wrapper = tmp_path / "wrapper-bin" / "skycompile"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))} "
                       f"exec {shlex.quote(sys.executable)} -m skycompile \"$@\"\n")
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": os.pathsep.join([str(wrapper.parent), str(BIN),
                                                   os.environ["PATH"]]),
            "SKYCOMPILE_STATE_DIR": str(tmp_path / "state"), "SKYCOMPILE_USER": "tester",
            **extra}


def mime_parts(data: bytes) -> dict[str, bytes]:
    return {p.get_content_type(): p.get_payload(decode=True)
            for p in email.message_from_bytes(data).get_payload()}


def test_the_shell_examples_lint():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: pip install -e '.[test]'"
    scripts = sorted(LAUNCH.glob("*.sh"))
    assert len(scripts) == 3
    for script in scripts:
        check = subprocess.run([shellcheck, "--severity=style", str(script)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout


def test_aws_run_instances_launches_with_the_user_data(serve, tmp_path):
    """The example against moto: skycompile creates the quickstart's bucket and uploads its
    workdir, and the instance's userData is the gzip-compressed cloud-init message."""
    import boto3

    moto = serve(nodes.MotoServer, "moto")
    creds = {"AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto",
             "AWS_DEFAULT_REGION": "us-east-2", "AWS_ENDPOINT_URL": moto.endpoint}
    session = boto3.Session(aws_access_key_id="moto", aws_secret_access_key="moto",
                            region_name="us-east-2")
    ec2 = session.client("ec2", endpoint_url=moto.endpoint)
    session.client("iam", endpoint_url=moto.endpoint).create_instance_profile(
        InstanceProfileName="skycompile-node")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    res = subprocess.run(["bash", str(LAUNCH / "aws-run-instances.sh"), "examples/quickstart.yaml",
                          ami], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=tool_env(tmp_path, INSTANCE_PROFILE="skycompile-node", **creds))
    assert res.returncode == 0, res.stderr
    [instance] = res.stdout.split()
    assert re.fullmatch(r"i-[0-9a-f]+", instance)
    raw = ec2.describe_instance_attribute(InstanceId=instance, Attribute="userData")
    data = base64.b64decode(raw["UserData"]["Value"])
    assert data[:2] == b"\x1f\x8b" and len(data) <= 16384
    parts = mime_parts(gzip.decompress(data))
    script = parts["text/x-shellscript"]
    assert b"readonly SLUG='quickstart'" in script
    assert b"remount" in parts["text/x-shellscript-per-boot"]
    # the apply phase ran against the same endpoint: the workdir is in its bucket
    s3 = session.client("s3", endpoint_url=moto.endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="skycompile-tester-quickstart")["Contents"]]
    assert "workdir/train.py" in keys


def test_terraform_reads_the_file_its_command_writes(tmp_path, cli, monkeypatch):
    text = (LAUNCH / "main.tf").read_text()
    [command] = re.findall(r"^#   (skycompile .*)$", text, re.M)
    [path] = re.findall(r'user_data_base64 += filebase64\("\$\{path\.module\}/([^"]+)"\)', text)
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "examples" / "quickstart.yaml", "task.yaml")
    shutil.copytree(ROOT / "examples" / "app", "examples/app")
    assert cli(*shlex.split(command)[1:], "--dry-run").code == 0
    data = Path(path).read_bytes()  # what filebase64() encodes
    assert data[:2] == b"\x1f\x8b" and len(data) <= 16384 < len(gzip.decompress(data))
    assert "text/x-shellscript-per-boot" in mime_parts(gzip.decompress(data))


def test_gcloud_gets_the_metadata_file(tmp_path):
    """gcloud is not installable here: a stand-in records its arguments and checks that
    the file it is given is the cloud-init message, within GCP's budget."""
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\" >\"$GCLOUD_ARGS\"\n"
                    "for a; do case $a in user-data=*) cp \"${a#user-data=}\" \"$GCLOUD_FILE\";; "
                    "esac; done\n")
    fake.chmod(0o755)
    env = tool_env(tmp_path, GCLOUD_ARGS=str(tmp_path / "args"),
                   GCLOUD_FILE=str(tmp_path / "user-data"))
    env["PATH"] = f"{fake.parent}{os.pathsep}{env['PATH']}"
    # storage the task only reads: the compile creates and uploads nothing, so needs no cloud
    (tmp_path / "task.yaml").write_text(
        "name: gce\nfile_mounts:\n  /public:\n    source: gs://gcp-public-data-sentinel-2\n"
        "    mode: MOUNT\nrun: ls /public\n")
    res = subprocess.run(["bash", str(LAUNCH / "gcloud-create.sh"), "task.yaml", "vm1"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args[:4] == ["compute", "instances", "create", "vm1"]
    data = (tmp_path / "user-data").read_bytes()
    assert len(data) <= 262144 and "text/x-shellscript" in mime_parts(data)


def test_ci_job_runs_its_check(tmp_path, cli, monkeypatch):
    workflow = yaml.safe_load((LAUNCH / "github-ci.yml").read_text())
    [job] = workflow["jobs"].values()
    command = job["steps"][-1]["run"]
    words = shlex.split(command)
    assert words[0] == "skycompile" and "--check" in words
    monkeypatch.chdir(tmp_path)
    Path("task.yaml").write_text("name: ci\nfile_mounts:\n  /data: s3://inputs\nrun: echo hi\n")
    generate = [w for w in words[1:] if w != "--check"]
    assert cli(*generate, "--dry-run").code == 0  # what the developer committed
    assert cli(*words[1:]).code == 0
    Path("task.yaml").write_text("name: ci\nfile_mounts:\n  /data: s3://inputs\nrun: echo bye\n")
    stale = cli(*words[1:])
    assert stale.code == 1
    assert "-  readonly RUN_SCRIPT='echo hi'" in stale.out
    assert "+  readonly RUN_SCRIPT='echo bye'" in stale.out


def test_launcher_runs_its_job_between_up_and_drain(s3, node, compile_task, tmp_path):
    s3.bucket("results")
    [script] = compile_task("name: launched\nfile_mounts:\n  /out:\n    source: s3://results\n"
                            "    mode: MOUNT_CACHED\n    config:\n      mount_cached:\n"
                            "        write_back: 10m\nrun: echo never >/out/run.txt\n")
    (tmp_path / "node-0.sh").write_text(script)
    on_node = shlex.join(node.command(["bash", "-c"]))
    job = "seq 1 1000 >/out/result.txt && exit 3"  # results, then a failing job
    res = subprocess.run(["bash", str(LAUNCH / "launcher.sh"), "unused-host",
                          str(tmp_path / "node-0.sh"), job], capture_output=True, text=True,
                         env={**os.environ, "NODE_SHELL": on_node, "SUDO": ""}, timeout=600)
    assert res.returncode == 3, res.stderr  # the job's status
    assert "--no-run: not running run" in res.stderr
    assert "drain: done" in res.stderr
    objects = s3.objects("results")
    assert set(objects) == {"result.txt"}  # drained, and the task's own run never ran
