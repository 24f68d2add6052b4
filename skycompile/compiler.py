"""The pipeline, end to end: load -> validate -> normalize -> plan -> (apply) -> render.

Every task of the file is checked before anything has a side effect; `apply` is the one
door to clouds, and `dry_run` simply does not open it.
"""
from __future__ import annotations

import copy
import dataclasses
import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from . import apply as apply_mod
from . import load, manifest, normalize, plan, render, stores, stub, userdata, validation
from .errors import Problem, TaskError, UsageError
from .load import Document
from .options import Options
from .stores.credentials import MissingCredentials
from .resolve import slug

_GROUP_HEADER_KEYS = {"name", "execution", "primary_tasks", "termination_delay"}


@dataclass(frozen=True)
class CompiledTask:
    """One task of a compiled file."""

    plan: plan.Plan  # buckets, uploads, mounts: what apply and the scripts do
    state_id: str  # the task's name on the node (/var/lib/skycompile/<state_id>, the log)
    scripts: tuple[str, ...]  # the bash text of node-0.sh, node-1.sh, ... (with --stub: the
    #                           full scripts that are uploaded)
    subdir: str  # "" for a single-task file; else the task's own output folder
    outputs: tuple[bytes, ...] = ()  # what is written per node: the scripts (with --stub,
    #                                  the stubs) as the options package them (userdata.Packaging)
    stub_objects: tuple[stub.StubObject, ...] = ()  # --stub: the full scripts as objects in
    #                                                 the task's bucket, node 0 first


@dataclass(frozen=True)
class Compiled:
    """A compiled task file: its tasks in file order (one, unless it is a pipeline)."""

    tasks: tuple[CompiledTask, ...]
    task_sha256: str  # of the task file's bytes, as the script headers record it
    pipeline_name: str  # from a pipeline header document, else ""
    task_file: str = ""  # as given (or "<mapping>" for task data)
    packaging: userdata.Packaging = userdata.Packaging()  # how CompiledTask.outputs are made
    applied: dict | None = None  # apply's counts (uploaded, skipped, bytes, deleted); None
    #                              when nothing was applied (a dry run)


def _is_header(doc: Document, total: int) -> bool:
    """SkyPilot pipelines may start with a document holding only `name` (job groups
    also `execution`, ...): it names the pipeline and is not a task."""
    return (total > 1 and doc.index == 0 and isinstance(doc.data, dict)
            and set(doc.data) <= _GROUP_HEADER_KEYS and bool(doc.data))


def task_documents(docs: list[Document]) -> tuple[str, list[Document]]:
    docs = [d for d in docs if d.data is not None or len(docs) == 1]
    header = ""
    if docs and _is_header(docs[0], len(docs)):
        header = str(docs[0].data.get("name") or "")
        docs = docs[1:]
    return header, docs


def check(docs: list[Document], opts: Options) -> list:
    """Load + schema + normalize + semantic checks of every task, all problems at once:
    parts that break the schema are pruned so the rest is still checked (and reported)."""
    problems: list[Problem] = []
    tasks = []
    filename = docs[0].filename if docs else ""
    for doc in docs:
        problems.extend(doc.problems)
        found, prune = validation.schema_problems(doc)
        problems.extend(found)
        if prune is None:
            continue
        checked = doc if not prune else dataclasses.replace(doc, data=_pruned(doc.data, prune))
        try:
            task = normalize.normalize(checked, opts)
        except TaskError as e:
            problems.extend(e.problems)
            continue
        if not found and not doc.problems:
            tasks.append(task)
    if problems:
        raise TaskError(problems, filename)
    return tasks


def _pruned(data: dict, paths: list[tuple]) -> dict:
    """A deep copy of `data` without the values at `paths` (the ones the schema rejected)."""
    data = copy.deepcopy(data)
    for path in sorted(set(paths), key=len, reverse=True):
        parent = data
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, list) and isinstance(path[-1], int) and path[-1] < len(parent):
            parent[path[-1]] = None
    return data


def _state_ids(tasks, stem: str) -> list[str]:
    ids = []
    for t in tasks:
        base = slug(t.name) or slug(stem) or "task"
        if len(tasks) > 1:
            base = f"{base}-{t.index}" if base in ids or not t.name else base
        ids.append(base)
    return ids


