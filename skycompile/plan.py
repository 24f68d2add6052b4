"""Plan phase: Task IR -> what apply must do and what every node script must do.

Pure except for reading the local sources to build their manifests (file lists and
content digests, through the hash cache of `hasher`), which the script header records. `describe` is what --dry-run prints.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from . import manifest as manifest_mod
from .ignore import Unreadable
from . import stores
from .errors import json_path
from .ir import GitWorkdir, Storage, Task
from .stores import BucketRef


@dataclass(frozen=True)
class BucketAction:
    store: str
    bucket: str
    region: str
    endpoint: str
    create: bool  # True: create, or reuse when skycompile created it; False: must exist
    persistent: bool
    rule: str  # which rule chose the store
    account: str = ""  # azure storage account


@dataclass(frozen=True)
class Upload:
    storage: Storage
    manifest: manifest_mod.Manifest

    @property
    def target(self) -> BucketRef:
        return self.storage.bucket

    @property
    def label(self) -> str:
        return json_path(self.storage.origin)


@dataclass(frozen=True)
class NodeMount:
    """One entry of a node script: an rclone remote plus what to do with it."""

    remote: str
    settings: tuple[tuple[str, str], ...]
    storage: Storage

    @property
    def path(self) -> str:
        ref = self.storage.bucket
        return ref.bucket + (f"/{ref.prefix}" if ref.prefix else "")


@dataclass(frozen=True)
class Plan:
    task: Task
    buckets: tuple[BucketAction, ...]
    uploads: tuple[Upload, ...]
    mounts: tuple[NodeMount, ...]  # file_mounts, in task order
    workdir: NodeMount | GitWorkdir | None
    # --stub: the remote the stub fetches the full script from (the task's bucket); None
    # without --stub. Not one of the node script's own remotes.
    stub: NodeMount | None = None


def _bucket_actions(entries: list[Storage]) -> tuple[BucketAction, ...]:
    actions: dict[tuple, BucketAction] = {}
    for st in entries:
        key = (st.bucket.store, st.bucket.bucket, st.endpoint)
        prev = actions.get(key)
        action = BucketAction(st.bucket.store, st.bucket.bucket, st.region or st.bucket.region,
                              st.endpoint, st.create, st.persistent, st.store_rule,
                              st.bucket.account)
        if prev is None:
            actions[key] = action
        elif action.create and not prev.create:
            actions[key] = action
    return tuple(actions.values())


def _node_mount(index: int, st: Storage, name: str = "") -> NodeMount:
    """The rclone remote `name` (default sc-m<index>) of storage `st`."""
    store = stores.get(st.bucket.store)
    ref = st.bucket if st.bucket.region or not st.region else \
        BucketRef(st.bucket.store, st.bucket.bucket, st.bucket.prefix, st.region, st.bucket.account)
    settings = store.rclone_remote(ref, st.endpoint)  # insertion order: stable, type first
    return NodeMount(name or f"sc-m{index}", tuple(settings.items()), st)


class UnreadableSource(Exception):
    """Something inside the local sources of `storage` cannot be read (`path`, `reason`)."""

    def __init__(self, storage: Storage, path: str, reason: str):
        super().__init__(storage, path, reason)
        self.storage, self.path, self.reason = storage, path, reason


def _upload(st: Storage, hasher: manifest_mod.Hasher | None) -> Upload:
    try:
        return Upload(st, manifest_mod.build(st.sources, st.layout, hasher))
    except Unreadable as e:
        raise UnreadableSource(st, e.path, e.reason) from None


def make_plan(task: Task, hasher: manifest_mod.Hasher | None = None) -> Plan:
    """Raises UnreadableSource when a local source holds something that cannot be read."""
    entries = list(task.storages)
    if isinstance(task.workdir, Storage):
        entries.append(task.workdir)
    uploads = tuple(_upload(st, hasher) for st in entries if st.sources)
    mounts = tuple(_node_mount(i, st) for i, st in enumerate(task.storages))
    workdir: NodeMount | GitWorkdir | None = task.workdir
    if isinstance(task.workdir, Storage):
        workdir = _node_mount(len(mounts), task.workdir)
    stub = None
    if task.stub is not None:
        entries.append(task.stub)
        stub = _node_mount(0, task.stub, "sc-stub")
    return Plan(task, _bucket_actions(entries), uploads, mounts, workdir, stub)


def with_credentials(plan: Plan, keys) -> Plan:
    """The plan with `keys(store) -> settings` in place of env_auth, in every remote that
    would otherwise take the node's ambient credentials (--embed-credentials)."""
    def embed(m):
        if not isinstance(m, NodeMount) or dict(m.settings).get("env_auth") != "true":
            return m
        settings = dict(m.settings)
        settings.update(keys(m.storage.bucket.store))
        return dataclasses.replace(m, settings=tuple(settings.items()))
    return dataclasses.replace(plan, mounts=tuple(embed(m) for m in plan.mounts),
                               workdir=embed(plan.workdir))


