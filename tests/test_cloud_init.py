"""Outputs for cloud-init (--format cloud-init, --gzip, --base64) and the user-data
budgets (--target): read back with Python's email parser, as cloud-init reads them, and
with cloud-init's own code where Debian's cloud-init is installed. A node that boots from
them: tests/e2e/test_cloud_init.py."""
from __future__ import annotations

import base64
import email
import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from skycompile import userdata

CACHED = """\
name: ci
file_mounts:
  /data:
    source: s3://inputs
    mode: MOUNT
  /out:
    source: s3://results
    mode: MOUNT_CACHED
run: echo hi
"""


@pytest.fixture
def task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def write(text: str = CACHED, name: str = "task.yaml") -> str:
        Path(name).write_text(text)
        return name
    return write


def parts(data: bytes) -> list[tuple[str, str, bytes]]:
    """(content type, file name, body) of each part, as cloud-init's email parsing sees them."""
    msg = email.message_from_bytes(data)
    assert msg.get_content_type() == "multipart/mixed"
    return [(p.get_content_type(), p.get_filename(), p.get_payload(decode=True))
            for p in msg.get_payload()]


def test_two_parts_carry_the_script_and_the_boot_hook(task, cli):
    name = task()
    assert cli(name, "--dry-run", "-o", "script/").code == 0
    result = cli(name, "--dry-run", "-o", "out/", "--format", "cloud-init")
    assert result.code == 0, result.err
    assert "script: out/node-0.user-data" in result.out
    data = Path("out/node-0.user-data").read_bytes()
    (per_instance, name0, script), (per_boot, name1, hook) = parts(data)
    assert (per_instance, name0) == ("text/x-shellscript",
                                     "skycompile-ci-node-0.sh")
    assert (per_boot, name1) == ("text/x-shellscript-per-boot", "skycompile-ci-node-0-remount.sh")
    # the script part is the script format's bytes but for the regenerate line's flags
    plain = Path("script/node-0.sh").read_bytes()
    assert script.replace(b" --format cloud-init", b"").replace(b"out/", b"script/") == plain
    assert hook.startswith(b"#!/bin/sh\n")
    assert b"if [ -f '/var/lib/skycompile/ci/node.sh' ]; then\n" \
           b"  exec bash '/var/lib/skycompile/ci/node.sh' remount\nfi\n" in hook
    assert b"readonly STATE_DIR=\"/var/lib/skycompile/$SLUG\"" in script
    assert b"readonly SLUG='ci'" in script


def test_a_task_without_mounts_has_no_boot_part(task, cli):
    name = task("file_mounts:\n  /data: s3://inputs\nrun: echo hi\n")
    assert cli(name, "--dry-run", "-o", "out/", "--format", "cloud-init").code == 0
    [(ctype, _, script)] = parts(Path("out/node-0.user-data").read_bytes())
    assert ctype == "text/x-shellscript" and script.startswith(b"#!/usr/bin/env bash")


def test_non_ascii_and_long_lines_arrive_byte_for_byte(task, cli):
    name = task(CACHED.replace("echo hi", "echo 'héllo ✓' " + "x" * 2000))
    assert cli(name, "--dry-run", "-o", "out/", "--format", "cloud-init").code == 0
    data = Path("out/node-0.user-data").read_bytes()
    assert b"Content-Transfer-Encoding: base64" in data
    [(_, _, script), _] = parts(data)
    assert "héllo ✓".encode() in script and b"x" * 2000 in script
    assert cli(name, "--dry-run", "-o", "plain/").code == 0
    assert script.replace(b" --format cloud-init", b"").replace(b"out/", b"plain/") == \
        Path("plain/node-0.sh").read_bytes()


def test_the_boundary_never_occurs_in_a_part_and_output_is_stable(task, cli):
    name = task()
    made = []
    for _ in range(2):
        assert cli(name, "--dry-run", "-o", "out/", "--format", "cloud-init").code == 0
        made.append(Path("out/node-0.user-data").read_bytes())
        shutil.rmtree("out")
    assert made[0] == made[1]
    boundary = email.message_from_bytes(made[0]).get_boundary()
    assert all(boundary.encode() not in body for _, _, body in parts(made[0]))
    assert made[0].count(f"--{boundary}".encode()) == 3  # two parts and the end


def bodies(data: bytes) -> list[bytes]:
    """The parts of a cloud-init message, or the script itself."""
    return [body for _, _, body in parts(data)] if data.startswith(b"Content-Type:") else [data]


