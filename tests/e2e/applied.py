"""What the apply tests of every store share: the project a task uploads, the task, and
how a tree of files is compared with a bucket."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

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
    return FileEntry(path.name, path, path.stat().st_size, sha, etags or tags)
