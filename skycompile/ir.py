"""The task IR: what a validated task means, as frozen values with no I/O.

`normalize` builds it from a checked document; `plan` reads it. Every path here is
already substituted (`${VAR}`), normalized and classified; every store is resolved.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .stores import BucketRef


class Mode(str, Enum):
    MOUNT = "MOUNT"
    COPY = "COPY"
    MOUNT_CACHED = "MOUNT_CACHED"

    @property
    def is_mount(self) -> bool:
        return self is not Mode.COPY


@dataclass(frozen=True)
class NodePath:
    """A destination on the node: absolute, or relative to the target user's home."""

    path: str  # "/data" or "a/b/c" (home-relative, no leading "~/")
    home: bool
    written: str  # as the user wrote it, for messages

    @property
    def display(self) -> str:
        return f"~/{self.path}" if self.home else self.path

    def contains(self, other: "NodePath") -> bool:
        """True when `other` is this path or below it (same anchor only)."""
        if self.home != other.home:
            return False
        return other.path == self.path or other.path.startswith(self.path.rstrip("/") + "/")


@dataclass(frozen=True)
class LocalSource:
    """A local file or directory to upload; `path` is absolute on the compiling machine."""

    path: Path
    written: str
    is_dir: bool


@dataclass(frozen=True)
class MountConfig:
    """Per-mode tuning (config.mount / config.mount_cached), with defaults filled in."""

    transfers: int = 1  # MOUNT_CACHED: one upload at a time keeps write order
    cache_size: str = ""
    write_back: str = ""
    drain_timeout: int = 3600  # seconds
    # MOUNT: short, so other nodes' writes show up within seconds. MOUNT_CACHED: see
    # CACHED_DIR_CACHE_TIME.
    dir_cache_time: str = "2s"


# MOUNT_CACHED lists what the node itself writes, and rclone must list a directory again
# once its listing expires: during an outage that blocks the write for minutes and then
# fails it (EIO). So its listings do not expire during a run (config.mount.dir_cache_time
# still overrides).
CACHED_DIR_CACHE_TIME = "1000h"


@dataclass(frozen=True)
class Storage:
    """One bucket attached to the node: a `file_mounts` storage entry, a plain
    `file_mounts` URI or local path (COPY), or the local workdir (two-hop)."""

    dest: NodePath
    mode: Mode
    bucket: BucketRef
    sources: tuple[LocalSource, ...] = ()  # uploaded into `bucket` by apply
    # how sources land under the prefix: "contents" (a directory's files at the root),
    # "basenames" (each source under its own name: list sources), "object" (one file
    # becomes the prefix object itself)
    layout: str = "contents"
    create: bool = False  # skycompile creates (or reuses its own) bucket `bucket.bucket`
    persistent: bool = True
    endpoint: str = ""
    region: str = ""
    store_rule: str = ""  # why this store was chosen, for --dry-run
    object: str = "auto"  # COPY: "dir", "file" or "auto" (decided on the node)
    config: MountConfig = field(default_factory=MountConfig)
    origin: tuple = ()  # where in the task document this entry comes from (for messages)


@dataclass(frozen=True)
class GitWorkdir:
    url: str
    ref: str = ""


@dataclass(frozen=True)
class Task:
    """One task of a task file (pipelines hold several)."""

    name: str
    index: int  # document index in the file
    num_nodes: int
    envs: tuple[tuple[str, str], ...]  # embedded in the script, in task order
    runtime_envs: tuple[tuple[str, bool], ...]  # (name, required) read on the node at run time
    setup: str | None
    run: str | None
    storages: tuple[Storage, ...]  # file_mounts and two-hop sources, in task order
    workdir: Storage | GitWorkdir | None  # a local workdir is a COPY storage to ~/sky_workdir
    cloud: str = ""
    region: str = ""
    notes: tuple[str, ...] = ()  # what was accepted and ignored, deprecations, store rules
    # --stub: the task's managed bucket, where the full node scripts go (prefix "": the
    # keys are chosen at render time, stub.object_key); None without --stub
    stub: Storage | None = None


WORKDIR_DEST = NodePath("sky_workdir", True, "~/sky_workdir")
# --stub's bucket is fetched by the stub, not copied anywhere by the node script: its
# Storage has this placeholder destination (the stub keeps the script under
# /var/lib/skycompile/<task>/).
STUB_DEST = NodePath("/var/lib/skycompile", False, "--stub")
