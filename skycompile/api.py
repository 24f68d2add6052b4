"""The Python API: what the command line does, for launchers and tools that run in-process.

    import skycompile

    problems = skycompile.validate("task.yaml")          # [] when the task is valid
    result = skycompile.compile_task("task.yaml", dry_run=True,
                                     options=skycompile.make_options(num_nodes=2))
    for task in result.tasks:
        for node, script in enumerate(task.scripts):
            ...                                          # the bash text of node-<node>.sh
    print(json.dumps(skycompile.plan_json(result)))      # what `skycompile plan --json` prints

    stubbed = skycompile.compile_task("task.yaml", options=skycompile.make_options(stub=True))
    # per task: .scripts are the full scripts, now in the task's bucket (.stub_objects);
    # .outputs the stubs to hand to the nodes (as bytes, packaged as the options say)

A task is a path to a task file, or its data: one mapping (a task), or a list of mappings
(a pipeline, as the documents of one file). Data is compiled as its YAML dump, so errors
in it point at lines of that dump (`dump_task` shows it) and name the field.

Errors are exceptions carrying the same message the command line prints: `TaskError` (a
bad task: `.problems`, each located), `UsageError` (a bad option), `ApplyError` and
`StateError` (the clouds, the state directory); all are `SkycompileError`s, whose
`exit_code` is the command line's.
"""
from __future__ import annotations

import dataclasses
import getpass
import hashlib
import ipaddress
import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import yaml

from . import compiler, load, userdata
from .compiler import Compiled, CompiledTask
from .errors import Problem, SkycompileError, TaskError, UsageError
from .ir import Task
from .manifest import Hasher
from .options import Options

__all__ = ["Compiled", "CompiledTask", "Options", "Problem", "TaskInput", "compile_task",
           "dump_task", "load_task", "make_options", "plan_json", "validate"]

TaskInput = Union[str, os.PathLike, Mapping, Sequence[Mapping]]
MAPPING_NAME = "<mapping>"  # the task file name that errors and script headers show for data


def make_options(*, env: Mapping[str, str | None] | None = None, workdir: str | None = None,
                 git_url: str | None = None, git_ref: str | None = None,
                 num_nodes: int | None = None, store: str | None = None,
                 endpoint_url: str | None = None, bucket: str | None = None,
                 node_user: str = "", node_ips: Sequence[str] = (),
                 rclone_mirror: str | None = None,
                 rclone_sha256: Mapping[str, str] | None = None,
                 embed_credentials: bool = False, delete: bool = False, quiet: bool = True,
                 format: str = "script", gzip: bool = False, base64: bool = False,
                 target: str | None = None, stub: bool = False,
                 cwd: str | os.PathLike | None = None, recompile: str = "") -> Options:
    """Everything a compile depends on besides the task, checked; each keyword is the
    command line's flag of the same name (`skycompile --help`). `env`: KEY -> value, or
    KEY -> None to take the value from this process's environment (`--env KEY`). `cwd`:
    where relative local paths of the task resolve (default: the current directory).
    `stub`: each node's output is a small script that downloads its full script from the
    task's bucket (uploaded by a compile without `dry_run`), checks its SHA-256 and runs
    it; not with `embed_credentials`.
    The environment is read here, once: the compile itself reads only these options."""
    if isinstance(workdir, os.PathLike):
        workdir = os.fspath(workdir)
    for name, value in (("--user", node_user), ("--format", format), ("recompile", recompile)):
        _text(name, value)
    for name, value in (("--workdir", workdir), ("--git-url", git_url), ("--git-ref", git_ref),
                        ("--store", store), ("--endpoint-url", endpoint_url),
                        ("--bucket", bucket), ("--rclone-mirror", rclone_mirror),
                        ("--target", target)):
        if value is not None:
            _text(name, value)
    if env is not None and not isinstance(env, Mapping):
        raise UsageError(f"--env: pass a mapping of names to values, not {type(env).__name__}")
    for key, value in (env or {}).items():
        if value is not None:
            _text(f"--env {key}", value)
    if num_nodes is not None:
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
            raise UsageError(f"--num-nodes must be a whole number, not {num_nodes!r}")
        if num_nodes < 1:
            raise UsageError(f"--num-nodes must be at least 1, not {num_nodes}")
    if format not in userdata.FORMATS:
        raise UsageError(f"--format {format!r}: choose one of {', '.join(userdata.FORMATS)}")
    if target is not None and target not in userdata.TARGETS:
        raise UsageError(f"--target {target!r}: choose one of {', '.join(userdata.TARGETS)}")
    if stub and embed_credentials:
        raise UsageError(STUB_WITH_KEYS)
    mirror = _mirror(rclone_mirror)
    from .stores import names, store_envs
    if store is not None and store.lower() not in names():
        raise UsageError(f"--store {store!r}: choose one of {', '.join(names())}")
    return Options(
        cwd=Path(cwd) if cwd is not None else Path.cwd(), home=Path.home(),
        user=os.environ.get("SKYCOMPILE_USER") or getpass.getuser(),
        envs=_envs(env or {}), workdir=workdir, git_url=git_url, git_ref=git_ref,
        num_nodes=num_nodes, store=store.lower() if store else None,
        endpoint_url=_endpoint(endpoint_url),
        store_env=tuple((var, os.environ[var]) for var in store_envs() if os.environ.get(var)),
        managed_bucket=bucket, node_user=_node_user(node_user),
        node_ips=_node_ips(node_ips), rclone_mirror=mirror,
        rclone_sha256=_sha256s(rclone_sha256 or {}, mirror),
        embed_credentials=embed_credentials,
        credential_env=tuple(sorted(os.environ.items())) if embed_credentials else (),
        recompile=recompile, quiet=quiet, delete=delete,
        packaging=userdata.Packaging(format, gzip, base64), target=target or "",
        stub=bool(stub),
    )