def some_task_documents(docs: list[Document], task_file: str) -> tuple[str, list[Document]]:
    """task_documents, or TaskError when the file holds none."""
    header, task_docs = task_documents(docs)
    if not task_docs:
        raise TaskError([Problem(1, 1, 0, "", "the file holds no task", "Add a task document.",
                                 task_file)], task_file)
    return header, task_docs


def compile_docs(docs: list[Document], raw: bytes, opts: Options, *, task_file: str,
                 hasher=None, stem: str | None = None) -> Compiled:
    """`stem`: what names an unnamed task on the node (default: the task file's stem)."""
    header, task_docs = some_task_documents(docs, task_file)
    tasks = check(task_docs, opts)
    plans = [_make_plan(t, task_docs, hasher) for t in tasks]
    if opts.embed_credentials:
        plans = [plan.with_credentials(p, _key_reader(opts)) for p in plans]
    _check_uploads(plans, task_docs)
    sha = hashlib.sha256(raw).hexdigest()
    ids = _state_ids(tasks, Path(task_file).stem if stem is None else stem)
    for t in tasks:
        if opts.node_ips and len(opts.node_ips) != t.num_nodes:
            raise UsageError(f"--node-ips lists {len(opts.node_ips)} address(es), but "
                             f"{task_file} runs on {t.num_nodes} node(s) (num_nodes)")
    rclone = render.rclone_pin(opts.rclone_mirror, dict(opts.rclone_sha256))
    out = []
    for i, (p, sid) in enumerate(zip(plans, ids)):
        scripts = render.render_all(p, task_file=Path(task_file).name, task_sha256=sha,
                                    state_id=sid, node_user=opts.node_user,
                                    node_ips=opts.node_ips, rclone=rclone,
                                    recompile=opts.recompile)
        subdir = f"{i}-{sid}" if len(plans) > 1 else ""
        objects = stub.objects(p, sid, scripts) if opts.stub else ()
        texts = [render.render_stub(p, obj, task_file=Path(task_file).name, task_sha256=sha,
                                    state_id=sid, rclone=rclone, recompile=opts.recompile)
                 for obj in objects] or scripts
        outputs = tuple(_package(p, sid, k, text, opts) for k, text in enumerate(texts))
        out.append(CompiledTask(p, sid, tuple(scripts), subdir, outputs, objects))
    if opts.target:
        _check_budget(out, opts)
    return Compiled(tuple(out), sha, header, task_file, opts.packaging)


def _package(p: plan.Plan, state_id: str, node: int, script: str, opts: Options) -> bytes:
    how = opts.packaging
    hook = None
    if how.format == "cloud-init" and render.has_mounts(p):
        hook = render.render_boot_hook(p, state_id=state_id, node_index=node)
    return userdata.package(script, hook, f"skycompile-{state_id}-node-{node}", how)


def _check_budget(tasks: list[CompiledTask], opts: Options) -> None:
    """--target: every output fits the cloud's user-data budget, or the compile stops
    before anything is created, uploaded or written."""
    budget, how = userdata.TARGETS[opts.target], opts.packaging
    if opts.target in userdata.TEXT_ONLY and (how.gzip or how.base64):
        raise UsageError(f"--target {opts.target}: its user data is a metadata value, text that "
                         f"cloud-init reads as it is; drop --gzip and --base64 (the budget is "
                         f"{budget:,} bytes)")
    over = []
    for t in tasks:
        for node, output in enumerate(t.outputs):
            size = userdata.sizes(output, how)
            if size["payload_bytes"] > budget:
                where = f"task {t.state_id}, " if len(tasks) > 1 else ""
                over.append((f"{where}node {node}", size))
    if not over:
        return
    lines = [f"--target {opts.target}: user data may have at most {budget:,} bytes, but"]
    lines += [f"  {where}: {size['payload_bytes']:,} bytes"
              + ("" if how.gzip or opts.target in userdata.TEXT_ONLY
                 else f" ({size['gzip_bytes']:,} with --gzip)")
              for where, size in over]
    fits = opts.target not in userdata.TEXT_ONLY and \
        all(size["targets"][opts.target]["fits_gzipped"] for _, size in over)
    stub_text = ("pass --stub: the compile uploads each node's script to the task's bucket "
                 "and the user data is a small stub that downloads it, checks its SHA-256 "
                 "and runs it")
    if fits and not how.gzip:
        lines.append("Add --gzip (cloud-init unpacks it)" +
                     ("." if opts.stub else f", or {stub_text}."))
    elif not opts.stub:
        lines.append(f"It does not fit even gzip-compressed: {stub_text}.")
    else:
        lines.append("Even the --stub output does not fit: pass it another way than user "
                     "data (copy it to the node).")
    raise UsageError("\n".join(lines))


