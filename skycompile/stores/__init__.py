"""The store registry: one `Store` row per object store.

A row owns everything store-specific: URI scheme and parsing, bucket-name rules, which
`resources.cloud` / `infra` names select it, whether `--endpoint-url` applies, the rclone
backend settings the node scripts use, and (lazily, for `apply`) its local client. Adding
a store is adding a module here and one line to `_MODULES`; no other module lists stores.
"""
from __future__ import annotations

import importlib
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Protocol


class UriError(ValueError):
    """A URI that names this store but is malformed; the message says how to write it."""


@dataclass(frozen=True)
class BucketRef:
    """A bucket (container) plus an optional key prefix inside it."""

    store: str
    bucket: str
    prefix: str = ""  # no leading or trailing '/'
    region: str = ""  # when the URI carries one (cos://REGION/..., oci://B@REGION)
    account: str = ""  # the azure storage account; the OCI namespace

    @property
    def uri(self) -> str:
        return get(self.store).format_uri(self)


@dataclass(frozen=True)
class Emulator:
    """A local emulator of the store, named at compile time by the environment variable its
    own clients read. The endpoint it yields is the store's only source of an endpoint
    besides none, so `rclone_remote` may turn any endpoint into emulator settings."""

    env: str  # e.g. STORAGE_EMULATOR_HOST
    endpoint: Callable[[str], str]  # value -> base URL; "" if it names no emulator; ValueError
    fix: str  # what to set, for a malformed value
    using: str  # plan note, "{endpoint}" filled in
    ignored: str = ""  # plan note when the value names no emulator


@dataclass(frozen=True)
class Store:
    name: str  # the `store:` value, lower case
    schemes: tuple[str, ...]  # URI schemes this store owns ("s3", "gs", "https")
    clouds: tuple[str, ...]  # resources.cloud / infra names that default to this store
    s3_family: bool  # --endpoint-url / AWS_ENDPOINT_URL apply
    parse: Callable[[str], BucketRef]  # raises UriError
    format_uri: Callable[[BucketRef], str]
    bucket_name_problems: Callable[[str], list[str]]
    rclone_remote: Callable[[BucketRef, str], dict[str, str]]  # (ref, endpoint) -> settings
    uri_hint: str  # how a URI of this store is written, for messages
    # --embed-credentials: (environ, home) -> rclone settings replacing env_auth, read on the
    # compiling machine; raises credentials.MissingCredentials saying what to set. None: the
    # store has no keys to embed (its remote never uses env_auth).
    credentials: Callable[..., dict[str, str]] | None
    notes: tuple[str, ...] = field(default=())
    emulator: Emulator | None = None
    needs_endpoint: str = ""  # no default service: endpoint_url is required (an example URL)
    # the local-side client for apply and `storage`: "module:Class" in this package (a
    # BucketClient), imported only when used since it imports the store's SDK; "" = none
    client: str = ""
    # (file under $HOME, profile): where the store keeps its own AWS-style keys, read by the
    # local client (and --embed-credentials) when AWS_ACCESS_KEY_ID is not set
    key_file: tuple[str, str] | None = None
    # the environment variable naming the account of buckets whose URI has none (OCI:
    # OCI_NAMESPACE, the tenancy's namespace), and a regex its value must match
    account_env: str = ""
    account_pattern: str = ""


class BucketClient(Protocol):
    """One bucket as the apply phase and `skycompile storage` use it. Constructed as
    Class(store, name, endpoint, region, account); the SDK is imported by the constructor,
    which raises ApplyError naming the extra to install. Every method raises ApplyError
    saying what failed, on which bucket, and what to check."""

    where: str  # "s3 bucket NAME at ENDPOINT", for messages

    def exists(self) -> bool: ...
    def tagged_ours(self) -> bool: ...  # carries skycompile's tag/label (created by it)
    def create(self) -> None: ...  # in the region, with the tag/label
    def listing(self, prefix: str) -> dict[str, tuple[int, str]]:
        """key -> (size, content tag) of every object whose key is `prefix` or starts with
        `prefix/` (all objects for ""); the tag is compared with the
        `manifest.fingerprint` ETags (hex MD5, or S3's multipart form); "" if unknown."""
    def put(self, key: str, entry, progress=None) -> None:
        """Upload one `manifest.FileEntry` (path, size, sha256, etags) as `key`; `progress(n)`
        is called with bytes as they are sent. Never leaves a partial object (multipart
        uploads are aborted on failure)."""
    def put_many(self, items: list, progress=None, on_file=None) -> None:
        """Upload every (key, FileEntry) of `items`, `on_file()` after each; `put_each`,
        or a faster engine. On any failure or Ctrl-C, files not yet started never start."""
    def delete_keys(self, keys: list[str]) -> None: ...
    def destroy(self) -> None: ...  # delete every object, then the bucket itself