STUB_WITH_KEYS = (
    "--stub cannot go with --embed-credentials: the full scripts it uploads to the task's "
    "bucket would carry this machine's storage keys into that bucket, and the stubs would "
    "need keys of their own to download them. Give the nodes an instance role (or the "
    "store's credentials in their environment) and drop --embed-credentials, or drop --stub")


def _text(name: str, value: object) -> None:
    """A keyword that must be a string without a NUL."""
    if not isinstance(value, str):
        raise UsageError(f"{name}: expected a string, not {type(value).__name__}")
    if "\x00" in value:
        raise UsageError(f"{name}: a value cannot contain a NUL character")
    if load.SURROGATE.search(value):
        raise UsageError(f"{name}: a value cannot contain a lone surrogate (not UTF-8 text)")


def dump_task(task: Mapping | Sequence[Mapping]) -> str:
    """The YAML text that task data is compiled as (and that its errors' lines refer to)."""
    if isinstance(task, Mapping):
        return yaml.safe_dump(dict(task), sort_keys=False, allow_unicode=True)
    if isinstance(task, Sequence) and not isinstance(task, (str, bytes)) and \
            all(isinstance(t, Mapping) for t in task):
        return yaml.safe_dump_all([dict(t) for t in task], sort_keys=False, allow_unicode=True)
    raise UsageError(f"a task is a path, a mapping or a list of mappings, not "
                     f"{type(task).__name__}")


def _source(task: TaskInput) -> tuple[list[load.Document], bytes, str]:
    """(documents, the bytes their sha256 is taken of, the task file name)."""
    if isinstance(task, (str, os.PathLike)):
        docs = load.load_file(task)
        return docs, Path(task).read_bytes(), str(task)
    try:
        text = dump_task(task)
    except yaml.YAMLError as e:
        raise UsageError(f"the task data cannot be written as YAML: {e}") from None
    return load.load_text(text, MAPPING_NAME), text.encode(), MAPPING_NAME


def validate(task: TaskInput, *, options: Options | None = None) -> list[Problem]:
    """Every problem of the task (schema, values, cross-field rules), all at once; [] when
    it is valid. Local sources are checked (they exist and can be read), not listed or
    hashed."""
    try:
        load_task(task, options=options)
    except TaskError as e:
        return [p if p.file else dataclasses.replace(p, file=e.filename) for p in e.problems]
    return []


