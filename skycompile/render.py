"""Render phase: Plan -> one bash script per node, byte-stable.

One Jinja environment, `StrictUndefined`, and one quoting filter `q` through which every
value from the task reaches bash. The context is built from the plan alone: no clock,
no randomness, no machine facts.
"""
from __future__ import annotations

import os
from functools import lru_cache

import jinja2

from . import __version__, resources
from .ir import GitWorkdir
from .plan import NodeMount, Plan, embeds_keys, remotes as node_remotes

# Pinned rclone for the nodes. Checksums of the official release archives, the lines
# rclone-v1.75.2-linux-{amd64,arm64}.zip of https://downloads.rclone.org/v1.75.2/SHA256SUMS.
# This machine cannot reach that file, so each value is taken from independent public pins
# that quote it, and they agree:
#   amd64: Chromebrew's rclone 1.75.2 package (x86_64, from the GitHub release), a Dockerfile
#          and an installer script that both cite SHA256SUMS, a tool manifest pinning the
#          GitHub release URL (4 sources);
#   arm64: a Dockerfile citing SHA256SUMS, and an app's asset notice for the unmodified
#          GitHub release archive (2 sources).
# The e2e tests cannot check these bytes (no internet); they check the mechanism with a
# rebuilt archive and --rclone-sha256. Re-check both against SHA256SUMS when bumping.
RCLONE = {
    "version": "v1.75.2",
    "base_url": "https://downloads.rclone.org",
    "sha256": {
        "amd64": "349ac8fba6ff65d6247043f1750cdcb518ec5d500ef91463a10d37c0ccdf3702",
        "arm64": "7e1e8d69654941b7b7df84ee74c5f7fb09cce7d5496947fb7bf16b55ff427d10",
    },
    "sources": "SHA256SUMS of rclone v1.75.2 (downloads.rclone.org), as quoted by independent "
                "public pins (amd64: 4, arm64: 2; see skycompile/render.py)",
}


class RenderError(ValueError):
    pass


def rclone_pin(mirror: str = "", sha256: dict[str, str] | None = None) -> dict:
    """The rclone a node installs: the official archive, or the same layout on a mirror
    (https not required there, the checksum still is). A mirror that repackages the
    archive gives its own checksums per architecture."""
    if not mirror:
        return {**RCLONE, "https_only": True}
    sums = {**RCLONE["sha256"], **(sha256 or {})}
    given = sorted(sha256 or {})
    parts = [f"--rclone-sha256 for {', '.join(given)}"] if given else []
    if len(given) < len(sums):
        parts.append(f"{RCLONE['sources']} for the rest")
    sources = "; ".join(parts)
    return {**RCLONE, "base_url": mirror, "sha256": sums, "sources": sources,
            "https_only": False}


def q(value: object) -> str:
    """Quote any value as one bash word. The only way task values enter a script. A carriage
    return is written as $'\\r', so that no script holds one: editors that normalise line
    ends, git's autocrlf, and cloud-init's dos2unix (for a part whose first line ends in
    CRLF) would each change the value."""
    text = str(value)
    if "\x00" in text:
        raise RenderError("a value with a NUL byte cannot be put in a shell script")
    return "'" + text.replace("'", "'\"'\"'").replace("\r", "'$'\\r''") + "'"


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """The compiled templates, kept in the state directory: compiling them is a third of a
    dry run's time (BENCHMARKS.md). Keyed by each template's source checksum, so an edited
    template is compiled again. A cache that cannot be read or written costs only time."""

    def load_bytecode(self, bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, ValueError, EOFError, TypeError):
            bucket.reset()

    def dump_bytecode(self, bucket) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError:
            pass


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    from .state import state_dir
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.directory("templates"))),
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True,
        bytecode_cache=_BytecodeCache(str(state_dir() / "templates")),
    )
    env.filters["q"] = q
    return env


