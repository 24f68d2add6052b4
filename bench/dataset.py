"""Reproducible data sets: seeded file sizes, names and contents in nested directories."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

KiB, MiB = 1 << 10, 1 << 20


@dataclass(frozen=True)
class Spec:
    """`files` files whose sizes are min_size * (max_size/min_size) ** (u ** skew), u uniform
    in [0, 1): log-uniform for skew 1, more small files the larger skew. With 1 KiB-1 MiB and
    skew 1.5, about half the files are under 16 KiB, one in seven is over 256 KiB, and the
    mean is ~105 KiB (10,000 files ~ 1 GiB). Files spread over a tree of `fanout` directories
    per level (up to three levels deep) and the top."""

    files: int
    min_size: int
    max_size: int
    seed: int = 1
    skew: float = 1.5
    fanout: tuple[int, ...] = (10, 5, 4)

    def describe(self) -> str:
        return f"{self.files} files of {human(self.min_size)}-{human(self.max_size)} (seed {self.seed})"


@dataclass(frozen=True)
class Dataset:
    name: str
    spec: Spec
    root: Path
    files: dict[str, int]  # relative POSIX path (= object key) -> size

    @property
    def bytes(self) -> int:
        return sum(self.files.values())

    @property
    def dirs(self) -> int:
        return len({key.rpartition("/")[0] for key in self.files})

    def summary(self) -> dict:
        return {"files": len(self.files), "bytes": self.bytes, "dirs": self.dirs,
                "min_size": self.spec.min_size, "max_size": self.spec.max_size,
                "seed": self.spec.seed, "skew": self.spec.skew}


# Data set A: many small files, few large ones, ~1 GiB (--quick: ~200 files, a few MB).
SPECS = {
    "A": Spec(files=10_000, min_size=KiB, max_size=MiB),
}
QUICK_SPECS = {
    "A": Spec(files=200, min_size=KiB, max_size=256 * KiB),
}


def generate(name: str, spec: Spec, root: Path) -> Dataset:
    rng = random.Random(spec.seed)
    dirs = level = [""]
    for n in spec.fanout:
        level = [f"{parent}d{i:02d}/" for parent in level for i in range(n)]
        dirs = dirs + level
    files = {}
    for i in range(spec.files):
        size = round(spec.min_size * (spec.max_size / spec.min_size) ** (rng.random() ** spec.skew))
        key = f"{rng.choice(dirs)}f{i:05d}.bin"
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        files[key] = size
    return Dataset(name, spec, root, files)


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.4g} {unit}"
        n /= 1024
    return f"{n:.3g} GiB"
