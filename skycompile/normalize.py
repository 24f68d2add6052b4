"""Normalize phase: a schema-valid document + Options -> Task IR, collecting problems.

Reads the local file system only to classify local sources (exists? file or dir?);
never the network. Every problem is recorded with its location and compilation goes
on, so the user sees all of them at once; `semantic.py` then checks across entries.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import semantic, stores
from .errors import Problem, TaskError
from .ir import WORKDIR_DEST, GitWorkdir, LocalSource, Mode, MountConfig, NodePath, Storage, Task
from .load import Document
from .options import Options
from .stores import BucketRef, UriError

IGNORED_TOP_LEVEL = ("service", "pool", "config", "inputs", "outputs", "event_callback",
                     "execution", "primary_tasks", "termination_delay")
READ_RESOURCES = ("cloud", "infra", "region", "zone")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")


@dataclass
class _Ctx:
    doc: Document
    opts: Options
    envs: dict[str, str | None]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    uses_managed: bool = False  # some local source travels through the managed bucket
    secrets: frozenset = frozenset()

    def error(self, path: tuple, message: str, fix: str = "", *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, fix, key=key))

    def flag_error(self, flag: str, message: str, fix: str = "") -> None:
        """A problem with a command-line value: reported against the flag, not the file."""
        self.problems.append(Problem(0, 0, 0, "", message, fix, self.doc.filename, flag))

    def sub(self, value: str, path: tuple, *, key: bool = False) -> str:
        """Substitute `$VAR` / `${VAR}` from envs (SkyPilot does this in file_mounts).
        Unknown names stay as written. A name declared without a value is an error, and
        the entry is skipped (`_Skip`) so that it causes no follow-on problems."""
        missing = []

        def repl(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            if name in self.secrets and name not in self.envs:
                self.error(path, f"${name} is a secret, and file_mounts end up in the script",
                           f"Secrets are never embedded: declare {name} under `envs:` (or pass "
                           f"--env {name}=VALUE) if it may appear in the script.", key=key)
                missing.append(None)
                return m.group(0)
            if name not in self.envs:
                return m.group(0)
            if self.envs[name] is None:
                missing.append(name)
                return m.group(0)
            return self.envs[name]
        text = _VAR.sub(repl, value)
        for name in filter(None, missing):
            self.error(path, f"${name} has no value (envs.{name} is empty)",
                       f"Give it a value in `envs:` or pass --env {name}=VALUE.", key=key)
        if missing:
            raise _Skip()
        return text


class _Skip(Exception):
    """This entry already has a problem; skip the rest of it."""


def _env_value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _duration_seconds(text: str | int) -> int:
    if isinstance(text, int):
        return text
    number, unit = _DURATION.match(text).groups()
    return int(float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit])


# --- destinations ----------------------------------------------------------------------

def node_path(ctx: _Ctx, raw: str, path: tuple) -> NodePath | None:
    """A file_mounts key -> NodePath: absolute, `~/...`, or relative (= under `~/`)."""
    text = ctx.sub(raw, path, key=True)
    if "\x00" in text or "\n" in text:
        ctx.error(path, "a destination path must not contain NUL or newline characters",
                  "Rename the destination.", key=True)
        return None
    home = not text.startswith("/")
    body = text
    if text == "~" or text.startswith("~/"):
        body = text[2:]
    elif text.startswith("~"):
        ctx.error(path, f"{text!r}: `~user` paths are not supported",
                  "Use `~/...` (the task user's home) or an absolute path.", key=True)
        return None
    if ".." in body.split("/"):
        ctx.error(path, f"{text!r} contains '..'", "Write the destination without '..'.", key=True)
        return None
    norm = posixpath.normpath(body) if body else "."
    if home:
        norm = norm.lstrip("/")
        if norm in ("", "."):
            ctx.error(path, f"{text!r} is the home directory itself",
                      "Mount or copy into a sub-directory such as ~/data.", key=True)
            return None
    else:
        norm = "/" + norm.lstrip("/")
        if norm == "/":
            ctx.error(path, "the destination is `/` itself", "Use a sub-directory such as /data.",
                      key=True)
            return None
    return NodePath(norm, home, raw)


# --- local sources ---------------------------------------------------------------------

_MISSING_FIX = ("Create it, fix the path (relative paths start at the current directory), "
                "or use a bucket URI.")


def local_source(ctx: _Ctx, raw: str, path: tuple, *, missing_fix: str = _MISSING_FIX,
                 flag: str = "") -> LocalSource | None:
    """Classify a local path (relative to the current directory, `~` = home).
    `flag`: the path came from that command-line flag, so problems name the flag."""
    def error(message: str, fix: str) -> None:
        if flag:
            ctx.flag_error(flag, message, fix)
        else:
            ctx.error(path, message, fix)

    text = raw if flag else ctx.sub(raw, path)
    expanded = str(ctx.opts.home) + text[1:] if text == "~" or text.startswith("~/") else text
    p = Path(expanded)
    if not p.is_absolute():
        p = ctx.opts.cwd / p
    p = Path(posixpath.normpath(str(p)))
    try:
        if p.is_symlink() and not p.exists():
            error(f"local source {text!r} is a dangling symlink", "Fix or remove the link.")
            return None
        if not p.exists():
            error(f"local source {text!r} does not exist (looked for {p})", missing_fix)
            return None
        if not (p.is_dir() or p.is_file()):
            error(f"local source {text!r} is not a regular file or directory",
                  "Point it at a file or a directory (not a socket, FIFO or device).")
            return None
        if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
            error(f"local source {text!r} is not readable", "Check its permissions.")
            return None
    except OSError as e:
        error(f"cannot read local source {text!r}: {e.strerror}", "Check its permissions.")
        return None
    return LocalSource(p, text, p.is_dir())


# --- stores ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _DefaultStore:
    store: stores.Store
    region: str
    rule: str


def default_store(ctx: _Ctx, resources: dict) -> _DefaultStore:
    """resources.cloud / infra, else --store, else s3; `rule` says which one decided."""
    cloud, region = "", ""
    if resources.get("infra"):
        parts = str(resources["infra"]).split("/")
        cloud = parts[0]
        region = parts[1] if len(parts) > 1 and parts[1] != "*" else ""
    if resources.get("cloud"):
        cloud = str(resources["cloud"])
    region = str(resources.get("region") or region)
    store = stores.for_cloud(cloud) if cloud else None
    if store:
        return _DefaultStore(store, region, f"resources {'cloud' if resources.get('cloud') else 'infra'} "
                             f"{cloud!r} -> {store.name}")
    if ctx.opts.store:
        return _DefaultStore(stores.get(ctx.opts.store), "", f"--store {ctx.opts.store}")
    why = f" (resources name {cloud!r}, which has no object store of its own)" if cloud else ""
    return _DefaultStore(stores.get("s3"), "", f"default s3{why}")


def endpoint_for(ctx: _Ctx, store: stores.Store, config: dict, path: tuple) -> str:
    if config.get("endpoint_url"):
        if not store.s3_family:
            ctx.error(path + ("config", "endpoint_url"),
                      f"endpoint_url applies to S3-compatible stores, not {store.name}",
                      "Remove it, or use store: s3 for an S3-compatible server.")
            return ""
        return config["endpoint_url"].rstrip("/")
    if store.s3_family and ctx.opts.endpoint_url:
        return ctx.opts.endpoint_url.rstrip("/")
    if store.name == "r2":
        ctx.error(path, "an r2 storage needs the account endpoint",
                  "Set config.endpoint_url: https://ACCOUNT_ID.r2.cloudflarestorage.com "
                  "or pass --endpoint-url.")
    return ""


def mount_config(config: dict, mode: Mode) -> MountConfig:
    cached = config.get("mount_cached") or {}
    mount = config.get("mount") or {}
    base = MountConfig()
    transfers = cached.get("transfers", base.transfers)
    if cached.get("sequential_upload") is False and "transfers" not in cached:
        transfers = 4
    return MountConfig(
        transfers=transfers if mode is Mode.MOUNT_CACHED else base.transfers,
        cache_size=str(cached.get("cache_size", "")),
        write_back=str(cached.get("write_back", "")),
        drain_timeout=_duration_seconds(cached["drain_timeout"]) if "drain_timeout" in cached
        else base.drain_timeout,
        dir_cache_time=str(mount.get("dir_cache_time", base.dir_cache_time)),
    )


# --- the managed bucket (two-hop for local workdir and local file_mounts) -------------

def _slug(text: str, limit: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].strip("-") or "x"


def managed_bucket(ctx: _Ctx, task_name: str, store: stores.Store) -> str:
    if ctx.opts.managed_bucket:
        return ctx.opts.managed_bucket
    return f"skycompile-{_slug(ctx.opts.user, 20)}-{_slug(task_name or 'task', 30)}"


def dest_prefix(dest: NodePath) -> str:
    """Where a plain local file_mount lives in the managed bucket: readable and unique."""
    return f"file_mounts/{'home' if dest.home else 'root'}/{dest.path.lstrip('/')}"


# --- file_mounts entries ---------------------------------------------------------------

MODES = {m.value: m for m in Mode}


def _mode(ctx: _Ctx, value, path: tuple) -> Mode | None:
    if value is None:
        return Mode.MOUNT
    mode = MODES.get(str(value).upper())
    if mode is None:
        ctx.error(path, f"mode {value!r} is not supported",
                  f"Use one of {', '.join(MODES)} (any case).")
    return mode


def _store(ctx: _Ctx, value, path: tuple, default: _DefaultStore) -> tuple[stores.Store | None, str]:
    if value is None:
        return default.store, default.rule
    text = ctx.sub(str(value), path)
    store = stores.find(text)
    if store is None:
        ctx.error(path, f"store {text!r} is not supported by skycompile",
                  f"Use one of {', '.join(stores.names())} (an S3-compatible service works as "
                  "s3 with config.endpoint_url).")
        return None, ""
    return store, "store:"


def plain_mount(ctx: _Ctx, dest: NodePath, value: str, path: tuple, managed: BucketRef,
                default: _DefaultStore) -> Storage | None:
    """`/dest: s3://b/p` (copy from a bucket) or `/dest: ./local` (two-hop copy)."""
    text = ctx.sub(value, path)
    if stores.scheme_of(text):
        try:
            ref = stores.parse_uri(text)
        except UriError as e:
            ctx.error(path, str(e), "Fix the URI.")
            return None
        store = stores.get(ref.store)
        return Storage(dest, Mode.COPY, ref, endpoint=endpoint_for(ctx, store, {}, path),
                       store_rule=f"URI {store.name}", object="auto", origin=path)
    src = local_source(ctx, value, path)
    if src is None:
        return None
    prefix = dest_prefix(dest)
    ctx.uses_managed = True
    store = stores.get(managed.store)
    return Storage(dest, Mode.COPY, BucketRef(managed.store, managed.bucket, prefix, managed.region),
                   sources=(src,), layout="contents" if src.is_dir else "object", create=True,
                   endpoint=endpoint_for(ctx, store, {}, path), region=managed.region,
                   store_rule=default.rule, object="dir" if src.is_dir else "file",
                   origin=path)


def storage_mount(ctx: _Ctx, dest: NodePath, spec: dict, path: tuple, default: _DefaultStore,
                  *, legacy: bool = False) -> Storage | None:
    """A storage mapping: name / source / store / mode / persistent / config."""
    mode = _mode(ctx, spec.get("mode"), path + ("mode",))
    store, rule = _store(ctx, spec.get("store"), path + ("store",), default)
    if "name" in spec and spec["name"] is None:
        ctx.error(path + ("name",), "`name:` is empty", "Fill in a bucket name, or remove the field.")
        return None
    name = ctx.sub(spec["name"], path + ("name",)) if spec.get("name") else None
    source = spec.get("source")
    config = spec.get("config") or {}
    if mode is None or store is None:
        return None
    if isinstance(source, str) and stores.scheme_of(ctx.sub(source, path + ("source",))):
        return _uri_storage(ctx, dest, mode, store, spec, name, path, legacy)
    sources: list[LocalSource] = []
    if source is not None:
        items = [source] if isinstance(source, str) else source
        for i, item in enumerate(items):
            ipath = path + ("source",) + ((i,) if isinstance(source, list) else ())
            if stores.scheme_of(ctx.sub(item, ipath)):
                ctx.error(ipath, "a source list may hold only local paths",
                          "Mount the bucket in its own file_mounts entry.")
                continue
            src = local_source(ctx, item, ipath)
            if src:
                sources.append(src)
        if isinstance(source, list):
            semantic.unique_basenames(ctx, sources, path + ("source",))
    if name is None:
        if source is not None:
            ctx.error(path, "a storage with a local source needs a `name:` (the bucket to create)",
                      "Add `name: my-bucket`.")
        else:
            ctx.error(path, "a storage needs `name:` (a bucket to create) or `source:`",
                      "Add `name: my-bucket`, or `source: s3://bucket/path`.")
        return None
    if mode is Mode.COPY and source is None:
        ctx.error(path + ("mode",), "a COPY storage with only a `name:` has nothing to copy",
                  f"To copy an existing bucket use `source: {store.format_uri(BucketRef(store.name, name))}` "
                  "instead of `name:`; for an empty bucket use mode: MOUNT.")
        return None
    for problem in store.bucket_name_problems(name):
        ctx.error(path + ("name",), f"bucket name {name!r} {problem}",
                  f"Choose a valid {store.name} bucket name.")
    region = default.region if store is default.store else ""
    layout = "contents" if isinstance(source, str) and sources and sources[0].is_dir else "basenames"
    return Storage(dest, mode, BucketRef(store.name, name, "", region), sources=tuple(sources),
                   layout=layout, create=True, persistent=spec.get("persistent", True),
                   endpoint=endpoint_for(ctx, store, config, path), region=region,
                   store_rule=rule, object="dir", config=mount_config(config, mode),
                   origin=path)


def _uri_storage(ctx: _Ctx, dest: NodePath, mode: Mode, store: stores.Store, spec: dict,
                 name: str | None, path: tuple, legacy: bool) -> Storage | None:
    uri = ctx.sub(spec["source"], path + ("source",))
    try:
        ref = stores.parse_uri(uri)
    except UriError as e:
        ctx.error(path + ("source",), str(e), "Fix the URI.")
        return None
    if name is not None and not legacy:
        ctx.error(path + ("name",), "`name:` cannot be combined with a bucket URI `source:`",
                  f"Remove `name:` to use the existing bucket {ref.bucket!r}.")
        return None
    if spec.get("store") is not None and store.name != ref.store:
        ctx.error(path + ("store",), f"store {store.name!r} does not match the source URI "
                  f"({ref.store})", "Remove `store:` or make it match the URI.")
        return None
    uri_store = stores.get(ref.store)
    config = spec.get("config") or {}
    return Storage(dest, mode, ref, endpoint=endpoint_for(ctx, uri_store, config, path),
                   persistent=spec.get("persistent", True), store_rule=f"URI {ref.store}",
                   object="auto", config=mount_config(config, mode), origin=path)


# --- the task --------------------------------------------------------------------------

def _envs(ctx: _Ctx, data: dict) -> tuple[dict, list[tuple[str, bool]]]:
    envs = {k: _env_value(v) for k, v in (data.get("envs") or {}).items()}
    secrets = data.get("secrets") or {}
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


def _workdir(ctx: _Ctx, data: dict, managed: BucketRef, default: _DefaultStore):
    opts = ctx.opts
    if opts.git_url:
        return GitWorkdir(opts.git_url, opts.git_ref or "")
    raw = data.get("workdir")
    if opts.workdir is not None:
        raw = opts.workdir
    if isinstance(raw, dict):
        return GitWorkdir(raw["url"], opts.git_ref or raw.get("ref") or "")
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
                   origin=("workdir",))


def _legacy(ctx: _Ctx, data: dict, default: _DefaultStore) -> list[Storage]:
    """`storage:` + `storage_mounts:` (old SkyPilot) -> the same Storage values."""
    if "storage" not in data and "storage_mounts" not in data:
        return []
    ctx.notes.append("`storage:` / `storage_mounts:` are deprecated: write each as a "
                     "file_mounts entry with name/source/store/mode")
    by_name = {}
    for i, entry in enumerate(data.get("storage") or []):
        if not isinstance(entry, dict) or "name" not in entry:
            continue  # the schema already reported it
        if entry["name"] in by_name:
            first = ctx.doc.mark(("storage", by_name[entry["name"]][0], "name")).line
            ctx.error(("storage", i, "name"), f"another `storage:` entry is named "
                      f"{entry['name']!r} (line {first})", "Rename one of them.")
            continue
        by_name[entry["name"]] = (i, entry)
    out = []
    for i, m in enumerate(data.get("storage_mounts") or []):
        mpath = ("storage_mounts", i)
        if not isinstance(m, dict):
            continue  # the schema already reported it
        if m["storage"] not in by_name:
            ctx.error(mpath + ("storage",), f"no `storage:` entry is named {m['storage']!r}",
                      f"Add it under `storage:` or use one of: {', '.join(by_name) or '(none)'}.")
            continue
        j, entry = by_name[m["storage"]]
        spec = {k: v for k, v in entry.items() if k not in ("force_stores",)}
        if entry.get("force_stores"):
            spec["store"] = entry["force_stores"][0]
        if m.get("mode"):
            spec["mode"] = m["mode"]
        if isinstance(spec.get("source"), str) and stores.scheme_of(spec["source"]):
            pass  # the legacy form names storages; a URI source keeps its bucket
        try:
            dest = node_path(ctx, m["mount_path"], mpath + ("mount_path",))
            st = dest and storage_mount(ctx, dest, spec, ("storage", j), default, legacy=True)
        except _Skip:
            continue
        if st:
            out.append(st)
    return out


def normalize(doc: Document, opts: Options) -> Task:
    """Build the Task IR of one schema-valid document; raise TaskError with every problem."""
    data: dict = doc.data
    ctx = _Ctx(doc, opts, {}, secrets=frozenset(data.get("secrets") or {}))
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
        except _Skip:
            continue
        if st:
            storages.append(st)
    storages.extend(_legacy(ctx, data, default))
    workdir = _workdir(ctx, data, managed, default)
    if ctx.uses_managed:
        for problem in default.store.bucket_name_problems(managed.bucket):
            message = f"the bucket for local sources, {managed.bucket!r}, {problem}"
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
        cloud=default.store.name, region=default.region, notes=tuple(ctx.notes),
    )
    semantic.check_task(ctx, task)
    if ctx.problems:
        raise TaskError(ctx.problems, doc.filename)
    return task
