"""The local state: one SQLite file in the user's state directory.

It records the buckets skycompile created (what `skycompile storage ls` shows and what a
re-run may reuse) and a hash cache, so a re-sync of an unchanged tree reads no file
contents. Several skycompile processes may use it at once: WAL journal, a busy timeout,
and short transactions. Nothing is created until something is written: reading the cache
of a state that does not exist yet finds nothing (so --dry-run and bad input leave no
trace).

The schema has a version (`PRAGMA user_version`); `MIGRATIONS[i]` takes version i to i+1.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import StateError

MIGRATIONS = [
    """
    CREATE TABLE buckets (
        store TEXT NOT NULL,
        endpoint TEXT NOT NULL,  -- '' for the store's own service
        name TEXT NOT NULL,
        region TEXT NOT NULL,
        created REAL NOT NULL,   -- unix time
        command TEXT NOT NULL,   -- the skycompile command line that created it
        status TEXT NOT NULL,    -- INIT, UPLOAD_FAILED, READY
        persistent INTEGER NOT NULL,
        PRIMARY KEY (store, endpoint, name)
    );
    CREATE TABLE hashes (
        path TEXT PRIMARY KEY,   -- absolute, resolved
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        etags TEXT NOT NULL,     -- space-separated: the S3 ETags this content may have
        sha256 TEXT NOT NULL
    );
    """,
    # Azure containers live in a storage account: storage delete must know which.
    "ALTER TABLE buckets ADD COLUMN account TEXT NOT NULL DEFAULT ''",
    # Multipart uploads in flight, by process: a later run aborts those whose process is
    # gone (killed mid-upload), never those of a run still going.
    """
    CREATE TABLE multipart (
        upload_id TEXT PRIMARY KEY,
        store TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        pid INTEGER NOT NULL
    )
    """,
]


def state_dir() -> Path:
    """$SKYCOMPILE_STATE_DIR, else the platform's user state directory."""
    override = os.environ.get("SKYCOMPILE_STATE_DIR")
    if override:
        return Path(override)
    import platformdirs
    return Path(platformdirs.user_state_dir("skycompile", appauthor=False))


@dataclass(frozen=True)
class BucketRecord:
    store: str
    endpoint: str
    name: str
    region: str
    created: float
    command: str
    status: str
    persistent: bool
    account: str = ""


