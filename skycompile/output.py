"""Where the scripts go: the output layout, atomic writes, and the --check comparison.

Layout: `-o FILE` (one node), `-o -` (stdout, one node), `-o DIR/` or an existing
directory -> `DIR/node-0.sh ...`; a multi-task file -> `DIR/<i>-<task>/node-K.sh`;
several task files -> `DIR/<file stem>/...` for each. Other formats end otherwise
(`node-0.user-data.gz`: userdata.Packaging.suffix).
"""
from __future__ import annotations

import difflib
import errno
import os
import tempfile
from pathlib import Path

from dataclasses import dataclass

from .compiler import Compiled, CompiledTask
from .errors import OutputError, UsageError


@dataclass(frozen=True)
class Target:
    path: str  # "-" for stdout
    data: bytes
    task: CompiledTask


def _file_dirs(names: list[str]) -> list[str]:
    """One output folder per task file: its stem, or its path when stems collide."""
    stems = [Path(n).stem for n in names]
    if len(set(stems)) == len(stems):
        return stems
    return [str(Path(n).with_suffix("")).strip("/").replace("/", "-") for n in names]


def targets(files: list[tuple[str, Compiled]], out: str, suffix: str = ".sh") -> list[Target]:
    """Every output's destination (`suffix` ends each node's file name); raises
    UsageError for an impossible layout."""
    dirs = _file_dirs([name for name, _ in files]) if len(files) > 1 else [""]
    scripts = [(Path(d) / t.subdir if t.subdir else Path(d), t, i, s)
               for d, (_, c) in zip(dirs, files) for t in c.tasks for i, s in enumerate(t.outputs)]
    if out == "-":
        if len(scripts) != 1:
            whose = "these task files have" if len(files) > 1 else "this task has"
            raise UsageError(f"-o - writes one script, but {whose} {len(scripts)} "
                             "(num_nodes or several tasks); pass a directory: -o DIR/")
        return [Target("-", scripts[0][3], scripts[0][1])]
    is_dir = out.endswith(("/", os.sep)) or Path(out).is_dir()
    if not is_dir:
        if len(scripts) != 1:
            what = (f"{len(files)} task files" if len(files) > 1 else
                    f"{len(files[0][1].tasks)} tasks" if len(files[0][1].tasks) > 1 else
                    f"num_nodes: {files[0][1].tasks[0].plan.task.num_nodes}")
            suggestion = str(Path(out).with_suffix("")) + "/"
            who = "the task files need" if len(files) > 1 else "the task needs"
            raise UsageError(f"-o {out} names one file, but {who} {len(scripts)} "
                             f"scripts ({what}); pass a directory: -o {suggestion}")
        _check_writable(out)
        return [Target(out, scripts[0][3], scripts[0][1])]
    base = Path(out)
    found = [Target(str(base / sub / f"node-{i}{suffix}"), s, t) for sub, t, i, s in scripts]
    for target in found:
        _check_writable(target.path)
    return found


def _check_writable(path: str) -> None:
    """Before any side effect: a script's path must not be a directory, nor lie below a
    file (the renames at the end would fail half-way)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"-o: {path} is a directory; move it away or pick another -o")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"-o: {parent} is a file, so {path} cannot be written there; "
                                 "move it away or pick another -o")
            break


def write_all(files: list[tuple[str, bytes]], mode: int = 0o755) -> None:
    """Write (path, data) pairs so that a crash at any moment leaves every output either
    as it was or complete, never partial: each one goes in full (fsync'd, chmod'ed) to a
    temp file beside its target first; only then are they renamed into place, back to
    back, and the directories fsync'd. A SIGKILL can leave a hidden `.NAME.*.tmp`."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                       dir=target.parent)
            temps.append((tmp, target))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
        for tmp, target in temps:
            os.replace(tmp, target)
        for directory in dict.fromkeys(target.parent for _, target in temps):
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)  # the renames survive a power loss
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # fs without directory fsync
                    raise
            finally:
                os.close(fd)
    except BaseException as e:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {e.filename or 'the scripts'}: {e.strerror}") from None
        raise


def check(targets: list[Target]) -> str:
    """A unified diff of every output that differs from the file on disk ('' = identical);
    for output that is not text (gzip), one line saying that it differs."""
    diffs = []
    for target in targets:
        path, data = target.path, target.data
        try:
            current = Path(path).read_bytes()
        except FileNotFoundError:
            current = None
        except OSError as e:
            raise UsageError(f"cannot read {path} to compare: {e}") from None
        if current == data:
            continue
        label = f"{path} (missing)" if current is None else path
        try:
            old = [] if current is None else current.decode().splitlines(keepends=True)
            new = data.decode().splitlines(keepends=True)
        except UnicodeDecodeError:
            diffs.append(f"Binary files {label} and {path} (compiled) differ\n")
            continue
        diffs.append("".join(difflib.unified_diff(old, new, fromfile=label,
                                                  tofile=f"{path} (compiled)")))
    return "".join(diffs)
