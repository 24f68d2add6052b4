"""What a local source uploads: its file list and a content digest of it.

The manifest is the sorted list of (relative path, size, SHA-256); its own SHA-256 goes
into the script header, so a changed source changes the script and `--check` sees it.

A directory source lists what its ignore rules keep (`ignore.scan`: `.skyignore` with
rsync's semantics, else git's); `.git` and symlinks are never uploaded, and the symlinks
the rules would otherwise upload are reported. A single-file source is uploaded as named.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import ignore
from .ir import LocalSource

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    key: str  # object key relative to the upload prefix, '/'-separated
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    entries: tuple[FileEntry, ...]
    symlinks: tuple[str, ...]  # skipped, reported as a warning

    @property
    def files(self) -> int:
        return len(self.entries)

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for e in self.entries:
            h.update(f"{e.key}\0{e.size}\0{e.sha256}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _walk(root: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    found = ignore.scan(root)
    return [(key, root / key) for key in found.files], list(found.symlinks)


def build(sources: tuple[LocalSource, ...], layout: str) -> Manifest:
    """The manifest of one upload, laid out as `Storage.layout` says: "basenames" puts
    each source under its own name at the prefix root; "contents" puts a directory's
    files at the root; "object" makes a single file the prefix object itself (key "")."""
    basenames = layout == "basenames"
    pairs: list[tuple[str, Path]] = []
    links: list[str] = []
    for src in sources:
        if src.is_dir:
            files, dir_links = _walk(src.path)
            base = src.path.name + "/" if basenames else ""
            pairs += [(base + key, p) for key, p in files]
            links += [base + link for link in dir_links]
        else:
            pairs.append((src.path.name if basenames else "", src.path))
    entries = tuple(FileEntry(key, p, p.stat().st_size, _file_sha256(p))
                    for key, p in sorted(pairs, key=lambda kp: kp[0]))
    return Manifest(entries, tuple(sorted(links)))
