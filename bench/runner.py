"""The harness: a work directory and one loopback `rclone serve s3` (tests/e2e/nodes.py's
S3Server), the data sets, targets, timed runs and the checks of what landed in a bucket."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from tests.e2e.nodes import Node, S3Server, preflight

from .dataset import QUICK_SPECS, SPECS, Dataset, generate
from .tools import BY_ID, NODE_EMPTY, NODE_SCRIPT, ROOT, BenchError, Target, Tool

LAUNCH = Path(__file__).resolve().parent / "launch.py"


class Bench:
    """`with Bench(quick) as bench:` a started server over a temporary directory; on exit
    (an error and Ctrl-C included) the server is stopped and the directory removed."""

    def __init__(self, quick: bool, progress=sys.stderr):
        self.specs = QUICK_SPECS if quick else SPECS
        self.progress = progress
        self._datasets: dict[str, Dataset] = {}
        self._filled: dict[tuple[str, str], Target] = {}
        self._buckets = 0
        self._nodes: list[Node] = []
        self._node_buckets: set[str] = set()  # made by node_target, dropped by release

    def __enter__(self) -> "Bench":
        with ExitStack() as stack:
            self.work = Path(tempfile.mkdtemp(prefix="skycompile-bench-"))
            stack.callback(shutil.rmtree, self.work, ignore_errors=True)
            self.server = S3Server(self.work / "s3", self.work / "s3.log")
            stack.callback(self.server.stop)
            self.server.start()
            self._cleanup = stack.pop_all()
        self.s3 = self.server.client()
        empty = self.work / "empty"
        empty.touch()
        # the tools see the server's keys and nothing of this machine's AWS or rclone set-up
        # ...and Python writes its bytecode caches, as it does for a user (so the warm-up
        # run compiles the checkout's modules once, not every run)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AWS_", "RCLONE_", "SKYCOMPILE_"))
                    and k != "PYTHONDONTWRITEBYTECODE"}
        self.env.update(self.server.env(), AWS_DEFAULT_REGION="us-east-1",
                        AWS_CONFIG_FILE=str(empty), AWS_SHARED_CREDENTIALS_FILE=str(empty),
                        AWS_EC2_METADATA_DISABLED="true", RCLONE_CONFIG=str(empty))
        return self

    def __exit__(self, *exc) -> None:
        try:
            for node in self._nodes:
                node.stop()
        finally:
            self._cleanup.close()

    def say(self, text: str) -> None:
        print(f"bench: {text}", file=self.progress, flush=True)

    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            spec = self.specs[name]
            self.say(f"generating data set {name}: {spec.describe()}")
            start = time.perf_counter()
            ds = generate(name, spec, self.work / "data" / name)
            self.say(f"data set {name}: {len(ds.files)} files, {ds.bytes} bytes, {ds.dirs} "
                     f"directories ({time.perf_counter() - start:.1f}s)")
            self._datasets[name] = ds
        return self._datasets[name]

    # --- targets ---------------------------------------------------------------------

    def fresh_target(self, tool: Tool, dataset: str) -> Target:
        """A new, empty bucket for the tool (created here unless the tool creates it)."""
        self._buckets += 1
        bucket = f"bench-{tool.id}-{self._buckets}"
        target = Target(bucket, self.work / "homes" / bucket, self.dataset(dataset).root,
                        self.server.endpoint)
        target.home.mkdir(parents=True)
        if not tool.creates_bucket:
            self.s3.create_bucket(Bucket=bucket)
        tool.prepare(target)
        return target

    def plain_target(self, tool: Tool, dataset: str) -> Target:
        """A new private directory for a run that uploads nothing (over `dataset`, if any)."""
        self._buckets += 1
        home = self.work / "homes" / f"{tool.id}-{self._buckets}"
        home.mkdir(parents=True)
        source = self.dataset(dataset).root if dataset else home
        return Target("", home, source, self.server.endpoint)

    def filled_target(self, tool: Tool, dataset: str) -> Target:
        """The tool's bucket that holds the data set: the last one a first upload filled, else
        one filled now (untimed)."""
        key = (tool.id, dataset)
        if key not in self._filled:
            target = self.fresh_target(tool, dataset)
            self.say(f"filling a bucket for {tool.label} (untimed)")
            self.execute(tool, target)
            self.verify(target, self.dataset(dataset), tool)
            self._filled[key] = target
        return self._filled[key]

    def source_bucket(self, dataset: str) -> str:
        """A bucket holding the data set, for nodes to fetch or mount: filled once (untimed)
        and checked. Not one an upload scenario may replace. Filled by s5cmd, which keeps no
        modification time in object metadata: rclone serve s3 lists such an object with the
        time it was written, as S3 lists every object (it lists the metadata's time when
        there is one, while its GET answers the write time; S3 itself has no such split)."""
        key = ("nodes", dataset)
        if key not in self._filled:
            tool = BY_ID["s5cmd"]
            target = self.fresh_target(tool, dataset)
            self.say(f"filling a bucket with data set {dataset} for the nodes (untimed)")
            self.execute(tool, target)
            self.verify(target, self.dataset(dataset), tool)
            self._filled[key] = target
        return self._filled[key].bucket

    def node_target(self, tool: Tool, dataset: str, bucket: str = "") -> Target:
        """A fresh, started node (stopped by release, or at the end) for a run over `bucket`;
        with bucket "" a new empty bucket is made."""
        if not bucket:
            self._buckets += 1
            bucket = f"bench-{tool.id}-{self._buckets}"
            self.s3.create_bucket(Bucket=bucket)
            self._node_buckets.add(bucket)
        self._buckets += 1
        home = self.work / "homes" / f"{tool.id}-{self._buckets}"
        home.mkdir(parents=True)
        return Target(bucket, home, self.dataset(dataset).root, self.server.endpoint,
                      self.node(f"{tool.id}-{self._buckets}"))

    def node(self, name: str) -> Node:
        """A throwaway machine (tests/e2e/nodes.py) whose ambient credentials are the
        server's keys and which sees nothing of this machine's AWS or rclone set-up."""
        if not self._nodes:
            try:
                preflight()
            except BaseException as e:  # pytest's Failed: what a node needs is missing
                raise BenchError(f"the node scenarios cannot run here: {e}") from None
        env = {**self.server.env(), "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": NODE_EMPTY,
               "AWS_SHARED_CREDENTIALS_FILE": NODE_EMPTY}
        (self.work / "nodes").mkdir(exist_ok=True)
        node = Node(name, self.work / "nodes", env=env)
        self._nodes.append(node)
        node.start()
        node.put(NODE_EMPTY, "")
        # the interpreter the tools run with (aws, s5cmd's package), when its directory is
        # not in the node's view: a venv under /tmp (as .ci/run's) is hidden by its fresh /tmp
        for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
            if not node.path(prefix).exists():
                node.bind(Path(prefix), prefix)
        return node

    def release(self, target: Target) -> None:
        """Stop the target's node (its disk is memory) and drop a bucket made for it."""
        if target.node is not None:
            target.node.stop()
            self._nodes.remove(target.node)
        if target.bucket in self._node_buckets:
            self._node_buckets.discard(target.bucket)
            shutil.rmtree(self.server.root / target.bucket, ignore_errors=True)
        shutil.rmtree(target.home, ignore_errors=True)

    def compile(self, task: dict, target: Target) -> str:
        """The node script skycompile (this checkout) compiles from `task` with --dry-run
        against the server (untimed), put on the target's node as NODE_SCRIPT."""
        path = target.home / "task.yaml"
        path.write_text(json.dumps(task))  # a JSON document is YAML
        argv = [sys.executable, "-m", "skycompile", str(path), "--dry-run", "-o",
                str(target.home / "out") + "/", "--endpoint-url", self.server.endpoint]
        env = {**self.env, "PYTHONPATH": str(ROOT), "SKYCOMPILE_USER": "bench",
               "SKYCOMPILE_STATE_DIR": str(target.home / "state")}
        proc = subprocess.run(argv, env=env, cwd=target.home, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchError(f"skycompile could not compile {path}: {proc.stderr[-2000:]}")
        script = (target.home / "out" / "node-0.sh").read_text()
        target.node.put(NODE_SCRIPT, script, 0o755)
        return script

    def in_node(self, target: Target, *argv: str) -> None:
        """Run argv in the target's node (untimed set-up); its failure is the bench's."""
        res = target.node.run(*argv, timeout=3600)
        if res.returncode != 0:
            raise BenchError(f"in node {target.node.name}: {' '.join(argv)} exited "
                             f"{res.returncode}: {res.stderr[-2000:]}")

    def ended(self, target: Target) -> float:
        """When the target's last timed run ended (epoch seconds, bench/launch.py's)."""
        return json.loads((target.home / "launch.json").read_text())["end"]

    def verify_tree(self, where: Path, ds: Dataset) -> dict:
        """The directory (a node's, seen from here) must hold exactly the data set's files,
        each with its size."""
        got = {}
        for dirpath, _, names in os.walk(where):
            rel = os.path.relpath(dirpath, where)
            for name in names:
                key = name if rel == "." else f"{rel}/{name}"
                got[key] = os.lstat(os.path.join(dirpath, name)).st_size
        if got != ds.files:
            raise BenchError(f"{where} does not hold data set {ds.name}: {len(got)} files; "
                             f"{_differences(got, ds.files)}")
        return {"files": len(got), "bytes": sum(got.values())}

    def keep_filled(self, tool: Tool, dataset: str, target: Target) -> None:
        """Remember target as the tool's filled bucket, dropping the previous one (disk)."""
        old = self._filled.get((tool.id, dataset))
        if old is not None and old != target:
            shutil.rmtree(self.server.root / old.bucket, ignore_errors=True)
            shutil.rmtree(old.home, ignore_errors=True)
        self._filled[(tool.id, dataset)] = target

    # --- running and checking --------------------------------------------------------

    def execute(self, tool: Tool, target: Target) -> tuple[float, float, float]:
        """Run the tool's command once: (wall-clock seconds, CPU seconds of the tool and its
        children (user + system), peak RSS in MiB of the largest of them). Its standard
        output goes to target.stdout(), its standard error to a log file."""
        argv, env = tool.argv(target), {**self.env, **tool.env(target)}
        log, result = target.home / f"{tool.id}.log", target.home / "launch.json"
        with log.open("ab") as err, target.stdout().open("wb") as out:
            proc = subprocess.run([sys.executable, "-S", str(LAUNCH), str(result), "--", *argv],
                                  env=env, cwd=target.home, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=err)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise BenchError(f"{tool.label} exited with {proc.returncode} "
                             f"(bucket {target.bucket or '-'}): {' '.join(argv)}\n{tail}")
        got = json.loads(result.read_text())
        return got["wall"], got["cpu"], got["rss_kib"] / 1024

    def verify(self, target: Target, ds: Dataset, tool: Tool) -> dict:
        """The bucket must hold exactly what the tool uploads of the data set (all of it, or
        what the ignore rules keep): every key, with its size."""
        want = ds.uploaded_by(tool.filters)
        got = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=target.bucket):
            got.update((obj["Key"], obj["Size"]) for obj in page.get("Contents", []))
        if got != want:
            raise BenchError(
                f"bucket {target.bucket} does not hold data set {ds.name}: {len(got)} objects, "
                f"{sum(got.values())} bytes instead of {len(want)} objects, "
                f"{sum(want.values())} bytes; {_differences(got, want)}")
        return {"objects": len(got), "bytes": sum(got.values())}

    def data_files_opened(self, tool: Tool, target: Target, ds: Dataset) -> set[str]:
        """Run the tool once more under strace (untimed): the data set's files it opened,
        its ignore-rule files and .git excepted (reading those is the scan's job)."""
        trace = target.home / "strace.out"
        argv = ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(trace),
                *tool.argv(target)]
        proc = subprocess.run(argv, env={**self.env, **tool.env(target)}, cwd=target.home,
                              stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode != 0:
            raise BenchError(f"{tool.label} under strace exited with {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
        root = str(ds.root) + "/"
        opened = set()
        for line in trace.read_text(errors="replace").splitlines():
            start = line.find('"' + root)
            if start < 0 or "ENOENT" in line:
                continue
            rel = line[start + 1 + len(root):line.index('"', start + 1)]
            if rel in ds.files and not rel.endswith(".gitignore") and \
                    not rel.startswith(".git/"):
                opened.add(rel)
        return opened

    def sdk_imports(self, target: Target) -> list[str]:
        """The cloud SDK modules skycompile imports for the task in target.home, compiled
        again in-process (bench.probe imports, untimed)."""
        argv = [sys.executable, "-m", "bench.probe", "imports", str(target.home / "task.yaml"),
                "--dry-run", "-o", str(target.home / "out-probe") + "/"]
        env = {**self.env, "PYTHONPATH": str(ROOT), "SKYCOMPILE_STATE_DIR": str(target.home / "state")}
        proc = subprocess.run(argv, env=env, cwd=target.home, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchError(f"bench.probe imports exited with {proc.returncode}: "
                             f"{proc.stderr[-2000:]}")
        return proc.stdout.split()

    def measure(self, scenario, tools: list[Tool], runs: int) -> dict[str, dict]:
        """One warm-up round, then `runs` rounds; each round runs every tool once, in turn,
        so drifts of the machine hit every tool alike. Every run is checked; what a check
        measured (its float values, e.g. a drain's lag) is kept per timed run as figures."""
        out = {tool.id: {"warmup": None, "times": [], "cpu": [], "rss_mib": [],
                         "verified": None, "figures": {}} for tool in tools}
        for rnd in range(runs + 1):
            for tool in tools:
                target = scenario.target(self, tool)
                seconds, cpu, rss = self.execute(tool, target)
                verified = scenario.check(self, tool, target)
                result = out[tool.id]
                if rnd == 0:
                    result["warmup"] = seconds
                else:
                    result["times"].append(seconds)
                    result["cpu"].append(cpu)
                    result["rss_mib"].append(rss)
                    for name, value in verified.items():  # measured by the check (seconds)
                        if isinstance(value, float):
                            result["figures"].setdefault(name, []).append(value)
                result["verified"] = verified
                what = "warm-up" if rnd == 0 else f"run {rnd}/{runs}"
                self.say(f"{scenario.name} {what}: {tool.label}: {seconds:.2f}s "
                         f"({cpu:.2f}s CPU, {rss:.0f} MiB peak RSS), verified {verified}")
        return out


def _differences(got: dict[str, int], want: dict[str, int]) -> str:
    """What differs between two {name: size} maps, for a message (a few of each)."""
    missing = sorted(want.keys() - got.keys())
    extra = sorted(got.keys() - want.keys())
    wrong = sorted(k for k in want.keys() & got.keys() if got[k] != want[k])
    return (f"{len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}, "
            f"{len(wrong)} of the wrong size {wrong[:3]}")


def versions(tools: list[Tool]) -> dict[str, str]:
    """Each tool's version line; fails when a tool is missing (nothing is skipped)."""
    out = {}
    for tool in tools:
        try:
            proc = subprocess.run(tool.version_argv(), capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
        except OSError as e:
            raise BenchError(f"{tool.label}: {e}") from None
        text = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or not text:
            raise BenchError(f"{tool.label}: `{' '.join(tool.version_argv())}` failed: {text}")
        out[tool.id] = text.splitlines()[0]
    return out


def checkout() -> str:
    """The commit of the skycompile checkout under test, "+dirty" with local changes."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "skycompile", "templates",
                                "schema"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")
