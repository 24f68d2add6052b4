"""Invalid input: a table of (task, exact error output) run through the real CLI.

Every case must exit 2, print exactly `expected` on stderr (no traceback), print nothing
on stdout, and write nothing: no `-o` target, no state, no cache, in dry-run and real mode
alike. A case whose message is wrong today carries `bug` (the message we believe is right
stays in `expected`) and is `xfail(strict=True)`, so fixing the tool flips it to a failure
that asks for the marker to be removed.

`{tmp}` in `expected` stands for the directory the task runs in.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import skycompile
from skycompile.cli import main


class Special:
    """A fixture entry that is not a regular file."""

    def __init__(self, kind: str):
        self.kind = kind


DIR = Special("dir")
FIFO = Special("fifo")
SOCKET = Special("socket")


class Locked(Special):
    """A file (text) or directory (None) with mode 000: unreadable once the run has no
    CAP_DAC_OVERRIDE (cases with `locked` run that way, as any non-root user runs)."""

    def __init__(self, text: str | None = None):
        super().__init__("locked")
        self.text = text

DRY = ["-o", "out/", "--dry-run"]


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, str | bytes | Special]
    argv: list[str]
    expected: str
    bug: str = ""  # known tool bug: test_error_output is xfail(strict)
    bug_written: str = ""  # known tool bug that also breaks test_nothing_written
    max_seconds: float = 0.0  # when set: the whole run must fail within this time
    # run as a process without CAP_DAC_OVERRIDE (setpriv), so that mode 000 files are
    # unreadable even to root
    locked: bool = False


def case(id: str, text: str | bytes, expected: str, *, argv=None, files=None, **kw) -> Case:
    """A case whose task is `task.yaml` (plus `files`), run as `task.yaml ARGV` (default
    `-o out/ --dry-run`)."""
    files = {"task.yaml": text, **(files or {})}
    return Case(id, files, ["task.yaml", *(DRY if argv is None else argv)], expected, **kw)


ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([prev] * 9)}]\n"
    for name, prev in zip("abcdefghi", ['"lol"'] + [f"*{c}" for c in "abcdefgh"]))
DEEP_LISTS = "run: " + "[" * 200 + "]" * 200 + "\n"
DEEP_MAPPINGS = "run: " + "{a: " * 200 + "x" + "}" * 200 + "\n"
VERY_DEEP_LISTS = "run: " + "[" * 2000 + "]" * 2000 + "\n"

STORES = ("s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX], "
          "https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX], r2://BUCKET[/PREFIX], "
          "cos://REGION/BUCKET[/PREFIX], oci://BUCKET[@REGION][/PREFIX]")
MISSING_FIX = ("Create it, fix the path (relative paths start at the current directory), "
               "or use a bucket URI.")
ACCEPTED = "the tool accepts the task: exit 0 and out/node-0.sh is written"
ONE_FILE = ("skycompile: error: -o out.sh names one file, but the task needs 2 scripts "
            "(num_nodes: 2); pass a directory: -o out/")


TOO_BIG = ("task.yaml:1:1: the file is {} bytes; task files are limited to 2097152 bytes. "
           "Move data into file_mounts instead of the task file.")
NOT_UTF8 = ("task.yaml:1:1: the file is UTF-{0}, not UTF-8. Save the task file as UTF-8 "
            "(iconv -f UTF-{0} -t UTF-8).")
NUL_VALUE = ("the value contains a NUL character, which no shell script can hold. Remove the "
             "\\0 escape.")
BAD_REF = ("Use a branch, tag or commit as git names it (`git check-ref-format --branch NAME` "
           "checks one); leave the ref out for the default branch.")
NOT_REGULAR = ("is not a regular file or directory. Point it at a file or a directory (not a "
               "socket, FIFO or device).")
UNREADABLE_FIX = "Fix its permissions, or exclude it in .skyignore (or .gitignore)."


def storage(body: str, key: str = "/data") -> str:
    """`file_mounts:` with one storage mapping; `body` is its fields, one per line."""
    return f"file_mounts:\n  {key}:\n" + "".join(f"    {ln}\n" for ln in body.splitlines())


CASES = [
    # --- load: bytes and YAML --------------------------------------------------------
    case("yaml-unclosed-flow", "run: [a\n",
         "task.yaml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'. "
         "Fix the YAML syntax at this position."),
    case("yaml-mapping-in-scalar", "run: echo\n  bad: x\n",
         "task.yaml:2:6: invalid YAML: mapping values are not allowed here. "
         "Fix the YAML syntax at this position."),
    case("yaml-tab-indent", "run: x\nfile_mounts:\n\t/a: s3://b\n",
         "task.yaml:3:1: invalid YAML: found character '\\t' that cannot start any token. "
         "Fix the YAML syntax at this position."),
    case("not-utf8", b"name: a\nrun: echo \xff\xfe\n",
         "task.yaml:2:11: the file is not valid UTF-8. Save the task file as UTF-8."),
    case("nul-byte", b"run: echo\n\x00\n",
         "task.yaml:2:1: the file contains a NUL byte (binary file?). Pass a YAML task file."),
    case("nul-byte-mid-line", b"run: echo \x00x\n",
         "task.yaml:1:11: the file contains a NUL byte (binary file?). Pass a YAML task file."),
    case("empty-file", "",
         "task.yaml:1:1: the task file is empty. Add at least a `run:` command or `file_mounts:`."),
    case("comment-only", "# just a comment\n   # another\n\n",
         "task.yaml:1:1: the task file is empty. Add at least a `run:` command or `file_mounts:`."),
    case("file-too-big", "run: " + "x" * (3 * 1024 * 1024) + "\n", TOO_BIG.format(3145734)),
    case("alias-bomb", ALIAS_BOMB,
         "task.yaml:1:43: the document expands to more than 50000 values (YAML alias bomb?). "
         "Remove the nested aliases.", max_seconds=1.0),
    case("deep-lists", DEEP_LISTS,
         "task.yaml:1:69: values are nested more than 64 levels deep. Flatten the structure."),
    case("deep-mappings", DEEP_MAPPINGS,
         "task.yaml:1:258: values are nested more than 64 levels deep. Flatten the structure."),
    case("deep-lists-2000", VERY_DEEP_LISTS,
         "task.yaml:1:69: values are nested more than 64 levels deep. Flatten the structure."),
    case("duplicate-top-level-key", "run: a\nname: x\nrun: b\n",
         "task.yaml:3:1: run: duplicate key 'run' (first defined at line 1). "
         "Remove one of the two entries."),
    case("duplicate-file-mounts-key",
         "file_mounts:\n  /a: s3://bkt\n  /b: s3://bkt2\n  /a: s3://bkt3\n",
         "task.yaml:4:3: file_mounts./a: duplicate key '/a' (first defined at line 2). "
         "Remove one of the two entries."),
    case("complex-mapping-key", "? [a]\n: b\n",
         "task.yaml:1:3: a mapping key must be a plain string. Quote the key."),
    case("custom-tag-on-scalar", "run: !custom x\n",
         "task.yaml:1:6: run: unsupported YAML tag !custom. Remove the tag."),
    case("python-tag", "run: !!python/object:os.system echo\n",
         "task.yaml:1:6: run: unsupported YAML tag !!python/object:os.system. Remove the tag."),
    case("custom-tag-on-mapping", "envs: !custom {A: b}\nrun: x\n",
         "task.yaml:1:7: envs: unsupported YAML tag !custom. Remove the tag."),

    # --- schema: shapes and types ---------------------------------------------------
    case("top-level-list", "- run: a\n",
         "task.yaml:1:1: a task must be a mapping of fields, not a list. "
         "Start the file with fields such as `run:` or `file_mounts:`."),
    case("top-level-scalar", "hello\n",
         "task.yaml:1:1: a task must be a mapping of fields, not a string. "
         "Start the file with fields such as `run:` or `file_mounts:`."),
    case("unknown-top-level-key", "fiel_mounts:\n  /a: s3://bkt\n",
         "task.yaml:1:1: fiel_mounts: unknown field 'fiel_mounts'. Did you mean 'file_mounts'?"),
    case("unknown-storage-key", storage("name: mybucket\nsotre: s3"),
         "task.yaml:4:5: file_mounts./data.sotre: unknown field 'sotre'. Did you mean 'store'?"),
    case("unknown-resources-key", "resources:\n  clod: aws\nrun: x\n",
         "task.yaml:2:3: resources.clod: unknown field 'clod'. Did you mean 'cloud'?"),
    case("num-nodes-string", "num_nodes: two\nrun: x\n",
         "task.yaml:1:12: num_nodes: must be an integer, not a string. "
         "Use a whole number such as 2."),
    case("num-nodes-zero", "num_nodes: 0\nrun: x\n",
         "task.yaml:1:12: num_nodes: must be at least 1, not 0. Use a value at least 1."),
    case("num-nodes-too-many", "num_nodes: 5000\nrun: x\n",
         "task.yaml:1:12: num_nodes: must be at most 1024, not 5000. "
         "Use a value at most 1024."),
    case("envs-as-list", "envs:\n  - A=1\nrun: x\n",
         "task.yaml:2:3: envs: must be a mapping, not a list. "
         "Write it as a mapping (`key: value` lines)."),
    case("env-value-list", "envs:\n  A: [1]\nrun: x\n",
         "task.yaml:2:6: envs.A: must be a string, a number or true or false, not a list. "
         "Quote the value or give a plain string/number."),
    case("env-name-starts-with-digit", "envs:\n  1X: a\nrun: x\n",
         "task.yaml:2:3: envs.1X: '1X' is not a valid environment variable name. "
         "Use letters, digits and '_', not starting with a digit."),
    case("setup-as-mapping", "setup:\n  a: b\nrun: x\n",
         "task.yaml:2:3: setup: must be a string, not a mapping. Quote it as a string."),
    case("file-mounts-as-list", "file_mounts:\n  - /a\n",
         "task.yaml:2:3: file_mounts: must be a mapping, not a list. "
         "Write it as a mapping (`key: value` lines)."),
    case("file-mounts-value-integer", "file_mounts:\n  /a: 3\n",
         "task.yaml:2:7: file_mounts./a: must be a string or a mapping, not an integer. "
         "Use a local path, a bucket URI, or a storage mapping (name/source/mode)."),
    case("file-mounts-value-empty", "file_mounts:\n  /a: ''\n",
         "task.yaml:2:7: file_mounts./a: must not be empty. Give a value or remove the field."),
    case("name-null", storage("name:\nmode: MOUNT"),
         "task.yaml:3:10: file_mounts./data.name: `name:` is empty. "
         "Fill in a bucket name, or remove the field."),
    case("name-empty-string", storage("name: ''\nmode: MOUNT"),
         "task.yaml:3:11: file_mounts./data.name: must not be empty. "
         "Give a value or remove the field."),
    case("source-empty-list", storage("name: mybucket\nsource: []"),
         "task.yaml:4:13: file_mounts./data.source: must not be an empty list. "
         "Give at least one item."),
    case("workdir-mapping-without-url", "workdir:\n  ref: main\n",
         "task.yaml:2:3: workdir: missing required field 'url'. Add `url:`."),
    case("endpoint-url-not-http", storage("name: mybucket\nconfig:\n  endpoint_url: ftp://x"),
         "task.yaml:5:21: file_mounts./data.config.endpoint_url: 'ftp://x' is not an http(s) "
         "URL. Write it like https://s3.example.com:9000."),
    case("region-with-a-line-break",
         'resources:\n  region: "us-east-1\\nx = y"\nfile_mounts:\n  /d:\n    name: mybucket\n',
         "task.yaml:2:11: resources.region: 'us-east-1\\nx = y' contains a space or a line "
         "break. Write the name alone, e.g. us-east-1 or aws/us-east-1."),
    case("drain-timeout-not-duration",
         storage("name: mybucket\nmode: MOUNT_CACHED\nconfig:\n  mount_cached:\n"
                 "    drain_timeout: soon"),
         "task.yaml:7:24: file_mounts./data.config.mount_cached.drain_timeout: 'soon' is not a "
         "duration. Write it like 30s, 5m or 2h."),
    case("transfers-zero",
         storage("name: mybucket\nmode: MOUNT_CACHED\nconfig:\n  mount_cached:\n"
                 "    transfers: 0"),
         "task.yaml:7:20: file_mounts./data.config.mount_cached.transfers: must be at least 1, "
         "not 0. Use a value at least 1."),

    # --- normalize: modes, stores, names ----------------------------------------------
    case("mode-mounted", storage("name: mybucket\nmode: MOUNTED"),
         "task.yaml:4:11: file_mounts./data.mode: mode 'MOUNTED' is not supported. "
         "Use one of MOUNT, COPY, MOUNT_CACHED (any case)."),
    case("mode-rclone", storage("name: mybucket\nmode: RCLONE"),
         "task.yaml:4:11: file_mounts./data.mode: mode 'RCLONE' is not supported. "
         "Use one of MOUNT, COPY, MOUNT_CACHED (any case)."),
    case("store-nebius", storage("name: mybucket\nstore: nebius"),
         "task.yaml:4:12: file_mounts./data.store: store 'nebius' is not supported by "
         "skycompile. Use one of s3, gcs, azure, r2, ibm, oci (an S3-compatible service works "
         "as s3 with config.endpoint_url)."),
    case("store-volume", storage("name: mybucket\nstore: volume"),
         "task.yaml:4:12: file_mounts./data.store: store 'volume' is not supported by "
         "skycompile. Use one of s3, gcs, azure, r2, ibm, oci (an S3-compatible service works "
         "as s3 with config.endpoint_url)."),
    case("local-source-missing", "file_mounts:\n  /data: ./nope\n",
         f"task.yaml:2:10: file_mounts./data: local source './nope' does not exist "
         f"(looked for {{tmp}}/nope). {MISSING_FIX}"),
    case("storage-source-missing", storage("name: mybucket\nsource: ./nope"),
         f"task.yaml:4:13: file_mounts./data.source: local source './nope' does not exist "
         f"(looked for {{tmp}}/nope). {MISSING_FIX}"),
    case("local-source-fifo", "file_mounts:\n  /data: ./pipe\n",
         "task.yaml:2:10: file_mounts./data: local source './pipe' is not a regular file or "
         "directory. Point it at a file or a directory (not a socket, FIFO or device).",
         files={"pipe": FIFO}),
    case("source-list-with-uri", storage("name: mybucket\nsource: [./d1, s3://x/y]"),
         "task.yaml:4:20: file_mounts./data.source[1]: a source list may hold only local "
         "paths. Mount the bucket in its own file_mounts entry.",
         files={"d1/f.txt": "x"}),
    case("source-list-duplicate-basenames",
         storage("name: mybucket\nsource:\n  - ./x/data\n  - ./y/data"),
         "task.yaml:5:7: file_mounts./data.source: './y/data' and './x/data' both land at "
         "'data' in the bucket. Rename one, or put them in separate storages.",
         files={"x/data/f": "1", "y/data/f": "2"}),
    case("uri-source-with-name", storage("name: mybucket\nsource: s3://other/p"),
         "task.yaml:3:11: file_mounts./data.name: `name:` cannot be combined with a bucket URI "
         "`source:`. Remove `name:` to use the existing bucket 'other'."),
    case("copy-with-only-name", storage("name: mybucket\nmode: COPY"),
         "task.yaml:4:11: file_mounts./data.mode: a COPY storage with only a `name:` has "
         "nothing to copy. To copy an existing bucket use `source: s3://mybucket` instead of "
         "`name:`; for an empty bucket use mode: MOUNT."),
    case("storage-without-name-or-source", storage("mode: MOUNT"),
         "task.yaml:3:5: file_mounts./data: a storage needs `name:` (a bucket to create) or "
         "`source:`. Add `name: my-bucket`, or `source: s3://bucket/path`."),
    case("same-bucket-two-local-sources",
         "file_mounts:\n  /a:\n    name: bkt-one\n    source: ./d1\n    mode: COPY\n"
         "  /b:\n    name: bkt-one\n    source: ./d2\n",
         "task.yaml:7:5: file_mounts./b: uploads 'f' into s3://bkt-one, which file_mounts./a "
         "also uploads with different content. Use separate buckets, or make the sources agree.",
         files={"d1/f": "1", "d2/f": "2"}),
    case("s3-bucket-uppercase", storage("name: MyBucket"),
         "task.yaml:3:11: file_mounts./data.name: bucket name 'MyBucket' may contain only "
         "lowercase letters, digits, hyphens, dots. Choose a valid s3 bucket name."),
    case("s3-bucket-too-short", storage("name: ab"),
         "task.yaml:3:11: file_mounts./data.name: bucket name 'ab' must be 3 to 63 characters "
         "long (it is 2). Choose a valid s3 bucket name."),
    case("gcs-bucket-google", storage("name: my-google-bucket\nstore: gcs"),
         "task.yaml:3:11: file_mounts./data.name: bucket name 'my-google-bucket' must not start "
         "with 'goog' or contain 'google'. Choose a valid gcs bucket name."),
    case("azure-container-double-hyphen", storage("name: my--container\nstore: azure"),
         "task.yaml:3:11: file_mounts./data.name: bucket name 'my--container' must not contain "
         "consecutive hyphens. Choose a valid azure bucket name."),
    case("s3-uri-without-bucket", "file_mounts:\n  /data: s3://\n",
         "task.yaml:2:10: file_mounts./data: 's3://' has no bucket name; write "
         "s3://BUCKET[/PREFIX]. Fix the URI."),
    case("s3-uri-dotdot", "file_mounts:\n  /data: s3://b/../x\n",
         "task.yaml:2:10: file_mounts./data: 's3://b/../x' has an empty, '.' or '..' path "
         "segment. Fix the URI."),
    case("cos-uri-without-region", "file_mounts:\n  /data: cos://BUCKET\n",
         "task.yaml:2:10: file_mounts./data: 'cos://BUCKET' is not an IBM COS URI; write "
         "cos://REGION/BUCKET[/PREFIX]. Fix the URI."),
    case("azure-uri-without-container",
         "file_mounts:\n  /data: https://acct.blob.core.windows.net/\n",
         "task.yaml:2:10: file_mounts./data: 'https://acct.blob.core.windows.net/' has no "
         "container name. Fix the URI."),
    case("unknown-uri-scheme", "file_mounts:\n  /data: nebius://x\n",
         f"task.yaml:2:10: file_mounts./data: nebius:// is not a supported store (supported: "
         f"{STORES}). Fix the URI."),
    case("store-uri-mismatch", storage("source: s3://bkt/p\nstore: gcs"),
         "task.yaml:4:12: file_mounts./data.store: store 'gcs' does not match the source URI "
         "(s3). Remove `store:` or make it match the URI."),
    case("endpoint-url-on-gcs",
         storage("name: mybucket\nstore: gcs\nconfig:\n  endpoint_url: https://x.example.com"),
         "task.yaml:6:21: file_mounts./data.config.endpoint_url: endpoint_url applies to "
         "S3-compatible stores, not gcs. Remove it, or use store: s3 for an S3-compatible "
         "server."),
    case("r2-without-endpoint", storage("name: mybucket\nstore: r2"),
         "task.yaml:3:5: file_mounts./data: an r2 storage needs the account endpoint. Set "
         "config.endpoint_url: https://ACCOUNT_ID.r2.cloudflarestorage.com or pass "
         "--endpoint-url."),

    # --- normalize: destinations ---------------------------------------------------------
    case("destination-root", "file_mounts:\n  /: s3://bkt\n",
         "task.yaml:2:3: file_mounts./: the destination is `/` itself. "
         "Use a sub-directory such as /data."),
    case("destination-home", "file_mounts:\n  ~: s3://bkt\n",
         "task.yaml:2:3: file_mounts.~: '~' is the home directory itself. "
         "Mount or copy into a sub-directory such as ~/data."),
    case("destination-dotdot", "file_mounts:\n  /data/../etc: s3://bkt\n",
         "task.yaml:2:3: file_mounts./data/../etc: '/data/../etc' contains '..'. "
         "Write the destination without '..'."),
    case("destination-relative-escape", "file_mounts:\n  ../x: s3://bkt\n",
         "task.yaml:2:3: file_mounts.../x: '../x' contains '..'. "
         "Write the destination without '..'."),
    case("destination-tilde-user", "file_mounts:\n  ~bob/x: s3://bkt\n",
         "task.yaml:2:3: file_mounts.~bob/x: '~bob/x': `~user` paths are not supported. "
         "Use `~/...` (the task user's home) or an absolute path."),
    case("destination-newline", 'file_mounts:\n  "/a\\nb": s3://bkt\n',
         "task.yaml:2:3: file_mounts./a\\nb: a destination path must not contain newline "
         "characters. Rename the destination."),
    case("destination-name-too-long", f"file_mounts:\n  /data/{'x' * 256}: s3://bkt\n",
         f"task.yaml:2:3: file_mounts./data/{'x' * 256}: the destination cannot exist on Linux: "
         f"its component {'x' * 40!r}... is 256 bytes long. Shorten it (at most 255 bytes per "
         "component, 4000 in all)."),
    case("destination-twice", "file_mounts:\n  /data: s3://bkt\n  /data/: s3://bkt2\n",
         "task.yaml:3:3: file_mounts./data/: /data is already the destination of '/data'. "
         "Give each entry its own destination."),
    case("destination-inside-mount",
         "file_mounts:\n  /data:\n    name: mybucket\n    mode: MOUNT\n  /data/sub: s3://bkt2/p\n",
         "task.yaml:5:3: file_mounts./data/sub: /data/sub is inside the MOUNT mount at /data. "
         "Move it outside the mount, or mount at a different path."),
    case("env-null-in-destination", "envs:\n  DATA:\nfile_mounts:\n  /mnt/${DATA}/x: s3://bkt\n",
         "task.yaml:4:3: file_mounts./mnt/${DATA}/x: $DATA has no value (envs.DATA is empty). "
         "Give it a value in `envs:` or pass --env DATA=VALUE."),
    case("env-null-in-bucket-name", "envs:\n  B:\n" + storage("name: $B"),
         "task.yaml:5:11: file_mounts./data.name: $B has no value (envs.B is empty). "
         "Give it a value in `envs:` or pass --env B=VALUE."),

    case("env-null-in-local-source", "envs:\n  S:\nfile_mounts:\n  /data: $S\n",
         "task.yaml:4:10: file_mounts./data: $S has no value (envs.S is empty). "
         "Give it a value in `envs:` or pass --env S=VALUE."),
    case("env-resolves-to-root", "envs:\n  D: /\nfile_mounts:\n  $D: s3://bkt\n",
         "task.yaml:4:3: file_mounts.$D: the destination is `/` itself. "
         "Use a sub-directory such as /data."),
    case("file-mount-at-workdir-destination",
         "workdir: .\nfile_mounts:\n  ~/sky_workdir: s3://bkt\n",
         "task.yaml:3:3: file_mounts.~/sky_workdir: ~/sky_workdir is where `workdir:` is "
         "copied. Give each entry its own destination."),

    # --- normalize: workdir, envs, config, legacy -----------------------------------------
    case("workdir-is-a-file", "workdir: ./f.txt\nrun: x\n",
         "task.yaml:1:10: workdir: workdir './f.txt' is a file, not a directory. "
         "Point workdir at a directory.", files={"f.txt": "x"}),
    case("workdir-missing", "workdir: ./nope\nrun: x\n",
         "task.yaml:1:10: workdir: local source './nope' does not exist (looked for "
         "{tmp}/nope). Create it, fix the path (relative paths start at the current "
         "directory), or use a git workdir: `workdir: {url: ..., ref: ...}`."),
    case("volumes", "volumes:\n  /mnt/v: myvol\nrun: x\n",
         "task.yaml:1:1: volumes: `volumes:` is not supported by skycompile (SkyPilot "
         "provisions those volumes itself). Use a bucket instead: a file_mounts entry with "
         "`name:` and `mode: MOUNT`."),
    case("env-overrides-secret", "secrets:\n  TOKEN:\nrun: x\n",
         "task.yaml:2:3: secrets.TOKEN: --env TOKEN=... would embed the secret TOKEN in the "
         "script. Set TOKEN in the node's environment instead; secrets are never embedded.",
         argv=[*DRY, "--env", "TOKEN=abc"]),
    case("env-name-final-newline", 'envs:\n  "A\\n": x\nrun: x\n',
         "task.yaml:2:3: envs.A\\n: 'A\\n' is not a valid environment variable name. Use "
         "letters, digits and '_', not starting with a digit."),
    case("endpoint-url-final-newline",
         storage('source: s3://b/p\nconfig:\n  endpoint_url: "http://h/\\n"'),
         "task.yaml:5:21: file_mounts./data.config.endpoint_url: 'http://h/\\n' is not an "
         "http(s) URL. Write it like https://s3.example.com:9000."),
    case("env-name-bash-sets", "envs:\n  PWD: /srv\nrun: x\n",
         "task.yaml:2:3: envs.PWD: bash sets PWD itself, so setup and run would never see "
         "this value. Rename the variable."),
    case("env-flag-name-bash-sets", "run: x\n",
         "skycompile: error: --env: --env SHLVL: bash sets SHLVL itself, so setup and run "
         "would never see this value. Rename the variable.",
         argv=[*DRY, "--env", "SHLVL=3"]),
    case("mount-cached-config-on-mount",
         storage("name: mybucket\nmode: MOUNT\nconfig:\n  mount_cached:\n    transfers: 4"),
         "task.yaml:7:9: file_mounts./data.config.mount_cached: config.mount_cached tunes "
         "MOUNT_CACHED mounts, but this one is MOUNT. Set mode: MOUNT_CACHED or remove "
         "config.mount_cached."),
    case("legacy-unknown-storage",
         "storage:\n  - name: mybucket\nstorage_mounts:\n  - storage: other\n"
         "    mount_path: /data\n",
         "task.yaml:4:14: storage_mounts[0].storage: no `storage:` entry is named 'other'. "
         "Add it under `storage:` or use one of: mybucket."),
    case("legacy-duplicate-storage-name",
         "storage:\n  - name: bkt-one\n    source: s3://x\n  - name: bkt-one\n    source: s3://y\n"
         "storage_mounts:\n  - storage: bkt-one\n    mount_path: /data\n",
         "task.yaml:4:11: storage[1].name: another `storage:` entry is named 'bkt-one' "
         "(line 2). Rename one of them."),
    case("legacy-storage-without-name", "storage:\n  - source: s3://x\n",
         "task.yaml:2:5: storage[0]: missing required field 'name'. Add `name:`."),

    # --- flags that are checked against the task -------------------------------------
    case("workdir-flag-missing", "run: x\n",
         "skycompile: error: --workdir: local source './nope' does not exist (looked for "
         "{tmp}/nope). Create it, fix the path (relative paths start at the current "
         "directory), or use a git workdir: `workdir: {url: ..., ref: ...}`.",
         argv=[*DRY, "--workdir", "./nope"]),
    case("bucket-flag-invalid", "workdir: .\nrun: x\n",
         "skycompile: error: --bucket: the bucket for local sources, 'Bad_Name', may contain "
         "only lowercase letters, digits, hyphens, dots. Choose a valid s3 bucket name.",
         argv=[*DRY, "--bucket", "Bad_Name"]),
    case("endpoint-flag-not-a-url", "run: x\n",
         "skycompile: error: --endpoint-url 'minio:9000' is not an http(s) URL; write it "
         "like https://s3.example.com:9000",
         argv=[*DRY, "--endpoint-url", "minio:9000"]),
    case("option-value-double-dash", "run: x\n",
         "skycompile: error: `--` cannot be an option's value",
         argv=[*DRY, "--user=--"]),
    case("git-ref-flag-without-git-workdir", "run: x\n",
         "skycompile: error: --git-ref: needs a git workdir. Pass --git-url too, or set "
         "`workdir: {url: ..., ref: ...}` in the task.",
         argv=[*DRY, "--git-ref", "main"]),

    # --- the task file itself ---------------------------------------------------------
    Case("task-is-a-directory", {"somedir": DIR}, ["somedir", *DRY],
         "somedir:1:1: this is a directory, not a task file. Pass the YAML file."),
    Case("task-is-missing", {}, ["missing.yaml", *DRY],
         "missing.yaml:1:1: cannot read the task file: No such file or directory. "
         "Check the path and its permissions."),
    Case("task-is-a-fifo", {"pipe.yaml": FIFO}, ["pipe.yaml", *DRY],
         "pipe.yaml:1:1: this is not a regular file (FIFO, socket or device?). "
         "Pass the YAML file."),

    # --- hostile, huge and binary files, special and unreadable sources ---------------
    case("file-10mb-binary", bytes(range(256)) * (10 * 4096), TOO_BIG.format(10485760),
         max_seconds=1.0),
    case("file-10mb-yaml", "run: |\n" + "  echo x\n" * (10 * 2**20 // 9),
         TOO_BIG.format(10485763), max_seconds=1.0),
    case("utf16-file", b"\xff\xfe" + "run: echo hi\n".encode("utf-16-le"), NOT_UTF8.format(16)),
    case("utf16-be-file", b"\xfe\xff" + "run: echo hi\n".encode("utf-16-be"), NOT_UTF8.format(16)),
    case("utf32-file", b"\xff\xfe\x00\x00" + "run: echo hi\n".encode("utf-32-le"),
         NOT_UTF8.format(32)),
    case("elf-binary", b"\x7fELF\x02\x01\x01\x00" + bytes(56),
         "task.yaml:1:8: the file contains a NUL byte (binary file?). Pass a YAML task file."),
    case("gzip-file", b"\x1f\x8b\x08\x00\x12\x34\x56\x78\x00\x03",
         "task.yaml:1:4: the file contains a NUL byte (binary file?). Pass a YAML task file."),
    case("latin1-file", "name: caf\xe9\nrun: x\n".encode("latin-1"),
         "task.yaml:1:10: the file is not valid UTF-8. Save the task file as UTF-8."),
    case("deep-mixed", "run: " + "[{a: " * 100 + "x" + "}]" * 100 + "\n",
         "task.yaml:1:162: values are nested more than 64 levels deep. Flatten the structure."),
    case("duplicate-env-key", "envs:\n  A: 1\n  B: 2\n  A: 3\nrun: x\n",
         "task.yaml:4:3: envs.A: duplicate key 'A' (first defined at line 2). Remove one of "
         "the two entries."),
    case("duplicate-storage-field", storage("source: s3://a\nmode: COPY\nsource: s3://b"),
         "task.yaml:5:5: file_mounts./data.source: duplicate key 'source' (first defined at "
         "line 3). Remove one of the two entries."),
    case("duplicate-resources-key", "resources:\n  cloud: aws\n  cloud: gcp\nrun: x\n",
         "task.yaml:3:3: resources.cloud: duplicate key 'cloud' (first defined at line 2). "
         "Remove one of the two entries."),
    case("nul-escape-in-env-value", 'envs:\n  A: "x\\0y"\nrun: x\n',
         "task.yaml:2:6: envs.A: " + NUL_VALUE),
    case("nul-escape-in-destination", 'file_mounts:\n  "/data\\0x": s3://bkt\n',
         "task.yaml:2:3: file_mounts: " + NUL_VALUE),
    case("nul-escape-in-run", 'run: "echo \\0"\n', "task.yaml:1:6: run: " + NUL_VALUE),
    # half a UTF-16 pair: not a character, no UTF-8 for it (it used to end in a traceback)
    case("lone-surrogate-in-destination", 'file_mounts:\n  "/d\\udc80": s3://bkt\n',
         "task.yaml:2:3: file_mounts: the value contains a lone surrogate (an escape like "
         "\\udc80), which is not a character and cannot be written as UTF-8. Write the "
         "character itself, or its \\U escape."),
    case("lone-surrogate-in-run", 'run: "echo \\udc80"\n',
         "task.yaml:1:6: run: the value contains a lone surrogate (an escape like \\udc80), "
         "which is not a character and cannot be written as UTF-8. Write the character "
         "itself, or its \\U escape."),
    case("bucket-name-command-substitution",
         storage('name: "b$(touch /tmp/sc-canary)"\nsource: ./d'),
         "task.yaml:3:11: file_mounts./data.name: bucket name 'b$(touch /tmp/sc-canary)' may "
         "contain only lowercase letters, digits, hyphens, dots; must start and end with a "
         "lowercase letter or digit. Choose a valid s3 bucket name.", files={"d/f": "x"}),
    case("env-name-command-substitution", 'envs:\n  "$(touch /tmp/sc-canary)": x\nrun: x\n',
         "task.yaml:2:3: envs.$(touch /tmp/sc-canary): '$(touch /tmp/sc-canary)' is not a "
         "valid environment variable name. Use letters, digits and '_', not starting with a "
         "digit."),
    case("node-user-flag-command-substitution", "run: x\n",
         "skycompile: error: --user '$(touch /tmp/sc-canary)': not a valid user name "
         "(lowercase letters, digits, '_' and '-', starting with a letter or '_', at most 32)",
         argv=[*DRY, "--user", "$(touch /tmp/sc-canary)"]),
    case("git-ref-leading-dash",
         "workdir:\n  url: https://github.com/a/b\n  ref: --upload-pack=touch\n",
         f"task.yaml:3:8: workdir.ref: git ref '--upload-pack=touch' starts with '-'. {BAD_REF}"),
    case("git-ref-head", "workdir:\n  url: https://github.com/a/b\n  ref: HEAD\n",
         f"task.yaml:3:8: workdir.ref: git ref 'HEAD' names no branch or tag. {BAD_REF}"),
    case("git-ref-with-space", 'workdir:\n  url: https://github.com/a/b\n  ref: "v1 beta"\n',
         f"task.yaml:3:8: workdir.ref: git ref 'v1 beta' contains ' '. {BAD_REF}"),
    case("git-ref-flag-dotdot", "workdir:\n  url: https://github.com/a/b\n",
         f"skycompile: error: --git-ref: git ref 'main..dev' contains '..'. {BAD_REF}",
         argv=[*DRY, "--git-ref", "main..dev"]),
    case("local-source-socket", "file_mounts:\n  /data: ./sock\n",
         "task.yaml:2:10: file_mounts./data: local source './sock' " + NOT_REGULAR,
         files={"sock": SOCKET}),
    case("local-source-device", "file_mounts:\n  /data: /dev/null\n",
         "task.yaml:2:10: file_mounts./data: local source '/dev/null' " + NOT_REGULAR),
    case("list-source-fifo", storage("name: mybucket\nsource: [./d1, ./pipe]"),
         "task.yaml:4:20: file_mounts./data.source[1]: local source './pipe' " + NOT_REGULAR,
         files={"d1/f": "x", "pipe": FIFO}),
    case("workdir-fifo", "workdir: ./pipe\nrun: x\n",
         "task.yaml:1:10: workdir: local source './pipe' " + NOT_REGULAR, files={"pipe": FIFO}),
    Case("task-is-a-socket", {"sock.yaml": SOCKET}, ["sock.yaml", *DRY],
         "sock.yaml:1:1: this is not a regular file (FIFO, socket or device?). "
         "Pass the YAML file."),
    Case("task-is-a-device", {}, ["/dev/null", *DRY],
         "/dev/null:1:1: this is not a regular file (FIFO, socket or device?). "
         "Pass the YAML file."),
    # unreadable: run without CAP_DAC_OVERRIDE (as every user but root runs)
    Case("task-unreadable", {"locked.yaml": Locked("run: x\n")}, ["locked.yaml", *DRY],
         "locked.yaml:1:1: cannot read the task file: Permission denied. Check the path and "
         "its permissions.", locked=True),
    case("local-source-unreadable-file", "file_mounts:\n  /data: ./f\n",
         "task.yaml:2:10: file_mounts./data: local source './f' is not readable. Check its "
         "permissions.", files={"f": Locked("x")}, locked=True),
    case("local-source-unreadable-dir", "file_mounts:\n  /data: ./d\n",
         "task.yaml:2:10: file_mounts./data: local source './d' is not readable. Check its "
         "permissions.", files={"d": Locked()}, locked=True),
    case("unreadable-file-inside-source", "file_mounts:\n  /data: ./d\n",
         "task.yaml:2:10: file_mounts./data: cannot read {tmp}/d/sub/secret: Permission "
         "denied. " + UNREADABLE_FIX, files={"d/ok": "x", "d/sub/secret": Locked("x")},
         locked=True),
    case("unreadable-dir-inside-source", "file_mounts:\n  /data: ./d\n",
         "task.yaml:2:10: file_mounts./data: cannot read {tmp}/d/sub/locked/: Permission "
         "denied. " + UNREADABLE_FIX,
         files={"d/ok": "x", "d/sub/locked/f": "x", "d/sub/locked": Locked()}, locked=True),
    # a rule file that cannot be read would upload what it excludes (the rule files
    # themselves are excluded here, so only reading them as rules can fail)
    case("unreadable-gitignore", "file_mounts:\n  /data: ./d\n",
         "task.yaml:2:10: file_mounts./data: cannot read {tmp}/d/sub/.gitignore: Permission "
         "denied. " + UNREADABLE_FIX,
         files={"d/.gitignore": ".gitignore\n", "d/sub/secret.key": "x",
                "d/sub/.gitignore": Locked("*.key\n")}, locked=True),
    case("unreadable-skyignore", "file_mounts:\n  /data: ./d\n",
         "task.yaml:2:10: file_mounts./data: cannot read {tmp}/d/sub/.skyignore: Permission "
         "denied. " + UNREADABLE_FIX,
         files={"d/.skyignore": ".skyignore\n", "d/sub/secret.key": "x",
                "d/sub/.skyignore": Locked("*.key\n")}, locked=True),
    # a file name that is not UTF-8 (byte 0xff) cannot be an object key
    case("non-utf8-file-name-inside-workdir", "workdir: ./w\nrun: x\n",
         "task.yaml:1:10: workdir: cannot read {tmp}/w/bad\\udcff.txt: its name is not UTF-8, "
         "and an object key must be. Rename it, or exclude it in .skyignore (or .gitignore).",
         files={"w/ok": "x", "w/bad\udcff.txt": "x"}),
    case("unreadable-file-inside-workdir", "workdir: ./w\nrun: x\n",
         "task.yaml:1:10: workdir: cannot read {tmp}/w/secret.key: Permission denied. "
         + UNREADABLE_FIX,
         files={"w/ok": "x", "w/.skyignore": "*.log\n", "w/secret.key": Locked("x")},
         locked=True),

    # --- several problems at once, in file order -----------------------------------------
    case("several-problems",
         "name: several\n"
         "file_mounts:\n"
         "  /data:\n"
         "    name: MyBucket\n"
         "  /logs:\n"
         "    name: mylogs\n"
         "    mode: MOUNTED\n"
         "  /: s3://bkt\n"
         "  /x: ./nope\n"
         "  /y: nebius://z\n"
         "workdir: ./wd.txt\n"
         "volumes:\n"
         "  data: {}\n",
         "task.yaml:4:11: file_mounts./data.name: bucket name 'MyBucket' may contain only "
         "lowercase letters, digits, hyphens, dots. Choose a valid s3 bucket name.\n"
         "task.yaml:7:11: file_mounts./logs.mode: mode 'MOUNTED' is not supported. "
         "Use one of MOUNT, COPY, MOUNT_CACHED (any case).\n"
         "task.yaml:8:3: file_mounts./: the destination is `/` itself. "
         "Use a sub-directory such as /data.\n"
         f"task.yaml:9:7: file_mounts./x: local source './nope' does not exist "
         f"(looked for {{tmp}}/nope). {MISSING_FIX}\n"
         f"task.yaml:10:7: file_mounts./y: nebius:// is not a supported store (supported: "
         f"{STORES}). Fix the URI.\n"
         "task.yaml:11:10: workdir: workdir './wd.txt' is a file, not a directory. "
         "Point workdir at a directory.\n"
         "task.yaml:12:1: volumes: `volumes:` is not supported by skycompile (SkyPilot "
         "provisions those volumes itself). Use a bucket instead: a file_mounts entry with "
         "`name:` and `mode: MOUNT`.",
         files={"wd.txt": "x"}),
    case("several-problems-schema-and-semantic",
         "name: several\n"
         "num_nodes: 0\n"
         "envs:\n"
         "  1X: a\n"
         "file_mounts:\n"
         "  /data:\n"
         "    name: MyBucket\n"
         "  /logs:\n"
         "    name: mylogs\n"
         "    mode: MOUNTED\n"
         "  /: s3://bkt\n"
         "fiel_mounts: {}\n",
         "task.yaml:2:12: num_nodes: must be at least 1, not 0. Use a value at least 1.\n"
         "task.yaml:4:3: envs.1X: '1X' is not a valid environment variable name. "
         "Use letters, digits and '_', not starting with a digit.\n"
         "task.yaml:7:11: file_mounts./data.name: bucket name 'MyBucket' may contain only "
         "lowercase letters, digits, hyphens, dots. Choose a valid s3 bucket name.\n"
         "task.yaml:10:11: file_mounts./logs.mode: mode 'MOUNTED' is not supported. "
         "Use one of MOUNT, COPY, MOUNT_CACHED (any case).\n"
         "task.yaml:11:3: file_mounts./: the destination is `/` itself. "
         "Use a sub-directory such as /data.\n"
         "task.yaml:12:1: fiel_mounts: unknown field 'fiel_mounts'. "
         "Did you mean 'file_mounts'?"),
    case("several-problems-load-and-schema", "run: a\nrun: b\nnme: x\n",
         "task.yaml:2:1: run: duplicate key 'run' (first defined at line 1). "
         "Remove one of the two entries.\n"
         "task.yaml:3:1: nme: unknown field 'nme'. Did you mean 'name'?"),
    case("errors-in-two-documents", "name: a\nnum_nodes: 0\n---\nname: b\nnum_nodes: 0\n",
         "task.yaml:2:12: num_nodes: must be at least 1, not 0. Use a value at least 1.\n"
         "task.yaml:5:12: num_nodes: must be at least 1, not 0. Use a value at least 1."),
    case("second-document", "name: a\nrun: x\n---\nnum_nodes: 0\n",
         "task.yaml:4:12: num_nodes: must be at least 1, not 0. Use a value at least 1."),

    # --- command-line usage -----------------------------------------------------------
    case("output-file-for-two-nodes", "num_nodes: 2\nrun: x\n", ONE_FILE,
         argv=["-o", "out.sh", "--dry-run"]),
    case("output-stdout-for-two-nodes", "num_nodes: 2\nrun: x\n",
         "skycompile: error: -o - writes one script, but this task has 2 (num_nodes or several "
         "tasks); pass a directory: -o DIR/",
         argv=["-o", "-", "--dry-run"]),
    # Real mode: the -o layout is a usage error, so apply (buckets, uploads) must not run.
    # The endpoint is a closed local port (and `workspace` blocks sockets) so that even a
    # future apply cannot reach a cloud.
    case("output-file-checked-before-apply",
         "num_nodes: 2\nfile_mounts:\n  /data: ./data\nrun: x\n", ONE_FILE,
         argv=["-o", "out.sh", "--endpoint-url", "http://127.0.0.1:9"],
         files={"data/f.txt": "x"}),
    Case("output-path-is-a-directory", {"task.yaml": "run: x\n", "dest/node-0.sh": DIR},
         ["task.yaml", "-o", "dest/", "--dry-run"],
         "skycompile: error: -o: dest/node-0.sh is a directory; move it away or pick another -o"),
    Case("output-dir-is-a-file", {"task.yaml": "num_nodes: 2\nrun: x\n", "dest": "x"},
         ["task.yaml", "-o", "dest/sub/", "--dry-run"],
         "skycompile: error: -o: dest is a file, so dest/sub/node-0.sh cannot be written there; "
         "move it away or pick another -o"),
    case("check-without-output", "run: x\n",
         "skycompile: error: --check compares with existing files: pass -o PATH",
         argv=["--check"]),
    case("check-to-stdout", "run: x\n",
         "skycompile: error: --check needs files to compare with, not -o -",
         argv=["--check", "-o", "-"]),
    case("no-output-no-dry-run", "run: x\n",
         "skycompile: error: pass -o FILE, -o DIR/ or -o - (or --dry-run to only print the plan)",
         argv=[]),
    case("num-nodes-flag-zero", "run: x\n",
         "skycompile: error: --num-nodes must be at least 1, not 0",
         argv=[*DRY, "--num-nodes", "0"]),
    case("env-flag-bad-name", "run: x\n",
         "skycompile: error: --env '1BAD': not a valid variable name (ASCII letters, digits "
         "and '_', not starting with a digit)",
         argv=[*DRY, "--env", "1BAD=x"]),
    case("env-flag-unset", "run: x\n",
         "skycompile: error: --env SKYCOMPILE_TEST_UNSET: SKYCOMPILE_TEST_UNSET is not set in "
         "your environment; pass --env SKYCOMPILE_TEST_UNSET=VALUE",
         argv=[*DRY, "--env", "SKYCOMPILE_TEST_UNSET"]),
]

BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "duplicate case ids"


def params(bug_field: str):
    out = []
    for c in CASES:
        reason = getattr(c, bug_field)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


# --- helpers -------------------------------------------------------------------------

def materialize(root: Path, files: dict) -> None:
    locked = []
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIR:
            path.mkdir()
        elif content is FIFO:
            os.mkfifo(path)
        elif content is SOCKET:
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(path))  # stays a socket file after close
            sock.close()
        elif isinstance(content, Locked):
            if content.text is None:
                path.mkdir(exist_ok=True)
            else:
                path.write_text(content.text)
            locked.append(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))
    for path in reversed(locked):
        path.chmod(0)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below root: kind, and bytes + mtime for regular files (FIFOs not opened)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if p.is_symlink() or not (p.is_file() or p.is_dir()):
                out[rel] = ("special", st.st_mode)
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", p.read_bytes(), st.st_mtime_ns)
    return out


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """tmp_path as cwd, a private HOME (state and caches land there, if anywhere), no
    network."""
    home = tmp_path / ".home"
    home.mkdir()
    for var, sub in (("XDG_STATE_HOME", ".local/state"), ("XDG_CACHE_HOME", ".cache"),
                     ("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SKYCOMPILE_STATE_DIR")  # the state would land in home: watched
    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("SKYCOMPILE_TEST_UNSET", raising=False)
    monkeypatch.chdir(tmp_path)
    # Bad input must fail before any network use; a regression that reaches apply fails
    # here instead of talking to a real cloud.
    def refuse(*args, **kwargs):
        raise OSError("network access attempted while compiling an invalid task")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`skycompile ARGV` in-process; any exception but SystemExit propagates (a traceback)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def run_process(argv: list[str], cwd: Path, *, locked: bool = False) -> tuple[int, str, str]:
    """`python -m skycompile ARGV` as a user runs it; `locked`: without the capabilities
    that let root read a mode-000 file (what any other user is)."""
    repo = str(Path(skycompile.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)}
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if locked else []
    proc = subprocess.run([*prefix, sys.executable, "-m", "skycompile", *argv], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def run_case(c: "Case", argv: list[str], capsys) -> tuple[int, str, str]:
    return run_process(argv, Path.cwd(), locked=True) if c.locked else run_cli(argv, capsys)


def expected_text(c: Case) -> str:
    return c.expected.replace("{tmp}", str(Path.cwd())) + "\n"


# --- tests ---------------------------------------------------------------------------

def test_enough_cases():
    assert len(CASES) >= 45


@pytest.mark.parametrize("c", params("bug"))
def test_error_output(c: Case, workspace, capsys):
    materialize(workspace, c.files)
    start = time.perf_counter()
    code, out, err = run_case(c, c.argv, capsys)
    elapsed = time.perf_counter() - start
    assert "Traceback" not in err
    assert err == expected_text(c)
    assert out == ""
    assert code == 2
    if c.max_seconds:
        assert elapsed < c.max_seconds, f"took {elapsed:.2f}s"


def _variants(argv: list[str]) -> list[list[str]]:
    """The real run, and the same with --dry-run when there is an -o to write to."""
    real = [a for a in argv if a != "--dry-run"]
    return [real, real + ["--dry-run"]] if "-o" in real else [real]


@pytest.mark.parametrize("c", params("bug_written"))
def test_nothing_written(c: Case, workspace, capsys):
    """Bad input writes nothing (no -o target, no state, no cache) and fails the same way
    with and without --dry-run."""
    materialize(workspace, c.files)
    before = snapshot(workspace)
    errors = []
    for argv in _variants(c.argv):
        code, out, err = run_case(c, argv, capsys)
        assert "Traceback" not in err
        assert code == 2, (argv, err)
        assert out == "", argv
        assert snapshot(workspace) == before, argv
        errors.append(err)
    assert not (workspace / "out").exists() and not (workspace / "out.sh").exists()
    assert all(e == errors[0] for e in errors), errors


def test_a_warm_hash_cache_does_not_hide_an_unreadable_file(workspace, capsys):
    """The hash cache keys on size, mtime and inode, which chmod leaves alone: a file made
    unreadable after an earlier compile must still stop the next one."""
    materialize(workspace, {"task.yaml": "file_mounts:\n  /data: ./d\n",
                            "d/ok": "x", "d/model.bin": "weights"})
    code, _, err = run_process(["task.yaml", "-o", "out/", "--dry-run"], workspace)
    assert code == 0, err
    assert list((workspace / ".home").rglob("*.db")), "the first compile cached no hashes"
    (workspace / "d" / "model.bin").chmod(0)
    code, out, err = run_process(["task.yaml", "-o", "out2/", "--dry-run"], workspace,
                                 locked=True)
    assert (code, out) == (2, "")
    assert err == (f"task.yaml:2:10: file_mounts./data: cannot read {workspace}/d/model.bin: "
                   f"Permission denied. {UNREADABLE_FIX}\n")
    assert not (workspace / "out2").exists()


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.mark.parametrize("layout", ["submodule", "tracked-under-ignored"])
def test_unreadable_parts_of_a_git_work_tree_are_errors(layout, workspace):
    """What git mode reaches without walking: a submodule (gitlink) and tracked files under
    an ignored directory. Unreadable, each stops the compile instead of vanishing."""
    d = workspace / "d"
    materialize(workspace, {"task.yaml": "file_mounts:\n  /data: ./d\n", "d/top.txt": "x"})
    _git("init", "-q", cwd=d)
    if layout == "submodule":
        materialize(d, {"sm/inner.txt": "y"})
        _git("init", "-q", cwd=d / "sm")
        _git("add", ".", cwd=d / "sm")
        _git("commit", "-qm", "inner", cwd=d / "sm")
        _git("add", "top.txt", "sm", cwd=d)  # sm becomes a gitlink
        locked, named = d / "sm", f"{d}/sm/"
    else:
        materialize(d, {".gitignore": "ign/\n", "ign/tracked.txt": "z"})
        _git("add", "-f", "top.txt", ".gitignore", "ign/tracked.txt", cwd=d)
        locked, named = d / "ign", f"{d}/ign/tracked.txt"
    _git("commit", "-qm", "outer", cwd=d)
    code, _, err = run_process(["task.yaml", "-o", "out/", "--dry-run"], workspace)
    assert code == 0, err  # readable: the compile works
    locked.chmod(0)
    code, out, err = run_process(["task.yaml", "-o", "out2/", "--dry-run"], workspace,
                                 locked=True)
    assert (code, out) == (2, ""), err
    assert err == (f"task.yaml:2:10: file_mounts./data: cannot read {named}: Permission "
                   f"denied. {UNREADABLE_FIX}\n")


REAL_PROCESS = ["yaml-mapping-in-scalar", "alias-bomb", "task-is-missing", "not-utf8",
                "env-flag-bad-name", "several-problems"]


@pytest.mark.parametrize("case_id", REAL_PROCESS)
def test_real_process(case_id: str, workspace):
    """`python -m skycompile` as a user runs it: exit 2, the message, no traceback."""
    c = BY_ID[case_id]
    assert not c.bug
    materialize(workspace, c.files)
    before = snapshot(workspace)
    code, out, err = run_process(c.argv, workspace)
    assert "Traceback" not in err
    assert err == expected_text(c)
    assert out == ""
    assert code == 2
    assert snapshot(workspace) == before
