"""Mounts as systemd units, on a real systemd: a Debian bookworm booted in systemd-nspawn.

The machine is debootstrapped once per session (systemd, dbus, fuse3; rclone copied in, as
on the other nodes) and booted with /dev/fuse; it shares this machine's network, so it
reaches the loopback S3 server. Each test boots its own copy of it and may power it off and
boot it again on the same disk: a real reboot, with systemd starting what is enabled.

Shown here: `up` mounts through one enabled unit per mount; a shutdown drains the
MOUNT_CACHED cache before rclone stops (the file reaches the bucket although its write-back
delay was ten minutes); after the reboot systemd alone mounts both again, with nothing run;
an `up` of an edited task that moves a mount replaces its unit (draining the old one);
`down` stops, disables and removes the units, and the next boot mounts nothing.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from . import nodes
from .test_install import SUITE, host_mirror
from .test_reboot import wait_for

INNER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

TASK = """\
name: units
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


@pytest.fixture(scope="session")
def systemd_image(tmp_path_factory) -> Path:
    for tool in ("debootstrap", "systemd-nspawn", "nsenter"):
        if not shutil.which(tool, path=f"{INNER_PATH}"):
            pytest.fail(f"{tool} is missing: apt-get install debootstrap systemd-container "
                        "util-linux (.ci/run does)")
    root = tmp_path_factory.mktemp("systemd-root")
    log = root.parent / "debootstrap-systemd.log"
    with log.open("w") as out:
        res = subprocess.run(
            ["debootstrap", "--variant=minbase",
             "--include=systemd,systemd-sysv,fuse3,ca-certificates", SUITE, str(root),
             host_mirror()], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            timeout=900)
    if res.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        pytest.fail(f"debootstrap exited {res.returncode}:\n{tail}")
    # No D-Bus (root's systemctl talks to systemd directly), so nothing that needs it, and no
    # console to log in on: the boot finishes instead of waiting for them.
    for unit in ("systemd-logind.service", "console-getty.service"):
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    shutil.copyfile(nodes.rclone_binary(), root / "usr/local/bin/rclone")
    (root / "usr/local/bin/rclone").chmod(0o755)
    (root / "etc/hostname").write_text("sc-systemd\n")
    return root


class Machine:
    """A booted container on disk `root`; `boot`, `sh`, `poweroff`, and boot again."""

    def __init__(self, root: Path, binds: list[tuple[Path, str]]):
        self.root, self.binds = root, binds
        self.proc: subprocess.Popen | None = None
        self.pid = 0

    def boot(self) -> None:
        cmd = ["systemd-nspawn", "-D", str(self.root), "--boot", "--register=no", "--keep-unit",
               "--quiet", "--capability=all", "--bind=/dev/fuse",
               "--property=DeviceAllow=/dev/fuse rwm"]
        cmd += [f"--bind-ro={src}:{dest}" for src, dest in self.binds]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while not self.pid:  # the child running systemd (nspawn forks a helper first)
            assert self.proc.poll() is None, f"systemd-nspawn exited {self.proc.returncode}"
            assert time.monotonic() < deadline, "the container's init did not start"
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            for kid in kids.read_text().split() if kids.exists() else []:
                try:
                    if Path(f"/proc/{kid}/comm").read_text().strip() == "systemd":
                        self.pid = int(kid)
                except OSError:
                    pass
            time.sleep(0.1)
        state = self.sh("systemctl is-system-running --wait", timeout=180)
        assert state.stdout.strip() in ("running", "degraded"), (state.stdout, state.stderr)

    def sh(self, command: str, timeout: float = 300, check: bool = False):
        res = subprocess.run(["nsenter", "-t", str(self.pid), "-a", "env", "-i",
                              f"PATH={INNER_PATH}", "bash", "-c", command],
                             capture_output=True, text=True, timeout=timeout)
        if check:
            assert res.returncode == 0, f"{command}: {res.returncode}\n{res.stdout}{res.stderr}"
        return res

    def poweroff(self) -> None:
        self.sh("systemctl poweroff --no-block", check=True)
        try:
            self.proc.wait(300)
        finally:
            self.pid = 0
        assert self.proc.returncode == 0, f"systemd-nspawn exited {self.proc.returncode}"

    def kill(self) -> None:
        """Stop it hard: its init first (a killed systemd-nspawn leaves the container)."""
        if self.pid:
            subprocess.run(["kill", "-KILL", str(self.pid)], check=False)
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def machine(systemd_image, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(systemd_image), str(root)], check=True)
    out = tmp_path / "scripts"
    out.mkdir()
    m = Machine(root, [(out, "/scripts")])
    m.scripts = out
    yield m
    m.kill()


def unit_state(m: Machine, unit: str) -> tuple[str, str]:
    active = m.sh(f"systemctl is-active {unit}").stdout.strip()
    enabled = m.sh(f"systemctl is-enabled {unit}").stdout.strip()
    return active, enabled


