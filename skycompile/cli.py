"""The command line: parse flags, call the library, map one error type to an exit code."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from . import __version__, api, load, output, storage, userdata
from .compiler import apply_plans, compile_file
from .errors import (EXIT_FAILURE, EXIT_OK, SkycompileError, TaskError,
                     UsageError)
from .manifest import Hasher
from .options import Options
from .plan import describe, embeds_keys
from .state import State
from .stores import names as store_names

DESCRIPTION = """\
Compile a SkyPilot-style task file into self-contained, idempotent bash bootstrap
scripts, one per node. Checks the whole file first (all problems at once, exit 2);
then ensures buckets and uploads local sources (the apply phase), then writes the scripts.
"""

EPILOG = """\
output layout:
  -o boot.sh     one node (num_nodes: 1)
  -o -           one node, to stdout
  -o DIR/        DIR/node-0.sh ... DIR/node-<N-1>.sh (a path ending in / or an existing dir)
  several tasks in one file (a pipeline): DIR/<i>-<task>/node-K.sh

exit codes: 0 ok; 1 --check found differences, or a runtime failure; 2 bad input.

the plan alone, for humans or machines (see `skycompile plan --help`):
  skycompile plan TASK.yaml [--json] [-o PATH] [the task flags above]

the buckets skycompile created (see `skycompile storage --help`):
  skycompile storage ls [--json]
  skycompile storage delete NAME... | --all | --ephemeral  [--yes]

examples:
  skycompile task.yaml -o boot.sh
  skycompile task.yaml --dry-run -o out/
  skycompile task.yaml -o out/ --check          # golden-output check for CI
  skycompile task.yaml -o boot.sh --env BUCKET=my-bucket --num-nodes 1
  skycompile task.yaml -o out/ --stub --format cloud-init --target aws  # a small user data
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skycompile", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", metavar="TASK.yaml", nargs="+",
                   help="the task file(s); with several, each gets DIR/<file stem>/")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="where to write the scripts: FILE, DIR/ or - (see output layout)")
    p.add_argument("--dry-run", action="store_true",
                   help="no network at all: print the plan (buckets, uploads, mounts per node, "
                        "notes) and still write the scripts to -o, the same bytes a real run writes")
    p.add_argument("--check", action="store_true",
                   help="render in memory and compare with the files at -o: exit 1 with a unified "
                        "diff when they differ, 0 when identical; never needs cloud credentials")
    _task_flags(p)
    p.add_argument("--target", choices=list(userdata.TARGETS),
                   help="refuse (exit 2, before any upload) when an output is over this cloud's "
                        "user-data budget: " + ", ".join(
                            f"{n} {b:,}" for n, b in userdata.TARGETS.items())
                        + " bytes, counted before base64")
    p.add_argument("--embed-credentials", action="store_true",
                   help="put the storage keys of this machine (AWS_*/~/.aws/credentials, "
                        "GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_KEY, R2's "
                        "~/.cloudflare/r2.credentials) into the scripts, for nodes without an "
                        "instance role; they land only in a 0600 file on the node, and the "
                        "scripts are written 0700. Anyone who can read the scripts or the "
                        "instance's user-data gets the keys")
    p.add_argument("--delete", action="store_true",
                   help="also remove objects under an upload's prefix (in skycompile's own "
                        "buckets) that no local file of the task matches any more; without it "
                        "nothing remote is ever deleted")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no upload progress (warnings and errors are still printed)")
    p.add_argument("--version", action="version", version=f"skycompile {__version__}")
    return p


