"""Apply phase: the only code that talks to clouds (bucket creation and uploads).

1. Every bucket the plans create or upload into is checked first — reachable with these
   credentials, and either absent, skycompile's own (the state DB or the bucket's tag says
   so), or refused — before anything is created or sent.
2. Missing buckets are created (and recorded, tagged).
3. Each local source is uploaded incrementally: an object is sent only when missing or
   different (size and content tag against the manifest's hashes, which the hash cache
   answers for unchanged files). Remote objects are deleted only with `--delete`, and
   only under the prefix of an upload, when no local file of the task maps to them, and
   never under `skycompile/` (stub.PREFIX), where --stub keeps the node scripts.
4. --stub: each node's full script goes to the task's bucket (`stub.upload`), after the
   local sources it uses.

A bucket the task merely reads on the node (`source: s3://...`) is never touched here.
"""
from __future__ import annotations

import sys

from . import stores, stub
from .errors import ApplyError
from .options import Options
from .progress import Progress
from .state import State
from .stores import BucketRef


def apply(plans: list, opts: Options, *, state: State | None = None, out=None,
          objects: list | None = None) -> dict:
    """Ensure buckets and upload local sources for every plan, then `objects` (--stub's
    full scripts, stub.StubObject, each into a bucket of the plans). Returns counts:
    uploaded, skipped (already there), bytes (sent), deleted. Messages go to `out`
    (stderr)."""
    out = out or sys.stderr
    totals = {"uploaded": 0, "skipped": 0, "bytes": 0, "deleted": 0}
    actions = _actions(plans)
    if not actions:
        return totals
    for action in actions.values():  # every store usable before the first side effect
        if not stores.get(action.store).client:
            raise ApplyError(
                f"creating buckets and uploading to {action.store} is not supported yet "
                f"(bucket {action.bucket}); use --dry-run and upload with your own tools")
    state = state or State()
    clients = {key: stores.bucket_client(a.store, a.bucket, endpoint=a.endpoint,
                                         region=a.region, account=a.account)
               for key, a in actions.items()}
    # Each check, and each check-then-create, is one step for concurrent skycompile runs
    # on this machine (the state's write lock): a bucket is created once, and a run never
    # sees a bucket another run created before that run has recorded it as ours.
    missing = []
    for key, a in actions.items():
        with state.transaction():
            if not _check(clients[key], a, state):
                missing.append(key)
    for key in missing:
        a, client = actions[key], clients[key]
        with state.transaction():
            if _check(client, a, state):  # created meanwhile by a concurrent run
                continue
            state.record_bucket(a.store, a.endpoint, a.bucket, a.region, opts.recompile,
                                a.persistent, account=a.account)
            client.create()
    for key, client in clients.items():
        if hasattr(client, "abort_orphans"):  # S3's multipart uploads a killed run left
            a = actions[key]
            client.journal = state.journal(a.store, a.endpoint, a.bucket)
            client.abort_orphans()
    for plan in plans:
        for upload in plan.uploads:
            ref = upload.target
            key = (ref.store, ref.bucket, upload.storage.endpoint)
            try:
                counts = _sync(clients[key], upload, plan, opts, out)
            except BaseException:
                state.set_status(ref.store, upload.storage.endpoint, ref.bucket, "UPLOAD_FAILED")
                raise
            for k in totals:
                totals[k] += counts[k]
    by_bucket: dict[tuple, list] = {}
    for obj in objects or ():
        by_bucket.setdefault((obj.store, obj.bucket, obj.endpoint), []).append(obj)
    for key, items in by_bucket.items():
        try:
            counts = stub.upload(clients[key], items, quiet=opts.quiet, out=out)
        except BaseException:
            state.set_status(key[0], key[2], key[1], "UPLOAD_FAILED")
            raise
        for k in totals:
            totals[k] += counts[k]
    for a in actions.values():
        if state.bucket(a.store, a.endpoint, a.bucket):
            state.set_status(a.store, a.endpoint, a.bucket, "READY")
    return totals


