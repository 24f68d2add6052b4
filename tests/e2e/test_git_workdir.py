"""A git workdir on real nodes: clone at a branch, tag, full or abbreviated commit, or the
default branch; a re-run fast-forwards; whatever else is in ~/sky_workdir stays untouched;
`--user` owns the checkout; GIT_TOKEN reaches git but never the disk.

The remote is a bare repository inside the node (/srv/repo.git, a file:// URL), made and
pushed to with the node's own git, so later pushes are seen the way a real remote's are.
GIT_TOKEN is also checked against a smart-HTTP remote on loopback (`git http-backend` behind
a Basic-auth gate): plain http, since TLS would need a CA the node trusts.
"""
from __future__ import annotations

import base64
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

URL = "file:///srv/repo.git"
OTHER_URL = "file:///srv/other.git"
WORKDIR = "/root/sky_workdir"
GIT_ENV = {"GIT_AUTHOR_NAME": "Tester", "GIT_AUTHOR_EMAIL": "tester@example.com",
           "GIT_COMMITTER_NAME": "Tester", "GIT_COMMITTER_EMAIL": "tester@example.com"}
TOKEN = "tok-SECRET-123"

# setup and run leave a trace of every execution, and say where and as whom they ran.
TASK = """
name: gitwd
workdir:
  url: {url}{ref_line}
setup: |
  echo "setup in $PWD as $(id -un)"
  echo x >> /var/tmp/setup-runs
run: |
  echo "run in $PWD as $(id -un)"
  echo x >> /var/tmp/run-runs
  echo "version: $(cat version.txt)"
  ls
"""


def task(ref: str | None = None, url: str = URL) -> str:
    # quoted: an abbreviated sha can be all digits, which YAML reads as a number
    return TASK.format(url=url, ref_line=f"\n  ref: '{ref}'" if ref is not None else "")


def git(node, script: str, **kw) -> str:
    """Shell commands in the node with a committer identity; returns stdout."""
    return node.sh("set -euo pipefail\n" + script, env=GIT_ENV, check=True, **kw).stdout


def make_repo(node, path: str = "/srv/repo.git", tag: str = "v1") -> dict[str, str]:
    """A bare repository whose default branch `main` has commits one -> two, an annotated tag
    at one, and a branch `feature` forked from one. Returns the commit shas."""
    work = path.removesuffix(".git") + "-src"
    out = git(node, f"""
git init --quiet --bare --initial-branch=main {path}
git init --quiet --initial-branch=main {work}
cd {work}
git remote add origin file://{path}
echo one > version.txt
git add version.txt
git commit --quiet -m one
git tag -a -m 'release {tag}' {tag}
echo two > version.txt
git commit --quiet -am two
git checkout --quiet -b feature HEAD~1
echo feature > version.txt
echo only-on-feature > feature.txt
git add feature.txt
git commit --quiet -am feature
git checkout --quiet main
git push --quiet origin main feature {tag}
for r in main~1 main feature; do git rev-parse "$r"; done
""")
    one, two, feature = out.split()
    return {"one": one, "two": two, "feature": feature}


def push_commit(node, name: str, content: str, branch: str = "main") -> str:
    return git(node, f"""
cd /srv/repo-src
git checkout --quiet {branch}
echo {content} > version.txt
echo {content} > {name}
git add -A
git commit --quiet -m {content}
git push --quiet origin {branch}
git rev-parse HEAD
""").strip()


def head(node, workdir: str = WORKDIR) -> str:
    return git(node, f"git -c safe.directory='*' -C {workdir} rev-parse HEAD").strip()


def status_rev(node, script: str) -> str:
    res = node.script(script, "status")
    assert res.returncode == 0, res.stderr
    m = re.search(r"^workdir: (\S+): git checkout at ([0-9a-f]{7,40})$", res.stdout, re.M)
    assert m, res.stdout
    return m.group(2)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below root: type, mode, mtime and (files) content."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns,
                                         p.read_bytes() if p.is_file() else None)
    return out


def runs(node, what: str) -> int:
    p = node.path(f"/var/tmp/{what}-runs")
    return len(p.read_text().splitlines()) if p.exists() else 0


# --- refs -------------------------------------------------------------------------------