def _task_flags(p: argparse.ArgumentParser) -> None:
    """The flags that change what a task compiles to (the compile and `plan` share them)."""
    p.add_argument("--format", choices=userdata.FORMATS, default="script",
                   help="script (default): the node script; cloud-init: a MIME multipart user-"
                        "data message whose per-instance part runs the script (up) and whose "
                        "per-boot part mounts the storage again after a reboot (remount)")
    p.add_argument("--gzip", action="store_true",
                   help="gzip each output (cloud-init unpacks gzip user data); about a quarter "
                        "of the size. Some platforms damage binary user data: add --base64")
    p.add_argument("--base64", action="store_true",
                   help="base64-encode each output (after --gzip), on one line, for APIs and "
                        "variables that want text")
    p.add_argument("--stub", action="store_true",
                   help="upload each node's full script to the task's bucket (--bucket, under "
                        "skycompile/<task>/) and write instead a small stub that downloads "
                        "it, checks its SHA-256 and runs it with the same arguments: for "
                        "user-data budgets. Not with --embed-credentials")
    p.add_argument("--env", action="append", default=[], metavar="KEY[=VAL]",
                   help="set or override an entry of `envs` (repeatable); KEY alone takes the "
                        "value from your environment")
    p.add_argument("--workdir", metavar="PATH", help="override `workdir` with a local directory")
    p.add_argument("--git-url", metavar="URL", help="override `workdir` with a git repository")
    p.add_argument("--git-ref", metavar="REF",
                   help="branch, tag or commit of the git workdir (overrides workdir.ref)")
    p.add_argument("--num-nodes", type=int, metavar="N", help="override `num_nodes`")
    p.add_argument("--store", choices=store_names(), type=str.lower,
                   help="store for storages without `store:` when resources name no cloud with "
                        "a store of its own (default: s3)")
    p.add_argument("--endpoint-url", metavar="URL",
                   help="S3-compatible endpoint for every S3-family storage that sets no "
                        "config.endpoint_url (default: $AWS_ENDPOINT_URL); baked into the scripts")
    p.add_argument("--bucket", metavar="NAME",
                   help="bucket that carries the local workdir and local file_mounts (and with "
                        "--stub the node scripts) to the nodes "
                        "(default: skycompile-<user>-<task name>; user from $SKYCOMPILE_USER or "
                        "your login name)")
    p.add_argument("--user", "--node-user", dest="node_user", metavar="USER", default="",
                   help="run setup and run as USER on the node; `~` means USER's home and what "
                        "the script creates there belongs to USER (default: the user that runs "
                        "the script, root under cloud-init)")
    p.add_argument("--node-ips", metavar="IP,IP,...",
                   help="SKYPILOT_NODE_IPS for setup and run, node 0 first, one per node "
                        "(default: $SKYPILOT_NODE_IPS on the node; a single node uses its own "
                        "address)")
    p.add_argument("--rclone-mirror", metavar="URL",
                   help="install rclone on the nodes from URL/VERSION/rclone-VERSION-linux-ARCH.zip "
                        "(a copy of downloads.rclone.org for air-gapped nodes; http and file:// "
                        "allowed, the SHA-256 is still checked)")
    p.add_argument("--rclone-sha256", action="append", default=[], metavar="ARCH=HEX",
                   help="the mirror's own SHA-256 of the archive for ARCH (amd64, arm64) when "
                        "it is not the official one (repeatable; needs --rclone-mirror)")


STORAGE_DESCRIPTION = """\
The buckets skycompile created, as its state file records them (the user state directory,
or $SKYCOMPILE_STATE_DIR). Only those can be deleted: skycompile never empties or deletes
a bucket it did not create.
"""


def storage_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skycompile storage", description=STORAGE_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True, metavar="{ls,delete}")
    ls = sub.add_parser("ls", help="list the buckets: NAME, CREATED, STORE, COMMAND, STATUS "
                                   "(INIT, UPLOAD_FAILED, READY), PERSISTENT")
    ls.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    rm = sub.add_parser("delete", help="empty and delete buckets skycompile created")
    rm.add_argument("names", nargs="*", metavar="NAME", help="bucket name(s) from `storage ls`")
    rm.add_argument("-a", "--all", action="store_true", help="every bucket in `storage ls`")
    rm.add_argument("--ephemeral", action="store_true",
                    help="every bucket of a storage with `persistent: false`")
    rm.add_argument("-y", "--yes", action="store_true",
                    help="do not ask for confirmation (needed when stdin is not a terminal)")
    return p