UPLOAD_THREADS = 32


def put_each(client, items: list, progress=None, on_file=None) -> None:
    """`client.put` of every (key, FileEntry), UPLOAD_THREADS at a time."""
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=UPLOAD_THREADS)
    try:
        futures = [pool.submit(client.put, key, entry, progress) for key, entry in items]
        for f in as_completed(futures):
            f.result()
            if on_file:
                on_file()
    except BaseException:
        # Ctrl-C or a failure: queued files never start, multipart uploads stop between
        # parts and abort; single PUTs in flight finish or fail whole (never partial).
        if hasattr(client, "cancelled"):
            client.cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


_MODULES = ("s3", "gcs", "azure", "r2", "ibm", "oci")
_REGISTRY: dict[str, Store] = {}


def _load() -> dict[str, Store]:
    if not _REGISTRY:
        for mod in _MODULES:
            store: Store = importlib.import_module(f"{__name__}.{mod}").STORE
            _REGISTRY[store.name] = store
    return _REGISTRY


def all_stores() -> list[Store]:
    return list(_load().values())


def store_envs() -> list[str]:
    """The environment variables compilation reads for the stores: emulators, accounts."""
    return [v for s in _load().values()
            for v in (s.emulator.env if s.emulator else "", s.account_env) if v]


def names() -> list[str]:
    return list(_load())


def bucket_client(store: str, name: str, *, endpoint: str = "", region: str = "",
                  account: str = "") -> BucketClient | None:
    """The store's local-side client for bucket `name`, or None when the store has none."""
    row = get(store)
    if not row.client:
        return None
    module, _, cls = row.client.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(
        row.name, name, endpoint, region, account)


def get(name: str) -> Store:
    return _load()[name.lower()]


def find(name: str) -> Store | None:
    return _load().get(name.lower()) if isinstance(name, str) else None


def for_cloud(cloud: str) -> Store | None:
    """The store whose cloud is `cloud` (`aws` -> s3), for storages without `store:`."""
    cloud = cloud.lower()
    for store in _load().values():
        if cloud in store.clouds:
            return store
    return None


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(value: str) -> str | None:
    """The URI scheme of `value`, or None for a local path."""
    m = _SCHEME.match(value)
    return m.group(1).lower() if m else None


def for_uri(uri: str) -> Store | None:
    scheme = scheme_of(uri)
    if scheme is None:
        return None
    for store in _load().values():
        if scheme in store.schemes and (scheme != "https" or ".blob.core.windows.net" in uri):
            return store
    return None


def parse_uri(uri: str) -> BucketRef:
    """Parse a cloud URI; UriError names the problem (unknown scheme included)."""
    store = for_uri(uri)
    if store is None:
        scheme = scheme_of(uri)
        known = ", ".join(f"{s.uri_hint}" for s in all_stores())
        raise UriError(f"{scheme}:// is not a supported store (supported: {known})")
    return store.parse(uri)


# --- helpers shared by the store modules --------------------------------------------

def split_bucket_path(uri: str, scheme: str) -> tuple[str, str]:
    """`s3://b/a/b/` -> ('b', 'a/b'). Raises UriError without a bucket."""
    rest = uri[len(scheme) + 3:]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise UriError(f"{uri!r} has no bucket name; write {scheme}://BUCKET[/PREFIX]")
    return bucket, prefix.strip("/")


def check_prefix(uri: str, prefix: str) -> None:
    if "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
        raise UriError(f"{uri!r} has an empty, '.' or '..' path segment")


def hyphen_name_problems(name: str) -> list[str]:
    """3..63 chars of [a-z0-9-], starting and ending with a letter or digit (R2, Azure)."""
    return dns_style_problems(name, dots=False)


def dns_style_problems(name: str, *, max_len: int = 63, dots: bool = True,
                       underscore: bool = False) -> list[str]:
    """Rules shared by the S3 family and GCS: 3..max_len chars of [a-z0-9.-] (and _ where
    allowed), starting and ending with a letter or digit, no '..', not an IP address."""
    problems = []
    allowed = "a-z0-9-" + ("." if dots else "") + ("_" if underscore else "")
    if not 3 <= len(name) <= max_len:
        problems.append(f"must be 3 to {max_len} characters long (it is {len(name)})")
    if re.search(f"[^{allowed}]", name):
        what = "lowercase letters, digits, hyphens" + (", dots" if dots else "") + \
            (", underscores" if underscore else "")
        problems.append(f"may contain only {what}")
    if name and not (name[0].isalnum() and name[-1].isalnum()):
        problems.append("must start and end with a lowercase letter or digit")
    if ".." in name:
        problems.append("must not contain '..'")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        problems.append("must not look like an IP address")
    return problems
