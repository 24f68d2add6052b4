"""The ignore engine (skycompile/ignore.py) against the real tools.

Oracles, run on the very trees the engine scans:

* git mode: ``git ls-files --cached --others --exclude-standard`` (``-c
  core.excludesFile=/dev/null``, and HOME / XDG_CONFIG_HOME / system config isolated, so
  no personal ignore file leaks in), nested repositories expanded by running the same
  command inside them, entries that are not regular files reached without a symlink left
  out (symlinks compared separately);
* skyignore mode: ``rsync -r --dry-run --out-format=%n --filter='dir-merge,- .skyignore'
  SRC/ DEST/`` (files only; ``%n`` behind a marker, to tell names from rsync's notices,
  ``\\#ooo`` escapes decoded), and the same with ``-l`` for the symlinks; paths with a
  ``.git`` component dropped (skycompile never uploads ``.git``).

git and rsync are required: these tests fail, never skip, without them.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from skycompile import ignore
from skycompile import manifest as manifest_mod
from skycompile.ir import LocalSource

GIT = shutil.which("git")
RSYNC = shutil.which("rsync")


def test_tools_present():
    assert GIT, "git is required by the ignore tests (apt-get install git)"
    assert RSYNC, "rsync is required by the ignore tests (apt-get install rsync)"


# --------------------------------------------------------------------------------------
# oracles

_ISOLATED = tempfile.mkdtemp(prefix="skycompile-ignore-home-")
atexit.register(shutil.rmtree, _ISOLATED, True)


def git_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=_ISOLATED, XDG_CONFIG_HOME=os.path.join(_ISOLATED, ".config"),
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", LC_ALL="C",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com",
               GIT_LITERAL_PATHSPECS="1")
    return env


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch):
    """The engine's own git calls (ls-files, config) see the same isolated configuration
    (and nothing else of the oracle's environment)."""
    env = git_env()
    for k in ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL"):
        monkeypatch.setenv(k, env[k])


def git(cwd, *args, check=True) -> bytes:
    assert GIT, "git is required"
    res = subprocess.run([GIT, *args], cwd=cwd, env=git_env(), capture_output=True)
    if check:
        assert res.returncode == 0, (args, res.stderr)
    return res.stdout


def _classify(root: bytes, paths, files: set, links: set, prefix: bytes = b"") -> None:
    """Keep what can be uploaded: regular files reached through real directories."""
    for p in paths:
        parts = p.split(b"/")
        cur = root
        ok = True
        for comp in parts[:-1]:
            cur = os.path.join(cur, comp)
            try:
                if not stat.S_ISDIR(os.lstat(cur).st_mode):
                    ok = False
                    break
            except OSError:
                ok = False
                break
        if not ok:
            continue
        try:
            mode = os.lstat(os.path.join(root, p)).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            files.add(prefix + p)
        elif stat.S_ISLNK(mode):
            links.add(prefix + p)


def git_oracle(root) -> tuple[set[str], set[str]]:
    """What git lists in `root` (a directory inside a work tree), as (files, symlinks)."""
    files: set[bytes] = set()
    links: set[bytes] = set()
    _git_oracle(os.fsencode(root), b"", files, links)
    dec = os.fsdecode
    return {dec(f) for f in files}, {dec(f) for f in links}


def _git_oracle(root: bytes, prefix: bytes, files: set, links: set) -> None:
    base = ["-c", "core.excludesFile=/dev/null", "-c", "core.fsmonitor=false"]
    cached = git(root, *base, "ls-files", "-z", "--cached", "--stage")
    others = git(root, *base, "ls-files", "-z", "--others", "--exclude-standard")
    plain = []
    for rec in cached.split(b"\0"):
        if not rec:
            continue
        meta, _, path = rec.partition(b"\t")
        if meta.startswith(b"160000"):  # a gitlink: the submodule as git lists it inside
            sub = os.path.join(root, path)
            if _is_repo(sub):
                _git_oracle(sub, prefix + path + b"/", files, links)
        else:
            plain.append(path)
    for path in others.split(b"\0"):
        if path.endswith(b"/"):  # an untracked nested repository
            _git_oracle(os.path.join(root, path[:-1]), prefix + path, files, links)
        elif path:
            plain.append(path)
    _classify(root, plain, files, links, prefix)


def _is_repo(d: bytes) -> bool:
    res = subprocess.run([GIT, "rev-parse", "--show-toplevel"], cwd=d, env=git_env(),
                         capture_output=True)
    return res.returncode == 0 and os.path.realpath(res.stdout.strip()) == os.path.realpath(d)


_ESCAPE = re.compile(rb"\\#([0-7]{3})")


def rsync_oracle(root) -> tuple[set[str], set[str]]:
    """What rsync sends from `root`, as (files, symlinks), `.git` paths left out."""
    assert RSYNC, "rsync is required"
    dest = tempfile.mkdtemp(prefix="skycompile-rsync-dest-")
    try:
        out = {}
        for flags in ("-r", "-rl"):
            res = subprocess.run(
                [RSYNC, flags, "--dry-run", "--out-format=@@F %n",
                 "--filter=dir-merge,- .skyignore", os.fsencode(root) + b"/", dest + "/"],
                capture_output=True, env=dict(os.environ, LC_ALL="C"))
            assert res.returncode in (0, 23), res.stderr  # 23: some files unreadable/vanished
            names = set()
            for line in res.stdout.split(b"\n"):
                if not line.startswith(b"@@F ") or line.endswith(b"/"):
                    continue  # other lines: rsync's notices ("skipping non-regular file")
                name = _ESCAPE.sub(lambda m: bytes((int(m.group(1), 8),)), line[4:])
                if b".git" in name.split(b"/"):
                    continue
                names.add(name)
            out[flags] = names
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    files: set[bytes] = set()
    links: set[bytes] = set()
    _classify(os.fsencode(root), out["-rl"], files, links)
    # plain -r lists exactly the regular files; -rl adds the symlinks
    assert files == {n for n in out["-r"]
                     if stat.S_ISREG(os.lstat(os.path.join(os.fsencode(root), n)).st_mode)}
    dec = os.fsdecode
    return {dec(f) for f in out["-r"]}, {dec(f) for f in links}


def ours(root) -> tuple[set[str], set[str]]:
    s = ignore.scan(root)
    assert list(s.files) == sorted(s.files) and len(set(s.files)) == len(s.files)
    for f in s.files + s.symlinks:
        assert ".git" not in f.split("/"), f
    for f in s.files:
        assert stat.S_ISREG(os.lstat(os.path.join(root, f)).st_mode), f
    for f in s.symlinks:
        assert os.path.islink(os.path.join(root, f)), f
    return set(s.files), set(s.symlinks)


# --------------------------------------------------------------------------------------
# building trees

def write(root, rel: str | bytes, data: bytes | str = b"x") -> None:
    p = os.path.join(os.fsencode(root), os.fsencode(rel))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def make(root, *files: str, **ignores: str) -> None:
    """Files (a name ending with '/' makes a directory), then ignore files given as
    keyword arguments: gitignore_a_b="..." writes a/b/.gitignore; gitignore="..." the
    root one; skyignore... likewise; exclude="..." writes .git/info/exclude."""
    for f in files:
        if f.endswith("/"):
            os.makedirs(os.path.join(root, f), exist_ok=True)
        else:
            write(root, f)
    for key, text in ignores.items():
        kind, _, where = key.partition("_")
        if kind == "exclude":
            write(root, ".git/info/exclude", text)
            continue
        name = ".gitignore" if kind == "gitignore" else ".skyignore"
        write(root, os.path.join(*where.split("_"), name) if where else name, text)


def both_git(root, tracked=(), init=True) -> tuple[set[str], set[str]]:
    """Init a repo at root (unless there is one, or not `init`), track `tracked`, and
    check ours == git's."""
    if init and not os.path.isdir(os.path.join(root, ".git")):
        git(root, "init", "-q")
    if tracked:
        git(root, "add", "-f", "--", *tracked)
    expected = git_oracle(root)
    got = ours(root)
    assert got == expected, (sorted(got[0] ^ expected[0]), sorted(got[1] ^ expected[1]))
    return got


def both_rsync(root) -> tuple[set[str], set[str]]:
    expected = rsync_oracle(root)
    got = ours(root)
    assert got == expected, (sorted(got[0] ^ expected[0]), sorted(got[1] ^ expected[1]))
    return got


# --------------------------------------------------------------------------------------
# property tests: random trees with random ignore files, against the real tools

NAMES = ["a", "b", "ab", "abc", "foo", "bar", "x.txt", "y.log", "z.py", ".hidden", "A",
         "!a", "#a", "a b", "b ", "[a]", "a*", "q?", "é", "-x", "build", "sub", "x\\y",
         "foo.txt", "Foo", "cache", "a.b.c", "\tt"]
# wildcard segments: every kind of token, well-formed and not
WILD = ["*", "**", "***", "?", "*.txt", "a*", "*b", "[ab]", "[!a]*", "[^a]", "[a-c]",
        "[[:alpha:]]*", "[[:upper:]]", "[[:space:]]*", "\\!a", "\\#a", "a\\*", "?b", "[]a]",
        "[a", "\\", "*.[tl]*", "é", "[[:bogus:]]", "[a-]", "[--0]", "f*o", "**a", "a**", "\\ ",
        "*.log", "[!x]*", "?*"]


def _mutate(comp: str, op: int) -> str:
    """A tree component turned into a pattern that (usually) still matches it."""
    if not comp or op == 0:
        return comp
    return [comp, "*", "**", comp[:1] + "*", "*" + comp[-1:], "?" + comp[1:],
            "[" + comp[:1] + "x]" + comp[1:], comp + "*", "\\" + comp][op % 9]


@st.composite
def body(draw, components: list[str], paths: list[str]) -> str:
    kind = draw(st.integers(0, 4))
    if kind <= 1 and paths:  # an existing path, a component or two made wild
        comps = draw(st.sampled_from(paths)).split("/")
        if draw(st.booleans()):
            comps = comps[draw(st.integers(0, len(comps) - 1)):]  # a suffix of it
        return "/".join(_mutate(c, draw(st.integers(0, 12))) for c in comps)
    seg = st.one_of(st.sampled_from(components or NAMES), st.sampled_from(WILD),
                    st.sampled_from(NAMES))
    return "/".join(draw(st.lists(seg, min_size=1, max_size=3)))


@st.composite
def git_line(draw, components=(), paths=()) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["", "#c", " #notcomment", "!", "/", "\\", "**", "!**/",
                                      "*", "**/", "/*", "!/*", "   ", "\\ ", "!\\!a", "#a"]))
    line = draw(body(list(components), list(paths)))
    if draw(st.integers(0, 4)) == 0:
        line = "**/" + line
    if draw(st.integers(0, 2)) == 0:
        line = "/" + line
    if draw(st.integers(0, 3)) == 0:
        line += "/"
    if draw(st.integers(0, 3)) == 0:
        line = "!" + line
    if draw(st.integers(0, 4)) == 0:
        line += draw(st.sampled_from([" ", "  ", "\\ ", "\t", "\r"]))
    return line


