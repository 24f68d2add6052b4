"""Scenarios: what one timed run of a tool is, which tools take part, and the issue's target
for the result. A scenario gives each run its target (untimed set-up) and checks the
outcome afterwards (untimed); the harness times the tool's command in between. Add a
scenario by subclassing Scenario and listing it in SCENARIOS."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .runner import Bench
from .tools import (NODE_CACHED, NODE_COPY, NODE_MOUNT, NODE_SCRATCH, NODE_SRC, UPLOADERS,
                    BenchError, Target, Tool)

UPLOADER_IDS = tuple(t.id for t in UPLOADERS)


@dataclass(frozen=True)
class Goal:
    """A target from the issue, met when value <= bound. `key` is a ratio: of the reference
    and a rival ("skycompile/aws", "skycompile/fastest-other") or of any two tools' medians
    ("A/B"); or "rss:TOOL" (the tool's median peak RSS in MiB); or "figure:TOOL:NAME" (the
    median of a figure the scenario's check measured after each of the tool's runs)."""

    text: str
    key: str
    bound: float


class Scenario:
    name = ""
    title = ""
    dataset = "A"
    tools: tuple[str, ...] = UPLOADER_IDS
    reference = "skycompile"  # every ratio is this tool's median / a rival's median
    rivals: tuple[str, ...] | None = None  # the tools compared with it; None: all others
    throughput = False  # the reference's and rivals' runs move the data set: report MiB/s
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


class NodeScenario(Scenario):
    """Each run in a fresh node (Bench.node_target), stopped once its run is checked; except
    that a tool named in `continues` (follower: leader) runs next in the node its leader's
    run of the same round left, stopped after the follower's check."""

    continues: dict[str, str] = {}
    throughput = True

    def __init__(self):
        self._kept: dict[str, Target] = {}

    def target(self, bench: Bench, tool: Tool) -> Target:
        leader = self.continues.get(tool.id)
        if leader is None:
            return self.fresh(bench, tool)
        if leader not in self._kept:
            raise BenchError(f"{self.name}: no node left by {leader} for {tool.label}")
        return self._kept.pop(leader)

    def check(self, bench: Bench, tool: Tool, target: Target) -> dict:
        verified = self.verify(bench, tool, target)
        if tool.id in self.continues.values():
            self._kept[tool.id] = target
        else:
            bench.release(target)
        return verified

    def fresh(self, bench: Bench, tool: Tool) -> Target:
        """A new node (and what the tool needs in it, untimed)."""
        raise NotImplementedError

    def verify(self, bench: Bench, tool: Tool, target: Target) -> dict:
        """Raise BenchError when the outcome is wrong; else return what was verified."""
        raise NotImplementedError


class NodeCopy(NodeScenario):
    """script-copy-rerun runs `up` again in the node script-copy provisioned."""

    name = "node-copy"
    title = "a node fetching the data set from its bucket (COPY), and the script's re-run"
    dataset = "A"
    tools = ("script-copy", "script-copy-rerun", "aws-node", "s5cmd-node", "rclone-node")
    reference = "script-copy"
    rivals = ("aws-node", "s5cmd-node", "rclone-node")
    continues = {"script-copy-rerun": "script-copy"}
    goals = (Goal("≤ 1.1 × the fastest of aws, s5cmd and rclone (their defaults)",
                  "script-copy/fastest-other", 1.1),
             Goal("re-run on the provisioned node ≤ 0.1 × the first run",
                  "script-copy-rerun/script-copy", 0.1))

    def fresh(self, bench: Bench, tool: Tool) -> Target:
        t = bench.node_target(tool, self.dataset, bench.source_bucket(self.dataset))
        if tool.id == "script-copy":
            bench.compile({"name": "bench-copy", "file_mounts": {
                NODE_COPY: {"source": f"s3://{t.bucket}", "mode": "COPY"}}}, t)
        return t

    def verify(self, bench: Bench, tool: Tool, target: Target) -> dict:
        return bench.verify_tree(target.node.path(NODE_COPY), bench.dataset(self.dataset))