@pytest.mark.parametrize("fmt", ["script", "cloud-init"])
def test_gzip_and_base64_wrap_the_same_bytes(task, cli, fmt):
    name = task()
    suffix = ".sh" if fmt == "script" else ".user-data"
    assert cli(name, "--dry-run", "-o", "plain/", "--format", fmt).code == 0
    gzipped = cli(name, "--dry-run", "-o", "gz/", "--format", fmt, "--gzip")
    assert gzipped.code == 0
    assert "--gzip output is binary; some platforms and copy-paste damage binary user " \
        "data: hand it over as a file (fileb://, filebase64) or add --base64" in gzipped.err
    b64 = cli(name, "--dry-run", "-o", "b64/", "--format", fmt, "--gzip", "--base64")
    assert b64.code == 0 and "output is binary" not in b64.err
    plain = Path(f"plain/node-0{suffix}").read_bytes()
    gz = Path(f"gz/node-0{suffix}.gz").read_bytes()
    assert gz[:2] == b"\x1f\x8b" and len(gz) < len(plain) / 2
    # the same parts, but for the header's regenerate line
    assert [b.replace(b" --gzip", b"").replace(b"gz/", b"plain/")
            for b in bodies(gzip.decompress(gz))] == bodies(plain)
    text = Path(f"b64/node-0{suffix}.gz.b64").read_bytes()
    assert text.isascii() and text.count(b"\n") == 1 and text.endswith(b"\n")  # one line
    assert [b.replace(b" --gzip --base64", b"").replace(b"b64/", b"plain/")
            for b in bodies(gzip.decompress(base64.b64decode(text)))] == bodies(plain)


