"""Apply phase: the only code that talks to clouds (bucket creation and uploads).

For every plan: ensure its buckets (create, or reuse one skycompile created — known from the
state DB or the bucket's tag — or refuse a foreign one), then upload each local source
incrementally: an object is sent only when missing or different (size + ETag), file hashes
come from the state DB's cache when the file is unchanged (path, size, mtime, inode), and
nothing remote is ever deleted.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from . import stores
from .options import Options
from .state import State
from .errors import ApplyError
from .stores import BucketRef
from .stores.s3_client import S3Bucket, etag

UPLOAD_THREADS = 32


def apply(plans: list, opts: Options, *, state: State | None = None, out=sys.stderr) -> dict:
    """Ensure buckets and upload local sources for every plan. Returns counts.

    Only buckets skycompile creates or uploads into are touched; a bucket the task merely
    reads on the node (`source: s3://...`) needs no access from this machine."""
    totals = {"uploaded": 0, "skipped": 0, "bytes": 0, "hashed": 0}
    work = []
    for plan in plans:
        targets = {(u.target.store, u.target.bucket, u.storage.endpoint) for u in plan.uploads}
        actions = [a for a in plan.buckets
                   if a.create or (a.store, a.bucket, a.endpoint) in targets]
        for a in actions:  # every store supported before the first side effect
            if not stores.get(a.store).s3_family:
                raise ApplyError(
                    f"creating buckets and uploading to {a.store} is not implemented yet "
                    f"(bucket {a.bucket}); use --dry-run and upload with your own tools, or "
                    f"an S3-family store")
        work.append((plan, actions))
    if not any(actions for _, actions in work):
        return totals
    state = state or State()
    for plan, actions in work:
        clients = {}
        for action in actions:
            client = S3Bucket(action.store, action.bucket, action.endpoint, action.region)
            clients[(action.store, action.bucket, action.endpoint)] = client
            if action.create:
                _ensure(client, action, state, opts)
            elif not client.exists():
                raise ApplyError(f"{client.where} does not exist: create it, or use `name:` "
                                 f"so skycompile creates it")
        for upload in plan.uploads:
            ref = upload.target
            client = clients[(ref.store, ref.bucket, upload.storage.endpoint)]
            try:
                counts = _sync(client, ref.prefix, upload.manifest, state, out)
            except BaseException:
                state.set_status(ref.store, upload.storage.endpoint, ref.bucket, "UPLOAD_FAILED")
                raise
            for k in totals:
                totals[k] += counts[k]
        for action in actions:
            if state.bucket(action.store, action.endpoint, action.bucket):
                state.set_status(action.store, action.endpoint, action.bucket, "READY")
    return totals


def _ensure(client: S3Bucket, action, state: State, opts: Options) -> None:
    known = state.bucket(action.store, action.endpoint, action.bucket)
    if client.exists():
        if known or client.tagged_ours():
            if not known:
                state.record_bucket(action.store, action.endpoint, action.bucket,
                                    action.region, opts.recompile, action.persistent)
            return
        uri = BucketRef(action.store, action.bucket, "", action.region).uri
        raise ApplyError(f"{client.where} already exists and was not created by skycompile; "
                         f"to use it as it is, write `source: {uri}` instead of `name:`")
    state.record_bucket(action.store, action.endpoint, action.bucket, action.region,
                        opts.recompile, action.persistent)
    client.create()


def _sync(client: S3Bucket, prefix: str, manifest, state: State, out) -> dict:
    start = time.monotonic()
    remote = client.listing(prefix)
    todo, skipped, fresh = [], 0, []
    hashed = 0
    for entry in manifest.entries:
        key = f"{prefix}/{entry.key}" if prefix else entry.key
        path = os.path.realpath(entry.path)
        st = os.stat(path)
        cached = state.cached_hashes(path, st)
        if cached is None:
            cached = etag(entry.path, st.st_size)
            fresh.append((path, st, *cached))
            hashed += 1
        have = remote.get(key)
        if have and have[0] == st.st_size and have[1] in cached[0].split():
            skipped += 1
        else:
            todo.append((key, entry, st.st_size, cached[1]))
    if fresh:
        state.store_hashes(fresh)
    size = sum(t[2] for t in todo)
    if todo:
        print(f"skycompile: uploading {len(todo)} file(s), {size} bytes, to {client.where}"
              f"{' under ' + prefix if prefix else ''} ({skipped} unchanged)", file=out)
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        futures = [pool.submit(client.put, key, entry.path, n, sha)
                   for key, entry, n, sha in todo]
        try:
            for f in as_completed(futures):
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    if todo:
        print(f"skycompile: uploaded {len(todo)} file(s) in {time.monotonic() - start:.1f}s",
              file=out)
    return {"uploaded": len(todo), "skipped": skipped, "bytes": size, "hashed": hashed}
