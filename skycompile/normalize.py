"""Normalize phase: a schema-valid document + Options -> Task IR, collecting problems.

The entries are resolved by `mounts.py` with the primitives of `resolve.py`; `semantic.py`
then checks across entries. Every problem is collected; one TaskError reports them all.
"""
from __future__ import annotations

import dataclasses

from . import semantic, stores
from .errors import TaskError
from .ir import STUB_DEST, WORKDIR_DEST, GitWorkdir, Mode, Storage, Task
from .load import Document
from .mounts import legacy, managed_bucket, plain_mount, storage_mount
from .options import Options
from .resolve import (Ctx, DefaultStore, Skip, default_store, endpoint_for, env_value,
                      local_source, mount_config, node_path, with_account)
from .stores import BucketRef

IGNORED_TOP_LEVEL = ("service", "pool", "config", "inputs", "outputs", "event_callback",
                     "execution", "primary_tasks", "termination_delay")
READ_RESOURCES = ("cloud", "infra", "region", "zone")

# --- the task --------------------------------------------------------------------------

# Variables bash sets itself when it starts setup or run (or refuses to import): a task env
# of that name would never reach the task. Measured with bash 5.2 (5.0 and 5.1 have a subset).
BASH_OWNS = frozenset((
    "_ BASH BASHOPTS BASHPID BASH_ALIASES BASH_ARGC BASH_ARGV BASH_ARGV0 BASH_CMDS "
    "BASH_COMMAND BASH_EXECUTION_STRING BASH_LINENO BASH_REMATCH BASH_SOURCE BASH_SUBSHELL "
    "BASH_VERSINFO BASH_VERSION COMP_WORDBREAKS DIRSTACK EPOCHREALTIME EPOCHSECONDS EUID "
    "FUNCNAME GROUPS HISTCMD IFS LINENO OLDPWD OPTERR OPTIND PIPESTATUS PPID PS4 PWD RANDOM "
    "SECONDS SHELLOPTS SHLVL SRANDOM UID").split())


def _envs(ctx: Ctx, data: dict) -> tuple[dict, list[tuple[str, bool]]]:
    envs = {k: env_value(v) for k, v in (data.get("envs") or {}).items()}
    secrets = data.get("secrets") or {}
    for section in ("envs", "secrets"):
        for key in sorted(BASH_OWNS.intersection(data.get(section) or {})):
            ctx.error((section, key), f"bash sets {key} itself, so setup and run would never "
                      "see this value", "Rename the variable.", key=True)
    for key, _ in ctx.opts.envs:
        if key in BASH_OWNS:
            ctx.flag_error("--env", f"--env {key}: bash sets {key} itself, so setup and run "
                           "would never see this value", "Rename the variable.")
    for key, value in ctx.opts.envs:
        if key in secrets:
            ctx.error(("secrets", key), f"--env {key}=... would embed the secret {key} in the "
                      "script", f"Set {key} in the node's environment instead; secrets are never "
                      "embedded.", key=True)
            continue
        envs[key] = value
    runtime = []
    for key, value in secrets.items():
        if value not in (None, ""):
            ctx.notes.append(f"secrets.{key} has a value in the task file; it is not embedded: "
                             f"set {key} in the node's environment")
        runtime.append((key, value is None))
    return envs, runtime


def git_ref_problem(ref: str) -> str | None:
    """Why `git clone --branch REF` cannot take REF (git check-ref-format's rules for a
    branch or tag name, which a commit id also meets), else None."""
    if ref.startswith("-"):
        return "starts with '-'"
    if ref in ("@", "HEAD"):
        return "names no branch or tag"
    bad = sorted({c for c in ref if ord(c) < 0x20 or ord(c) == 0x7f or c in " ~^:?*[\\"})
    if bad:
        return "contains " + ", ".join(repr(c) for c in bad)
    for part, why in (("..", "'..'"), ("@{", "'@{'"), ("//", "an empty component")):
        if part in ref:
            return f"contains {why}"
    if ref.startswith("/") or ref.endswith("/"):
        return "starts or ends with '/'"
    if ref.endswith("."):
        return "ends with '.'"
    for comp in ref.split("/"):
        if comp.startswith(".") or comp.endswith(".lock"):
            return f"has a component {comp!r} (none may start with '.' or end with '.lock')"
    return None


def _git_workdir(ctx: Ctx, url: str, ref: str, where: tuple) -> GitWorkdir:
    """`where`: the ref's path in the task, or () when --git-ref gave it."""
    problem = git_ref_problem(ref) if ref else None
    if problem:
        message = f"git ref {ref!r} {problem}"
        fix = ("Use a branch, tag or commit as git names it (`git check-ref-format --branch "
               "NAME` checks one); leave the ref out for the default branch.")
        ctx.error(where, message, fix) if where else ctx.flag_error("--git-ref", message, fix)
    return GitWorkdir(url, ref)