def test_units_mount_at_boot_drain_at_shutdown_and_go_with_down(s3, machine, compile_task):
    s3.bucket("inputs")
    (s3.root / "inputs" / "hello.txt").write_text("hello\n")
    s3.bucket("results")
    [script] = compile_task(TASK, "--embed-credentials")
    (machine.scripts / "node-0.sh").write_text(script)
    units = ["skycompile-units-m0.service", "skycompile-units-m1.service"]

    machine.boot()
    up = machine.sh("bash /scripts/node-0.sh up")
    assert up.returncode == 0, up.stderr
    for unit in units:
        assert unit_state(machine, unit) == ("active", "enabled"), unit
    assert machine.sh("cat /data/hello.txt").stdout == "hello\n"
    # rclone is the unit's main process, not a daemon of the script's
    main_pid = machine.sh(f"systemctl show -P MainPID {units[1]}").stdout.strip()
    assert "rclone" in machine.sh(f"cat /proc/{main_pid}/comm").stdout
    verify = machine.sh("systemd-analyze verify " + " ".join(
        f"/etc/systemd/system/{u}" for u in units))
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    status = machine.sh("bash /scripts/node-0.sh status").stdout
    assert f"  unit: {units[0]} (active, enabled)" in status
    assert "after a reboot: the units above mount again" in status

    # a write the bucket has not seen (write_back 10m), then a clean shutdown
    machine.sh("echo result >/out/result.txt", check=True)
    # FUSE hands the close to rclone asynchronously: poll until it counts the upload
    wait_for(lambda: "pending uploads: 1" in machine.sh("bash /scripts/node-0.sh status").stdout,
             "the closed file to be pending", timeout=30)
    assert not (s3.root / "results" / "result.txt").exists()
    machine.poweroff()
    assert (s3.root / "results" / "result.txt").read_text() == "result\n", \
        "the shutdown did not drain the cache"

    # the reboot: systemd mounts both again by itself; nothing else runs
    machine.boot()
    for unit in units:
        assert unit_state(machine, unit) == ("active", "enabled"), unit
    assert machine.sh("cat /data/hello.txt").stdout == "hello\n"
    assert machine.sh("cat /out/result.txt").stdout == "result\n"
    assert machine.sh("cat /root/runs").stdout == "ran\n"
    # cloud-init's per-boot part after that finds them mounted
    remount = machine.sh("bash /var/lib/skycompile/units/node.sh remount")
    assert remount.returncode == 0, remount.stderr
    assert "/data is already mounted" in remount.stderr

    # the task is edited: /out moves to /results. up removes m1's unit first (its kept copy
    # drains it) and mounts the new destination through a new one
    [moved] = compile_task(TASK.replace("  /out:", "  /results:"), "--embed-credentials")
    (machine.scripts / "node-0.sh").write_text(moved)
    machine.sh("echo later >/out/later.txt", check=True)
    up = machine.sh("bash /scripts/node-0.sh up --no-run")
    assert up.returncode == 0, up.stderr
    assert "storage m1 changed: removing its unit" in up.stderr
    assert (s3.root / "results" / "later.txt").read_text() == "later\n"
    assert machine.sh("mountpoint -q /out").returncode != 0
    assert machine.sh("cat /results/later.txt").stdout == "later\n"
    assert unit_state(machine, units[1]) == ("active", "enabled")
    assert (machine.root / "var/lib/skycompile/units/m1.dest").read_text() == "/results"
    assert unit_state(machine, units[0]) == ("active", "enabled")  # m0 did not move

    # down: units stopped, disabled, removed; the next boot mounts nothing
    down = machine.sh("bash /scripts/node-0.sh down")
    assert down.returncode == 0, down.stderr
    for unit in units:
        assert f"removed {unit}" in down.stderr
        assert not (machine.root / "etc/systemd/system" / unit).exists()
        assert unit_state(machine, unit)[1] in ("not-found", "")
    assert machine.sh("mountpoint -q /data").returncode != 0
    assert machine.sh("mountpoint -q /results").returncode != 0
    machine.poweroff()
    machine.boot()
    assert machine.sh("mountpoint -q /data").returncode != 0
    assert "down was run" in machine.sh("bash /scripts/node-0.sh status").stdout
    machine.poweroff()


def test_credentials_from_the_environment_keep_rclone_a_daemon(s3, machine, compile_task):
    """A unit would not see keys that only this run's environment holds: the script says
    so and mounts as before, with a daemon."""
    s3.bucket("inputs")
    [script] = compile_task("name: envkeys\nfile_mounts:\n  /data:\n    source: s3://inputs\n"
                            "    mode: MOUNT\n")
    (machine.scripts / "node-0.sh").write_text(script)
    machine.boot()
    keys = " ".join(f"{k}={v}" for k, v in s3.env().items())
    up = machine.sh(f"env {keys} bash /scripts/node-0.sh up")
    assert up.returncode == 0, up.stderr
    assert "AWS_ACCESS_KEY_ID is set in this run's environment" in up.stderr
    assert machine.sh("mountpoint -q /data").returncode == 0
    assert not (machine.root / "etc/systemd/system/skycompile-envkeys-m0.service").exists()
    machine.poweroff()
