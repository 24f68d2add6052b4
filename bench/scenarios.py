"""Scenarios: what one timed run of a tool is, which tools take part, and the issue's target
for the result. A scenario gives each run its target (untimed set-up) and checks the
outcome afterwards (untimed); the harness times the tool's command in between. Add a
scenario by subclassing Scenario and listing it in SCENARIOS."""
from __future__ import annotations

import json
from dataclasses import dataclass

from .runner import Bench
from .tools import UPLOADERS, BenchError, Target, Tool

UPLOADER_IDS = tuple(t.id for t in UPLOADERS)


@dataclass(frozen=True)
class Goal:
    """A target from the issue: `key` is a ratio of the scenario ("skycompile/aws"), or
    "rss:TOOL" (the tool's median peak RSS in MiB); met when value <= bound."""

    text: str
    key: str
    bound: float


class Scenario:
    name = ""
    title = ""
    dataset = "A"
    tools: tuple[str, ...] = UPLOADER_IDS
    reference = "skycompile"  # every ratio is this tool's median / another tool's median
    throughput = False  # the run moves the whole data set: report MiB/s
    goals: tuple[Goal, ...] = ()

    def target(self, bench: Bench, tool: Tool) -> Target:
        raise NotImplementedError

    def check(self, bench: Bench, tool: Tool, target: Target) -> dict:
        """Raise BenchError when the outcome is wrong; else return what was verified."""
        return bench.verify(target, bench.dataset(self.dataset), tool)


class UploadFirst(Scenario):
    title = "first upload of the data set into an empty bucket"
    throughput = True

    def __init__(self, name: str, dataset: str, tools: tuple[str, ...] = UPLOADER_IDS,
                 goals: tuple[Goal, ...] = ()):
        self.name, self.dataset, self.tools, self.goals = name, dataset, tools, goals

    def target(self, bench: Bench, tool: Tool) -> Target:
        return bench.fresh_target(tool, self.dataset)  # new bucket; skycompile: cold state

    def check(self, bench: Bench, tool: Tool, target: Target) -> dict:
        verified = super().check(bench, tool, target)
        bench.keep_filled(tool, self.dataset, target)  # the re-sync reuses the last one
        return verified


class ResyncNoChange(Scenario):
    title = "re-sync of the unchanged data set into the bucket that holds it"

    def __init__(self, name: str, dataset: str, tools: tuple[str, ...] = UPLOADER_IDS,
                 goals: tuple[Goal, ...] = ()):
        self.name, self.dataset, self.tools, self.goals = name, dataset, tools, goals
        self._traced: set[str] = set()

    def target(self, bench: Bench, tool: Tool) -> Target:
        return bench.filled_target(tool, self.dataset)  # same bucket; skycompile: warm state

    def check(self, bench: Bench, tool: Tool, target: Target) -> dict:
        verified = super().check(bench, tool, target)
        if tool.id != "skycompile":
            return verified
        if tool.id not in self._traced:
            # once per scenario, untimed: seen from the kernel, the re-sync opens no file of
            # the data set (the hash cache vouches for all of them)
            opened = bench.data_files_opened(tool, target, bench.dataset(self.dataset))
            if opened:
                raise BenchError(f"{self.name}: skycompile's re-sync opened {len(opened)} data "
                                 f"files, e.g. {sorted(opened)[:3]}: the hash cache missed")
            self._traced.add(tool.id)
        return {**verified, "data_files_opened": 0}


class IgnoreFilter(Scenario):
    name = "ignore-filter"
    title = "the upload set of a source tree under .gitignore rules (whole process)"
    dataset = "C"
    tools = ("skycompile-scan", "git")
    reference = "skycompile-scan"
    goals = (Goal("≤ 2 × git ls-files, identical lists", "skycompile-scan/git", 2.0),)

    def target(self, bench: Bench, tool: Tool) -> Target:
        return bench.plain_target(tool, self.dataset)

    def check(self, bench: Bench, tool: Tool, target: Target) -> dict:
        ds = bench.dataset(self.dataset)
        listed = {n.decode("utf-8", "surrogateescape")
                  for n in target.stdout().read_bytes().split(b"\0") if n}
        if listed != ds.kept:
            raise BenchError(f"{tool.label} listed {len(listed)} files, not git's {len(ds.kept)}: "
                             f"{sorted(listed - ds.kept)[:3]} extra, "
                             f"{sorted(ds.kept - listed)[:3]} missing")
        return {"files": len(listed)}