@pytest.mark.parametrize("ref, flags, expect", [
    pytest.param("feature", (), "feature", id="branch"),
    pytest.param("v1", (), "one", id="annotated-tag"),
    pytest.param("<one>", (), "one", id="full-sha"),
    pytest.param("<feature:7>", (), "feature", id="short-sha-on-other-branch"),
    pytest.param(None, (), "two", id="default-branch"),
    pytest.param(None, ("--git-url", URL, "--git-ref", "feature"), "feature",
                 id="cli-flags"),
])
def test_checkout_at_ref(node, compile_task, ref, flags, expect):
    shas = make_repo(node)
    if ref and ref.startswith("<"):
        name, _, n = ref.strip("<>").partition(":")
        ref = shas[name][:int(n)] if n else shas[name]
    yaml = task(ref) if not flags else task(url="file:///nowhere.git")
    [script] = compile_task(yaml, *flags)
    before = node.script(script, "status")
    assert before.returncode == 0, before.stderr
    assert f"workdir: {WORKDIR}: not cloned" in before.stdout.splitlines()
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0] == f"setup in {WORKDIR} as root"
    assert "detached HEAD" not in res.stderr  # git's advice is noise in a boot log
    assert out[1] == f"run in {WORKDIR} as root"
    assert out[2] == f"version: {expect}"
    files = set(out[3:])
    assert files == ({"feature.txt", "version.txt"} if expect == "feature" else {"version.txt"})
    assert head(node) == shas[expect]
    assert node.path(f"{WORKDIR}/version.txt").read_text() == f"{expect}\n"
    # a branch (named or the default) is checked out as that branch, tracking origin;
    # a tag or a commit detaches HEAD there
    branch = git(node, f"git -C {WORKDIR} rev-parse --abbrev-ref HEAD").strip()
    if flags or ref == "feature":
        want_branch = "feature"
    elif ref is None:
        want_branch = "main"
    else:
        want_branch = "HEAD"
    assert branch == want_branch
    if want_branch != "HEAD":
        upstream = git(node, f"git -C {WORKDIR} rev-parse --abbrev-ref '@{{upstream}}'").strip()
        assert upstream == f"origin/{want_branch}"
    assert git(node, f"git -C {WORKDIR} status --porcelain") == ""
    assert git(node, f"git -C {WORKDIR} remote get-url origin").strip() == URL
    assert shas[expect].startswith(status_rev(node, script))
    # the same script again: nothing to fetch, setup skipped, run again, same revision
    again = node.script(script, "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"run in {WORKDIR} as root"
    assert "setup already succeeded" in again.stderr
    assert head(node) == shas[expect]
    assert (runs(node, "setup"), runs(node, "run")) == (1, 2)


def test_missing_commit_fails_clearly(node, compile_task):
    make_repo(node)
    [script] = compile_task(task("deadbeef12"))
    res = node.script(script, "up")
    assert res.returncode == 1
    assert f"deadbeef12 is neither a commit nor a branch of {URL}" in res.stderr, res.stderr
    assert (runs(node, "setup"), runs(node, "run")) == (0, 0)


def test_branch_named_like_a_commit(node, compile_task):
    """`cafe1234` looks like an abbreviated sha; as a branch it must still be checked out."""
    make_repo(node)
    git(node, """
cd /srv/repo-src
git checkout --quiet -b cafe1234 main
echo hexbranch > version.txt
git commit --quiet -am hexbranch
git push --quiet origin cafe1234
git checkout --quiet main
""")
    [script] = compile_task(task("cafe1234"))
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert "version: hexbranch" in res.stdout
    assert git(node, f"git -C {WORKDIR} rev-parse --abbrev-ref HEAD").strip() == "cafe1234"


# --- re-runs ----------------------------------------------------------------------------

@pytest.mark.parametrize("ref", ["main", None], ids=["branch", "default-branch"])
def test_rerun_fast_forwards_and_skips_setup(node, compile_task, ref):
    shas = make_repo(node)
    [script] = compile_task(task(ref))
    first = node.script(script, "up")
    assert first.returncode == 0, first.stderr
    assert "version: two" in first.stdout
    assert head(node) == shas["two"]
    assert shas["two"].startswith(status_rev(node, script))

    three = push_commit(node, "new.txt", "three")
    second = node.script(script, "up")
    assert second.returncode == 0, second.stderr
    assert node.path(f"{WORKDIR}/new.txt").read_text() == "three\n"
    assert head(node) == three
    out = second.stdout.splitlines()
    assert out[:2] == [f"run in {WORKDIR} as root", "version: three"]
    assert set(out[2:]) == {"new.txt", "version.txt"}
    assert "setup in" not in second.stdout
    assert "setup already succeeded" in second.stderr
    assert (runs(node, "setup"), runs(node, "run")) == (1, 2)
    assert three.startswith(status_rev(node, script))
    # still on the branch, tracking it: the next push fast-forwards as well
    four = push_commit(node, "four.txt", "four")
    assert node.script(script, "up").returncode == 0
    assert head(node) == four
    assert git(node, f"git -C {WORKDIR} rev-parse --abbrev-ref HEAD").strip() == "main"


def test_changed_ref_switches_checkout(node, compile_task):
    """A new version of the task naming another ref moves the same checkout there."""
    shas = make_repo(node)
    for ref, expect in (("v1", "one"), ("feature", "feature"), (None, "two"),
                        (shas["one"][:10], "one"), ("main", "two")):
        [script] = compile_task(task(ref))
        res = node.script(script, "up")
        assert res.returncode == 0, (ref, res.stderr)
        assert f"version: {expect}" in res.stdout, ref
        assert head(node) == shas[expect], ref
    assert git(node, f"git -C {WORKDIR} rev-parse --abbrev-ref HEAD").strip() == "main"


def test_moved_tag_is_followed(node, compile_task):
    """A tag re-pointed upstream (`git tag -f` + `push -f`): a re-run checks out where the
    tag points now instead of failing the fetch as if the network were down."""
    make_repo(node)
    [script] = compile_task(task("v1"))
    assert node.script(script, "up").returncode == 0
    moved = git(node, """
cd /srv/repo-src
git checkout --quiet main
git tag -f -a -m 'moved' v1 main >/dev/null
git push --quiet --force origin v1
git rev-parse main
""").strip()
    res = node.script(script, "up", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "version: two" in res.stdout
    assert head(node) == moved
    assert "attempt 1 of" not in res.stderr


def test_rewritten_branch_is_refused_with_the_reason(node, compile_task):
    """A branch force-pushed upstream cannot be fast-forwarded: up stops, says why, and the
    checkout stays where it was."""
    shas = make_repo(node)
    [script] = compile_task(task("main"))
    assert node.script(script, "up").returncode == 0
    git(node, """
cd /srv/repo-src
git checkout --quiet main
git reset --quiet --hard HEAD~1
echo rewritten > version.txt
git commit --quiet -am rewritten
git push --quiet --force origin main
""")
    res = node.script(script, "up")
    assert res.returncode == 1
    assert "rewritten upstream" in res.stderr, res.stderr
    assert head(node) == shas["two"]
    assert node.path(f"{WORKDIR}/version.txt").read_text() == "two\n"
    assert runs(node, "run") == 1


def test_local_changes_are_never_overwritten(node, compile_task):
    """A checkout of this repository with uncommitted edits that the next fast-forward would
    overwrite: up stops and the edit stays."""
    make_repo(node)
    [script] = compile_task(task("main"))
    assert node.script(script, "up").returncode == 0
    node.sh(f"echo my-edit > {WORKDIR}/version.txt", check=True)
    push_commit(node, "new.txt", "three")
    before = snapshot(node.path(WORKDIR))
    res = node.script(script, "up")
    assert res.returncode != 0
    assert f"cannot fast-forward {WORKDIR}" in res.stderr, res.stderr
    assert "local commits or changes" in res.stderr
    assert node.path(f"{WORKDIR}/version.txt").read_text() == "my-edit\n"
    assert not node.path(f"{WORKDIR}/new.txt").exists()
    worktree = {k: v for k, v in snapshot(node.path(WORKDIR)).items()
                if not k.startswith(".git")}
    assert worktree == {k: v for k, v in before.items() if not k.startswith(".git")}


# --- somebody else's directory ----------------------------------------------------------

@pytest.mark.parametrize("shape", ["other-checkout", "plain-dir", "plain-file"])
def test_foreign_workdir_is_left_alone(node, compile_task, shape):
    make_repo(node)
    if shape == "other-checkout":
        make_repo(node, "/srv/other.git", tag="o1")
        git(node, f"""
git clone --quiet {OTHER_URL} {WORKDIR}
echo precious > {WORKDIR}/uncommitted.txt
echo edited > {WORKDIR}/version.txt
""")
        msg = f"the workdir {WORKDIR} is a checkout of {OTHER_URL}, not {URL}"
    elif shape == "plain-dir":
        node.sh(f"mkdir -p {WORKDIR}/sub && echo notes > {WORKDIR}/notes.txt"
                f" && echo deep > {WORKDIR}/sub/deep.txt", check=True)
        msg = f"the workdir {WORKDIR} exists and is not an empty directory"
    else:
        node.sh(f"echo a-file > {WORKDIR}", check=True)
        msg = f"the workdir {WORKDIR} exists and is not an empty directory"
    target = node.path(WORKDIR)
    before = snapshot(target) if target.is_dir() else target.read_bytes()
    top = target.lstat()
    [script] = compile_task(task("main"))
    res = node.script(script, "up")
    assert res.returncode == 1
    assert msg in res.stderr, res.stderr
    assert msg in node.path("/var/log/skycompile/gitwd.log").read_text()
    assert (runs(node, "setup"), runs(node, "run")) == (0, 0)
    after = snapshot(target) if target.is_dir() else target.read_bytes()
    assert after == before
    assert (target.lstat().st_mode, target.lstat().st_mtime_ns) == (top.st_mode,
                                                                    top.st_mtime_ns)
    if shape == "other-checkout":
        assert git(node, f"git -C {WORKDIR} remote get-url origin").strip() == OTHER_URL
        status = node.script(script, "status").stdout
        assert f"workdir: {WORKDIR}: NOT ours: a checkout of {OTHER_URL}" in status


def test_empty_workdir_directory_is_used(node, compile_task):
    shas = make_repo(node)
    node.sh(f"mkdir {WORKDIR}", check=True)
    [script] = compile_task(task())
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert head(node) == shas["two"]


# --- the task's user --------------------------------------------------------------------

def test_empty_root_owned_workdir_is_handed_to_the_user(node, compile_task):
    shas = make_repo(node)
    node.sh("useradd --create-home alice && mkdir /home/alice/sky_workdir && "
            "runuser -u alice -- git config --global --add safe.directory /srv/repo.git",
            check=True)
    [script] = compile_task(task("main"), "--user", "alice")
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert head(node, "/home/alice/sky_workdir") == shas["two"]
    assert node.sh("stat -c %U /home/alice/sky_workdir", check=True).stdout == "alice\n"


def test_user_owns_checkout_and_runs_in_it(node, compile_task):
    shas = make_repo(node)
    node.sh("useradd --create-home alice", check=True)
    # git (>= 2.39.4, 2.45.1) refuses a local remote that another user owns; what an admin
    # does for a shared repository on disk, as git's own message suggests
    node.sh("runuser -u alice -- git config --global --add safe.directory /srv/repo.git",
            check=True)
    [script] = compile_task(task("main"), "--user", "alice")
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    home = "/home/alice/sky_workdir"
    out = res.stdout.splitlines()
    assert out[:3] == [f"setup in {home} as alice", f"run in {home} as alice", "version: two"]
    assert not node.path(WORKDIR).exists()
    assert node.path(f"{home}/version.txt").read_text() == "two\n"
    not_alice = node.sh(f"find {home} ! -user alice -o ! -group alice", check=True).stdout
    assert not_alice == ""
    assert node.sh("stat -c %U /home/alice", check=True).stdout.strip() == "alice"
    # alice can use her checkout with her own git (no safe.directory exception needed)
    as_alice = git(node, f"runuser -u alice -- git -C {home} rev-parse HEAD")
    assert as_alice.strip() == shas["two"]
    assert shas["two"].startswith(status_rev(node, script))
    # a new commit: fast-forward as alice, files still hers, setup skipped
    three = push_commit(node, "new.txt", "three")
    again = node.script(script, "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[:2] == [f"run in {home} as alice", "version: three"]
    assert head(node, home) == three
    assert node.sh(f"find {home} ! -user alice", check=True).stdout == ""
    assert (runs(node, "setup"), runs(node, "run")) == (1, 2)


# --- credentials ------------------------------------------------------------------------

def _leaks(node, script: str, *outputs: str, workdir: str = WORKDIR) -> list[str]:
    """Where the token (or the Basic header made from it) shows up."""
    needles = [TOKEN.encode(),
               base64.b64encode(f"x-access-token:{TOKEN}".encode()).rstrip(b"=")]
    found = []
    places = [node.path(f"{workdir}/.git/config")]
    for d in ("/var/log/skycompile", "/var/lib/skycompile", "/run/skycompile",
              f"{workdir}/.git"):
        places += [p for p in node.path(d).rglob("*") if p.is_file()]
    for p in places:
        data = p.read_bytes()
        found += [f"{p}" for n in needles if n in data]
    for i, text in enumerate((script, *outputs)):
        found += [f"text {i}" for n in needles if n in text.encode()]
    return found


def test_git_token_never_reaches_disk_file_remote(node, compile_task, monkeypatch):
    shas = make_repo(node)
    monkeypatch.setenv("GIT_TOKEN", TOKEN)  # not even the compiler's environment leaks in
    [script] = compile_task(task("main"))
    first = node.script(script, "up", env={"GIT_TOKEN": TOKEN})
    assert first.returncode == 0, first.stderr
    assert "version: two" in first.stdout
    three = push_commit(node, "new.txt", "three")
    second = node.script(script, "up", env={"GIT_TOKEN": TOKEN})  # the fetch path
    assert second.returncode == 0, second.stderr
    assert head(node) == three != shas["two"]
    assert node.path(f"{WORKDIR}/.git/config").is_file()
    assert node.path("/var/log/skycompile/gitwd.log").stat().st_size > 0
    assert _leaks(node, script, first.stdout, first.stderr, second.stdout, second.stderr) == []


class _GitHTTP(BaseHTTPRequestHandler):
    """Smart HTTP (`git http-backend` as CGI) that answers 401 without the right Basic auth."""

    root: str
    auth: str
    seen: list

    def do_GET(self):
        self._serve(b"")

    def do_POST(self):
        self._serve(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def _serve(self, body: bytes):
        self.seen.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") != self.auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": self.root,
               "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command,
               "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_USER": "x-access-token",
               "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body))}
        for h in ("Content-Encoding", "Git-Protocol"):
            if self.headers.get(h):
                env["HTTP_" + h.upper().replace("-", "_")] = self.headers[h]
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True, check=True).stdout
        head_, _, payload = out.partition(b"\r\n\r\n")
        headers = [line.split(":", 1) for line in head_.decode().split("\r\n") if line]
        code = 200
        for k, v in headers:
            if k.lower() == "status":
                code = int(v.split()[0])
        self.send_response(code)
        for k, v in headers:
            if k.lower() != "status":
                self.send_header(k, v.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_remote(tmp_path):
    """A bare repository on the host (branch main: version.txt = http), served on loopback
    at http://127.0.0.1:PORT/repo.git, Basic auth x-access-token:TOKEN required."""
    src = tmp_path / "http-src"
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(src)], check=True)
    (src / "version.txt").write_text("http\n")
    subprocess.run(["git", "-C", str(src), "add", "."], check=True)
    subprocess.run(["git", "-C", str(src), "commit", "-qm", "http"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(tmp_path / "repo.git")],
                   check=True)
    auth = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    handler = type("H", (_GitHTTP,), {"root": str(tmp_path), "auth": auth, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/repo.git", handler.seen
    server.shutdown()
    server.server_close()


def test_git_token_authenticates_http_remote(node, compile_task, http_remote):
    url, seen = http_remote
    # the gate is real: without the token git is refused
    plain = node.sh(f"GIT_TERMINAL_PROMPT=0 git clone -q {url} /tmp/anon")
    assert plain.returncode != 0
    assert seen and all(a is None for a in seen)
    seen.clear()
    [script] = compile_task(task("main", url=url))
    res = node.script(script, "up", env={"GIT_TOKEN": TOKEN})
    assert res.returncode == 0, res.stderr
    assert "version: http" in res.stdout
    assert seen and all(a is not None for a in seen)
    again = node.script(script, "up", env={"GIT_TOKEN": TOKEN})
    assert again.returncode == 0, again.stderr
    assert git(node, f"git -C {WORKDIR} remote get-url origin").strip() == url
    assert _leaks(node, script, res.stdout, res.stderr, again.stdout, again.stderr) == []