class State:
    def __init__(self, path: Path | None = None):
        self.path = path or state_dir() / "state.db"
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                     check_same_thread=False)
                _wal(db)
                self._migrate(db)
            except (OSError, sqlite3.Error) as e:
                raise StateError(f"state file {self.path}: {e}; check its permissions, or move "
                                 f"it aside to start afresh (skycompile then forgets which "
                                 f"buckets it created)") from None
            self._db = db
        return self._db

    @property
    def exists(self) -> bool:
        return self._db is not None or self.path.exists()

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StateError(f"state file {self.path} was written by a newer skycompile "
                                 f"(schema {version}, this one knows {len(MIGRATIONS)}); "
                                 f"upgrade skycompile")
            for i in range(version, len(MIGRATIONS)):
                for statement in filter(str.strip, MIGRATIONS[i].split(";")):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextlib.contextmanager
    def transaction(self):
        """A write transaction: other skycompile processes wait until it ends (so a check
        and the action it decides, like creating a bucket, are one step for them)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- buckets ---
    def bucket(self, store: str, endpoint: str, name: str) -> BucketRecord | None:
        row = self.db.execute("SELECT * FROM buckets WHERE store=? AND endpoint=? AND name=?",
                              (store, endpoint, name)).fetchone()
        return _record(row) if row else None

    def buckets(self) -> list[BucketRecord]:
        if not self.exists:
            return []
        rows = self.db.execute("SELECT * FROM buckets ORDER BY created, name").fetchall()
        return [_record(r) for r in rows]

    def record_bucket(self, store: str, endpoint: str, name: str, region: str, command: str,
                      persistent: bool, status: str = "INIT", account: str = "") -> None:
        self.db.execute(
            "INSERT INTO buckets VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (store, endpoint, name) "
            "DO UPDATE SET status=excluded.status, persistent=excluded.persistent",
            (store, endpoint, name, region, time.time(), command, status, int(persistent),
             account))

    def set_status(self, store: str, endpoint: str, name: str, status: str) -> None:
        self.db.execute("UPDATE buckets SET status=? WHERE store=? AND endpoint=? AND name=?",
                        (status, store, endpoint, name))

    def forget_bucket(self, store: str, endpoint: str, name: str) -> None:
        self.db.execute("DELETE FROM buckets WHERE store=? AND endpoint=? AND name=?",
                        (store, endpoint, name))

    # --- multipart uploads in flight ---
    def journal(self, store: str, endpoint: str, bucket: str) -> "Journal":
        return Journal(self, (store, endpoint, bucket))

    # --- hash cache ---
    def cached_hashes(self, path: str, stamp: tuple[int, int, int]) -> tuple[str, str] | None:
        """(etags, sha256) of `path` if its stamp (size, mtime_ns, inode: manifest.Stamp)
        is unchanged since they were computed."""
        if not self.exists:
            return None
        row = self.db.execute("SELECT size, mtime_ns, inode, etags, sha256 FROM hashes "
                              "WHERE path=?", (path,)).fetchone()
        if row and row[:3] == stamp:
            return row[3], row[4]
        return None

    def cached_hashes_many(self, paths: list[str], stamps: list[tuple[int, int, int]]
                           ) -> list[tuple[str, str] | None]:
        """`cached_hashes` of each path: for many, one range query over their common
        directory instead of one query each (100,000 lookups took 1.5 s one by one)."""
        if not self.exists or len(paths) < 64:
            return [self.cached_hashes(p, st) for p, st in zip(paths, stamps)]
        low = os.path.join(os.path.commonpath(paths), "")  # ends with "/"
        high = low[:-1] + "0"  # "0" follows "/": every path under low sorts before it
        rows = {row[0]: row[1:] for row in self.db.execute(
            "SELECT path, size, mtime_ns, inode, etags, sha256 FROM hashes "
            "WHERE path >= ? AND path < ?", (low, high))}
        out = []
        for path, st in zip(paths, stamps):
            row = rows.get(path)
            hit = row and row[:3] == st
            out.append((row[3], row[4]) if hit else None)
        return out

    def store_hashes(self, rows: list[tuple[str, tuple[int, int, int], str, str]]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO hashes VALUES (?,?,?,?,?,?)",
                ((p, *st, tags, sha) for p, st, tags, sha in rows))


def _wal(db: sqlite3.Connection, wait: float = 30.0) -> None:
    """Switch to the WAL journal (once per file; it persists). Two processes opening a new
    state file at once may both try: the switch does not wait on the busy timeout, so the
    loser retries until the winner is done."""
    deadline = time.monotonic() + wait
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Journal:
    """The multipart uploads one bucket has in flight from this machine (thread-safe)."""

    def __init__(self, state: State, where: tuple[str, str, str]):
        self.state, self.where = state, where
        self._lock = threading.Lock()

    def opened(self, key: str, upload_id: str) -> None:
        with self._lock:
            self.state.db.execute("INSERT OR REPLACE INTO multipart VALUES (?,?,?,?,?,?)",
                                  (upload_id, *self.where, key, os.getpid()))

    def closed(self, upload_id: str) -> None:
        with self._lock:
            self.state.db.execute("DELETE FROM multipart WHERE upload_id=?", (upload_id,))

    def orphans(self) -> list[tuple[str, str]]:
        """(key, upload_id) of uploads whose process is gone."""
        rows = self.state.db.execute(
            "SELECT key, upload_id, pid FROM multipart WHERE store=? AND endpoint=? AND "
            "bucket=?", self.where).fetchall()
        return [(key, upload) for key, upload, pid in rows if not _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()  # our own pid here: a dead run's, reused


def _record(row) -> BucketRecord:
    return BucketRecord(*row[:7], bool(row[7]), row[8])