class CompileDryRun(Scenario):
    name = "compile"
    title = "compile a 20-mount task with --dry-run (whole process, nothing uploaded)"
    dataset = ""
    tools = ("skycompile-dry-run", "python")
    reference = "skycompile-dry-run"
    goals = (Goal("≤ 6 × python3 -c pass", "skycompile-dry-run/python", 6.0),)
    MOUNTS = 20

    def target(self, bench: Bench, tool: Tool) -> Target:
        target = bench.plain_target(tool, "")
        if tool.id == "skycompile-dry-run":
            target.home.joinpath("task.yaml").write_text(json.dumps(self.task(target)))
        return target

    def task(self, target: Target) -> dict:
        """20 file_mounts: bucket URIs of three stores in every mode, and local directories
        that a real run would upload (a JSON document is YAML)."""
        mounts = {}
        modes = ("COPY", "MOUNT", "MOUNT_CACHED")
        for i in range(self.MOUNTS):
            kind = i % 4
            if kind == 3:
                src = target.home / f"local{i}"
                src.mkdir()
                for j in range(5):
                    (src / f"f{j}.txt").write_text(f"{i} {j}\n")
                mounts[f"/data/local{i}"] = {"name": f"bench-local-{i}", "source": str(src),
                                             "mode": "COPY"}
            else:
                scheme = ("s3", "gs", "s3")[kind]
                mounts[f"/data/m{i}"] = {"source": f"{scheme}://bench-bucket-{i}/path/{i}",
                                         "mode": modes[i % 3]}
        return {"name": "bench-compile", "resources": {"cloud": "aws"},
                "file_mounts": mounts, "setup": "echo setup", "run": "echo run"}

    def check(self, bench: Bench, tool: Tool, target: Target) -> dict:
        if tool.id != "skycompile-dry-run":
            return {}
        script = target.home / "out" / "node-0.sh"
        if not script.is_file():
            raise BenchError(f"skycompile --dry-run wrote no {script}")
        sdks = bench.sdk_imports(target)
        if sdks:
            raise BenchError(f"skycompile --dry-run imported cloud SDKs: {sdks[:5]}")
        return {"scripts": 1, "sdk_modules_imported": 0}


UPLOAD_GOALS = (Goal("≤ 0.5 × aws s3 sync", "skycompile/aws", 0.5),
                Goal("≤ 1.2 × the fastest of s5cmd and rclone", "skycompile/fastest-other", 1.2))
RESYNC_GOALS = (Goal("≤ 0.2 × aws s3 sync's no-op, no file read", "skycompile/aws", 0.2),)
SCALING = ("S1k", "S10k", "S100k")

SCENARIOS: list[Scenario] = [
    UploadFirst("upload-first", "A", goals=UPLOAD_GOALS),
    ResyncNoChange("resync-nochange", "A", goals=RESYNC_GOALS),
    UploadFirst("upload-first-B", "B", goals=UPLOAD_GOALS),
    ResyncNoChange("resync-nochange-C", "C", tools=("skycompile", "aws", "s5cmd"),
                   goals=RESYNC_GOALS),
    IgnoreFilter(),
    CompileDryRun(),
    *[s for size in SCALING for s in (
        UploadFirst(f"scale-upload-{size[1:]}", size, tools=("skycompile",),
                    goals=(Goal("peak RSS < 300 MiB", "rss:skycompile", 300.0),)
                    if size == "S100k" else ()),
        ResyncNoChange(f"scale-resync-{size[1:]}", size, tools=("skycompile",)))],
]
