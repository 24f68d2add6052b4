"""Upload progress on stderr: files, bytes, throughput and ETA.

On a terminal it is a tqdm bar (redrawn in place); otherwise (CI logs, cloud-init output,
pipes) a plain line every `INTERVAL` seconds and one at the end; `quiet` prints nothing.
Safe to call from the upload threads.
"""
from __future__ import annotations

import threading
import time

INTERVAL = 10.0


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    def __init__(self, files: int, total: int, label: str, out, *, quiet: bool = False):
        self.files, self.total, self.label, self.out, self.quiet = files, total, label, out, quiet
        self.done_files = self.done_bytes = 0
        self.start = self._last = time.monotonic()
        self._lock = threading.Lock()
        self._bar = None
        if not quiet and _isatty(out):
            from tqdm import tqdm
            self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=label, file=out, dynamic_ncols=True, leave=True,
                             postfix=f"0/{files} files")

    def sent(self, n: int) -> None:
        """n more bytes are on the wire."""
        with self._lock:
            self.done_bytes += n
            if self._bar is not None:
                self._bar.update(n)
            elif not self.quiet and time.monotonic() - self._last >= INTERVAL:
                self._line()

    def file_done(self) -> None:
        with self._lock:
            self.done_files += 1
            if self._bar is not None:
                self._bar.set_postfix_str(f"{self.done_files}/{self.files} files", refresh=False)

    def _line(self) -> None:
        self._last = now = time.monotonic()
        rate = self.done_bytes / max(now - self.start, 1e-6)
        eta = (self.total - self.done_bytes) / rate if rate > 0 else 0
        print(f"skycompile: {self.label}: {self.done_files}/{self.files} files, "
              f"{_size(self.done_bytes)}/{_size(self.total)}, {_size(rate)}/s, "
              f"ETA {_duration(eta)}", file=self.out, flush=True)

    def close(self) -> float:
        """Stop drawing; returns the elapsed seconds."""
        if self._bar is not None:
            self._bar.close()
        return time.monotonic() - self.start


def _isatty(out) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