def load_task(task: TaskInput, *, options: Options | None = None) -> list[Task]:
    """The checked tasks (one per task document), as skycompile understands them: defaults
    applied, storage resolved to buckets and modes, env values substituted. Raises
    TaskError with every problem."""
    docs, _, name = _source(task)
    _, task_docs = compiler.some_task_documents(docs, name)
    return compiler.check(task_docs, options or make_options())


def compile_task(task: TaskInput, *, dry_run: bool = False, options: Options | None = None,
                 state=None) -> Compiled:
    """Check, plan and render the task; then, unless `dry_run`, create or reuse its buckets
    and upload its local sources (the command line's apply phase; progress goes to stderr
    unless the options are quiet, as they are by default). Returns, per task of the file,
    its plan, its scripts (`.scripts`, node 0 first) and what is written per node
    (`.outputs`: the scripts packaged as the options say; with `stub`, the stubs, while
    `.scripts` are the full scripts uploaded, unless `dry_run`, as `.stub_objects`);
    `Compiled.applied` holds apply's counts.
    `state`: a `skycompile.state.State` (default: the user's state directory, or
    $SKYCOMPILE_STATE_DIR), the hash cache and the record of buckets created."""
    from .state import State

    opts = options or make_options()
    if dry_run and opts.delete:
        raise UsageError("--delete acts on buckets: it cannot go with a dry run")
    docs, raw, name = _source(task)
    own_state = state is None
    state = state if state is not None else State()
    try:
        hasher = Hasher(state)
        # Task data has no file name: an unnamed task is named after its content instead, so
        # two such tasks never share a node's state directory, lock and log.
        stem = None if name != MAPPING_NAME else f"task-{hashlib.sha256(raw).hexdigest()[:12]}"
        compiled = compiler.compile_docs(docs, raw, opts, task_file=name, hasher=hasher,
                                         stem=stem)
        save_hashes(hasher, required=not dry_run)
        if dry_run:
            return compiled
        return dataclasses.replace(compiled, applied=compiler.apply_plans(compiled, opts, state))
    finally:
        if own_state:
            state.close()


def save_hashes(hasher: Hasher, *, required: bool) -> None:
    """Keep the new file hashes for the next run. A dry run (or --check) may go on without
    them: a read-only or broken state directory only costs it speed."""
    try:
        hasher.save()
    except (OSError, sqlite3.Error, SkycompileError):
        if required:
            raise


def plan_json(compiled: Compiled) -> dict:
    """The plan as plain data (what `skycompile plan --json` prints): per task, its
    buckets, uploads with sizes, what every node does, and each node script's size against
    each target's user-data budget."""
    return {
        "task_file": compiled.task_file,
        "task_sha256": compiled.task_sha256,
        "pipeline": compiled.pipeline_name or None,
        "format": compiled.packaging.format, "gzip": compiled.packaging.gzip,
        "base64": compiled.packaging.base64,
        "tasks": [_task_json(t, compiled.packaging) for t in compiled.tasks],
    }


