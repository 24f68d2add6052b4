"""One error root for everything skycompile reports to a user.

The CLI maps `SkycompileError` subclasses to exit codes; nothing else is caught there,
so an unexpected exception stays a bug with a traceback instead of a vague message.
"""
from __future__ import annotations

from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_FAILURE = 1  # --check mismatch, or a runtime failure
EXIT_BAD_INPUT = 2


class SkycompileError(Exception):
    """Base of every error that is the user's to fix or a runtime failure to report."""

    exit_code = EXIT_FAILURE


class ApplyError(SkycompileError):
    """A bucket or upload problem in the apply phase: what failed, where, what to check."""


class StateError(SkycompileError):
    """The local state file cannot be opened, read or written."""


class OutputError(SkycompileError):
    """A script could not be written (the file system refused)."""


class UsageError(SkycompileError):
    """A bad command line (flags, output path)."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem in a task file.

    Rendered as ``task.yaml:12:5: file_mounts./data.mode: <what>. <fix>``. The ordering
    fields make a sort put problems in file order; `rank` lets a caller list the most
    telling problem first when several share a location.
    """

    line: int
    col: int
    rank: int
    path: str
    message: str
    fix: str = ""
    file: str = field(default="", compare=False)
    flag: str = ""  # set when the value came from a command-line flag, not the file

    def __str__(self) -> str:
        return self.format()

    def format(self, filename: str | None = None) -> str:
        where = f"skycompile: error: {self.flag}" if self.flag else \
            f"{filename or self.file}:{self.line}:{self.col}"
        subject = f" {self.path}:" if self.path and not self.flag else ""
        text = printable(self.message).rstrip(".")
        fix = f" {self.fix}" if self.fix else ""
        return f"{where}:{subject} {text}.{fix}"


class TaskError(SkycompileError):
    """One or more problems in a task file; all of them are reported together."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[Problem], filename: str):
        self.problems = sorted(dict.fromkeys(problems))  # one line per distinct problem
        self.filename = filename
        super().__init__("\n".join(p.format(filename) for p in self.problems))


def printable(text: str) -> str:
    """Control characters as escapes, so one problem stays one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(text))


def json_path(parts: tuple) -> str:
    """`('file_mounts', '/data', 'mode')` -> `file_mounts./data.mode`; list indexes as [i]."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + printable(part)
    return out