def test_check_compares_binary_output(task, cli):
    name = task()
    args = (name, "-o", "out/", "--format", "cloud-init", "--gzip")
    assert cli(*args, "--dry-run").code == 0
    assert cli(*args, "--check").code == 0
    path = Path("out/node-0.user-data.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = cli(*args, "--check")
    assert result.code == 1
    assert result.out == (f"Binary files {path} and {path} (compiled) differ\n")


def test_target_budget_refuses_before_any_side_effect(task, cli, tmp_path):
    big = CACHED.replace("echo hi", "echo " + "y" * 20000)
    name = task(big)
    result = cli(name, "-o", "out/", "--target", "aws")
    assert result.code == 2
    assert result.err.splitlines()[0] == \
        "skycompile: error: --target aws: user data may have at most 16,384 bytes, but"
    assert "  node 0: " in result.err and "with --gzip)" in result.err
    assert result.err.splitlines()[-1].startswith(
        "Add --gzip (cloud-init unpacks it), or pass --stub: ")
    assert not Path("out").exists()
    ok = cli(name, "--dry-run", "-o", "out/", "--target", "aws", "--gzip")
    assert ok.code == 0, ok.err
    # a budget nothing fits in, even gzip-compressed
    noise = base64.b64encode(Path("/dev/urandom").open("rb").read(30000)).decode()
    name = task(CACHED.replace("echo hi", "echo " + noise))
    result = cli(name, "--dry-run", "-o", "out2/", "--target", "aws", "--gzip")
    assert result.code == 2 and "does not fit even gzip-compressed: pass --stub" in result.err
    assert not Path("out2").exists()
    # --stub: the budget applies to the stub, which does not carry the task's text
    ok = cli(name, "--dry-run", "-o", "out2/", "--target", "aws", "--gzip", "--stub")
    assert ok.code == 0, ok.err
    # a stub over budget (its rclone mirror's URL is in it): no other flag left to offer
    result = cli(name, "--dry-run", "-o", "out4/", "--target", "aws", "--gzip", "--stub",
                 "--rclone-mirror", "http://mirror/" + noise[:20000])
    assert result.code == 2 and result.err.splitlines()[-1].startswith(
        "Even the --stub output does not fit")
    assert not Path("out4").exists()
    # a GCE metadata value is text: no gzip, no base64
    name = task()
    for flag in ("--gzip", "--base64"):
        result = cli(name, "--dry-run", "-o", "out3/", "--target", "gcp", flag)
        assert result.code == 2 and "drop --gzip and --base64" in result.err
    assert cli(name, "--dry-run", "-o", "out3/", "--target", "gcp").code == 0
    # --target checks, it does not shape the output: the header leaves it out
    assert b"--target" not in Path("out3/node-0.sh").read_bytes()


def test_budgets():
    assert userdata.TARGETS == {"aws": 16384, "gcp": 262144, "azure": 65535, "openstack": 49149}
    # openstack's budget is what 65,535 characters of base64 carry
    assert len(base64.b64encode(b"x" * 49149)) <= 65535 < len(base64.b64encode(b"x" * 49150))


def test_golden_parts_lint():
    """The golden cloud-init case's parts: bash for the script, POSIX sh for the hook."""
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: pip install -e '.[test]'"
    found = sorted((ROOT / "golden" / "cloud-init" / "expected").glob("node-*.user-data"))
    assert len(found) == 2
    for path in found:
        (_, _, script), (_, _, hook) = parts(path.read_bytes())
        for shell, body in (("bash", script), ("sh", hook)):
            check = subprocess.run([shellcheck, f"--shell={shell}", "--severity=style", "-"],
                                   input=body, capture_output=True)
            assert check.returncode == 0, check.stdout.decode()


CLOUD_INIT_PY = "/usr/bin/python3"


def _cloud_init_available() -> bool:
    return Path(CLOUD_INIT_PY).exists() and subprocess.run(
        [CLOUD_INIT_PY, "-c", "import cloudinit.user_data"], capture_output=True).returncode == 0


def test_cloud_init_places_the_parts_itself(task, cli, tmp_path):
    """Debian's cloud-init (installed by .ci/run) reads the gzip-compressed message with
    its own UserDataProcessor and hands each part to its own handler for that type, which
    writes it where its scripts_user and scripts_per_boot modules run it: both scripts
    land there executable, byte for byte, even with a CRLF in the task's text, which the
    script holds as $'\\r' (no raw carriage return that line-end conversions could touch)."""
    if not _cloud_init_available():
        pytest.fail("Debian's cloud-init is missing: apt-get install cloud-init (.ci/run does)")
    name = task(CACHED.replace("run: echo hi", 'run: "printf \'a\\r\\nb\' >/tmp/crlf"'))
    assert cli(name, "--dry-run", "-o", "out/", "--format", "cloud-init", "--gzip").code == 0
    probe = r"""
import sys
from cloudinit import helpers, user_data, util
from cloudinit.handlers.shell_script import ShellScriptPartHandler
from cloudinit.handlers.shell_script_by_frequency import ShellScriptByFreqPartHandler
from cloudinit.settings import PER_ALWAYS, PER_INSTANCE
paths = helpers.Paths({"cloud_dir": sys.argv[2]})
msg = user_data.UserDataProcessor(paths).process(open(sys.argv[1], "rb").read())
handlers = {}
for handler in (ShellScriptPartHandler(paths), ShellScriptByFreqPartHandler(PER_ALWAYS, paths)):
    handlers.update((ctype, handler) for ctype in handler.list_types())
for part in msg.walk():
    if part.get_content_maintype() == "multipart":
        continue
    ctype = part.get_content_type()
    handlers[ctype].handle_part(None, ctype, part.get_filename(),
                                util.fully_decoded_payload(part), PER_INSTANCE)
    print(ctype)
"""
    cloud = tmp_path / "cloud"
    out = subprocess.run([CLOUD_INIT_PY, "-c", probe, "out/node-0.user-data.gz", str(cloud)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["text/x-shellscript", "text/x-shellscript-per-boot"]
    [(_, _, script), (_, _, hook)] = parts(gzip.decompress(
        Path("out/node-0.user-data.gz").read_bytes()))
    placed = {p.relative_to(cloud): p for p in cloud.rglob("*.sh")}
    # the user script where scripts_user runs it (the instance's scripts folder), the hook
    # where scripts_per_boot does
    assert sorted(map(str, placed)) == ["instance/scripts/skycompile-ci-node-0.sh",
                                        "scripts/per-boot/skycompile-ci-node-0-remount.sh"]
    assert placed[Path("instance/scripts/skycompile-ci-node-0.sh")].read_bytes() == script
    assert placed[Path("scripts/per-boot/skycompile-ci-node-0-remount.sh")].read_bytes() == hook
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in placed.values())
    assert b"\r" not in script
    run = subprocess.run(["bash", "-c", 'SKYCOMPILE_SOURCED=1 source "$1"; printf %s "$RUN_SCRIPT"',
                          "probe", str(placed[Path("instance/scripts/skycompile-ci-node-0.sh")])],
                         capture_output=True, check=True).stdout
    assert run == b"printf 'a\r\nb' >/tmp/crlf"
