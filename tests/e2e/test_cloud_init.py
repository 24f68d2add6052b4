"""A node booted from `--format cloud-init` user data, its parts run as cloud-init runs
them (scripts_per_boot before scripts_user, each an executable file): the first
boot provisions it, a crash and reboot brings the mounts back through the per-boot part
with the cached writes still pending uploaded, and after `down` a reboot mounts nothing."""
from __future__ import annotations

import email
import hashlib
import random

from .test_reboot import wait_for

TASK = """\
name: booted
file_mounts:
  /data:
    source: s3://inputs
    mode: MOUNT
  /out:
    source: s3://results
    mode: MOUNT_CACHED
    config:
      mount_cached:
        write_back: 10m
run: echo ran >>/root/runs
"""


def user_data(compile_cli, *flags: str) -> dict[str, tuple[str, bytes]]:
    """content type -> (file name, body) of node 0's user data."""
    data = compile_cli(TASK, "--format", "cloud-init", *flags)
    msg = email.message_from_bytes(data)
    return {p.get_content_type(): (p.get_filename(), p.get_payload(decode=True))
            for p in msg.get_payload()}


def run_part(node, parts: dict, kind: str):
    """The part as cloud-init runs it, an executable file run as root: "boot" is
    scripts_per_boot's, "instance" the user script that scripts_user runs once per
    instance (after scripts_per_boot on the first boot)."""
    ctype, folder = {"boot": ("text/x-shellscript-per-boot", "/var/lib/cloud/scripts/per-boot"),
                     "instance": ("text/x-shellscript", "/var/lib/cloud/instance/scripts")}[kind]
    name, body = parts[ctype]
    path = f"{folder}/{name}"
    node.put(path, body, 0o700)
    return node.run(path, timeout=600)


def mounted(node, path: str) -> bool:
    return node.sh(f"mountpoint -q {path}").returncode == 0


def test_per_boot_part_remounts_after_a_reboot_and_pending_uploads_resume(
        s3, node, compile_user_data):
    (s3.bucket("inputs") / "hello.txt").write_text("hello\n")
    s3.bucket("results")
    parts = user_data(compile_user_data)

    # first boot: the per-boot part runs first and finds nothing to do
    first = run_part(node, parts, "boot")
    assert first.returncode == 0, first.stderr
    assert not mounted(node, "/data") and not node.path("/var/lib/skycompile/booted").exists()
    up = run_part(node, parts, "instance")
    assert up.returncode == 0, up.stderr
    assert node.path("/data/hello.txt").read_text() == "hello\n"
    assert node.path("/root/runs").read_text() == "ran\n"
    kept = node.path("/var/lib/skycompile/booted/node.sh")
    assert kept.stat().st_mode & 0o777 == 0o700
    _, original = parts["text/x-shellscript"]
    # the copy is the script without its rclone settings (remount uses the config up wrote)
    assert b"  readonly -a RCLONE_CONF_LINES=()\n" in kept.read_bytes()
    assert b"'type = s3'" in original and b"'type = s3'" not in kept.read_bytes()

    # writes the bucket has not seen yet (write_back: 10m holds them), then a crash
    rnd = random.Random(7)
    files = {f"ckpt/{i}.bin": rnd.randbytes(rnd.randint(1, 300_000)) for i in range(20)}
    for key, blob in files.items():
        node.put(f"/srv/{key}", blob)
    node.sh("cp -r /srv/ckpt /out/", check=True)
    assert not any((s3.root / "results").rglob("*.bin")), "uploaded before the crash"
    node.reboot()
    assert not mounted(node, "/data") and not mounted(node, "/out")

    boot = run_part(node, parts, "boot")
    assert boot.returncode == 0, boot.stderr
    assert "remount: done" in boot.stderr
    assert mounted(node, "/data") and mounted(node, "/out")
    assert node.path("/data/hello.txt").read_text() == "hello\n"
    assert node.path("/root/runs").read_text() == "ran\n"  # neither setup nor run again
    drained = node.script(node.path("/var/lib/skycompile/booted/node.sh").read_text(), "drain")
    assert drained.returncode == 0, drained.stderr
    assert s3.objects("results") == {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}

    # down: the next boot mounts nothing, and says why
    script = node.path("/var/lib/skycompile/booted/node.sh").read_text()
    assert node.script(script, "down").returncode == 0
    assert "down was run" in node.script(script, "status").stdout
    node.reboot()
    after = run_part(node, parts, "boot")
    assert after.returncode == 0, after.stderr
    assert "down was run on this node" in after.stderr
    assert not mounted(node, "/data") and not mounted(node, "/out")
    # the copy cannot stand in for the script: it has no rclone settings
    refused = node.script(script, "up", "--no-run")
    assert refused.returncode != 0 and "run the original script" in refused.stderr
    # up of the original (a new instance of the user data, or by hand) mounts again
    assert node.script(original.decode(), "up", "--no-run").returncode == 0
    wait_for(lambda: mounted(node, "/out"), "the mount after up")
    assert "node.sh remount\" mounts again" in node.script(script, "status").stdout


def test_a_script_run_from_a_pipe_keeps_no_copy_and_says_so(s3, node, compile_user_data):
    s3.bucket("inputs")
    s3.bucket("results")
    parts = user_data(compile_user_data)
    _, script = parts["text/x-shellscript"]
    node.put("/root/boot.sh", script, 0o700)
    res = node.sh("bash <(cat /root/boot.sh)")
    assert res.returncode == 0, res.stderr
    assert "no copy is kept for remount" in res.stderr
    assert not node.path("/var/lib/skycompile/booted/node.sh").exists()
    assert "not mounted again" in node.sh("bash /root/boot.sh status").stdout


def test_status_reports_the_last_errors(s3, node, compile_task):
    """status shows the last error of the node's log, and under each mount the last error
    its rclone logged."""
    [script] = compile_task("name: broken\nfile_mounts:\n  /copied: s3://no-such-bucket\n"
                            "run: 'true'\n")
    assert node.script(script, "up").returncode != 0
    status = node.script(script, "status").stdout
    [logged] = [line for line in status.splitlines() if line.startswith("last error logged: ")]
    assert "skycompile[broken] error: cannot look up sc-m0:no-such-bucket (for /copied)" in logged

    [script] = compile_task("name: listed\nfile_mounts:\n  /gone:\n    source: s3://no-such-bucket\n"
                            "    mode: MOUNT\nrun: echo x >/gone/f || true\n")
    up = node.script(script, "up")
    assert up.returncode == 0, up.stderr  # `ls || true`: the task itself goes on
    status = node.script(script, "status").stdout
    lines = status.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("m0 MOUNT"))
    assert lines[at + 1].startswith("  last rclone error: ") and "ERROR" in lines[at + 1], status