def run_storage(argv: list[str]) -> int:
    args = storage_parser().parse_args(argv)
    state = State()
    if args.action == "ls":
        storage.ls(state, as_json=args.json)
        return EXIT_OK
    if not (args.names or args.all or args.ephemeral):
        raise UsageError("storage delete: name the buckets, or pass --all or --ephemeral")
    records = storage.select(state, args.names, everything=args.all, ephemeral=args.ephemeral)
    if not records:
        print("skycompile: no bucket to delete", file=sys.stderr)
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("storage delete asks for confirmation on a terminal; pass --yes "
                             "to delete without asking")
        for r in records:
            print(f"  {r.store} bucket {r.name}" + (f" at {r.endpoint}" if r.endpoint else ""),
                  file=sys.stderr)
        answer = input(f"Empty and delete these {len(records)} bucket(s), with every object "
                       f"in them? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("skycompile: nothing deleted", file=sys.stderr)
            return EXIT_FAILURE
    failures = storage.delete(state, records)
    for line in failures:
        print(f"skycompile: error: {line}", file=sys.stderr)
    return EXIT_FAILURE if failures else EXIT_OK


def _shown(path: str) -> str:
    """A path for the script header: relative paths as given, absolute ones by name, so the
    header does not depend on where the compile ran."""
    return path if not os.path.isabs(path) else Path(path).name or path


def recompile_line(args: argparse.Namespace) -> str:
    words = ["skycompile", *map(_shown, args.tasks)]
    for flag, value in (("--workdir", args.workdir), ("--git-url", args.git_url),
                        ("--git-ref", args.git_ref), ("--num-nodes", args.num_nodes),
                        ("--store", args.store), ("--endpoint-url", args.endpoint_url),
                        ("--bucket", args.bucket), ("--user", args.node_user or None),
                        ("--node-ips", args.node_ips), ("--rclone-mirror", args.rclone_mirror)):
        if value is not None:
            words += [flag, str(value)]
    for item in args.env:
        words += ["--env", item.partition("=")[0] + ("=..." if "=" in item else "")]
    for item in args.rclone_sha256:
        words += ["--rclone-sha256", item]
    if args.format != "script":
        words += ["--format", args.format]
    words += ["--gzip"] * args.gzip + ["--base64"] * args.base64 + ["--stub"] * args.stub
    if args.embed_credentials:
        words.append("--embed-credentials")
    if args.output:
        words += ["-o", _shown(args.output)]
    return " ".join(shlex.quote(w) for w in words)


def options(args: argparse.Namespace) -> Options:
    """The flags, as `api.make_options` checks them."""
    env: dict[str, str | None] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        env.pop(key, None)  # the last --env of a key wins, in the order given
        env[key] = value if sep else None
    digests = {}
    for item in args.rclone_sha256:
        arch, _, digest = item.partition("=")
        if arch in digests:  # else a bad first value would hide behind a good second one
            raise UsageError(f"--rclone-sha256 {arch}=... is given twice; give each "
                             f"architecture once")
        digests[arch] = digest
    return api.make_options(
        env=env, workdir=args.workdir, git_url=args.git_url, git_ref=args.git_ref,
        num_nodes=args.num_nodes, store=args.store, endpoint_url=args.endpoint_url,
        bucket=args.bucket, node_user=args.node_user,
        node_ips=[ip.strip() for ip in args.node_ips.split(",")]
        if args.node_ips is not None else (),
        rclone_mirror=args.rclone_mirror, rclone_sha256=digests,
        embed_credentials=args.embed_credentials, delete=args.delete, quiet=args.quiet,
        format=args.format, gzip=args.gzip, base64=args.base64, target=args.target,
        stub=args.stub, recompile=recompile_line(args))


PLAN_DESCRIPTION = """The plan of a task file, without touching any cloud: the buckets to create or use, the
uploads with their file counts and sizes, what every node does, and the size of each node
script (raw and gzip-compressed) against each cloud's user-data budget. The same checks as
a compile run first (exit 2 with every problem).
"""

PLAN_EPILOG = "user-data budgets (bytes, before base64): " + ", ".join(
    f"{name} {budget:,}" for name, budget in userdata.TARGETS.items()) + "\n"


def plan_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skycompile plan", description=PLAN_DESCRIPTION,
                                epilog=PLAN_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tasks", metavar="TASK.yaml", nargs=1, help="the task file")
    p.add_argument("--json", action="store_true",
                   help="print the plan as JSON (README: `skycompile plan --json`)")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="the -o of the compile this plan is for: the script headers repeat "
                        "the command line (so it counts in their sizes) and the plan names "
                        "the files; nothing is written")
    _task_flags(p)
    # a plan never embeds keys, and shows the sizes against every target instead of failing
    p.set_defaults(embed_credentials=False, delete=False, quiet=True, target=None)
    return p


