"""Validate phase, second half: checks across entries of a normalized task.

`CHECKS` is the table: each check reads the Task IR and reports through the context, so
adding a rule is adding one function and one row.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .ir import Mode, Storage, Task

if TYPE_CHECKING:
    from .ir import LocalSource
    from .resolve import Ctx


def _key_path(storage: Storage) -> tuple:
    """The document path of a storage's key (its destination), for locating messages."""
    return storage.origin


def _all(task: Task) -> list[Storage]:
    """The workdir first: a file_mounts entry that clashes with it is the one to blame."""
    return ([task.workdir] if isinstance(task.workdir, Storage) else []) + list(task.storages)


def _what(st: Storage) -> str:
    return "where `workdir:` is copied" if st.origin == ("workdir",) else \
        f"already the destination of {st.dest.written!r}"


def unique_destinations(ctx: "Ctx", task: Task) -> None:
    seen: dict[tuple, Storage] = {}
    for st in _all(task):
        key = (st.dest.home, st.dest.path)
        if key in seen:
            ctx.error(_key_path(st), f"{st.dest.display} is {_what(seen[key])}",
                      "Give each entry its own destination.", key=True)
        else:
            seen[key] = st


def no_nesting_in_mounts(ctx: "Ctx", task: Task) -> None:
    """Nothing may live inside a FUSE mount: it would hide it, or write into the bucket."""
    entries = _all(task)
    for outer in entries:
        if not outer.mode.is_mount:
            continue
        for inner in entries:
            if inner is outer or inner.dest == outer.dest:
                continue
            if outer.dest.contains(inner.dest):
                ctx.error(_key_path(inner), f"{inner.dest.display} is inside the "
                          f"{outer.mode.value} mount at {outer.dest.display}",
                          "Move it outside the mount, or mount at a different path.", key=True)


def mount_cached_needs_mount_mode_config(ctx: "Ctx", task: Task) -> None:
    """config.mount_cached only tunes MOUNT_CACHED; on other modes it is a mistake."""
    data = ctx.doc.data.get("file_mounts") or {}
    for key, spec in data.items():
        if not isinstance(spec, dict):
            continue
        config = spec.get("config") or {}
        mode = str(spec.get("mode") or "MOUNT").upper()
        if config.get("mount_cached") and mode != Mode.MOUNT_CACHED.value:
            ctx.error(("file_mounts", key, "config", "mount_cached"),
                      f"config.mount_cached tunes MOUNT_CACHED mounts, but this one is {mode}",
                      "Set mode: MOUNT_CACHED or remove config.mount_cached.")


CHECKS: dict[str, Callable[["Ctx", Task], None]] = {
    "unique destinations": unique_destinations,
    "no mount nested in a FUSE mount": no_nesting_in_mounts,
    "mount_cached config only on MOUNT_CACHED": mount_cached_needs_mount_mode_config,
}


def check_task(ctx: "Ctx", task: Task) -> None:
    for check in CHECKS.values():
        check(ctx, task)


def unique_basenames(ctx: "Ctx", sources: "list[LocalSource]", path: tuple) -> None:
    """A list source puts each basename at the bucket root, so two equal names collide."""
    seen: dict[str, str] = {}
    for src in sources:
        base = src.path.name
        if base in seen:
            ctx.error(path, f"{src.written!r} and {seen[base]!r} both land at {base!r} in the bucket",
                      "Rename one, or put them in separate storages.")
        seen.setdefault(base, src.written)