def _actions(plans: list) -> dict:
    """(store, bucket, endpoint) -> BucketAction of every bucket to create or fill."""
    found = {}
    for plan in plans:
        targets = {(u.target.store, u.target.bucket, u.storage.endpoint) for u in plan.uploads}
        for a in plan.buckets:
            key = (a.store, a.bucket, a.endpoint)
            if a.create or key in targets:
                found.setdefault(key, a)
    return found


def _check(client, action, state: State) -> bool:
    """Whether the bucket exists; raises when it must not be used. Records a bucket of
    ours that this machine has not seen (created elsewhere, recognised by its tag)."""
    if not client.exists():
        if not action.create:
            raise ApplyError(f"{client.where} does not exist: create it, or use `name:` so "
                             f"skycompile creates it")
        return False
    if not action.create:
        return True
    if state.bucket(action.store, action.endpoint, action.bucket):
        return True
    if client.tagged_ours():
        state.record_bucket(action.store, action.endpoint, action.bucket, action.region,
                            "(created on another machine)", action.persistent,
                            account=action.account)
        return True
    uri = BucketRef(action.store, action.bucket, "", action.region, action.account).uri
    raise ApplyError(f"{client.where} already exists and was not created by skycompile; "
                     f"to use it as it is, write `source: {uri}` instead of `name:`")


def _key(prefix: str, key: str) -> str:
    return "/".join(p for p in (prefix, key) if p)


def _sync(client, upload, plan, opts: Options, out) -> dict:
    ref, manifest = upload.target, upload.manifest
    if manifest.symlinks:
        print(f"skycompile: warning: {upload.label}: symlinks are not uploaded: "
              f"{', '.join(manifest.symlinks)}", file=out)
    remote = client.listing(ref.prefix)
    todo, skipped = [], 0
    for entry in manifest.entries:
        key = _key(ref.prefix, entry.key)
        have = remote.get(key)
        if have and have[0] == entry.size and have[1] and have[1] in entry.etags.split():
            skipped += 1
        else:
            todo.append((key, entry))
    deleted = _delete_extra(client, upload, plan, remote, out) if opts.delete else 0
    size = sum(e.size for _, e in todo)
    single = upload.storage.layout == "object"
    where = client.where + (f" as {ref.prefix}" if single else
                            f" under {ref.prefix}/" if ref.prefix else "")
    if not todo:
        if not opts.quiet:
            print(f"skycompile: {where}: {skipped} file(s) up to date", file=out)
        return {"uploaded": 0, "skipped": skipped, "bytes": 0, "deleted": deleted}
    if not opts.quiet:
        print(f"skycompile: uploading {len(todo)} file(s), {size} bytes, to {where} "
              f"({skipped} unchanged)", file=out)
    progress = Progress(len(todo), size, upload.label, out, quiet=opts.quiet)
    try:
        client.put_many(todo, progress.sent, progress.file_done)
    finally:
        elapsed = progress.close()
    if not opts.quiet:
        print(f"skycompile: uploaded {len(todo)} file(s), {size} bytes, in {elapsed:.1f}s",
              file=out)
    return {"uploaded": len(todo), "skipped": skipped, "bytes": size, "deleted": deleted}


def _delete_extra(client, upload, plan, remote: dict, out) -> int:
    """--delete: objects under this upload's prefix that no upload of the plan into the
    same bucket puts there (so two sources sharing a bucket never delete each other's),
    except --stub's node scripts: an older stub may still be handed to new nodes."""
    ref = upload.target
    wanted = {_key(u.target.prefix, e.key) for u in plan.uploads
              if (u.target.store, u.target.bucket) == (ref.store, ref.bucket)
              for e in u.manifest.entries}
    extra = sorted(k for k in remote if k not in wanted and not stub.reserved(k))
    if extra:
        client.delete_keys(extra)
        print(f"skycompile: --delete: removed {len(extra)} object(s) from {client.where} "
              f"that no local file matches", file=out)
    return len(extra)