def run_plan(argv: list[str]) -> int:
    args = plan_parser().parse_args(argv)
    opts = options(args)
    state = State()
    try:
        hasher = Hasher(state)
        compiled = compile_file(args.tasks[0], opts, hasher)
        api.save_hashes(hasher, required=False)
    finally:
        state.close()
    files = [(args.tasks[0], compiled)]
    pairs = output.targets(files, args.output, opts.packaging.suffix()) if args.output else []
    if args.json:
        found = api.plan_json(compiled)
        for task, shown in zip(found["tasks"], compiled.tasks):
            paths = [t.path for t in pairs if t.task is shown]
            for node, path in zip(task["nodes"], paths or [None] * len(task["nodes"])):
                node["path"] = path
        json.dump(found, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    for t in compiled.tasks:
        if len(compiled.tasks) > 1:
            sys.stdout.write(f"== task {t.subdir}\n")
        sys.stdout.write(describe(t.plan, [p.path for p in pairs if p.task is t],
                                  t.stub_objects))
        sys.stdout.write(_sizes_table(t.outputs, opts.packaging))
    return EXIT_OK


def _sizes_table(outputs: tuple[bytes, ...], how: userdata.Packaging) -> str:
    names = list(userdata.TARGETS)
    lines = [f"user-data size of node-K{how.suffix()} (bytes, before base64; fits = as it is, "
             f"gz = only gzip-compressed, NO = neither):",
             f"  {'node':<6} {'bytes':>9} {'gzip':>9}  " + "  ".join(f"{n:>9}" for n in names)]
    for i, data in enumerate(outputs):
        size = userdata.sizes(data, how)
        marks = ["fits" if v["fits"] else "gz" if v["fits_gzipped"] else "NO"
                 for v in size["targets"].values()]
        lines.append(f"  {i:<6} {size['payload_bytes']:>9,} {size['gzip_bytes']:>9,}  "
                     + "  ".join(f"{m:>9}" for m in marks))
    return "\n".join(lines) + "\n"


def run(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for arg in argv:
        if "\x00" in arg:  # only an API caller can pass one: a real command line cannot
            raise UsageError(f"{arg!r}: an argument cannot contain a NUL character")
        if load.SURROGATE.search(arg):  # bytes that are not UTF-8, as Python decodes them
            raise UsageError(f"{arg!r}: an argument must be UTF-8 text (the scripts are UTF-8, "
                             f"and their header repeats the command line); rename the file "
                             f"or fix the value")
    if argv[:1] == ["storage"]:
        return run_storage(argv[1:])
    if argv[:1] == ["plan"]:
        return run_plan(argv[1:])
    p = parser()
    args = p.parse_args(argv)
    for name, value in vars(args).items():  # argparse (< 3.12) turns `--opt=--` into []
        if value == [] and p.get_default(name) != [] or isinstance(value, list) and [] in value:
            raise UsageError("`--` cannot be an option's value")
    if args.check and not args.output:
        raise UsageError("--check compares with existing files: pass -o PATH")
    if not args.output and not args.dry_run:
        raise UsageError("pass -o FILE, -o DIR/ or -o - (or --dry-run to only print the plan)")
    if args.check and args.output == "-":
        raise UsageError("--check needs files to compare with, not -o -")
    if args.delete and (args.dry_run or args.check):
        raise UsageError("--delete acts on buckets: it cannot go with --dry-run or --check")
    opts = options(args)
    state = State()
    hasher = Hasher(state)
    files = compile_all(args.tasks, opts, hasher)
    # Every check, the output layout included, passes before apply may touch a cloud (or
    # the state file).
    pairs = output.targets(files, args.output, opts.packaging.suffix()) if args.output else []
    api.save_hashes(hasher, required=not (args.check or args.dry_run))
    if args.check:
        diff = output.check(pairs)
        if diff:
            sys.stdout.write(diff)
            print(f"skycompile: {args.output} is out of date; re-run without --check to update",
                  file=sys.stderr)
            return EXIT_FAILURE
        print(f"skycompile: {len(pairs)} script(s) up to date", file=sys.stderr)
        return EXIT_OK
    if args.dry_run:
        plan_out = sys.stderr if args.output == "-" else sys.stdout
        for name, compiled in files:
            if len(files) > 1:
                plan_out.write(f"== {name}\n")
            for t in compiled.tasks:
                shown = [p.path for p in pairs if p.task is t and p.path != "-"]
                plan_out.write(describe(t.plan, shown, t.stub_objects))
    else:
        for _, compiled in files:
            apply_plans(compiled, opts, state)
    embedded = any(embeds_keys(t.plan) for _, compiled in files for t in compiled.tasks)
    if opts.embed_credentials:
        if embedded:
            print("skycompile: warning: --embed-credentials: storage keys are in the scripts; "
                  "anyone who can read them, or the instance's user-data, has the keys",
                  file=sys.stderr)
        else:
            print("skycompile: note: --embed-credentials: nothing embedded; no store of this "
                  "task takes keys from this machine (OCI nodes use their instance principal)",
                  file=sys.stderr)
    if opts.packaging.gzip and not opts.packaging.base64:
        print("skycompile: note: --gzip output is binary; some platforms and copy-paste damage "
              "binary user data: hand it over as a file (fileb://, filebase64) or add --base64",
              file=sys.stderr)
    for target in pairs:
        if target.path == "-":
            sys.stdout.flush()
            sys.stdout.buffer.write(target.data)
            sys.stdout.buffer.flush()
    output.write_all([(t.path, t.data) for t in pairs if t.path != "-"],
                     mode=0o700 if embedded else 0o755)
    return EXIT_OK


def compile_all(names: list[str], opts: Options, hasher: Hasher | None = None) -> list:
    """Compile every task file; all their problems are reported together."""
    files, errors = [], []
    for name in names:
        try:
            files.append((name, compile_file(name, opts, hasher)))
        except TaskError as e:
            errors.append(e)
    if errors:
        raise errors[0] if len(errors) == 1 else _MultiFileError(errors)
    return files


class _MultiFileError(TaskError):
    def __init__(self, errors: list[TaskError]):
        SkycompileError.__init__(self, "\n".join(str(e) for e in errors))
        self.problems = [p for e in errors for p in e.problems]

def main(argv: list[str] | None = None) -> int:
    try:
        code = run(argv)
    except SkycompileError as e:
        print(str(e) if isinstance(e, TaskError) else f"skycompile: error: {e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = EXIT_FAILURE
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
