"""Where the scripts go: the output layout, atomic writes, and the --check comparison.

Layout: `-o FILE` (one node), `-o -` (stdout, one node), `-o DIR/` or an existing
directory -> `DIR/node-0.sh ...`; a multi-task file -> `DIR/<i>-<task>/node-K.sh`.
"""
from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

from .compiler import Compiled
from .errors import UsageError


def targets(compiled: Compiled, out: str) -> list[tuple[str, str]]:
    """(path, text) pairs for every script; raises UsageError for an impossible layout."""
    scripts = [(t, i, s) for t in compiled.tasks for i, s in enumerate(t.scripts)]
    many_tasks = len(compiled.tasks) > 1
    if out == "-":
        if len(scripts) != 1:
            raise UsageError(f"-o - writes one script, but this task has {len(scripts)} "
                             "(num_nodes or several tasks); pass a directory: -o DIR/")
        return [("-", scripts[0][2])]
    is_dir = out.endswith(("/", os.sep)) or Path(out).is_dir()
    if not is_dir:
        if len(scripts) != 1:
            what = f"{len(compiled.tasks)} tasks" if many_tasks else \
                f"num_nodes: {compiled.tasks[0].plan.task.num_nodes}"
            suggestion = str(Path(out).with_suffix("")) + "/"
            raise UsageError(f"-o {out} names one file, but the task needs {len(scripts)} "
                             f"scripts ({what}); pass a directory: -o {suggestion}")
        return [(out, scripts[0][2])]
    base = Path(out)
    return [(str(base / t.subdir / f"node-{i}.sh") if t.subdir else str(base / f"node-{i}.sh"), s)
            for t, i, s in scripts]


def write_atomic(path: str, text: str) -> None:
    """Temp file in the same directory, fsync, mode 0755, rename: never half a script."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check(pairs: list[tuple[str, str]]) -> str:
    """A unified diff of every output that differs from the file on disk ('' = identical)."""
    diffs = []
    for path, text in pairs:
        try:
            current = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {path} to compare: {e}") from None
        if current == text:
            continue
        old = [] if current is None else current.splitlines(keepends=True)
        label = f"{path} (missing)" if current is None else path
        diffs.append("".join(difflib.unified_diff(old, text.splitlines(keepends=True),
                                                  fromfile=label, tofile=f"{path} (compiled)")))
    return "".join(diffs)
