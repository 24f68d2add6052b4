"""Everything a compile depends on besides the task file, gathered in one value.

The CLI (or an API caller) builds `Options` once, from flags and the environment; the
pure phases read only this, never `os.environ`, the clock or the current directory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .userdata import Packaging


@dataclass(frozen=True)
class Options:
    cwd: Path  # relative local paths resolve here (as `sky launch` does)
    home: Path  # `~` in local paths
    user: str  # the local user; part of the default managed bucket name
    envs: tuple[tuple[str, str], ...] = ()  # --env KEY=VAL, in order
    workdir: str | None = None  # --workdir
    git_url: str | None = None  # --git-url
    git_ref: str | None = None  # --git-ref
    num_nodes: int | None = None  # --num-nodes
    store: str | None = None  # --store: default store when neither task nor resources say
    endpoint_url: str = ""  # --endpoint-url, else AWS_ENDPOINT_URL
    # (VAR, value) of the stores' variables that are set: emulators (STORAGE_EMULATOR_HOST,
    # ...), whose stores then use that emulator, and accounts (OCI_NAMESPACE). Not in repr:
    # a real connection string holds a key.
    store_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    managed_bucket: str | None = None  # --bucket: where local workdir/file_mounts travel
    node_user: str = ""  # --user: who runs setup/run on the node ("" = the caller)
    node_ips: tuple[str, ...] = ()  # --node-ips: SKYPILOT_NODE_IPS, node 0 first
    rclone_mirror: str = ""  # --rclone-mirror: base URL laid out like downloads.rclone.org
    rclone_sha256: tuple[tuple[str, str], ...] = ()  # --rclone-sha256 ARCH=HEX (mirror's own)
    # --embed-credentials: keys from this environment (and ~/.aws etc.) go into the scripts
    embed_credentials: bool = False
    credential_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    recompile: str = ""  # the command line to put in the header
    quiet: bool = False  # --quiet: no upload progress
    delete: bool = False  # --delete: remove remote objects under an upload's prefix that
    # no local file of the task accounts for
    packaging: Packaging = Packaging()  # --format, --gzip, --base64: each node's output
    target: str = ""  # --target: the cloud whose user-data budget every output must fit
    # --stub: upload each node's full script to the task's bucket; each output is a stub
    # that fetches it, checks its SHA-256 and runs it
    stub: bool = False