def _mount_ctx(m: NodeMount) -> dict:
    st = m.storage
    return {
        "remote": m.remote, "path": m.path,
        "dest_kind": "home" if st.dest.home else "abs", "dest": st.dest.path,
        "label": st.dest.display, "mode": st.mode.value, "object": st.object,
        "transfers": st.config.transfers, "cache_size": st.config.cache_size,
        "write_back": st.config.write_back, "drain_timeout": st.config.drain_timeout,
        "dir_cache_time": st.config.dir_cache_time,
    }


def context(plan: Plan, *, task_file: str, task_sha256: str, state_id: str, node_index: int,
            node_user: str = "", node_ips: tuple[str, ...] = (), rclone: dict | None = None,
            recompile: str = "") -> dict:
    """The template context of one node (its keys are the templates' whole vocabulary)."""
    t = plan.task
    remotes = node_remotes(plan)
    if isinstance(plan.workdir, NodeMount):
        workdir = {"kind": "copy", "remote": plan.workdir.remote, "path": plan.workdir.path}
    elif isinstance(plan.workdir, GitWorkdir):
        workdir = {"kind": "git", "url": plan.workdir.url, "ref": plan.workdir.ref}
    else:
        workdir = None
    return {
        "version": __version__, "task_file": task_file, "task_sha256": task_sha256,
        "task_name": t.name, "slug": state_id, "recompile": recompile,
        "sources": [{"label": u.label, "uri": u.target.uri, "manifest_sha256": u.manifest.sha256,
                     "files": u.manifest.files, "bytes": u.manifest.bytes} for u in plan.uploads],
        "node": {"index": node_index, "count": t.num_nodes},
        "rclone": rclone or rclone_pin(), "node_user": node_user, "node_ips": list(node_ips),
        "remotes": [{"name": m.remote, "settings": [list(kv) for kv in m.settings]} for m in remotes],
        "embedded_credentials": embeds_keys(plan),
        "mounts": [_mount_ctx(m) for m in plan.mounts],
        "workdir": workdir,
        "envs": [list(kv) for kv in t.envs],
        "runtime_envs": [{"name": n, "required": r} for n, r in t.runtime_envs],
        "setup": t.setup, "run": t.run,
        "stub": False,  # True: steps/helpers.sh.j2 leaves out the lock and path steps
    }


def render_node(ctx: dict) -> str:
    return environment().get_template("node.sh.j2").render(**ctx)


def has_mounts(plan: Plan) -> bool:
    """Whether the nodes FUSE-mount anything (what remount brings back after a reboot)."""
    return any(m.storage.mode.value != "COPY" for m in plan.mounts)


def render_boot_hook(plan: Plan, *, state_id: str, node_index: int) -> str:
    """cloud-init's per-boot part: runs the copy of the node script that up keeps in the
    node's state directory (the template's STATE_DIR/node.sh) with `remount`."""
    return environment().get_template("boot-hook.sh.j2").render(
        version=__version__, slug=state_id, self_copy=f"/var/lib/skycompile/{state_id}/node.sh",
        node={"index": node_index, "count": plan.task.num_nodes})


def render_stub(plan: Plan, obj, *, task_file: str, task_sha256: str, state_id: str,
                rclone: dict | None = None, recompile: str = "") -> str:
    """--stub: node `obj.node`'s output, which fetches its full script (`obj`, a
    stub.StubObject) from the task's bucket, checks its SHA-256 and runs it."""
    remote = plan.stub
    return environment().get_template("stub.sh.j2").render(
        version=__version__, task_file=task_file, task_sha256=task_sha256,
        task_name=plan.task.name, slug=state_id, recompile=recompile,
        node={"index": obj.node, "count": plan.task.num_nodes},
        rclone=rclone or rclone_pin(),
        remotes=[{"name": remote.remote, "settings": [list(kv) for kv in remote.settings]}],
        full={"uri": obj.uri, "remote": f"{remote.remote}:{remote.storage.bucket.bucket}/{obj.key}",
              "sha256": obj.sha256, "bytes": obj.size})


def render_all(plan: Plan, **kwargs) -> list[str]:
    """One script per node, node 0 first."""
    return [render_node(context(plan, node_index=i, **kwargs)) for i in range(plan.task.num_nodes)]