def _task_json(ct: CompiledTask, how: userdata.Packaging) -> dict:
    from .ir import GitWorkdir
    from .plan import NodeMount
    from .stores import BucketRef

    p, t = ct.plan, ct.plan.task
    workdir = None
    if isinstance(p.workdir, NodeMount):
        workdir = {"kind": "copy", "uri": p.workdir.storage.bucket.uri}
    elif isinstance(p.workdir, GitWorkdir):
        workdir = {"kind": "git", "url": p.workdir.url, "ref": p.workdir.ref or None}
    return {
        "name": t.name or None,
        "state_id": ct.state_id,
        "output_dir": ct.subdir or None,
        "num_nodes": t.num_nodes,
        "buckets": [{"uri": BucketRef(b.store, b.bucket, "", b.region, b.account).uri,
                     "store": b.store, "bucket": b.bucket,
                     "region": b.region or None, "endpoint": b.endpoint or None,
                     "action": "create-or-reuse" if b.create else "use-existing",
                     "persistent": b.persistent, "chosen_by": b.rule} for b in p.buckets],
        "uploads": [{"sources": [s.written for s in u.storage.sources], "uri": u.target.uri,
                     "files": u.manifest.files, "bytes": u.manifest.bytes,
                     "manifest_sha256": u.manifest.sha256,
                     "skipped_symlinks": list(u.manifest.symlinks)} for u in p.uploads],
        "mounts": [{"mode": m.storage.mode.value, "uri": m.storage.bucket.uri,
                    "path": m.storage.dest.display} for m in p.mounts],
        "workdir": workdir,
        "setup": bool(t.setup), "run": bool(t.run),
        "node_env": [name for name, _ in t.runtime_envs],
        "notes": list(t.notes),
        "nodes": [{"index": i, **userdata.sizes(output, how)}
                  for i, output in enumerate(ct.outputs)],
        "stub": [{"node": o.node, "uri": o.uri, "bytes": o.size, "sha256": o.sha256}
                 for o in ct.stub_objects] if ct.stub_objects else None,
    }


# --- option checks (the command line's flags go through these too) ---

def _envs(env: Mapping[str, str | None]) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in env.items():
        if not key or not key.replace("_", "a").isalnum() or not key.isascii() or \
                key[0].isdigit():
            raise UsageError(f"--env {key!r}: not a valid variable name (ASCII letters, digits "
                             f"and '_', not starting with a digit)")
        if value is None:
            if key not in os.environ:
                raise UsageError(f"--env {key}: {key} is not set in your environment; "
                                 f"pass --env {key}=VALUE")
            value = os.environ[key]
            _text(f"--env {key} (from your environment)", value)
        out.append((key, value))
    return tuple(out)


def _node_user(name: str) -> str:
    # useradd's rule (NAME_REGEX): what getent and runuser on the node will accept.
    if name and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}\$?", name):
        raise UsageError(f"--user {name!r}: not a valid user name (lowercase letters, digits, "
                         f"'_' and '-', starting with a letter or '_', at most 32)")
    return name


def _node_ips(ips: Sequence[str]) -> tuple[str, ...]:
    if isinstance(ips, (str, bytes)) or not isinstance(ips, Sequence):
        raise UsageError("--node-ips: pass a list of addresses, not one string")
    for ip in ips:
        _text("--node-ips", ip)
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise UsageError(f"--node-ips: {ip!r} is not an IP address; pass IP,IP,... "
                             f"one per node, node 0 first") from None
    return tuple(ips)


def _mirror(url: str | None) -> str:
    if url is None:
        return ""
    if not re.fullmatch(r"(https?|file)://[^\s'\"\\]+", url):
        raise UsageError(f"--rclone-mirror {url!r}: give an http://, https:// or file:// base "
                         f"URL without spaces or quotes")
    return url.rstrip("/")


def _sha256s(digests: Mapping[str, str], mirror: str) -> tuple[tuple[str, str], ...]:
    if digests and not mirror:
        raise UsageError("--rclone-sha256 describes a mirror's archive: pass --rclone-mirror too")
    out = {}
    for arch, digest in digests.items():
        if arch not in ("amd64", "arm64") or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise UsageError(f"--rclone-sha256 {arch}={digest}: expected amd64=HEX or "
                             f"arm64=HEX with 64 hex digits (sha256sum of the archive)")
        out[arch] = digest.lower()
    return tuple(sorted(out.items()))


def _endpoint(flag: str | None) -> str:
    """--endpoint-url, else AWS_ENDPOINT_URL, held to the schema's rule for
    config.endpoint_url."""
    from . import validation

    where, value = ("--endpoint-url", flag) if flag is not None else \
        ("AWS_ENDPOINT_URL", os.environ.get("AWS_ENDPOINT_URL", ""))
    rule = validation.schema()["$defs"]["storage_config"]["properties"]["endpoint_url"]["pattern"]
    if value and not re.fullmatch(rule, value):
        raise UsageError(f"{where} {value!r} is not an http(s) URL; write it like "
                         f"https://s3.example.com:9000")
    return value
