"""--stub: each node's full script travels through the task's bucket, and the output is a
small stub that fetches it.

The full script (the ordinary node script) is uploaded by apply to the task's managed
bucket under a content-addressed key, `skycompile/<state_id>/node-<K>-<sha256>.sh`: a
re-run never overwrites other bytes, and an unchanged script is not sent again. The stub
(templates/stub.sh.j2) installs the pinned rclone, downloads that object into
/var/lib/skycompile/<state_id>/full-node-<K>.sh, refuses it unless its SHA-256 is the one
compiled into the stub, and runs it with the stub's own arguments.

The `skycompile/` prefix of a bucket belongs to these objects: local sources never travel
there (workdir/ and file_mounts/ are their prefixes), an upload that would put a file
there is refused, and `--delete` never removes anything under it (an older stub that a
running launcher still hands out may need its script).
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass

from .manifest import FileEntry, fingerprint
from .stores import BucketRef

PREFIX = "skycompile"


@dataclass(frozen=True)
class StubObject:
    """One node's full script, as uploaded for its stub."""

    node: int
    store: str
    bucket: str
    endpoint: str  # with store and bucket: the bucket apply ensures (its client's key)
    key: str
    uri: str  # store URI of the object, as the stub's header names it
    sha256: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


def object_key(state_id: str, node: int, sha256: str) -> str:
    return f"{PREFIX}/{state_id}/node-{node}-{sha256}.sh"


def reserved(key: str) -> bool:
    """Whether an object key lies in the part of a bucket that --stub's scripts own."""
    return key == PREFIX or key.startswith(PREFIX + "/")


def objects(plan, state_id: str, scripts: list[str]) -> tuple[StubObject, ...]:
    """The objects that carry `scripts` (node 0 first) to the nodes of `plan`'s task."""
    st = plan.task.stub
    out = []
    for node, script in enumerate(scripts):
        data = script.encode()
        sha = hashlib.sha256(data).hexdigest()
        key = object_key(state_id, node, sha)
        ref = BucketRef(st.bucket.store, st.bucket.bucket, key, st.bucket.region,
                        st.bucket.account)
        out.append(StubObject(node, st.bucket.store, st.bucket.bucket, st.endpoint, key,
                              ref.uri, sha, data))
    return tuple(out)


def upload(client, items: list[StubObject], *, quiet: bool, out=None) -> dict:
    """Put each object into the bucket of `client` unless it is there already with the
    same size and content hash (an object changed in the bucket is put back). Returns
    counts as apply's: uploaded, skipped, bytes, deleted."""
    out = out or sys.stderr
    counts = {"uploaded": 0, "skipped": 0, "bytes": 0, "deleted": 0}
    with tempfile.TemporaryDirectory(prefix="skycompile-stub-") as tmp:
        for obj in items:
            path = os.path.join(tmp, f"node-{obj.node}.sh")
            with open(path, "wb") as fh:
                fh.write(obj.data)
            etags, sha = fingerprint(path, obj.size)
            have = client.listing(obj.key).get(obj.key)
            if have and have[0] == obj.size and have[1] and have[1] in etags.split():
                counts["skipped"] += 1
                if not quiet:
                    print(f"skycompile: {obj.uri}: node {obj.node}'s script is up to date",
                          file=out)
                continue
            client.put(obj.key, FileEntry(obj.key, path, obj.size, sha, etags))
            counts["uploaded"] += 1
            counts["bytes"] += obj.size
            if not quiet:
                print(f"skycompile: uploaded node {obj.node}'s script ({obj.size:,} bytes) to "
                      f"{obj.uri}", file=out)
    return counts
