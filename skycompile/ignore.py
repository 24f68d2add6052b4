"""Which files of a local source are uploaded: one ignore engine for the workdir and every
local file_mounts source.

The rule set is chosen per source directory, as SkyPilot chooses it:

* ``.skyignore`` exists at the root of the source: only ``.skyignore`` files apply, with
  the semantics of ``rsync -r --filter='dir-merge,- .skyignore' SRC/ DEST/``. Every
  non-comment line of a ``.skyignore`` is an exclude pattern (no ``+``/``-``/``!``
  prefixes, trailing spaces kept, ``#`` and ``;`` lines are comments); a ``.skyignore``
  in a subdirectory applies from there down; rsync's pattern rules decide what a line
  matches. The ``.skyignore`` files themselves are uploaded unless a rule excludes them
  (rsync's dir-merge without the ``e`` modifier transfers them).
* otherwise git's rules, as ``git ls-files --cached --others --exclude-standard`` reports
  them with ``core.excludesFile`` unset: ``.gitignore`` at every level (with negation),
  ``.git/info/exclude`` of the repository, and, inside a git work tree, tracked files are
  kept even when a pattern matches them. When the source is a subdirectory of a work tree,
  the ``.gitignore`` files of its parent directories inside the work tree apply too. A
  nested repository (a subdirectory with its own ``.git``, a submodule or a clone) is
  listed by its own rules, as git lists it when run inside it. The user's global
  ``core.excludesFile`` (``~/.config/git/ignore``) is never read: what is uploaded must
  not depend on who compiles. ``core.ignoreCase`` of the repository is honoured.

In both modes: nothing named ``.git`` is ever uploaded, symlinks are never uploaded (those
the rules would otherwise upload are reported), nor are sockets, FIFOs or devices.

Matching is exact, byte for byte, including the corner cases where the tools differ from
their manuals (see README "Ignore rules"). Patterns are compiled to regular expressions
that reproduce git's and rsync's ``wildmatch`` (not fnmatch); excluded directories are
pruned without being read, as both tools do.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import subprocess
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

from .errors import SkycompileError

SKYIGNORE = ".skyignore"
_SKYIGNORE = b".skyignore"
_GITIGNORE = b".gitignore"
_DOT_GIT = b".git"
_SLASH = 0x2F


class IgnoreError(SkycompileError):
    """The ignore rules of a source cannot be evaluated (e.g. git is needed but missing)."""


@dataclass(frozen=True)
class Scan:
    """The outcome of applying the ignore rules to one source directory."""

    root: Path
    mode: str  # "skyignore" or "git"
    work_tree: Path | None  # the git work tree holding `root` (git mode), else None
    files: tuple[str, ...]  # regular files to upload, '/'-separated, relative to root,
    #                         sorted by their bytes (for UTF-8 names: by text)
    symlinks: tuple[str, ...]  # symlinks the rules would otherwise upload (never uploaded)


class Unreadable(Exception):
    """A directory the rules would upload (or a file in it) cannot be read: uploading the
    rest would silently leave it out, so the scan stops."""

    def __init__(self, path: str, reason: str | None):
        super().__init__(path, reason)
        self.path, self.reason = path, reason or "cannot be read"


def rules_mode(root: str | os.PathLike) -> str:
    """"skyignore" when `root` has a .skyignore (SkyPilot's test: it exists), else "git"."""
    return "skyignore" if os.path.exists(os.path.join(root, SKYIGNORE)) else "git"


def scan(root: str | os.PathLike) -> Scan:
    """Walk the directory `root` and return what its ignore rules upload."""
    real = os.fsencode(os.path.realpath(root))
    files: list[bytes] = []
    links: list[bytes] = []
    mode = rules_mode(os.fsdecode(real))
    work_tree = None
    if mode == "skyignore":
        _scan_skyignore(real, files, links)
    else:
        found = _find_work_tree(real)
        if found is None:
            repo = _Repo.plain(real)
            _walk_git(repo, b"", (), b"", files, links)
        else:
            top, gitdir = found
            work_tree = Path(os.fsdecode(top))
            repo = _Repo.load(top, gitdir)
            prefix = b"" if top == real else real[len(top) + 1:] + b"/"
            _scan_git_source(repo, prefix, files, links)
    return Scan(Path(os.fsdecode(real)), mode, work_tree, _decode(files), _decode(links))


def _decode(paths: list[bytes]) -> tuple[str, ...]:
    """Sorted (by bytes: for UTF-8 names the same order as by text), decoded as os.fsdecode
    does, in one pass."""
    if not paths:
        return ()
    paths.sort()
    return tuple(b"\0".join(paths).decode("utf-8", "surrogateescape").split("\0"))


# --------------------------------------------------------------------------------------
# Character classes, as each tool's ctype macros see a byte (ASCII only: git uses its own
# sane_ctype table, rsync the C library's in the C/UTF-8 locale).

_UPPER = frozenset(range(0x41, 0x5B))
_LOWER = frozenset(range(0x61, 0x7B))
_DIGIT = frozenset(range(0x30, 0x3A))
_ALNUM = _UPPER | _LOWER | _DIGIT
_GRAPH = frozenset(range(0x21, 0x7F))
_CLASSES = {
    b"alnum": _ALNUM, b"alpha": _UPPER | _LOWER, b"blank": frozenset((0x09, 0x20)),
    b"cntrl": frozenset(range(0x20)) | {0x7F}, b"digit": _DIGIT, b"graph": _GRAPH,
    b"lower": _LOWER, b"print": frozenset(range(0x20, 0x7F)), b"punct": _GRAPH - _ALNUM,
    b"upper": _UPPER, b"xdigit": _DIGIT | frozenset(b"abcdefABCDEF"),
}
# git's isspace() is its own: \t \n \r and space, not \v \f (ctype.c).
GIT_CLASSES = {**_CLASSES, b"space": frozenset((0x09, 0x0A, 0x0D, 0x20))}
RSYNC_CLASSES = {**_CLASSES, b"space": frozenset((0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20))}


def _bracket(pat: bytes, i: int, classes: dict, casefold: bool):
    """The bracket expression starting at pat[i] == '[', parsed exactly as wildmatch's
    dowild() does. Returns (members, end): the byte values it matches (a text byte, after
    case folding when `casefold`; never '/'), or None when it is malformed (wildmatch then
    fails the whole match), and the index just after its ']'."""
    n = len(pat)

    def at(k: int) -> int:
        return pat[k] if k < n else 0

    p = i + 1
    p_ch = at(p)
    if p_ch == 0x5E:  # '^' is a synonym of '!'
        p_ch = 0x21
    negated = p_ch == 0x21
    if negated:
        p += 1
        p_ch = at(p)
    prev_ch = 0
    items: list[tuple] = []
    while True:  # C: do { ... } while (prev_ch = p_ch, (p_ch = *++p) != ']');
        if not p_ch:
            return None, n
        if p_ch == 0x5C:  # backslash: the next byte literally
            p += 1
            p_ch = at(p)
            if not p_ch:
                return None, n
            items.append(("lit", p_ch))
        elif p_ch == 0x2D and prev_ch and at(p + 1) and at(p + 1) != 0x5D:  # range
            p += 1
            p_ch = at(p)
            if p_ch == 0x5C:
                p += 1
                p_ch = at(p)
                if not p_ch:
                    return None, n
            items.append(("range", prev_ch, p_ch))
            p_ch = 0  # makes prev_ch 0
        elif p_ch == 0x5B and at(p + 1) == 0x3A:  # "[:class:]"
            s = p + 2
            p = s
            while at(p) and at(p) != 0x5D:
                p += 1
            p_ch = at(p)
            if not p_ch:
                return None, n
            length = p - s - 1
            if length < 0 or at(p - 1) != 0x3A:  # no ":]": a plain '[' after all
                p = s - 2
                p_ch = 0x5B
                items.append(("lit", 0x5B))
            else:
                name = pat[s:s + length]
                if name not in classes:
                    return None, n
                items.append(("class", name))
                p_ch = 0
        else:
            items.append(("lit", p_ch))
        prev_ch = p_ch
        p += 1
        p_ch = at(p)
        if p_ch == 0x5D:
            break

    members = set()
    for t in range(256):
        matched = False
        for item in items:
            kind = item[0]
            if kind == "lit":
                matched = matched or t == item[1]
            elif kind == "range":
                lo, hi = item[1], item[2]
                if lo <= t <= hi:
                    matched = True
                elif casefold and t in _LOWER and lo <= t - 0x20 <= hi:
                    matched = True
            else:
                if t in classes[item[1]] or (casefold and item[1] == b"upper" and t in _LOWER):
                    matched = True
        if matched != negated and t != _SLASH:
            members.add(t)
    return frozenset(members), p + 1


def _class_rx(members: frozenset) -> bytes:
    if not members:
        return b"(?!)"
    parts = []
    values = sorted(members)
    start = prev = values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(b"\\x%02x" % start if start == prev else b"\\x%02x-\\x%02x" % (start, prev))
        if v is not None:
            start = prev = v
    return b"[" + b"".join(parts) + b"]"


def _lit(byte: int) -> bytes:
    return re.escape(bytes((byte,)))


def _lower(byte: int) -> int:
    return byte + 0x20 if 0x41 <= byte <= 0x5A else byte


def git_regex(pat: bytes, casefold: bool = False) -> bytes | None:
    """A regular expression (bytes, for re.DOTALL, to be matched whole) equivalent to git's
    wildmatch(pat, text, WM_PATHNAME) -- the text lower-cased first when `casefold`, as
    WM_CASEFOLD does. `pat` is the string dowild() starts on: a "**" at its very start
    counts as following a slash. None: the pattern matches nothing."""
    out = []
    n = len(pat)
    i = 0
    while i < n:
        c = pat[i]
        if c == 0x5C:  # backslash: the next byte literally (and not case-folded: git's quirk)
            i += 1
            if i >= n:
                return None  # a trailing backslash never matches
            out.append(_lit(pat[i]))
            i += 1
        elif c == 0x3F:  # '?'
            out.append(b"[^/]")
            i += 1
        elif c == 0x2A:  # '*' run
            j = i
            while j < n and pat[j] == 0x2A:
                j += 1
            nxt = pat[j] if j < n else None
            if j - i >= 2 and (i == 0 or pat[i - 1] == _SLASH) and (
                    nxt is None or nxt == _SLASH
                    or (nxt == 0x5C and j + 1 < n and pat[j + 1] == _SLASH)):
                if nxt == _SLASH:  # "**/": zero or more whole directories
                    out.append(b"(?:.*/)?")
                    i = j + 1
                else:
                    out.append(b".*")
                    i = j
            else:
                out.append(b"[^/]*")
                i = j
        elif c == 0x5B:  # '['
            members, end = _bracket(pat, i, GIT_CLASSES, casefold)
            if members is None:
                return None
            out.append(_class_rx(members))
            i = end
        else:
            out.append(_lit(_lower(c) if casefold else c))
            i += 1
    return b"".join(out)


def rsync_regex(pat: bytes) -> bytes | None:
    """A regular expression (bytes, re.DOTALL, matched whole) equivalent to rsync's
    wildmatch(pat, text): '*' stops at '/', '**' (or more stars) does not, '?' and
    classes never match '/'. None: the pattern matches nothing."""
    out = []
    n = len(pat)
    i = 0
    while i < n:
        c = pat[i]
        if c == 0x5C:
            i += 1
            if i >= n:
                return None
            out.append(_lit(pat[i]))
            i += 1
        elif c == 0x3F:
            out.append(b"[^/]")
            i += 1
        elif c == 0x2A:
            j = i
            while j < n and pat[j] == 0x2A:
                j += 1
            out.append(b".*" if j - i >= 2 else b"[^/]*")
            i = j
        elif c == 0x5B:
            members, end = _bracket(pat, i, RSYNC_CLASSES, False)
            if members is None:
                return None
            out.append(_class_rx(members))
            i = end
        else:
            out.append(_lit(c))
            i += 1
    return b"".join(out)


def _union(items: list[tuple[int, bytes]]):
    """One compiled alternation of (index, regex) items, highest index first, so that
    `m.lastindex` of a match names the highest-index item that matches the whole subject.
    Returns (bound match method, group -> index tuple, highest index)."""
    if not items:
        return None, (), -1
    items = sorted(items, key=lambda it: -it[0])
    rx = re.compile(b"|".join(b"(" + src + b")\\Z" for _, src in items), re.DOTALL)
    return rx.match, (-1,) + tuple(i for i, _ in items), items[0][0]


# --------------------------------------------------------------------------------------
# git: .gitignore / info/exclude patterns (dir.c), matched like last_matching_pattern().

_GLOB_SPECIAL = frozenset(b"*?[\\")
_K_NONE, _K_ALL, _K_LIT, _K_ENDS, _K_BASE, _K_PATH = range(6)


@dataclass(frozen=True)
class GitPattern:
    negative: bool
    mustbedir: bool
    kind: int  # _K_*: what to match, and how
    data: bytes  # the literal, the suffix, or the regex source
    key: bytes = b""  # _K_PATH: a path component every matching path has, if known


def _trim_trailing_spaces(line: bytes) -> bytes:
    last_space = None
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == 0x20:
            if last_space is None:
                last_space = i
        elif c == 0x5C:
            i += 1
            if i >= n:
                return line
            last_space = None
        else:
            last_space = None
        i += 1
    return line if last_space is None else line[:last_space]


def git_lines(data: bytes) -> list[bytes]:
    """The pattern lines of a .gitignore / info/exclude file, as add_patterns_from_buffer()
    cuts them: a UTF-8 BOM skipped, lines split at LF, one CR before the LF dropped, empty
    lines and lines starting with '#' skipped, a NUL ends the line, trailing unescaped
    spaces trimmed."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    for raw in data.split(b"\n"):
        if not raw or raw[0] == 0x23:
            continue
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        out.append(_trim_trailing_spaces(raw.split(b"\0", 1)[0]))
    return out


def parse_git_pattern(line: bytes, casefold: bool = False) -> GitPattern:
    """One .gitignore line (already cut by `git_lines`), as parse_path_pattern() and
    match_basename()/match_pathname() read it."""
    negative = line[:1] == b"!"
    p = line[1:] if negative else line
    mustbedir = False
    if p.endswith(b"/"):
        p = p[:-1]
        mustbedir = True
    n = len(p)
    simple = next((k for k, c in enumerate(p) if c in _GLOB_SPECIAL), n)
    fold = p.lower() if casefold else p
    if b"/" not in p:  # PATTERN_FLAG_NODIR: matched against the basename
        if simple == n:
            return GitPattern(negative, mustbedir, _K_LIT if n else _K_NONE, fold)
        if p[0] == 0x2A and not any(c in _GLOB_SPECIAL for c in p[1:]):  # ENDSWITH
            return GitPattern(negative, mustbedir, _K_ENDS if n > 1 else _K_ALL, fold[1:])
        src = git_regex(p, casefold)
        return GitPattern(negative, mustbedir, _K_NONE if src is None else _K_BASE, src or b"")
    # matched against the path relative to the .gitignore's directory, with the literal
    # prefix compared first and wildmatch run on the rest (so "**" right after the prefix
    # counts as following a slash: "a**/b" matches "ax/y/b").
    prefix = simple
    if p[0] == _SLASH:
        p, fold, prefix = p[1:], fold[1:], prefix - 1
    rest = git_regex(p[prefix:], casefold)
    if rest is None:
        return GitPattern(negative, mustbedir, _K_NONE, b"")
    if prefix == 0 and rest.startswith(b"(?:.*/)?"):
        # "**/X" where X can never match a '/': X matched against the basename.
        tail = p[p.index(b"/") + 1:]
        if b"/" not in tail and tail.strip(b"*") != b"" or tail == b"*":
            src = git_regex(tail, casefold)
            if src is not None:
                return GitPattern(negative, mustbedir, _K_BASE, src)
    return GitPattern(negative, mustbedir, _K_PATH, re.escape(fold[:prefix]) + rest,
                      _literal_component(fold, prefix))


def _literal_component(p: bytes, prefix: int) -> bytes:
    """A component of the pathname pattern `p` that every path it matches has as a whole
    component (the longest plain one), or b"". Only for patterns whose components line up
    with path components: without brackets or escapes (where a '/' might not separate),
    and without a "**" glued to a literal prefix (git lets that one cross slashes)."""
    glued = prefix and p[prefix - 1] != _SLASH and p[prefix:prefix + 2] == b"**"
    if b"[" in p or b"\\" in p or glued:
        return b""
    plain = [c for c in p.split(b"/") if c and b"*" not in c and b"?" not in c]
    return max(plain, key=len) if plain else b""


class _Table:
    """The patterns of one list that apply to one kind of entry (files, or directories),
    grouped by how they are matched. best() is the index of the last matching pattern."""

    __slots__ = ("all", "lit", "ends", "brx", "bidx", "bmax", "prx", "pidx", "pmax", "keyed",
                 "kcache", "last")

    def __init__(self, pats: list[tuple[int, GitPattern]]):
        self.all = -1
        self.lit: dict[bytes, int] = {}
        ends: dict[int, dict[bytes, int]] = {}
        base, path = [], []
        keyed: dict[bytes, list] = {}
        for i, p in pats:
            if p.kind == _K_ALL:
                self.all = i
            elif p.kind == _K_LIT:
                self.lit[p.data] = i
            elif p.kind == _K_ENDS:
                ends.setdefault(len(p.data), {})[p.data] = i
            elif p.kind == _K_BASE:
                base.append((i, p.data))
            elif p.kind == _K_PATH:
                (keyed.setdefault(p.key, []) if p.key else path).append((i, p.data))
        # suffix tables by the suffix's last byte: most names end in no suffix's last byte
        by_last: dict[int, list] = {}
        for size, table in sorted(ends.items()):
            for suffix, i in table.items():
                group = by_last.setdefault(suffix[-1], [])
                if not group or group[-1][0] != size:
                    group.append((size, {}))
                group[-1][1][suffix] = i
        self.ends = {k: tuple(v) for k, v in by_last.items()}
        self.brx, self.bidx, self.bmax = _union(base)
        self.prx, self.pidx, self.pmax = _union(path)
        self.keyed = keyed
        self.kcache: dict = {}  # key -> the union of its patterns, compiled when first needed
        # (directory part, its keys): a walk asks about one directory's entries in a row
        self.last: tuple = (None, ())

    def best(self, rel: bytes, name: bytes, pos: int) -> int:
        b = self.lit.get(name, self.all)
        if self.all > b:
            b = self.all
        ends = self.ends.get(name[-1]) if self.ends else None
        if ends is not None:
            ln = len(name)
            for size, table in ends:
                if size > ln:
                    break
                v = table.get(name[-size:], -1)
                if v > b:
                    b = v
        if self.bmax > b:
            m = self.brx(name)
            if m is not None and self.bidx[m.lastindex] > b:
                b = self.bidx[m.lastindex]
        if self.pmax > b:
            m = self.prx(rel, pos)
            if m is not None and self.pidx[m.lastindex] > b:
                b = self.pidx[m.lastindex]
        if self.keyed:
            keyed = self.keyed
            dpart = rel[pos:len(rel) - len(name)]
            last = self.last
            if last[0] != dpart:
                last = self.last = (dpart, tuple(c for c in dpart.split(b"/") if c in keyed))
            for key in (last[1] + (name,) if name in keyed else last[1]):
                entry = self.kcache.get(key)
                if entry is None:
                    entry = self.kcache[key] = _union(keyed[key])
                if entry[2] > b:
                    m = entry[0](rel, pos)
                    if m is not None and entry[1][m.lastindex] > b:
                        b = entry[1][m.lastindex]
        return b


class GitList:
    """The patterns of one .gitignore (or info/exclude), for paths below `base`."""

    __slots__ = ("pos", "neg", "files", "dirs")

    def __init__(self, base: bytes, lines: list[bytes], casefold: bool = False):
        pats = [parse_git_pattern(line, casefold) for line in lines]
        self.pos = len(base)  # paths are relative to the work tree; patterns to `base`
        self.neg = [p.negative for p in pats]
        self.files = _Table([(i, p) for i, p in enumerate(pats) if not p.mustbedir])
        self.dirs = _Table(list(enumerate(pats)))


def _git_excluded(chain: tuple, rel: bytes, name: bytes, is_dir: bool) -> bool:
    for pl in chain:
        b = (pl.dirs if is_dir else pl.files).best(rel, name, pl.pos)
        if b >= 0:
            return not pl.neg[b]
    return False


def _absent(e: OSError) -> bool:
    """The path is not there (or is a symlink where none is followed): nothing to read.
    Anything else (EACCES, EIO) is an Unreadable: a rule file or a directory silently
    skipped would change what is uploaded."""
    return e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


def _unless_absent(e: OSError, path: bytes) -> None:
    """Return when `e` says the path is absent; else raise Unreadable for it."""
    if not _absent(e):
        raise Unreadable(os.fsdecode(path), e.strerror) from None


def _read_nofollow(path: bytes) -> bytes | None:
    """A .gitignore inside the work tree, read as git reads it: never through a symlink."""
    try:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
    except OSError as e:
        _unless_absent(e, path)
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# git repositories: discovery, tracked files, nested repositories.

def _git_env() -> dict:
    """The caller's environment without what would point git at another repository or
    index, with paths given to git taken literally (names may contain glob characters)."""
    env = dict(os.environ)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR",
                "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE",
                "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_PREFIX",
                "GIT_GLOB_PATHSPECS", "GIT_NOGLOB_PATHSPECS", "GIT_ICASE_PATHSPECS"):
        env.pop(var, None)
    env["GIT_LITERAL_PATHSPECS"] = "1"
    return env


def _git(gitdir: bytes, top: bytes, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("git")
    if exe is None:
        raise IgnoreError(
            f"{os.fsdecode(top)} is a git work tree: its tracked files and ignore rules are "
            "read with git, which is not installed (install git, or add a .skyignore)")
    return subprocess.run([exe, b"--git-dir=" + gitdir, b"--work-tree=" + top,
                           "-c", "core.fsmonitor=false", *args],
                          cwd=top, env=_git_env(), capture_output=True)


def _valid_headref(path: bytes) -> bool:
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return os.readlink(path).startswith(b"refs/")
        with open(path, "rb") as fh:
            buf = fh.read(255)
    except OSError:
        return False
    if buf.startswith(b"ref:"):
        if buf[4:].lstrip(b" \t\n\r").startswith(b"refs/"):
            return True
    return re.match(rb"[0-9a-fA-F]{40}", buf) is not None


def _common_dir(gitdir: bytes) -> bytes:
    try:
        with open(os.path.join(gitdir, b"commondir"), "rb") as fh:
            data = fh.read().rstrip(b"\n").rstrip(b"\r")
    except OSError:
        return gitdir
    return data if data.startswith(b"/") else os.path.join(gitdir, data)


def _is_git_directory(path: bytes) -> bool:
    """setup.c is_git_directory(): HEAD is a valid ref, objects/ and refs/ are there."""
    if not _valid_headref(os.path.join(path, b"HEAD")):
        return False
    common = _common_dir(path)
    return os.access(os.path.join(common, b"objects"), os.X_OK) and \
        os.access(os.path.join(common, b"refs"), os.X_OK)


def _repo_gitdir(directory: bytes, strict: bool = False) -> bytes | None:
    """The git directory of the work tree rooted at `directory`, when it is one
    (is_nonbare_repository_dir(): a .git directory, or a "gitdir: " file). `strict`
    (inside a source): a .git that cannot be looked at is Unreadable, not "no repository"."""
    dotgit = os.path.join(directory, _DOT_GIT)
    try:
        st = os.stat(dotgit)
    except OSError as e:
        if strict and not _absent(e):  # stat needs only the directory's search right
            raise Unreadable(os.fsdecode(directory.rstrip(b"/") + b"/"), e.strerror) from None
        return None
    if stat.S_ISDIR(st.st_mode):
        return dotgit if _is_git_directory(dotgit) else None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        with open(dotgit, "rb") as fh:
            data = fh.read()
    except OSError:
        return dotgit  # git counts an unreadable gitfile as a repository
    if not data.startswith(b"gitdir: "):
        return None
    target = data[8:].split(b"\n", 1)[0].rstrip(b"\r")
    if not target:
        return None
    target = target if target.startswith(b"/") else os.path.join(directory, target)
    return target if _is_git_directory(target) else None


def _find_work_tree(path: bytes) -> tuple[bytes, bytes] | None:
    """The nearest enclosing git work tree (top, git dir), as git's discovery finds it
    from `path`: upwards, not across a filesystem boundary."""
    across = os.environ.get("GIT_DISCOVERY_ACROSS_FILESYSTEM", "").lower() in (
        "1", "true", "yes", "on")
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    cur = path
    while True:
        gitdir = _repo_gitdir(cur)
        if gitdir is not None:
            return cur, gitdir
        parent = os.path.dirname(cur)
        if parent == cur:
            return None
        try:
            if not across and os.stat(parent).st_dev != dev:
                return None
        except OSError:
            return None
        cur = parent


class _Repo:
    """One repository's view: its tracked paths, info/exclude and core.ignoreCase.
    `plain` is a directory outside any repository (git's rules without either)."""

    def __init__(self, top: bytes, gitdir: bytes | None, tracked: list[bytes],
                 info: GitList | None, casefold: bool):
        self.top = top
        self.gitdir = gitdir
        self.casefold = casefold
        self.sorted = tracked  # index order: sorted by bytes
        self.tracked = set(tracked)
        self.dirs_sorted = tracked
        if casefold:
            self.tracked = {p.lower() for p in tracked}
            self.dirs_sorted = sorted(p.lower() for p in tracked)
        self.tail = (info,) if info is not None else ()
        self._gitlinks: dict[bytes, bool] = {}

    @classmethod
    def plain(cls, top: bytes) -> "_Repo":
        return cls(top, None, [], None, False)

    @classmethod
    def load(cls, top: bytes, gitdir: bytes) -> "_Repo":
        conf = _git(gitdir, top, "config", "--bool", "--get", "core.ignorecase")
        casefold = conf.returncode == 0 and conf.stdout.strip() == b"true"
        res = _git(gitdir, top, "ls-files", "-z", "--cached")
        if res.returncode != 0:
            raise IgnoreError(f"git ls-files failed in {os.fsdecode(top)}: "
                              f"{res.stderr.decode(errors='replace').strip()}")
        tracked = res.stdout.split(b"\0")
        tracked.pop()  # after the last NUL; a conflicted path is listed once per stage
        info = None
        data = _read_plain(os.path.join(_common_dir(gitdir), b"info", b"exclude"))
        if data:
            lines = git_lines(data)
            if lines:
                info = GitList(b"", lines, casefold)
        return cls(top, gitdir, tracked, info, casefold)

    def is_gitlink(self, rel: bytes) -> bool:
        """Whether the tracked path `rel` (a directory on disk) is a gitlink (a submodule)
        rather than a tracked file replaced by a directory; asked of git, rarely."""
        known = self._gitlinks.get(rel)
        if known is None:
            res = _git(self.gitdir, self.top, "ls-files", "-z", "--stage", "--", rel)
            known = res.returncode == 0 and any(
                r.startswith(b"160000 ") and r.partition(b"\t")[2] == rel
                for r in res.stdout.split(b"\0"))
            self._gitlinks[rel] = known
        return known

    def has_tracked_under(self, d: bytes) -> bool:
        """directory_exists_in_index() == index_directory, for d ending with '/'."""
        if not self.sorted:
            return False
        if self.casefold:
            d = d.lower()
        i = bisect_left(self.dirs_sorted, d)
        return i < len(self.dirs_sorted) and self.dirs_sorted[i].startswith(d)

    def tracked_under(self, d: bytes) -> list[bytes]:
        i = bisect_left(self.sorted, d)
        out: list[bytes] = []
        while i < len(self.sorted) and self.sorted[i].startswith(d):
            if not out or out[-1] != self.sorted[i]:
                out.append(self.sorted[i])
            i += 1
        return out


def _read_plain(path: bytes) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        if _absent(e) or e.errno == errno.EISDIR:
            return None
        raise Unreadable(os.fsdecode(path), e.strerror) from None


def _push_gitignore(repo: _Repo, d: bytes, chain: tuple) -> tuple:
    data = _read_nofollow(repo.top + b"/" + d + _GITIGNORE)
    if data:
        lines = git_lines(data)
        if lines:
            return (GitList(d, lines, repo.casefold),) + chain
    return chain


def _scan_git_source(repo: _Repo, prefix: bytes, files: list, links: list) -> None:
    """A source at `prefix` (b"" or b"a/b/") inside `repo`'s work tree: first the leading
    directories, as treat_leading_path() checks them; an excluded one leaves only the
    tracked files."""
    chain: tuple = ()
    cur = b""
    for comp in prefix.split(b"/")[:-1]:
        chain = _push_gitignore(repo, cur, chain)
        rel = cur + comp
        fold = rel.lower() if repo.casefold else rel
        if fold[len(cur):] == _DOT_GIT or _git_excluded(
                chain + repo.tail, fold, fold[len(cur):], True):
            _emit_tracked(repo, prefix, prefix, b"", files, links, strip=len(prefix))
            return
        cur = rel + b"/"
    _walk_git(repo, prefix, chain, b"", files, links, strip=len(prefix))


def _walk_git(repo: _Repo, start: bytes, chain: tuple, out: bytes, files: list, links: list,
              strip: int = 0) -> None:
    """List the directory `start` (relative to repo.top, b"" or ending with '/') as
    `git ls-files --cached --others --exclude-standard` does. Results are `out` + the
    path relative to repo.top with its first `strip` bytes removed."""
    top = repo.top + b"/"
    casefold = repo.casefold
    tail = repo.tail
    tracked = repo.tracked
    plain_keys = not out and not strip
    add_file, add_link = files.append, links.append
    stack = [(start, chain)]
    while stack:
        d, chain = stack.pop()
        try:
            with os.scandir(top + d) as it:
                entries = list(it)
        except OSError as e:
            raise Unreadable(os.fsdecode(top + d), e.strerror) from None
        chain = _push_gitignore(repo, d, chain)  # never through a symlink, as git
        full_chain = chain + tail
        for e in entries:
            name = e.name
            if name == _DOT_GIT:
                continue
            rel = d + name
            try:
                if e.is_file(follow_symlinks=False):  # the common case first
                    if full_chain and not casefold and rel not in tracked:
                        for pl in full_chain:
                            b = pl.files.best(rel, name, pl.pos)
                            if b >= 0:
                                break
                        if b >= 0 and not pl.neg[b]:
                            continue
                    elif casefold and (name.lower() == _DOT_GIT or full_chain and (
                            rel.lower() not in tracked and _git_excluded(
                                full_chain, rel.lower(), name.lower(), False))):
                        continue
                    add_file(rel if plain_keys else out + rel[strip:])
                    continue
                is_dir = e.is_dir(follow_symlinks=False)
                if not is_dir and not e.is_symlink():
                    continue  # sockets, FIFOs, devices: git lists none of them
            except OSError:
                continue
            if casefold:
                if name.lower() == _DOT_GIT:
                    continue
                mrel, mname = rel.lower(), name.lower()
            else:
                mrel, mname = rel, name
            if not is_dir:  # a symlink: git lists it like a file; it is reported, not uploaded
                if not full_chain or mrel in tracked or \
                        not _git_excluded(full_chain, mrel, mname, False):
                    add_link(rel if plain_keys else out + rel[strip:])
                continue
            if mrel in tracked and repo.is_gitlink(rel):
                _walk_nested(top + rel, out + rel[strip:] + b"/", files, links)
                continue
            sub = rel + b"/"
            if full_chain and _git_excluded(full_chain, mrel, mname, True):
                _emit_tracked(repo, sub, sub, out, files, links, strip=strip)
                continue
            if not repo.has_tracked_under(sub):
                gitdir = _repo_gitdir(top + rel, strict=True)
                if gitdir is not None:
                    _walk_nested(top + rel, out + sub[strip:], files, links, gitdir)
                    continue
            stack.append((sub, chain))


def _walk_nested(directory: bytes, out: bytes, files: list, links: list,
                 gitdir: bytes | None = None) -> None:
    """A nested repository (a submodule, or a clone inside the source): listed by its own
    rules and index, as git run inside it lists it. Nothing when it is not a repository
    (an uninitialised submodule)."""
    gitdir = gitdir or _repo_gitdir(directory, strict=True)
    if gitdir is None:
        return
    _walk_git(_Repo.load(directory, gitdir), b"", (), out, files, links)


def _emit_tracked(repo: _Repo, under: bytes, walked: bytes, out: bytes, files: list, links: list,
                  strip: int = 0) -> None:
    """The tracked paths below the excluded (unread) directory `under`: git lists them
    from the index; what exists on disk, reached without a symlink, is kept."""
    top = repo.top + b"/"
    real_dirs: dict[bytes, bool] = {}

    def real_dir(d: bytes) -> bool:  # d relative to top, no trailing slash
        if len(d) < len(walked):
            return True
        known = real_dirs.get(d)
        if known is None:
            parent = d.rsplit(b"/", 1)[0] if b"/" in d else b""
            try:
                known = real_dir(parent) and stat.S_ISDIR(os.lstat(top + d).st_mode)
            except OSError as e:
                _unless_absent(e, top + d)
                known = False
            real_dirs[d] = known
        return known

    for rel in repo.tracked_under(under):
        parent = rel.rsplit(b"/", 1)[0]
        if not real_dir(parent):
            continue
        key = out + rel[strip:]
        try:
            mode = os.lstat(top + rel).st_mode
        except OSError as e:
            _unless_absent(e, top + rel)
            continue
        if stat.S_ISDIR(mode):
            if repo.is_gitlink(rel):
                _walk_nested(top + rel, key + b"/", files, links)
        elif stat.S_ISREG(mode):
            files.append(key)
        elif stat.S_ISLNK(mode):
            links.append(key)


# --------------------------------------------------------------------------------------
# .skyignore: rsync --filter='dir-merge,- .skyignore' (exclude.c rule_matches()).

_BIGPATHBUFLEN = 4096 + 1024
_MAXPATHLEN = 4096


def skyignore_lines(data: bytes) -> list[bytes]:
    """The patterns of a .skyignore as rsync's parse_filter_file() reads a '-' merge file:
    lines end at LF or CR, empty lines and lines starting with '#' or ';' are skipped,
    nothing is trimmed, a NUL ends the line, over-long lines are dropped."""
    out = []
    for raw in re.split(rb"[\r\n]", data):
        if len(raw) > _BIGPATHBUFLEN - 1:
            continue
        line = raw.split(b"\0", 1)[0]
        if not line or line[0] in b"#;" or len(line) >= _MAXPATHLEN:
            continue
        out.append(line)
    return out


# subjects a rule is matched against
_S_BASE, _S_NAME, _S_NAME_SLASH, _S_SLASH_NAME, _S_SLASH_NAME_SLASH = range(5)


def skyignore_rule(line: bytes, where: bytes) -> tuple[bool, list, list]:
    """One .skyignore line of the directory `where` (b"" at the source root, else b"a/b"):
    (directory-only, [(subject, regex)] for directories, [(subject, regex)] for files).
    A subject is one of _S_* or ("tail", N): the last N path components."""
    pat = line
    dir_only = False
    if len(pat) > 1 and pat.endswith(b"/"):
        pat = pat[:-1]
        dir_only = True
    anchored = pat.startswith(b"/")
    if anchored:
        # rsync prefixes the merge file's directory to an anchored rule (as text: its
        # wildcards become part of the pattern) and matches from the transfer root.
        pat = where + pat if where else pat[1:]
    wild = any(c in b"*[?" for c in pat)
    wild2 = wild and b"**" in pat
    wild2_prefix = wild2 and pat.startswith(b"**") and not anchored
    wild3 = wild2 and len(pat) >= 3 and pat.endswith(b"***")
    slashes = pat.count(b"/")
    src = rsync_regex(pat) if wild else re.escape(pat)

    def subject(is_dir: bool):
        suffix = is_dir and wild3
        if anchored:
            return _S_NAME_SLASH if suffix else _S_NAME
        if not slashes and not wild2:
            return _S_BASE
        if wild2_prefix:
            return _S_SLASH_NAME_SLASH if suffix else _S_SLASH_NAME
        return _S_NAME_SLASH if suffix else _S_NAME

    if src is None:
        return dir_only, [], []
    if not anchored and not wild2 and slashes:
        if wild:  # the last slashes+1 components must match
            rules = [(("tail", slashes + 1), src)]
        else:  # a literal suffix at a component boundary
            rules = [(_S_NAME, b"(?:.*/)?" + src)]
        return dir_only, rules, ([] if dir_only else list(rules))
    if not anchored and wild2 and not wild2_prefix:
        src = b"(?:.*/)?" + src  # tried at the start and after every slash
    dirs = [(subject(True), src)]
    return dir_only, dirs, ([] if dir_only else [(subject(False), src)])


class SkyFile:
    """The compiled rules of one .skyignore."""

    __slots__ = ("dirs", "files")

    def __init__(self, where: bytes, lines: list[bytes]):
        groups: tuple[dict, dict] = ({}, {})
        for line in lines:
            _, dirs, files = skyignore_rule(line, where)
            for g, rules in zip(groups, (dirs, files)):
                for subj, src in rules:
                    g.setdefault(subj, []).append(src)
        self.dirs, self.files = (
            tuple((subj, re.compile(b"|".join(b"(?:" + s + b")\\Z" for s in srcs), re.DOTALL).match)
                  for subj, srcs in g.items())
            for g in groups)

    def __bool__(self) -> bool:
        return bool(self.dirs or self.files)

    def excludes(self, rel: bytes, name: bytes, is_dir: bool) -> bool:
        for subj, match in (self.dirs if is_dir else self.files):
            if subj == _S_BASE:
                s = name
            elif subj == _S_NAME:
                s = rel
            elif subj == _S_NAME_SLASH:
                s = rel + b"/"
            elif subj == _S_SLASH_NAME:
                s = b"/" + rel
            elif subj == _S_SLASH_NAME_SLASH:
                s = b"/" + rel + b"/"
            else:
                count = subj[1]
                parts = rel.split(b"/")
                if len(parts) < count:
                    continue
                s = b"/".join(parts[-count:])
            if match(s) is not None:
                return True
        return False


def _scan_skyignore(root: bytes, files: list, links: list) -> None:
    top = root + b"/"
    stack: list[tuple[bytes, tuple]] = [(b"", ())]
    while stack:
        d, rules = stack.pop()
        try:
            with os.scandir(top + d) as it:
                entries = list(it)
        except OSError as e:
            raise Unreadable(os.fsdecode(top + d), e.strerror) from None
        for e in entries:
            if e.name == _SKYIGNORE:
                data = _read_plain(top + d + _SKYIGNORE)  # rsync follows a symlink here
                if data:
                    compiled = SkyFile(d[:-1], skyignore_lines(data))
                    if compiled:
                        rules = rules + (compiled,)
                break
        for e in entries:
            name = e.name
            if name == _DOT_GIT:
                continue
            rel = d + name
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if rules and any(r.excludes(rel, name, is_dir) for r in rules):
                continue
            if is_dir:
                stack.append((rel + b"/", rules))
            elif e.is_symlink():
                links.append(rel)
            elif e.is_file(follow_symlinks=False):
                files.append(rel)