class CachedWriteDrain(NodeScenario):
    """The data set is bound read-only into each node at NODE_SRC. cached-write runs in a
    node whose script mounted a new, empty bucket (`up --no-run`, untimed); script-drain
    runs next in that same node. The drain's lag: from the last object landing (the
    newest ctime among the server's files of the bucket: rclone serve s3 writes each object
    to a file) to drain's exit."""

    name = "node-cached-write-drain"
    title = "write the data set through a MOUNT_CACHED mount (cp -r), then drain"
    dataset = "A"
    tools = ("cached-write", "local-write", "script-drain")
    reference = "cached-write"
    rivals = ("local-write",)
    continues = {"script-drain": "cached-write"}
    goals = (Goal("writes ≥ 0.8 × the speed of local disk (time ≤ 1.25 ×)",
                  "cached-write/local-write", 1.25),
             Goal("drain returns ≤ 2 s after the last object lands (seconds)",
                  "figure:script-drain:drain_lag_s", 2.0))

    def fresh(self, bench: Bench, tool: Tool) -> Target:
        t = bench.node_target(tool, self.dataset)  # a new, empty bucket
        t.node.bind(t.source, NODE_SRC)
        if tool.id == "cached-write":
            bench.compile({"name": "bench-cached", "file_mounts": {
                NODE_CACHED: {"source": f"s3://{t.bucket}", "mode": "MOUNT_CACHED"}}}, t)
            bench.in_node(t, "bash", "/root/boot.sh", "up", "--no-run")
        return t

    def verify(self, bench: Bench, tool: Tool, target: Target) -> dict:
        ds = bench.dataset(self.dataset)
        if tool.id == "local-write":
            return bench.verify_tree(target.node.path(NODE_SCRATCH), ds)
        if tool.id == "cached-write":
            return bench.verify_tree(target.node.path(NODE_CACHED), ds)
        verified = bench.verify(target, ds, tool)
        verified["drain_lag_s"] = bench.ended(target) - last_landed(bench, target)
        return verified


def last_landed(bench: Bench, target: Target) -> float:
    """When the newest object of the bucket landed on the server: the newest ctime of its
    files (a file's ctime changes with its data, its rename and its time stamps)."""
    newest = 0.0
    for dirpath, _, names in os.walk(bench.server.root / target.bucket):
        for name in names:
            newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_ctime)
    return newest


class MountRead(NodeScenario):
    """For mount-read, the script mounted the bucket that holds the data set (`up
    --no-run`, untimed), so the timed run is the reading alone."""

    name = "node-mount-read"
    title = "read the data set sequentially through a MOUNT mount vs rclone cat"
    dataset = "B"
    tools = ("mount-read", "rclone-cat")
    reference = "mount-read"
    goals = (Goal("≥ 0.8 × rclone cat's speed (time ≤ 1.25 ×)", "mount-read/rclone-cat", 1.25),)

    def fresh(self, bench: Bench, tool: Tool) -> Target:
        t = bench.node_target(tool, self.dataset, bench.source_bucket(self.dataset))
        if tool.id == "mount-read":
            bench.compile({"name": "bench-mount", "file_mounts": {
                NODE_MOUNT: {"source": f"s3://{t.bucket}", "mode": "MOUNT"}}}, t)
            bench.in_node(t, "bash", "/root/boot.sh", "up", "--no-run")
        return t

    def verify(self, bench: Bench, tool: Tool, target: Target) -> dict:
        read = int(target.stdout().read_text().split()[0])  # wc -c of everything read
        want = bench.dataset(self.dataset).bytes
        if read != want:
            raise BenchError(f"{tool.label} read {read} bytes, not the data set's {want}")
        return {"bytes": read}


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
    NodeCopy(),
    CachedWriteDrain(),
    MountRead(),
    *[s for size in SCALING for s in (
        UploadFirst(f"scale-upload-{size[1:]}", size, tools=("skycompile",),
                    goals=(Goal("peak RSS < 300 MiB", "rss:skycompile", 300.0),)
                    if size == "S100k" else ()),
        ResyncNoChange(f"scale-resync-{size[1:]}", size, tools=("skycompile",)))],
]
