"""What the apply tests of every store share: the project a task uploads, the task, and
how a tree of files is compared with a bucket."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from skycompile.errors import ApplyError

from skycompile.manifest import FileEntry, fingerprint

WORKDIR_BUCKET = "skycompile-tester-applied"  # skycompile-<SKYCOMPILE_USER>-<task name>
OUT_BUCKET = "sc-applied-out"
# The two-hop workdir plus a `name:` bucket: what the GCS and Azure apply tests compile.
TASK = f"""
name: applied
workdir: proj
file_mounts:
  /out:
    name: {OUT_BUCKET}
    mode: MOUNT
run: |
  ls ~/sky_workdir/src | wc -l
  cat ~/sky_workdir/src/m3.py
"""
BIG = 20 * 2**20 + 4321  # above GCS's and Azure's single-request limits (8 MiB)


def make_project(root: Path, big: int) -> Path:
    """root/proj: 30 small files under src/ and big.bin of `big` random bytes."""
    proj = root / "proj"
    (proj / "src").mkdir(parents=True)
    for i in range(30):
        (proj / "src" / f"m{i}.py").write_text(f"print({i})\n" * (i + 1))
    (proj / "big.bin").write_bytes(os.urandom(big))
    return proj


def local_tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every regular file below root (no symlinks, no .git)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and ".git" not in p.relative_to(root).parts}


def entry(path: Path, etags: str = "") -> FileEntry:
    """The manifest entry of one file (etags overridden to fake a changed file)."""
    tags, sha = fingerprint(path, path.stat().st_size)
    return FileEntry(path.name, str(path), path.stat().st_size, sha, etags or tags)


def cancelled_and_changed_uploads_leave_nothing(client, tmp_path: Path, changed: str) -> None:
    """On a new bucket `client` has just created: a chunked upload cancelled after its
    first chunk, and files whose content is not what was hashed (refused with `changed`),
    leave nothing in the bucket; then one good small file lands with its MD5."""
    big, small = tmp_path / "big.bin", tmp_path / "small.txt"
    big.write_bytes(os.urandom(BIG))
    small.write_text("hello\n")
    sent = []

    def cancel_after_first_chunk(n):
        sent.append(n)
        client.cancelled.set()
    what = re.escape(client.where.split(" at ")[0])
    with pytest.raises(ApplyError, match=rf"^cannot upload k/big.bin to {what} at \S+: "
                                         r"cancelled$"):
        client.put("k/big.bin", entry(big), cancel_after_first_chunk)
    assert 0 < sum(sent) < BIG
    client.cancelled.clear()
    for path in (big, small):
        with pytest.raises(ApplyError, match=changed):
            client.put(f"k/{path.name}", entry(path, etags="0" * 32))
    assert client.listing("") == {}

    client.put("k/small.txt", entry(small))
    assert client.listing("k") == {"k/small.txt": (6, hashlib.md5(b"hello\n").hexdigest())}
