"""Resolution primitives shared by normalization: the problem-collecting context, `$VAR`
substitution, node destinations, local sources, the default store and endpoints.

Reads the local file system only to classify local sources (exists? file or dir?);
never the network. Every problem is recorded with its location and work goes on, so
the user sees all of them at once.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import stores
from .errors import Problem
from .ir import CACHED_DIR_CACHE_TIME, LocalSource, Mode, MountConfig, NodePath
from .load import Document
from .options import Options

NAME_MAX, PATH_MAX = 255, 4000  # Linux: bytes per path component; a whole path (4096, less
# room for the home directory a `~/` destination goes under)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")

@dataclass
class Ctx:
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
        the entry is skipped (`Skip`) so that it causes no follow-on problems."""
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
            raise Skip()
        return text


class Skip(Exception):
    """This entry already has a problem; skip the rest of it."""


def slug(text: str, limit: int = 40) -> str:
    """A name safe in bucket names and node paths: [a-z0-9-], at most `limit` characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def env_value(value: object) -> str | None:
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

def node_path(ctx: Ctx, raw: str, path: tuple) -> NodePath | None:
    """A file_mounts key -> NodePath: absolute, `~/...`, or relative (= under `~/`)."""
    text = ctx.sub(raw, path, key=True)
    if "\n" in text:  # (NUL never gets here: the loader refuses it in every value)
        ctx.error(path, "a destination path must not contain newline characters",
                  "Rename the destination.", key=True)
        return None
    too_long = [c for c in text.split("/") if len(c.encode()) > NAME_MAX]
    if too_long or len(text.encode()) > PATH_MAX:
        what = (f"its component {too_long[0][:40]!r}... is {len(too_long[0].encode())} bytes "
                f"long" if too_long else f"it is {len(text.encode())} bytes long")
        ctx.error(path, f"the destination cannot exist on Linux: {what}",
                  f"Shorten it (at most {NAME_MAX} bytes per component, {PATH_MAX} in all).",
                  key=True)
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


def local_source(ctx: Ctx, raw: str, path: tuple, *, missing_fix: str = _MISSING_FIX,
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
class DefaultStore:
    store: stores.Store
    region: str
    rule: str


def default_store(ctx: Ctx, resources: dict) -> DefaultStore:
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
        return DefaultStore(store, region, f"resources {'cloud' if resources.get('cloud') else 'infra'} "
                             f"{cloud!r} -> {store.name}")
    if ctx.opts.store:
        return DefaultStore(stores.get(ctx.opts.store), "", f"--store {ctx.opts.store}")
    why = f" (resources name {cloud!r}, which has no object store of its own)" if cloud else ""
    return DefaultStore(stores.get("s3"), "", f"default s3{why}")


def endpoint_for(ctx: Ctx, store: stores.Store, config: dict, path: tuple) -> str:
    if config.get("endpoint_url"):
        if not store.s3_family:
            ctx.error(path + ("config", "endpoint_url"),
                      f"endpoint_url applies to S3-compatible stores, not {store.name}",
                      "Remove it, or use store: s3 for an S3-compatible server.")
            return ""
        return config["endpoint_url"].rstrip("/")
    if store.s3_family and ctx.opts.endpoint_url:
        return ctx.opts.endpoint_url.rstrip("/")
    emulator = store.emulator
    value = dict(ctx.opts.store_env).get(emulator.env, "") if emulator else ""
    if value:
        try:
            endpoint = emulator.endpoint(value)
        except ValueError as e:
            ctx.flag_error(emulator.env, str(e), emulator.fix)
            return ""
        note = emulator.using.format(endpoint=endpoint) if endpoint else emulator.ignored
        if note not in ctx.notes:
            ctx.notes.append(note)
        return endpoint
    if store.needs_endpoint:
        ctx.error(path, f"an {store.name} storage needs the account endpoint",
                  f"Set config.endpoint_url: {store.needs_endpoint} or pass --endpoint-url.")
    return ""



def with_account(ctx: Ctx, st):
    """`st` with its bucket's account filled in from the store's account variable (OCI:
    OCI_NAMESPACE) when the URI cannot carry one. Without it the script still compiles (the
    node may set RCLONE_OOS_NAMESPACE), but apply refuses to create or fill the bucket."""
    store = stores.get(st.bucket.store)
    if not store.account_env or st.bucket.account:
        return st
    value = dict(ctx.opts.store_env).get(store.account_env, "")
    if value and not re.fullmatch(store.account_pattern, value):
        ctx.flag_error(store.account_env, f"{store.account_env}={value!r} is not a valid "
                       f"{store.name} namespace", "Set it to what `oci os ns get` prints.")
        return st
    if not value:
        note = (f"{store.name}: {store.account_env} is not set, so the scripts do not name the "
                f"namespace; set it (`oci os ns get` prints it), or set RCLONE_OOS_NAMESPACE "
                f"on the nodes")
        if note not in ctx.notes:
            ctx.notes.append(note)
        return st
    return replace(st, bucket=replace(st.bucket, account=value))

# Parallel transfers for COPY (rclone's default of 4 leaves bandwidth unused on many
# small files; the node-COPY benchmark tunes this number).
COPY_TRANSFERS = 16


def mount_config(config: dict, mode: Mode) -> MountConfig:
    cached = config.get("mount_cached") or {}
    mount = config.get("mount") or {}
    base = MountConfig()
    transfers = cached.get("transfers", base.transfers)
    if cached.get("sequential_upload") is False and "transfers" not in cached:
        transfers = 4
    return MountConfig(
        transfers=transfers if mode is Mode.MOUNT_CACHED else
        COPY_TRANSFERS if mode is Mode.COPY else base.transfers,
        cache_size=str(cached.get("cache_size", "")),
        write_back=str(cached.get("write_back", "")),
        drain_timeout=_duration_seconds(cached["drain_timeout"]) if "drain_timeout" in cached
        else base.drain_timeout,
        dir_cache_time=str(mount.get("dir_cache_time", CACHED_DIR_CACHE_TIME
                                     if mode is Mode.MOUNT_CACHED else base.dir_cache_time)),
    )