@st.composite
def sky_line(draw, components=(), paths=()) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["", "#c", ";c", " #x", "!", "+ a", "- a", "- *", "+ b",
                                      "!a", "/", "*", "**", "***", "/***", "*/", "**/", ";a"]))
    line = draw(body(list(components), list(paths)))
    if draw(st.integers(0, 4)) == 0:
        line = "**/" + line
    if draw(st.integers(0, 5)) == 0:
        line += "/***"
    if draw(st.integers(0, 2)) == 0:
        line = "/" + line
    if draw(st.integers(0, 3)) == 0:
        line += "/"
    if draw(st.integers(0, 5)) == 0:
        line = draw(st.sampled_from(["!", "+ ", "- "])) + line
    if draw(st.integers(0, 5)) == 0:
        line += draw(st.sampled_from([" ", "\t"]))
    return line


@st.composite
def trees(draw, line):
    """(files, dirs, symlinks {path: target}, ignore files {dir: [lines]}, line strategy
    for more lines drawn from the same tree)."""
    paths = draw(st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),
                          min_size=1, max_size=14))
    files: list[str] = []
    dirs: set[str] = set()
    for comps in paths:
        parents = ["/".join(comps[:i]) for i in range(1, len(comps))]
        path = "/".join(comps)
        if path in dirs or any(p in files for p in parents) or path in files:
            continue
        files.append(path)
        dirs.update(parents)
    links = {}
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.sampled_from(sorted(dirs) + [""]))
        name = draw(st.sampled_from(NAMES))
        path = f"{where}/{name}" if where else name
        if path in dirs or path in files or path in links or \
                any(path.startswith(f + "/") for f in files):
            continue
        links[path] = draw(st.sampled_from(["a", "..", "missing", "x.txt"]))
    every = files + sorted(dirs) + sorted(links)
    components = sorted({c for p in every for c in p.split("/")})
    lines = line(components, every)
    ignore_dirs = draw(st.lists(st.sampled_from(sorted(dirs) + [""]), min_size=1, max_size=4,
                                unique=True))
    ignores = {}
    for d in ignore_dirs:  # patterns drawn from the paths below the ignore file's directory
        below = [p[len(d) + 1:] for p in every if p.startswith(d + "/")] if d else every
        local = line(sorted({c for p in below for c in p.split("/")}) or components,
                     below or every)
        ignores[d] = draw(st.lists(local, min_size=1, max_size=6))
    return files, sorted(dirs), links, ignores, lines


