"""Upload progress: a bar on a terminal, plain periodic lines otherwise, nothing when quiet."""
from __future__ import annotations

import io

from skycompile import progress as progress_mod
from skycompile.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def feed(p: Progress) -> None:
    for _ in range(4):
        p.sent(256 * 1024)
        p.file_done()
    p.close()


def test_terminal_gets_a_bar_with_files_bytes_rate_and_eta():
    out = Terminal()
    feed(Progress(4, 1024 * 1024, "workdir", out))
    text = out.getvalue()
    assert "workdir" in text and "4/4 files" in text and "1.00M" in text
    assert "\r" in text  # redrawn in place


def test_pipe_gets_plain_lines(monkeypatch):
    monkeypatch.setattr(progress_mod, "INTERVAL", 0.0)
    out = io.StringIO()
    feed(Progress(4, 1024 * 1024, "workdir", out))
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in out.getvalue()
    assert lines[0].startswith("skycompile: workdir: 0/4 files, 256.0 KiB/1.0 MiB, ")
    assert lines[-1].startswith("skycompile: workdir: 3/4 files, 1.0 MiB/1.0 MiB, ")
    assert all("/s, ETA " in line for line in lines)


def test_pipe_is_not_flooded():
    out = io.StringIO()
    feed(Progress(4, 1024 * 1024, "workdir", out))  # well within one INTERVAL
    assert out.getvalue() == ""


def test_quiet_prints_nothing_even_on_a_terminal(monkeypatch):
    monkeypatch.setattr(progress_mod, "INTERVAL", 0.0)
    out = Terminal()
    feed(Progress(4, 1024 * 1024, "workdir", out, quiet=True))
    assert out.getvalue() == ""
