"""`skycompile storage ls` and `skycompile storage delete`: the buckets skycompile created,
as the state file records them (like `sky storage ls` / `sky storage delete`).

Only buckets in the state file can be deleted; a bucket skycompile did not create is never
emptied or deleted, whatever its name.
"""
from __future__ import annotations

import json
import sys
import time

from . import stores
from .errors import ApplyError, UsageError
from .state import BucketRecord, State

COLUMNS = ("NAME", "CREATED", "STORE", "COMMAND", "STATUS", "PERSISTENT")


def _row(r: BucketRecord) -> tuple[str, ...]:
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
    store = r.store + (f" ({r.endpoint})" if r.endpoint else "")
    return (r.name, created, store, r.command, r.status, "yes" if r.persistent else "no")


def ls(state: State, *, as_json: bool = False, out=None) -> None:
    out = out or sys.stdout
    records = state.buckets()
    if as_json:
        json.dump([{"name": r.name, "created": r.created, "store": r.store,
                    "endpoint": r.endpoint, "region": r.region, "account": r.account,
                    "command": r.command, "status": r.status, "persistent": r.persistent}
                   for r in records], out, indent=2)
        out.write("\n")
        return
    if not records:
        print(f"No buckets created by skycompile (state: {state.path}).", file=out)
        return
    rows = [COLUMNS] + [_row(r) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]
        print("  ".join(cells).rstrip(), file=out)


def select(state: State, names: list[str], *, everything: bool, ephemeral: bool) -> list[BucketRecord]:
    records = state.buckets()
    if everything:
        return records
    chosen = [r for r in records if ephemeral and not r.persistent]
    unknown = []
    for name in names:
        found = [r for r in records if r.name == name]
        if not found:
            unknown.append(name)
        chosen += [r for r in found if r not in chosen]
    if unknown:
        raise UsageError(
            f"not created by skycompile (not in {state.path}): {', '.join(unknown)}; "
            f"`skycompile storage ls` lists the buckets it may delete. skycompile never "
            f"deletes a bucket it did not create: use your cloud's own tools for those")
    return chosen


def delete(state: State, records: list[BucketRecord], *, out=None) -> list[str]:
    """Empty and delete each bucket, then forget it. Returns the failures (one line
    each); the others are still deleted."""
    out = out or sys.stderr
    failures = []
    for r in records:
        label = f"{r.store} bucket {r.name}" + (f" at {r.endpoint}" if r.endpoint else "")
        try:
            client = stores.bucket_client(r.store, r.name, endpoint=r.endpoint,
                                          region=r.region, account=r.account)
            if client is None:
                raise ApplyError(f"deleting {r.store} buckets is not supported yet")
            if client.exists():
                client.destroy()
                print(f"skycompile: deleted {label}", file=out)
            else:
                print(f"skycompile: {label} no longer exists; forgetting it", file=out)
            state.forget_bucket(r.store, r.endpoint, r.name)
        except ApplyError as e:
            failures.append(str(e))
    return failures