def build(root: str, files, dirs, links, ignores, name: str, crlf=False) -> None:
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for f in files:
        write(root, f, f)
    for path, target in links.items():
        os.symlink(target, os.path.join(root, path))
    for d, lines in ignores.items():
        sep = "\r\n" if crlf else "\n"
        write(root, os.path.join(d, name), sep.join(lines) + sep)


# IGNORE_EXAMPLES raises the count for a longer hunt; CI runs the default 300
PROPERTY = settings(max_examples=int(os.environ.get("IGNORE_EXAMPLES", "300")), deadline=None,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@PROPERTY
@given(tree=trees(git_line), data=st.data())
def test_git_mode_matches_git_ls_files(tree, data):
    files, dirs, links, ignores, lines = tree
    with tempfile.TemporaryDirectory(prefix="skyc-git-") as tmp:
        root = os.path.join(tmp, "w")
        os.mkdir(root)
        build(root, files, dirs, links, ignores, ".gitignore")
        in_repo = data.draw(st.sampled_from([True, True, True, False]))
        nested = data.draw(st.sampled_from([None] + dirs)) if dirs and \
            data.draw(st.integers(0, 5)) == 0 else None
        if nested:
            git(os.path.join(root, nested), "init", "-q")
        if not in_repo:  # no repository: .gitignore rules alone; the oracle is a fresh repo
            got = ours(root)
            git(root, "init", "-q")
            expected = git_oracle(root)
            assert got == expected, (sorted(got[0] ^ expected[0]), sorted(got[1] ^ expected[1]))
            event("git: no repository")
            _events(root, got)
            return
        git(root, "init", "-q")
        every = files + dirs + list(links)
        if len({p.lower() for p in every}) == len(every) and \
                data.draw(st.sampled_from([False, False, False, False, True])):
            # as git sets it on a case-insensitive file system (where no two names differ
            # only in case: on Linux such a pair would make git's own view inconsistent)
            git(root, "config", "core.ignoreCase", "true")
            event("git: core.ignoreCase")
        exclude = data.draw(st.lists(lines, max_size=3))
        write(root, ".git/info/exclude", "\n".join(exclude) + "\n")
        candidates = sorted(files) + sorted(links)
        tracked = data.draw(st.lists(st.sampled_from(candidates), max_size=6, unique=True)) \
            if candidates else []
        if tracked:
            git(root, "add", "-f", "--", *tracked)
        if nested:
            inner = [f[len(nested) + 1:] for f in files if f.startswith(nested + "/")]
            pick = data.draw(st.lists(st.sampled_from(inner), max_size=3, unique=True)) \
                if inner else []
            if pick:
                git(os.path.join(root, nested), "add", "-f", "--", *pick)
        source = root
        if dirs and data.draw(st.integers(0, 3)) == 0:  # a subdirectory of the work tree
            source = os.path.join(root, data.draw(st.sampled_from(dirs)))
        expected = git_oracle(source)
        got = ours(source)
        assert got == expected, (sorted(got[0] ^ expected[0]), sorted(got[1] ^ expected[1]))
        event("git: subdirectory source" if source != root else "git: work tree root")
        if nested:
            event("git: nested repository")
        if git(root, "ls-files", "-z", "--cached", "--ignored", "--exclude-standard"):
            event("git: a tracked file matches an ignore pattern (kept)")
        _events(source, got)


def _events(root, got) -> None:
    on_disk = set()
    for d, subdirs, fs in os.walk(root):
        subdirs[:] = [x for x in subdirs if x != ".git"]
        rel = os.path.relpath(d, root)
        on_disk.update(os.path.normpath(os.path.join(rel, f)) for f in fs + subdirs
                       if f != ".git" and not os.path.isdir(os.path.join(d, f))
                       or os.path.islink(os.path.join(d, f)))
    event("some files excluded" if on_disk - got[0] - got[1] else "nothing excluded")


@PROPERTY
@given(tree=trees(sky_line), data=st.data(), crlf=st.booleans(), dotgit=st.booleans())
def test_skyignore_mode_matches_rsync(tree, data, crlf, dotgit):
    files, dirs, links, ignores, lines = tree
    ignores = dict(ignores)
    # a root .skyignore (possibly empty) selects the mode
    ignores[""] = ignores.get("", []) + data.draw(st.lists(lines, max_size=4))
    with tempfile.TemporaryDirectory(prefix="skyc-rsync-") as tmp:
        root = os.path.join(tmp, "w")
        os.mkdir(root)
        build(root, files, dirs, links, ignores, ".skyignore", crlf=crlf)
        write(root, ".gitignore", "*\n")  # not read in skyignore mode
        if dotgit:
            write(root, ".git/config", "x")
            if dirs:
                write(root, os.path.join(dirs[0], ".git"), "gitdir: nowhere")
        assert ignore.scan(root).mode == "skyignore"
        got = both_rsync(root)
        if len(ignores) > 1:
            event("rsync: .skyignore in a subdirectory")
        _events(root, got)


# --------------------------------------------------------------------------------------
# the regex translation against straight ports of the tools' wildmatch()

def git_dowild(p: bytes, text: bytes, pathname=True, casefold=False) -> int:
    """git wildmatch.c dowild(): 0 match, 1 no match, -1 abort all, -2 abort to **."""
    MATCH, NOMATCH, ABORT_ALL, ABORT_TO_STARSTAR = 0, 1, -1, -2
    pattern = 0
    pi, ti = 0, 0

    def at(s, k):
        return s[k] if k < len(s) else 0

    def low(c):
        return c + 32 if 65 <= c <= 90 else c

    while at(p, pi):
        p_ch = p[pi]
        t_ch = at(text, ti)
        if t_ch == 0 and p_ch != 0x2A:
            return ABORT_ALL
        if casefold:
            t_ch, p_ch = low(t_ch), low(p_ch)
        if p_ch == 0x5C:
            pi += 1
            p_ch = at(p, pi)
            if t_ch != p_ch:
                return NOMATCH
        elif p_ch == 0x3F:
            if pathname and t_ch == 0x2F:
                return NOMATCH
        elif p_ch == 0x2A:
            pi += 1
            if at(p, pi) == 0x2A:
                prev = pi - 2
                while at(p, pi) == 0x2A:
                    pi += 1
                if not pathname:
                    match_slash = True
                elif (prev < pattern or p[prev] == 0x2F) and (
                        at(p, pi) == 0 or at(p, pi) == 0x2F
                        or (at(p, pi) == 0x5C and at(p, pi + 1) == 0x2F)):
                    if at(p, pi) == 0x2F and git_dowild(p[pi + 1:], text[ti:], pathname,
                                                         casefold) == MATCH:
                        return MATCH
                    match_slash = True
                else:
                    match_slash = False
            else:
                match_slash = not pathname
            if at(p, pi) == 0:
                if not match_slash and 0x2F in text[ti:]:
                    return NOMATCH
                return MATCH
            if not match_slash and at(p, pi) == 0x2F:
                j = text.find(b"/", ti)
                if j < 0:
                    return NOMATCH
                ti = j
                pi += 1
                ti += 1
                continue
            while True:
                if t_ch == 0:
                    break
                if at(p, pi) not in b"*?[\\":  # advance to the literal that follows
                    pc = low(p[pi]) if casefold else p[pi]
                    while True:
                        t_ch = at(text, ti)
                        if t_ch == 0 or (not match_slash and t_ch == 0x2F):
                            break
                        if casefold:
                            t_ch = low(t_ch)
                        if t_ch == pc:
                            break
                        ti += 1
                    if t_ch != pc:
                        return NOMATCH
                m = git_dowild(p[pi:], text[ti:], pathname, casefold)
                if m != NOMATCH:
                    if not match_slash or m != ABORT_TO_STARSTAR:
                        return m
                elif not match_slash and t_ch == 0x2F:
                    return ABORT_TO_STARSTAR
                ti += 1
                t_ch = at(text, ti)
                if casefold:
                    t_ch = low(t_ch)
            return ABORT_ALL
        elif p_ch == 0x5B:
            members, end = ignore._bracket(p, pi, ignore.GIT_CLASSES, casefold)
            if members is None:
                return ABORT_ALL
            if t_ch not in members:
                return NOMATCH
            pi = end
            ti += 1
            continue
        else:
            if t_ch != p_ch:
                return NOMATCH
        pi += 1
        ti += 1
    return NOMATCH if at(text, ti) else MATCH


def rsync_dowild(p: bytes, text: bytes) -> int:
    """rsync lib/wildmatch.c dowild() on one string: 1 match, 0 no, -1/-2 aborts."""
    TRUE, FALSE, ABORT_ALL, ABORT_TO_STARSTAR = 1, 0, -1, -2
    pi, ti = 0, 0

    def at(s, k):
        return s[k] if k < len(s) else 0

    while at(p, pi):
        p_ch = p[pi]
        t_ch = at(text, ti)
        if t_ch == 0 and p_ch != 0x2A:
            return ABORT_ALL
        if p_ch == 0x5C:
            pi += 1
            if t_ch != at(p, pi):
                return FALSE
        elif p_ch == 0x3F:
            if t_ch == 0x2F:
                return FALSE
        elif p_ch == 0x2A:
            pi += 1
            special = at(p, pi) == 0x2A
            while at(p, pi) == 0x2A:
                pi += 1
            if at(p, pi) == 0:
                return TRUE if special or 0x2F not in text[ti:] else FALSE
            while True:
                if t_ch == 0:
                    break
                m = rsync_dowild(p[pi:], text[ti:])
                if m != FALSE:
                    if not special or m != ABORT_TO_STARSTAR:
                        return m
                elif not special and t_ch == 0x2F:
                    return ABORT_TO_STARSTAR
                ti += 1
                t_ch = at(text, ti)
            return ABORT_ALL
        elif p_ch == 0x5B:
            members, end = ignore._bracket(p, pi, ignore.RSYNC_CLASSES, False)
            if members is None:
                return ABORT_ALL
            if t_ch not in members:
                return FALSE
            pi = end
            ti += 1
            continue
        else:
            if t_ch != p_ch:
                return FALSE
        pi += 1
        ti += 1
    return FALSE if at(text, ti) else TRUE


def rsync_where_minus_one(p: bytes, text: bytes) -> bool:
    """wildmatch_array(p, [text], -1): at the start, then after every slash."""
    m = rsync_dowild(p, text)
    if m != 1 and m != -1:
        ti = 0
        while ti < len(text):
            c = text[ti]
            ti += 1
            if c == 0x2F:
                m = rsync_dowild(p, text[ti:])
                if m != 0 and m != -2:
                    break
        else:
            return False
    return m == 1


PAT_ATOMS = [b"a", b"b", b"/", b"*", b"**", b"?", b"[ab]", b"[!a]", b"[a-]", b"\\*", b"\\",
             b"[]b]", b"[[:alpha:]]", b"[a", b".", b"A", b"[--/]", b"[^/]"]
TEXT_ATOMS = [b"a", b"b", b"/", b"A", b".", b"*", b"-", b"]"]
pats = st.lists(st.sampled_from(PAT_ATOMS), max_size=6).map(b"".join)
texts = st.lists(st.sampled_from(TEXT_ATOMS), min_size=1, max_size=7).map(b"".join)


@settings(max_examples=3000, deadline=None, database=None)
@given(p=pats, t=texts, casefold=st.booleans())
def test_git_regex_equals_wildmatch(p, t, casefold):
    src = ignore.git_regex(p, casefold)
    got = src is not None and re.fullmatch(src, t.lower() if casefold else t, re.DOTALL) is not None
    assert got == (git_dowild(p, t, True, casefold) == 0), (p, t, src)


@settings(max_examples=3000, deadline=None, database=None)
@given(p=pats, t=texts)
def test_rsync_regex_equals_wildmatch(p, t):
    src = ignore.rsync_regex(p)
    got = src is not None and re.fullmatch(src, t, re.DOTALL) is not None
    assert got == (rsync_dowild(p, t) == 1), (p, t, src)
    any_slash = src is not None and re.fullmatch(b"(?:.*/)?" + src, t, re.DOTALL) is not None
    assert any_slash == rsync_where_minus_one(p, t), (p, t, src)


# --------------------------------------------------------------------------------------
# hand-written: every rule of gitignore(5), each against git as well

@pytest.fixture
def w(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    return str(root)


def test_git_blank_lines_and_comments(w):
    make(w, "a", "#c", "b", gitignore="\n\n#c\n\n  \na\n")
    assert both_git(w)[0] == {".gitignore", "#c", "b"}


def test_git_escaped_hash_and_bang(w):
    make(w, "#c", "!x", "x", gitignore="\\#c\n\\!x\n")
    assert both_git(w)[0] == {".gitignore", "x"}


def test_git_trailing_spaces_ignored_unless_escaped(w):
    make(w, "a", "b ", "c  ", gitignore="a   \nb\\ \nc \\ \n")
    assert both_git(w)[0] == {".gitignore"}
    # "c \\ " keeps both spaces: "c  " ignored; a tab is not trimmed
    make(w, "d", gitignore="d\t\n")
    assert both_git(w)[0] == {".gitignore", "a", "b ", "c  ", "d"}


def test_git_negation_reincludes(w):
    make(w, "a.log", "keep.log", "b.txt", gitignore="*.log\n!keep.log\n")
    assert both_git(w)[0] == {".gitignore", "keep.log", "b.txt"}


def test_git_cannot_reinclude_inside_excluded_directory(w):
    make(w, "build/x", "build/keep", "other/keep",
         gitignore="build/\n!build/keep\n!keep\n", gitignore_build="!keep\n")
    assert both_git(w)[0] == {".gitignore", "other/keep"}


def test_git_reinclude_with_dir_star(w):
    # the man page's example: everything except foo/bar
    make(w, "a", "foo/x", "foo/bar/y", "z/foo/bar", gitignore="/*\n!/foo\n/foo/*\n!/foo/bar\n")
    assert both_git(w)[0] == {"foo/bar/y"}


def test_git_last_match_wins(w):
    make(w, "a.txt", gitignore="!a.txt\n*.txt\n")
    assert both_git(w)[0] == {".gitignore"}
    make(w, gitignore="*.txt\n!a.txt\n")
    assert both_git(w)[0] == {".gitignore", "a.txt"}


def test_git_deeper_gitignore_takes_precedence(w):
    make(w, "d/a.txt", "d/b.txt", "c.txt", gitignore="*.txt\n", gitignore_d="!a.txt\n")
    assert both_git(w)[0] == {".gitignore", "d/.gitignore", "d/a.txt"}


def test_git_info_exclude_is_lowest_precedence(w):
    git(w, "init", "-q")
    make(w, "a.txt", "b.txt", "c.bin", gitignore="!a.txt\n", exclude="*.txt\n*.bin\n")
    assert both_git(w)[0] == {".gitignore", "a.txt"}


def test_git_slash_in_middle_anchors_to_gitignore_dir(w):
    make(w, "doc/frotz/x", "a/doc/frotz/y", "frotz/z", "a/frotz/w", gitignore="doc/frotz/\n")
    assert both_git(w)[0] == {".gitignore", "a/doc/frotz/y", "frotz/z", "a/frotz/w"}
    make(w, gitignore="frotz/\n")
    assert both_git(w)[0] == {".gitignore"}


def test_git_leading_slash_anchors(w):
    make(w, "foo", "a/foo", "a/b/foo", gitignore="/foo\n", gitignore_a="/foo\n")
    assert both_git(w)[0] == {".gitignore", "a/.gitignore", "a/b/foo"}


def test_git_no_slash_matches_at_any_level(w):
    make(w, "foo", "a/foo", "a/b/foo/x", "foox", gitignore="foo\n")
    assert both_git(w)[0] == {".gitignore", "foox"}


def test_git_trailing_slash_only_directories(w):
    os.makedirs(os.path.join(w, "d"))
    make(w, "foo", "bar/x", "d/bar", gitignore="foo/\nbar/\n")
    os.symlink("d", os.path.join(w, "lnk"))
    make(w, gitignore="foo/\nbar/\nlnk/\n")
    files, links = both_git(w)
    assert files == {".gitignore", "foo", "d/bar"} and links == {"lnk"}


def test_git_star_does_not_cross_slash(w):
    make(w, "foo/test.json", "foo/bar/hello.c", gitignore="foo/*\n")
    assert both_git(w)[0] == {".gitignore"}  # foo/bar is matched as a directory
    make(w, gitignore="foo/*.c\n")
    assert both_git(w)[0] == {".gitignore", "foo/test.json", "foo/bar/hello.c"}


def test_git_question_mark_and_ranges(w):
    make(w, "a1", "ab", "a/", "ax/y", "b1", "Z1", gitignore="a?\n[B-Z]1\n")
    assert both_git(w)[0] == {".gitignore", "b1"}
    # "?" never matches "/"
    make(w, "x/a/b", "x/acb", gitignore="x/a?b\n")
    assert both_git(w)[0] == {".gitignore", "a1", "ab", "ax/y", "b1", "Z1", "x/a/b"}


def test_git_question_mark_matches_one_byte(w):
    make(w, "é", "éé", "x", gitignore="??\n")  # é is two bytes in UTF-8
    assert both_git(w)[0] == {".gitignore", "éé", "x"}


def test_git_character_classes(w):
    make(w, "a1", "B2", "_3", " 4", "\x0b5", gitignore="[[:alpha:]]?\n[[:space:]]?\n")
    # git's isspace() has no \v: "\v5" stays
    assert both_git(w)[0] == {".gitignore", "_3", "\x0b5"}


def test_git_malformed_bracket_matches_nothing(w):
    make(w, "[a", "a", "[[:bogus:]]", gitignore="[a\n[[:bogus:]]\n")
    assert both_git(w)[0] == {".gitignore", "[a", "a", "[[:bogus:]]"}


def test_git_leading_double_star(w):
    make(w, "foo", "a/foo", "a/b/foo/bar", "c/foo/bar", "bar", gitignore="**/foo\n**/foo/bar\n")
    assert both_git(w)[0] == {".gitignore", "bar"}


def test_git_trailing_double_star(w):
    make(w, "abc/x", "abc/d/y", "abcx", "x/abc/z", gitignore="abc/**\n")
    assert both_git(w)[0] == {".gitignore", "abcx", "x/abc/z"}


def test_git_middle_double_star(w):
    make(w, "a/b", "a/x/b", "a/x/y/b", "a/c", "z/a/b", gitignore="a/**/b\n")
    assert both_git(w)[0] == {".gitignore", "a/c", "z/a/b"}


def test_git_other_double_stars_are_single_stars_except_after_the_literal_prefix(w):
    # gitignore(5): "Other consecutive asterisks are considered regular asterisks", so
    # "a**/b" would be "a*/b". But git compares a pattern's literal prefix ("a") first and
    # wildmatches the rest ("**/b") on its own, where a leading "**/" counts as following
    # a slash: "a**/b" matches ax/y/b, and even ab. Inside the rest it is a plain star.
    make(w, "ax/y/b", "ax/b", "ab", "ac", "x/ab", "q/zx/y/c", "q/zx/c",
         gitignore="a**/b\nq/*x**/c\n")
    assert both_git(w)[0] == {".gitignore", "ac", "x/ab", "q/zx/y/c"}


def test_git_crlf_bom_and_nul(w):
    make(w, "a", "b", "c", "d", gitignore=b"\xef\xbb\xbfa\r\nb\r\n#c\r\nd\0x\n".decode())
    assert both_git(w)[0] == {".gitignore", "c"}


def test_git_symlinked_gitignore_is_not_read(w, tmp_path):
    (tmp_path / "elsewhere").write_text("a\n")
    make(w, "a", "b")
    os.symlink(tmp_path / "elsewhere", os.path.join(w, ".gitignore"))
    assert both_git(w) == ({"a", "b"}, {".gitignore"})


def test_git_tracked_files_are_kept(w):
    make(w, "x.log", "y.log", "build/out", "build/new", gitignore="*.log\nbuild/\n")
    files, _ = both_git(w, tracked=["x.log", "build/out"])
    assert files == {".gitignore", "x.log", "build/out"}


def test_git_tracked_but_deleted_or_replaced(w):
    make(w, "gone", "was_file", "kept")
    git(w, "init", "-q")
    git(w, "add", "-f", "--", "gone", "was_file", "kept")
    os.remove(os.path.join(w, "gone"))
    os.remove(os.path.join(w, "was_file"))
    make(w, "was_file/inner")
    assert both_git(w)[0] == {"kept", "was_file/inner"}


def test_git_dot_git_never(w):
    make(w, "a", "sub/.git", "sub/b", gitignore="!.git\n")
    files, _ = both_git(w)
    assert files == {".gitignore", "a", "sub/b"}


def test_git_symlinks_reported_never_uploaded(w):
    make(w, "a", "d/b", gitignore="ign\n")
    os.symlink("a", os.path.join(w, "l1"))
    os.symlink("d", os.path.join(w, "l2"))
    os.symlink("missing", os.path.join(w, "ign"))
    files, links = both_git(w, tracked=["l1"])
    assert files == {".gitignore", "a", "d/b"} and links == {"l1", "l2"}


def test_git_core_excludes_file_is_not_used(w, monkeypatch, tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "ignore").write_text("a\n")
    (home / ".gitconfig").write_text(f"[core]\n\texcludesFile = {home / '.config/git/ignore'}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL")
    make(w, "a", "b")
    git(w, "init", "-q")
    assert ours(w)[0] == {"a", "b"}
    assert git_oracle(w)[0] == {"a", "b"}  # the oracle runs with core.excludesFile=/dev/null


def test_git_subdirectory_source_sees_parent_gitignore(w):
    make(w, "sub/a.tmp", "sub/b", "sub/c/d.tmp", "sub/c/e", gitignore="*.tmp\nsub/c/e\n",
         gitignore_sub="b\n")
    git(w, "init", "-q")
    sub = os.path.join(w, "sub")
    assert both_git(sub, init=False)[0] == {".gitignore"}
    assert ignore.scan(sub).work_tree == Path(w).resolve()


def test_git_subdirectory_source_inside_excluded_directory(w):
    make(w, "out/sub/a", "out/sub/b", gitignore="out/\n")
    git(w, "init", "-q")
    git(w, "add", "-f", "--", "out/sub/a")
    assert both_git(os.path.join(w, "out", "sub"), init=False)[0] == {"a"}


def test_git_nested_repository_uses_its_own_rules(w):
    make(w, "a.log", "inner/a.log", "inner/b.tmp", "inner/c", gitignore="*.log\n",
         gitignore_inner="*.tmp\n")
    git(w, "init", "-q")
    git(os.path.join(w, "inner"), "init", "-q")
    files, _ = both_git(w)
    assert files == {".gitignore", "inner/.gitignore", "inner/a.log", "inner/c"}


def test_git_nested_repository_excluded_by_parent(w):
    make(w, "vendor/x/a", gitignore="vendor/\n")
    git(w, "init", "-q")
    git(os.path.join(w, "vendor", "x"), "init", "-q")
    assert both_git(w)[0] == {".gitignore"}


def test_git_submodule_listed_by_its_own_index(w, tmp_path):
    lib = tmp_path / "lib"
    make(str(lib), "f.c", "g.o", gitignore="*.o\n")
    git(lib, "init", "-q")
    git(lib, "add", "-A")
    git(lib, "commit", "-qm", "x")
    git(w, "init", "-q")
    git(w, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    write(w, "lib/new.o")
    write(w, ".gitignore", "lib\n")  # ignoring the submodule path does not drop it
    files, _ = both_git(w)
    assert files == {".gitignore", ".gitmodules", "lib/.gitignore", "lib/f.c"}


def test_git_ignore_case(w):
    make(w, "A.LOG", "b.Log", "c.txt", "D/x", gitignore="*.log\nd/\n")
    git(w, "init", "-q")
    git(w, "config", "core.ignoreCase", "true")
    assert both_git(w)[0] == {".gitignore", "c.txt"}


def test_git_ignore_case_quirks(w):
    # with core.ignoreCase git lower-cases the path and the pattern's plain letters, but not
    # an escaped letter nor the letters of a [...] class: "\\A" and "[B]x" match nothing
    make(w, "A", "a", "Bx", "bx", "Cy", "cy", "Dz", "dz", gitignore="\\A\n[B]x\n[c]y\nD*\n")
    git(w, "init", "-q")
    git(w, "config", "core.ignoreCase", "true")
    assert both_git(w)[0] == {".gitignore", "A", "a", "Bx", "bx"}


def test_git_plain_directory_outside_any_repository(w):
    make(w, "a.log", "b", "d/c.log", gitignore="*.log\n")
    s = ignore.scan(w)
    assert s.mode == "git" and s.work_tree is None
    assert set(s.files) == {".gitignore", "b"}
    git(w, "init", "-q")
    assert git_oracle(w)[0] == set(s.files)


# --------------------------------------------------------------------------------------
# hand-written: rsync's pattern rules, each against rsync as well

def test_sky_presence_selects_mode_and_gitignore_is_not_read(w):
    make(w, "a", "b.log", gitignore="a\n", skyignore="*.log\n")
    s = ignore.scan(w)
    assert s.mode == "skyignore"
    assert both_rsync(w)[0] == {".gitignore", ".skyignore", "a"}


def test_sky_empty_skyignore_still_selects_mode(w):
    make(w, "a", gitignore="a\n", skyignore="")
    assert both_rsync(w)[0] == {".gitignore", ".skyignore", "a"}


def test_sky_every_line_is_an_exclude_no_prefixes(w):
    make(w, "!a", "a", "+ b", "b", "- c", "c", skyignore="!a\n+ b\n- c\n")
    assert both_rsync(w)[0] == {".skyignore", "a", "b", "c"}


def test_sky_comments_and_blank_lines(w):
    make(w, "#x", ";y", "z", " #w", skyignore="#x\n;y\n\n z\n #w\n")
    assert both_rsync(w)[0] == {".skyignore", "#x", ";y", "z"}


def test_sky_trailing_spaces_are_part_of_the_pattern(w):
    make(w, "a", "b ", skyignore="a \nb \n")
    assert both_rsync(w)[0] == {".skyignore", "a"}


def test_sky_cr_and_crlf_end_lines(w):
    make(w, "a", "b", "c", skyignore="a\rb\r\nx\n")
    assert both_rsync(w)[0] == {".skyignore", "c"}


def test_sky_basename_anywhere(w):
    make(w, "foo", "a/foo", "a/b/foo/x", "foox", skyignore="foo\n")
    assert both_rsync(w)[0] == {".skyignore", "foox"}


def test_sky_anchored_to_root_and_to_merge_file_directory(w):
    make(w, "foo", "a/foo", "a/b/foo", "b/foo", skyignore="/foo\n", skyignore_a="/foo\n")
    assert both_rsync(w)[0] == {".skyignore", "a/.skyignore", "a/b/foo", "b/foo"}


def test_sky_trailing_slash_only_directories(w):
    make(w, "foo", "bar/x", "d/")
    os.symlink("d", os.path.join(w, "lnk"))
    make(w, skyignore="foo/\nbar/\nlnk/\n")
    assert both_rsync(w) == ({".skyignore", "foo"}, {"lnk"})


def test_sky_star_stops_at_slash_double_star_does_not(w):
    make(w, "a/x.c", "a/b/y.c", "z.c", "q/a/b/y.c", skyignore="a/*.c\n")
    assert both_rsync(w)[0] == {".skyignore", "a/b/y.c", "z.c", "q/a/b/y.c"}
    make(w, skyignore="/a/**.c\n")
    assert both_rsync(w)[0] == {".skyignore", "z.c", "q/a/b/y.c"}


def test_sky_unanchored_path_matches_last_elements(w):
    # "sub/foo" matches wherever a foo is inside a sub directory
    make(w, "sub/foo", "x/sub/foo", "x/sub/bar", "foo", skyignore="sub/foo\n")
    assert both_rsync(w)[0] == {".skyignore", "x/sub/bar", "foo"}


def test_sky_wildcard_path_in_subdirectory_matches_from_transfer_root(w):
    # a rule in a/.skyignore sees the path from the transfer root: "*/foo" matches a/foo
    make(w, "a/foo", "a/b/foo", "foo", skyignore_a="*/foo\n", skyignore="")
    assert both_rsync(w)[0] == {".skyignore", "a/.skyignore", "foo"}


def test_sky_double_star_prefix_matches_at_root(w):
    make(w, "foo", "a/foo", "a/b/foo", "bar", skyignore="**/foo\n")
    assert both_rsync(w)[0] == {".skyignore", "bar"}


def test_sky_double_star_middle_needs_a_directory(w):
    # unlike git, "a/**/b" does not match a/b in rsync
    make(w, "a/b", "a/x/b", "a/x/y/b", skyignore="a/**/b\n")
    assert both_rsync(w)[0] == {".skyignore", "a/b"}


def test_sky_triple_star_suffix(w):
    make(w, "dir/x", "dir/y/z", "dirx", "a/dir/w", skyignore="dir/***\n")
    assert both_rsync(w)[0] == {".skyignore", "dirx"}


def test_sky_question_mark_never_matches_slash(w):
    make(w, "a/b", "axb", skyignore="/a?b\n")
    assert both_rsync(w)[0] == {".skyignore", "a/b"}


def test_sky_manual_examples(w):
    # "- *.o": every name ending in .o; "- foo/*/bar": bar two levels below a foo;
    # "- /foo/**/bar": bar two or more levels below the top-level foo, not /foo/bar
    make(w, "x.o", "d/y.o", "foo/a/bar", "foo/bar", "q/foo/a/bar", "foo/a/b/bar", "z/foo/bar",
         skyignore="*.o\nfoo/*/bar\n")
    assert both_rsync(w)[0] == {".skyignore", "foo/bar", "foo/a/b/bar", "z/foo/bar"}
    make(w, skyignore="/foo/**/bar\n")
    assert both_rsync(w)[0] == {".skyignore", "x.o", "d/y.o", "foo/bar", "q/foo/a/bar",
                                "z/foo/bar"}


def test_sky_question_mark_and_classes(w):
    make(w, "a1", "ab", "B2", "_3", "\x0b4", skyignore="a?\n[[:upper:]]?\n[[:space:]]?\n")
    # rsync's isspace() (the C library's) includes \v, git's does not
    assert both_rsync(w)[0] == {".skyignore", "_3"}


def test_sky_malformed_bracket_matches_nothing(w):
    make(w, "[a", "a", "x[:y", skyignore="[a\n*[[:nope:]]\n")
    assert both_rsync(w)[0] == {".skyignore", "[a", "a", "x[:y"}


def test_sky_backslash_literal_without_wildcards(w):
    make(w, "a\\b", "ab", "c\\d1", "cd1", skyignore="a\\b\nc\\d?\n")
    assert both_rsync(w)[0] == {".skyignore", "ab", "c\\d1"}


def test_sky_subdirectory_rules_apply_there_only(w):
    make(w, "x", "a/x", "a/b/x", "c/x", skyignore="", skyignore_a="x\n")
    assert both_rsync(w)[0] == {".skyignore", "a/.skyignore", "x", "c/x"}


def test_sky_skyignore_files_are_uploaded_unless_excluded(w):
    make(w, "a/x", skyignore="y\n", skyignore_a=".skyignore\n")
    assert both_rsync(w)[0] == {".skyignore", "a/x"}


def test_sky_excluded_directory_skyignore_not_read(w):
    make(w, "d/x", "keep", skyignore="d\n", skyignore_d="keep\n")
    assert both_rsync(w)[0] == {".skyignore", "keep"}


def test_sky_dot_git_never_uploaded(w):
    make(w, ".git/config", "a/.git", "a/b", skyignore="")
    assert both_rsync(w)[0] == {".skyignore", "a/b"}


def test_sky_anchored_rule_in_directory_with_wildcard_name(w):
    # rsync pastes the merge file's directory into an anchored rule as pattern text
    make(w, "a[1]/foo", "a[1]/x", "a1/foo", skyignore="")
    write(w, "a[1]/.skyignore", "/foo\n/x*\n")
    assert both_rsync(w)[0] == {".skyignore", "a[1]/.skyignore", "a[1]/foo", "a[1]/x",
                                "a1/foo"}


# --------------------------------------------------------------------------------------
# the manifest uses the engine

def test_manifest_applies_ignore_rules(w):
    make(w, "a.py", "b.log", "d/c.py", "d/e.log", gitignore="*.log\n")
    os.symlink("a.py", os.path.join(w, "link"))
    m = manifest_mod.build((LocalSource(Path(w), "./w", True),), "contents")
    assert [e.key for e in m.entries] == [".gitignore", "a.py", "d/c.py"]
    assert m.symlinks == ("link",)
    m2 = manifest_mod.build((LocalSource(Path(w), "./w", True),), "basenames")
    assert [e.key for e in m2.entries] == ["w/.gitignore", "w/a.py", "w/d/c.py"]
    assert m2.symlinks == ("w/link",)
