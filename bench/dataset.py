"""Reproducible data sets: seeded file sizes, names and contents in nested directories, and
for data set C the .gitignore rules over them."""
from __future__ import annotations

import os
import random
import subprocess
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
class TreeSpec:
    """A source tree under git's ignore rules (data set C): `files` small files (16 bytes to
    2 KiB) with a mix of extensions, in ~50-file directories three levels deep among which
    build/, cache/, logs/, tmp/ and __pycache__/ recur; `rules` .gitignore patterns, a fifth
    in the root .gitignore and the rest spread over nested ones: globs, anchored and
    directory-only patterns, `**`, character classes and negations. About a third of the
    files end up ignored. The root is a git repository with nothing committed, so
    `git ls-files --cached --others --exclude-standard` lists what the rules keep."""

    files: int
    rules: int
    seed: int = 3
    min_size: int = 16
    max_size: int = 2 * KiB

    def describe(self) -> str:
        return f"{self.files} files, {self.rules} .gitignore rules (seed {self.seed})"


@dataclass(frozen=True)
class Dataset:
    name: str
    spec: Spec | TreeSpec
    root: Path
    files: dict[str, int]  # relative POSIX path (= object key) -> size: every file
    kept: frozenset[str] | None = None  # what ignore rules upload; None: every file

    @property
    def bytes(self) -> int:
        return sum(self.files.values())

    @property
    def dirs(self) -> int:
        return len({key.rpartition("/")[0] for key in self.files})

    def uploaded_by(self, filters: bool) -> dict[str, int]:
        """What a tool uploads: the kept files if it applies the ignore rules, else all."""
        if not filters or self.kept is None:
            return self.files
        return {k: v for k, v in self.files.items() if k in self.kept}

    def summary(self) -> dict:
        out = {"files": len(self.files), "bytes": self.bytes, "dirs": self.dirs,
               "min_size": self.spec.min_size, "max_size": self.spec.max_size,
               "seed": self.spec.seed}
        if isinstance(self.spec, TreeSpec):
            out.update(rules=self.spec.rules, kept=len(self.kept or ()))
        else:
            out["skew"] = self.spec.skew
        return out


# A: many small files, few large ones, ~1 GiB. B: four large files, 1 GiB. C: a source tree
# of 100,000 files under 200 .gitignore rules. S1k/S10k/S100k: the scaling series, A's size
# mix capped at 64 KiB (100,000 files ~ 1.3 GiB). --quick: a few MB each.
SPECS = {
    "A": Spec(files=10_000, min_size=KiB, max_size=MiB),
    "B": Spec(files=4, min_size=256 * MiB, max_size=256 * MiB, seed=2, fanout=()),
    "C": TreeSpec(files=100_000, rules=200),
    "S1k": Spec(files=1_000, min_size=KiB, max_size=64 * KiB, seed=4),
    "S10k": Spec(files=10_000, min_size=KiB, max_size=64 * KiB, seed=4),
    "S100k": Spec(files=100_000, min_size=KiB, max_size=64 * KiB, seed=4, fanout=(20, 10, 10)),
}
QUICK_SPECS = {
    "A": Spec(files=200, min_size=KiB, max_size=256 * KiB),
    "B": Spec(files=4, min_size=2 * MiB, max_size=2 * MiB, seed=2, fanout=()),
    "C": TreeSpec(files=2_000, rules=200),
    "S1k": Spec(files=10, min_size=KiB, max_size=4 * KiB, seed=4),
    "S10k": Spec(files=100, min_size=KiB, max_size=4 * KiB, seed=4),
    "S100k": Spec(files=1_000, min_size=KiB, max_size=4 * KiB, seed=4),
}


def generate(name: str, spec: Spec | TreeSpec, root: Path) -> Dataset:
    if isinstance(spec, TreeSpec):
        return _generate_tree(name, spec, root)
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
        with path.open("wb") as fh:
            for start in range(0, size, 16 * MiB):  # randbytes takes at most 2**28 bytes
                fh.write(rng.randbytes(min(16 * MiB, size - start)))
        files[key] = size
    return Dataset(name, spec, root, files)


_EXTS = [".py"] * 30 + [".txt"] * 10 + [".json"] * 8 + [".csv"] * 8 + [".log"] * 8 + \
    [".bin"] * 8 + [".pyc"] * 8 + [".md"] * 5 + [".tmp"] * 5 + [".o"] * 4 + [".bak"] * 3 + \
    [".swp"] * 3
_SPECIAL = ["build", "cache", "logs", "tmp", "__pycache__", "out", "node_modules"]
_ROOT_RULES = ["*.pyc", "__pycache__/", "*.o", "*.swp", "/build/", "node_modules/", "**/tmp/",
               "*.log", "!f*7.log", "out/", "*.bak", "!keep*.bak", "/logs/*.txt", "cache/*",
               "!cache/f*0.json", "src/**/f*3.csv", "[a-c]*.tmp", "f?????9.md", "docs/*.bin",
               "**/data/**/*.bin"]


def _nested_rule(rng: random.Random, child: str) -> str:
    d, e = rng.randrange(10), rng.choice(_EXTS)
    return rng.choice([f"*{d}{e}", f"f*{d}{e}", f"/{child}/", f"{child}/*{e}", f"!f*{d}{e}",
                       f"*.{rng.choice(['json', 'csv', 'txt'])}", f"**/{child}/*{d}.py",
                       f"f[0-4]*{e}", f"/f*{d}*", f"!*{d}.log", f"{rng.choice(_SPECIAL)}/"])


def _generate_tree(name: str, spec: TreeSpec, root: Path) -> Dataset:
    rng = random.Random(spec.seed)
    top = ["src", "lib", "data", "docs", "tests", "tools", "notebooks", "assets", "vendor",
           "build"]
    per_dir = 50
    ndirs = max(1, spec.files // per_dir)
    dirs = set()
    while len(dirs) < ndirs:
        parts = [rng.choice(top)]
        for _ in range(rng.randint(0, 2)):
            parts.append(rng.choice(_SPECIAL) if rng.random() < 0.08 else f"m{rng.randrange(40):02d}")
        dirs.add("/".join(parts))
    dirs = sorted(dirs)
    files = {}
    for i in range(spec.files):
        key = f"{rng.choice(dirs)}/f{i:06d}{rng.choice(_EXTS)}"
        size = rng.randint(spec.min_size, spec.max_size)
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        files[key] = size
    rules = {"": list(_ROOT_RULES[:spec.rules])}
    left = spec.rules - len(rules[""])
    nested = rng.sample(dirs, min(len(dirs), max(1, left // 4)))
    for n in range(left):
        where = nested[n % len(nested)]
        child = f"m{rng.randrange(40):02d}"
        rules.setdefault(where, []).append(_nested_rule(rng, child))
    for where, lines in rules.items():
        key = f"{where}/.gitignore" if where else ".gitignore"
        text = "# data set C\n" + "\n".join(lines) + "\n"
        (root / key).write_text(text)
        files[key] = len(text.encode())
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], check=True, capture_output=True).stdout
    kept = frozenset(os.fsdecode(k) for k in listed.split(b"\0") if k)
    for path in (root / ".git").rglob("*"):  # what a tool that ignores nothing uploads
        if path.is_file():
            files[path.relative_to(root).as_posix()] = path.stat().st_size
    return Dataset(name, spec, root, files, kept)


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.4g} {unit}"
        n /= 1024
    return f"{n:.3g} GiB"