def _key_reader(opts: Options):
    """store name -> the rclone settings holding its keys, read once per store."""
    found: dict[str, dict[str, str]] = {}
    env = dict(opts.credential_env)

    def keys(name: str) -> dict[str, str]:
        if name not in found:
            store = stores.get(name)
            if store.credentials is None:
                raise UsageError(f"--embed-credentials: {name} has no keys to embed; its "
                                 f"nodes use their instance principal")
            try:
                settings = store.credentials(env, opts.home)
            except MissingCredentials as e:
                raise UsageError(f"--embed-credentials: {name}: {e}") from None
            for k, v in settings.items():
                if any(c in v for c in "\n\r\0"):
                    raise UsageError(f"--embed-credentials: {name}: {k} contains a line break "
                                     f"or NUL; it cannot go into an rclone config")
            found[name] = settings
        return found[name]
    return keys


def _make_plan(task, docs: list[Document], hasher) -> plan.Plan:
    try:
        return plan.make_plan(task, hasher)
    except plan.UnreadableSource as e:
        doc = next(d for d in docs if d.index == task.index)
        gone = e.reason in (os.strerror(errno.ENOENT), os.strerror(errno.ENOTDIR))
        fix = ("It changed while skycompile read the source; run again." if gone else
               "Rename it, or exclude it in .skyignore (or .gitignore)."
               if e.reason == manifest.NAME_NOT_UTF8 else
               "Fix its permissions, or exclude it in .skyignore (or .gitignore).")
        raise TaskError([doc.problem(e.storage.origin, f"cannot read {e.path}: {e.reason}",
                                     fix)], doc.filename) from None


def _check_uploads(plans: list, docs: list[Document]) -> None:
    """Two uploads that would put different bytes at one object key: the second would
    silently replace the first, so it is an error (equal bytes are fine: SkyPilot's own
    tests upload overlapping sources into one bucket). With --stub, no upload may put a
    file where the node scripts go (stub.PREFIX in the task's bucket)."""
    problems = []
    by_index = {d.index: d for d in docs}
    for p in plans:
        doc = by_index[p.task.index]
        for upload, key, other in plan.conflicts(p):
            problems.append(doc.problem(
                upload.storage.origin, f"uploads {key!r} into {upload.target.uri}, which "
                f"{other.label} also uploads with different content",
                "Use separate buckets, or make the sources agree."))
        if p.stub is not None:
            problems += _stub_clashes(p, doc)
    if problems:
        raise TaskError(problems, docs[0].filename)


def _stub_clashes(p: plan.Plan, doc: Document) -> list[Problem]:
    """Uploads into --stub's bucket that would put files under its node scripts' prefix."""
    where = (p.stub.storage.bucket.store, p.stub.storage.bucket.bucket, p.stub.storage.endpoint)
    found = []
    for upload in p.uploads:
        if (upload.target.store, upload.target.bucket, upload.storage.endpoint) != where:
            continue
        for entry in upload.manifest.entries:
            key = "/".join(part for part in (upload.target.prefix, entry.key) if part)
            if stub.reserved(key):
                found.append(doc.problem(
                    upload.storage.origin, f"uploads {key!r} into {upload.target.uri}, the "
                    f"task's bucket, where --stub keeps the node scripts ({stub.PREFIX}/)",
                    f"Exclude {stub.PREFIX}/ from the source (.skyignore), or use another "
                    f"bucket (--bucket)."))
                break
    return found


def compile_file(path: str | Path, opts: Options, hasher=None) -> Compiled:
    """Check, plan and render a task file: pure, no side effect outside reading it and
    its local sources. Raises TaskError (exit 2) for any problem in it. `hasher` (a
    `manifest.Hasher`) may answer file hashes from the state's cache. Call `apply_plans`
    afterwards to create buckets and upload (not for --dry-run)."""
    docs = load.load_file(path)
    raw = Path(path).read_bytes()
    return compile_docs(docs, raw, opts, task_file=str(path), hasher=hasher)


def apply_plans(compiled: Compiled, opts: Options, state=None) -> dict:
    """The side-effect door: ensure buckets, upload local sources and (--stub) the full
    node scripts. Returns counts."""
    return apply_mod.apply([t.plan for t in compiled.tasks], opts, state=state,
                           objects=[o for t in compiled.tasks for o in t.stub_objects])