def remotes(plan: Plan) -> list[NodeMount]:
    """The node's rclone remotes: one per mount, and the workdir's when it is a bucket."""
    return list(plan.mounts) + ([plan.workdir] if isinstance(plan.workdir, NodeMount) else [])


def embeds_keys(plan: Plan) -> bool:
    """Some remote carries keys from the compiling machine (--embed-credentials)."""
    return any(("env_auth", "false") in m.settings for m in remotes(plan))


def conflicts(plan: Plan):
    """(upload, key, earlier upload) for every object key two uploads fill differently."""
    seen: dict[tuple, tuple[str, Upload]] = {}
    for upload in plan.uploads:
        ref = upload.target
        for entry in upload.manifest.entries:
            key = "/".join(p for p in (ref.prefix, entry.key) if p)
            where = (ref.store, ref.bucket, key)
            if where in seen and seen[where][0] != entry.sha256:
                yield upload, key, seen[where][1]
                break
            seen.setdefault(where, (entry.sha256, upload))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def describe(plan: Plan, outputs: list[str], stub_objects=()) -> str:
    """The human plan that --dry-run prints: buckets, uploads, per-node steps, notes.
    `stub_objects`: --stub's full scripts (stub.StubObject), listed among the uploads."""
    t = plan.task
    lines = [f"task {t.name or '(unnamed)'}: {t.num_nodes} node(s)"]
    lines.append("buckets:")
    for b in plan.buckets or ():
        what = "create or reuse (skycompile's)" if b.create else "use existing"
        where = f", region {b.region}" if b.region else ""
        ep = f", endpoint {b.endpoint}" if b.endpoint else ""
        uri = BucketRef(b.store, b.bucket, "", b.region, b.account).uri
        account = f", namespace {b.account}" if b.account and b.account not in uri else ""
        lines.append(f"  {what}: {uri}{where}{ep}{account}  [store: {b.rule}]")
    if not plan.buckets:
        lines.append("  (none)")
    lines.append("uploads:")
    for u in plan.uploads:
        srcs = ", ".join(s.written for s in u.storage.sources)
        lines.append(f"  {srcs} -> {u.target.uri}  ({u.manifest.files} files, "
                     f"{_size(u.manifest.bytes)}, manifest {u.manifest.sha256[:12]})")
        if u.manifest.symlinks:
            lines.append(f"    skipped symlinks (never uploaded): {', '.join(u.manifest.symlinks)}")
    for obj in stub_objects:
        lines.append(f"  node {obj.node}'s script -> {obj.uri}  ({_size(obj.size)}, "
                     f"sha256 {obj.sha256[:12]}; --stub)")
    if not plan.uploads and not stub_objects:
        lines.append("  (none)")
    lines.append("on every node:")
    if stub_objects:
        lines.append(f"  {'STUB':<12} the output downloads the node's script (above), checks "
                     f"its SHA-256 and runs it")
    for m in plan.mounts:
        st = m.storage
        lines.append(f"  {st.mode.value:<12} {st.bucket.uri} -> {st.dest.display}")
    if isinstance(plan.workdir, NodeMount):
        lines.append(f"  {'COPY':<12} {plan.workdir.storage.bucket.uri} -> ~/sky_workdir (workdir)")
    elif isinstance(plan.workdir, GitWorkdir):
        ref = f" @ {plan.workdir.ref}" if plan.workdir.ref else ""
        lines.append(f"  {'GIT':<12} {plan.workdir.url}{ref} -> ~/sky_workdir (workdir)")
    lines.append(f"  setup: {'yes' if t.setup else 'no'}; run: {'yes' if t.run else 'no'}")
    if t.runtime_envs:
        names = ", ".join(n for n, _ in t.runtime_envs)
        lines.append(f"  read from the node's environment (not embedded): {names}")
    for note in t.notes:
        lines.append(f"note: {note}")
    for out in outputs:
        lines.append(f"script: {out}")
    return "\n".join(lines) + "\n"