def _workdir(ctx: Ctx, data: dict, managed: BucketRef, default: DefaultStore):
    opts = ctx.opts
    if opts.git_url:
        return _git_workdir(ctx, opts.git_url, opts.git_ref or "", ())
    raw = data.get("workdir")
    if opts.workdir is not None:
        raw = opts.workdir
    if isinstance(raw, dict):
        if opts.git_ref:
            return _git_workdir(ctx, raw["url"], opts.git_ref, ())
        return _git_workdir(ctx, raw["url"], raw.get("ref") or "", ("workdir", "ref"))
    if opts.git_ref:
        ctx.flag_error("--git-ref", "needs a git workdir",
                       "Pass --git-url too, or set `workdir: {url: ..., ref: ...}` in the task.")
    if raw is None:
        return None
    flag = "--workdir" if opts.workdir is not None else ""
    src = local_source(ctx, raw, ("workdir",), flag=flag, missing_fix=(
        "Create it, fix the path (relative paths start at the current directory), or use a "
        "git workdir: `workdir: {url: ..., ref: ...}`."))
    if src is None:
        return None
    if not src.is_dir:
        message, fix = f"workdir {raw!r} is a file, not a directory", "Point workdir at a directory."
        ctx.flag_error(flag, message, fix) if flag else ctx.error(("workdir",), message, fix)
        return None
    ctx.uses_managed = True
    store = stores.get(managed.store)
    return Storage(WORKDIR_DEST, Mode.COPY, BucketRef(managed.store, managed.bucket, "workdir",
                                                      managed.region),
                   sources=(src,), create=True, endpoint=endpoint_for(ctx, store, {}, ("workdir",)),
                   region=managed.region, store_rule=default.rule, object="dir",
                   config=mount_config({}, Mode.COPY), origin=("workdir",))


def _stub_bucket(ctx: Ctx, managed: BucketRef, default: DefaultStore) -> Storage | None:
    """--stub: the task's managed bucket, which then carries the full node scripts (to be
    created or reused like any bucket skycompile makes, whether or not local sources use
    it too)."""
    store = default.store
    # A store without a default service names no endpoint here: say so against --stub
    # (endpoint_for would blame a field of the task).
    endpoint = endpoint_for(ctx, dataclasses.replace(store, needs_endpoint=""), {}, ())
    if store.needs_endpoint and not endpoint:
        ctx.flag_error("--stub", f"the task's bucket would be on {store.name}, which needs "
                       f"the account endpoint", f"Pass --endpoint-url {store.needs_endpoint}.")
        return None
    return Storage(STUB_DEST, Mode.COPY, BucketRef(store.name, managed.bucket, "",
                                                   managed.region),
                   create=True, endpoint=endpoint, region=managed.region,
                   store_rule=default.rule, object="file", origin=())


def normalize(doc: Document, opts: Options) -> Task:
    """Build the Task IR of one schema-valid document; raise TaskError with every problem."""
    data: dict = doc.data
    ctx = Ctx(doc, opts, {}, secrets=frozenset(data.get("secrets") or {}))
    envs, runtime_secrets = _envs(ctx, data)
    ctx.envs = envs
    resources = data.get("resources") or {}
    default = default_store(ctx, resources)
    name = data.get("name") or ""
    ctx.notes.append(f"default store: {default.store.name} ({default.rule})")
    ignored = sorted(k for k in resources if k not in READ_RESOURCES)
    if ignored:
        ctx.notes.append(f"resources: only cloud/infra/region/zone are read; ignored: {', '.join(ignored)}")
    for key in IGNORED_TOP_LEVEL:
        if data.get(key) is not None:
            ctx.notes.append(f"`{key}:` is accepted and ignored (not part of a node bootstrap)")
    if data.get("volumes"):
        ctx.error(("volumes",), "`volumes:` is not supported by skycompile (SkyPilot provisions "
                  "those volumes itself)", "Use a bucket instead: a file_mounts entry with "
                  "`name:` and `mode: MOUNT`.", key=True)
    managed = BucketRef(default.store.name, managed_bucket(ctx, name, default.store), "",
                        default.region)
    storages: list[Storage] = []
    for key, value in (data.get("file_mounts") or {}).items():
        path = ("file_mounts", key)
        try:
            dest = node_path(ctx, key, path)
            if dest is None:
                continue
            st = (plain_mount(ctx, dest, value, path, managed, default) if isinstance(value, str)
                  else storage_mount(ctx, dest, value, path, default))
        except Skip:
            continue
        if st:
            storages.append(st)
    storages.extend(legacy(ctx, data, default))
    workdir = _workdir(ctx, data, managed, default)
    stub = _stub_bucket(ctx, managed, default) if opts.stub else None
    storages = [with_account(ctx, st) for st in storages]
    if isinstance(workdir, Storage):
        workdir = with_account(ctx, workdir)
    if stub is not None:
        stub = with_account(ctx, stub)
    if ctx.uses_managed or stub is not None:
        problems = default.store.bucket_name_problems(managed.bucket)
        if problems:
            what = "for local sources" if ctx.uses_managed else "for --stub"
            message = f"the bucket {what}, {managed.bucket!r}, {'; '.join(problems)}"
            if opts.managed_bucket:
                ctx.flag_error("--bucket", message, f"Choose a valid {default.store.name} bucket name.")
            else:
                ctx.error(("name",), message, "Pass --bucket NAME with a valid bucket name.")
    runtime = [(k, True) for k, v in envs.items() if v is None] + runtime_secrets
    for key, _ in runtime:
        if key in envs and envs[key] is None:
            ctx.notes.append(f"envs.{key} has no value: the script reads it from the node's "
                             "environment at run time")
    task = Task(
        name=name, index=doc.index,
        num_nodes=opts.num_nodes or data.get("num_nodes") or 1,
        envs=tuple((k, v) for k, v in envs.items() if v is not None),
        runtime_envs=tuple(runtime),
        setup=data.get("setup"), run=data.get("run"),
        storages=tuple(storages), workdir=workdir,
        cloud=default.store.name, region=default.region, notes=tuple(ctx.notes), stub=stub,
    )
    semantic.check_task(ctx, task)
    if ctx.problems:
        raise TaskError(ctx.problems, doc.filename)
    return task

