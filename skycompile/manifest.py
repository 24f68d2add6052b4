"""What a local source uploads: its file list and content digests.

The manifest is the sorted list of (relative path, size, SHA-256); its own SHA-256 goes
into the script header, so a changed source changes the script and `--check` sees it.

A directory source lists what its ignore rules keep (`ignore.scan`: `.skyignore` with
rsync's semantics, else git's); `.git` and symlinks are never uploaded, and the symlinks
the rules would otherwise upload are reported. A single-file source is uploaded as named.

File contents are read by `Hasher` only, and only for files its cache cannot vouch for
(unchanged path, size, mtime and inode): a re-sync of an unchanged tree reads none.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import ignore
from .ir import LocalSource

_CHUNK = 1 << 20
# The S3 family uploads files above MULTIPART_THRESHOLD in parts of PART bytes; their ETag
# is then the MD5 of the parts' MD5s plus "-N", which `fingerprint` computes alongside.
MULTIPART_THRESHOLD = 64 * 2**20
PART = 64 * 2**20
HASH_THREADS = min(8, os.cpu_count() or 1)
HASH_BATCH = 1024  # hashings queued at once: a future each


def fingerprint(path: str | Path, size: int) -> tuple[str, str]:
    """(ETags, sha256) of a file, in one read. ETags: the hex MD5 of the content (what GCS,
    Azure and most S3-compatible servers report) and, for a file uploaded in parts, AWS's
    MD5 of the parts' MD5s "-N"; space-separated."""
    sha, whole = hashlib.sha256(), hashlib.md5()
    md5s, part = [], hashlib.md5()
    filled = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            whole.update(chunk)
            while chunk:
                take = chunk[:PART - filled]
                part.update(take)
                filled += len(take)
                chunk = chunk[len(take):]
                if filled == PART:
                    md5s.append(part.digest())
                    part, filled = hashlib.md5(), 0
    if filled:
        md5s.append(part.digest())
    tags = whole.hexdigest()
    if size > MULTIPART_THRESHOLD:
        tags += f" {hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"
    return tags, sha.hexdigest()


def _reading(fn, path: str, *args):
    """fn(path, *args), with an OSError reported as ignore.Unreadable(path)."""
    try:
        return fn(path, *args)
    except OSError as e:
        raise ignore.Unreadable(path, e.strerror) from None


Stamp = tuple[int, int, int]  # (size, mtime_ns, inode): what the hash cache keys a file by


def stamp(path: str) -> Stamp:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


class Hasher:
    """Content hashes of local files. `cache` (a `state.State`, or None) answers for files
    unchanged since they were hashed; new hashes are kept in `fresh` until `save()`, so a
    compile that fails later leaves no trace. `read` counts the files whose contents were
    read."""

    def __init__(self, cache=None):
        self.cache = cache
        self.fresh: list[tuple[str, Stamp, str, str]] = []
        self.read = 0

    def hash_files(self, paths: list[str]) -> list[tuple[int, str, str]]:
        """(size, etags, sha256) for each path, in order; uncached ones hashed in parallel.
        Paths are real (no symlink on the way: the cache's key), as `build` makes them.
        Per file only a Stamp is kept, not an os.stat_result (100,000 of those held 60 MiB),
        and at most HASH_BATCH hashings are queued at a time (a future each)."""
        stamps = [_reading(stamp, p) for p in paths]
        found = self.cache.cached_hashes_many(paths, stamps) if self.cache else \
            [None] * len(paths)
        for p, hit in zip(paths, found):
            # a chmod leaves size, mtime and inode alone: the cache cannot vouch that the
            # upload will be able to read the file
            if hit is not None and not os.access(p, os.R_OK):
                raise ignore.Unreadable(p, os.strerror(errno.EACCES))
        todo = [i for i, hit in enumerate(found) if hit is None]
        if todo:
            with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
                for start in range(0, len(todo), HASH_BATCH):
                    batch = todo[start:start + HASH_BATCH]
                    hashed = pool.map(lambda i: _reading(fingerprint, paths[i], stamps[i][0]),
                                      batch)
                    for i, (tags, sha) in zip(batch, hashed):
                        found[i] = (tags, sha)
                        self.fresh.append((paths[i], stamps[i], tags, sha))
            self.read += len(todo)
        return [(st[0], tags, sha) for st, (tags, sha) in zip(stamps, found)]

    def save(self) -> None:
        if self.cache is not None and self.fresh:
            self.cache.store_hashes(self.fresh)
        self.fresh = []


@dataclass(frozen=True, slots=True)
class FileEntry:
    key: str  # object key relative to the upload prefix, '/'-separated
    path: str  # real path on this machine
    size: int
    sha256: str
    etags: str  # see `fingerprint`


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


def _walk(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(key, real path) of each file the rules keep; the symlinks they skip. One realpath
    for the root: the scan follows no symlink below it (one per file took a third of a
    10,000-file re-sync)."""
    found = ignore.scan(root)
    real = os.path.join(found.root, "")
    return [(key, real + key) for key in found.files], list(found.symlinks)


NOT_UTF8 = re.compile("[\udc80-\udcff]")
NAME_NOT_UTF8 = "its name is not UTF-8, and an object key must be"


def build(sources: tuple[LocalSource, ...], layout: str, hasher: Hasher | None = None) -> Manifest:
    """The manifest of one upload, laid out as `Storage.layout` says: "basenames" puts
    each source under its own name at the prefix root; "contents" puts a directory's
    files at the root; "object" makes a single file the prefix object itself (key "")."""
    basenames = layout == "basenames"
    pairs: list[tuple[str, str]] = []
    links: list[str] = []
    for src in sources:
        if src.is_dir:
            files, dir_links = _walk(src.path)
            base = src.path.name + "/" if basenames else ""
            pairs += [(base + key, p) for key, p in files]
            links += [base + link for link in dir_links]
        else:
            pairs.append((src.path.name if basenames else "", os.path.realpath(src.path)))
    pairs.sort(key=lambda kp: kp[0])
    for key, p in pairs:  # Python keeps such bytes as lone surrogates
        if NOT_UTF8.search(key):
            raise ignore.Unreadable(p, NAME_NOT_UTF8)
    hashes = (hasher or Hasher()).hash_files([p for _, p in pairs])
    entries = tuple(FileEntry(key, p, size, sha, tags)
                    for (key, p), (size, tags, sha) in zip(pairs, hashes))
    return Manifest(entries, tuple(sorted(links)))
