"""file_mounts entries (and the legacy storage/storage_mounts form) -> Storage values."""
from __future__ import annotations

from . import semantic, stores
from .ir import LocalSource, Mode, NodePath, Storage
from .resolve import (Ctx, DefaultStore, Skip, endpoint_for, local_source, mount_config,
                      node_path, slug)
from .stores import BucketRef, UriError

# --- the managed bucket (two-hop for local workdir and local file_mounts) -------------

def managed_bucket(ctx: Ctx, task_name: str, store: stores.Store) -> str:
    if ctx.opts.managed_bucket:
        return ctx.opts.managed_bucket
    return f"skycompile-{slug(ctx.opts.user, 20) or 'x'}-{slug(task_name or 'task', 30) or 'x'}"


def dest_prefix(dest: NodePath) -> str:
    """Where a plain local file_mount lives in the managed bucket: readable and unique."""
    return f"file_mounts/{'home' if dest.home else 'root'}/{dest.path.lstrip('/')}"


# --- file_mounts entries ---------------------------------------------------------------

MODES = {m.value: m for m in Mode}


def _mode(ctx: Ctx, value, path: tuple) -> Mode | None:
    if value is None:
        return Mode.MOUNT
    mode = MODES.get(str(value).upper())
    if mode is None:
        ctx.error(path, f"mode {value!r} is not supported",
                  f"Use one of {', '.join(MODES)} (any case).")
    return mode


def _store(ctx: Ctx, value, path: tuple, default: DefaultStore) -> tuple[stores.Store | None, str]:
    if value is None:
        return default.store, default.rule
    text = ctx.sub(str(value), path)
    store = stores.find(text)
    if store is None:
        ctx.error(path, f"store {text!r} is not supported by skycompile",
                  f"Use one of {', '.join(stores.names())} (an S3-compatible service works as "
                  "s3 with config.endpoint_url).")
        return None, ""
    return store, "`store:` in the task"


def plain_mount(ctx: Ctx, dest: NodePath, value: str, path: tuple, managed: BucketRef,
                default: DefaultStore) -> Storage | None:
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
                       store_rule=f"URI {store.name}", object="auto",
                       config=mount_config({}, Mode.COPY), origin=path)
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
                   config=mount_config({}, Mode.COPY), origin=path)


def storage_mount(ctx: Ctx, dest: NodePath, spec: dict, path: tuple, default: DefaultStore,
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
    problems = store.bucket_name_problems(name)
    if problems:  # one message per name, every rule it breaks
        ctx.error(path + ("name",), f"bucket name {name!r} {'; '.join(problems)}",
                  f"Choose a valid {store.name} bucket name.")
    region = default.region if store is default.store else ""
    layout = "contents" if isinstance(source, str) and sources and sources[0].is_dir else "basenames"
    return Storage(dest, mode, BucketRef(store.name, name, "", region), sources=tuple(sources),
                   layout=layout, create=True, persistent=spec.get("persistent", True),
                   endpoint=endpoint_for(ctx, store, config, path), region=region,
                   store_rule=rule, object="dir", config=mount_config(config, mode),
                   origin=path)


def _uri_storage(ctx: Ctx, dest: NodePath, mode: Mode, store: stores.Store, spec: dict,
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



def legacy(ctx: Ctx, data: dict, default: DefaultStore) -> list[Storage]:
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
        except Skip:
            continue
        if st:
            out.append(st)
    return out


