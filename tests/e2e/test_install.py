"""Install on a bare Debian: the script brings its own tools.

Each node here is a copy-on-write overlay of a freshly debootstrapped Debian bookworm
(`--variant=minbase`, built once per session): no fuse3, no rclone, no curl or wget, no
unzip, no CA certificates. The node reaches Debian's package mirrors the way this machine
does (its apt sources and resolver), and an rclone mirror on loopback
(`--rclone-mirror`, `--rclone-sha256`). The script must install fuse3, curl and unzip with
apt, install rclone from the mirror after checking its SHA-256, and then actually COPY and
MOUNT from the S3 test server; a tampered archive must be refused with nothing installed.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from . import nodes

SUITE = "bookworm"  # the host's release (Debian 12)
FALLBACK_MIRROR = "http://deb.debian.org/debian"


# --- the image: debootstrap once per session --------------------------------------------

def _apt_source_files() -> list[Path]:
    """The source lists apt reads on this machine (other suffixes are disabled ones)."""
    files = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    return [p for p in files if p.is_file()]


def _host_entries() -> list[tuple[str, list[str]]]:
    """(uri, suites) of every `deb` entry in this machine's apt sources, both formats."""
    out: list[tuple[str, list[str]]] = []
    for f in _apt_source_files():
        text = f.read_text()
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in fields.get("types", "").split():
                    continue
                for uri in fields.get("uris", "").split():
                    out.append((uri, fields.get("suites", "").split()))
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    out.append((words[1], [words[2]]))
    return out


def _keyrings(text: str) -> list[str]:
    """Keyring files named by Signed-By (deb822) or [signed-by=...] (one-line)."""
    found = re.findall(r"(?im)^signed-by:\s*(/\S+)\s*$", text)
    found += re.findall(r"signed-by=(/[^\s\]]+)", text)
    return found


def host_mirror() -> str:
    """The Debian archive this machine installs from: the entry that carries SUITE itself."""
    for uri, suites in _host_entries():
        if SUITE in suites and uri.startswith(("http://", "https://")):
            return uri.rstrip("/")
    return FALLBACK_MIRROR


def configure_like_host(root: Path) -> None:
    """Give the image this machine's way to its package mirrors, as a cloud image has its
    provider's: the same apt sources (and the keyrings they name), the apt settings that
    govern fetching (Acquire::, e.g. a proxy or validity checks), and the same resolver."""
    apt = root / "etc/apt"
    (apt / "sources.list").unlink(missing_ok=True)
    for f in _apt_source_files():
        text = f.read_text()
        target = root / str(f).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        for ring in _keyrings(text):
            dest = root / ring.lstrip("/")
            if Path(ring).is_file() and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ring, dest)
    conf_d = Path("/etc/apt/apt.conf.d")
    for f in sorted(conf_d.iterdir()) if conf_d.is_dir() else []:
        if f.is_file() and "Acquire::" in f.read_text(errors="replace"):
            shutil.copyfile(f, apt / "apt.conf.d" / f.name)
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text(Path("/etc/resolv.conf").read_text())


@pytest.fixture(scope="session")
def debian_root(tmp_path_factory) -> Path:
    tool = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if not tool:
        pytest.fail("debootstrap is missing: apt-get install -y debootstrap "
                    "(.ci/run installs it); the bare-Debian install tests need it")
    root = tmp_path_factory.mktemp("debian-root")
    log = root.parent / "debootstrap.log"
    mirror = host_mirror()
    with log.open("w") as out:
        res = subprocess.run([tool, "--variant=minbase", SUITE, str(root), mirror],
                             stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             timeout=900)
    if res.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        pytest.fail(f"debootstrap {SUITE} from {mirror} exited {res.returncode}:\n{tail}")
    configure_like_host(root)
    return root


@pytest.fixture
def bare_node(make_node, debian_root):
    """A fresh copy-on-write Debian node without rclone (its own overlay; nothing it
    writes reaches the image or other nodes)."""
    node = make_node("bare", rclone=False, root=str(debian_root))
    premise = node.sh("for c in rclone fusermount3 curl wget unzip; do "
                      "if command -v $c; then exit 1; fi; done; "
                      "test ! -e /etc/ssl/certs/ca-certificates.crt; "
                      "test -f /etc/debian_version")
    assert premise.returncode == 0, f"the image is not bare: {premise.stdout}"
    return node


# `ps` for a node without procps: every process and its command line.
PS = (r"""for p in /proc/[0-9]*; do echo "${p#/proc/} $(tr '\0' ' ' <"$p/cmdline")"; """
      "done 2>/dev/null")


def up(node: nodes.Node, script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`up` on the node; on a hang, fail with what the node was doing instead of a bare
    TimeoutExpired (apt and the network are the slow, outside parts here)."""
    try:
        return node.script(script, "up", timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        procs = node.sh(PS, timeout=30).stdout
        pytest.fail(f"up did not finish within {timeout}s\nstderr so far:\n{err or ''}\n"
                    f"processes on the node:\n{procs}")


def installed(node: nodes.Node, pkg: str) -> bool:
    res = node.run("dpkg-query", "-W", "-f=${Status}", pkg)
    return res.returncode == 0 and res.stdout == "install ok installed"


TASK = """
name: bare-install
file_mounts:
  /data:
    source: s3://data
    mode: MOUNT
  /inputs: s3://data/in
run: |
  cat /data/hello.txt
  cat /inputs/a.txt
  echo "written on a bare node" > /data/result.txt
"""


# --- the tests -------------------------------------------------------------------------

def test_bare_debian_installs_tools_then_copies_and_mounts(s3, mirror, bare_node,
                                                            compile_task):
    data = s3.bucket("data")
    (data / "hello.txt").write_text("hello through the mount\n")
    (data / "in").mkdir()
    (data / "in" / "a.txt").write_text("copied before run\n")
    genuine = nodes.rclone_zip()
    sha = mirror.publish(genuine)
    [script] = compile_task(TASK, "--rclone-mirror", mirror.url, "--rclone-sha256",
                            f"amd64={sha}")

    res = up(bare_node, script)
    assert res.returncode == 0, res.stderr

    # Tools came from the places they should: fuse3, curl, unzip via apt; rclone from the
    # mirror, byte for byte the binary inside the published archive.
    for pkg in ("fuse3", "curl", "unzip", "ca-certificates"):
        assert installed(bare_node, pkg), f"{pkg} not installed by the script\n{res.stderr}"
    url = f"{mirror.url}/{nodes.RCLONE_PIN}/rclone-{nodes.RCLONE_PIN}-linux-amd64.zip"
    assert f"downloading {url}" in res.stderr
    binary = Path(nodes.rclone_binary()).read_bytes()
    assert bare_node.path("/usr/local/bin/rclone").read_bytes() == binary
    assert bare_node.path("/usr/local/bin/rclone").stat().st_mode & 0o777 == 0o755
    assert re.search(r"^user_allow_other$", bare_node.path("/etc/fuse.conf").read_text(),
                     re.M)
    assert not bare_node.sh("ls -d /tmp/skycompile.* 2>/dev/null").stdout  # no leftovers

    # COPY landed before run, the MOUNT served reads, and a write through it is in the bucket.
    assert bare_node.path("/inputs/a.txt").read_text() == "copied before run\n"
    assert "hello through the mount\n" in res.stdout
    assert "copied before run\n" in res.stdout
    mounted = bare_node.sh("grep -E '^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /data ' /proc/self/mountinfo")
    assert "fuse.rclone" in mounted.stdout, mounted.stdout
    objects = s3.objects("data")
    assert objects["result.txt"] == hashlib.sha256(b"written on a bare node\n").hexdigest()

    # Idempotent: a second up installs nothing and downloads nothing.
    again = up(bare_node, script)
    assert again.returncode == 0, again.stderr
    assert f"rclone {nodes.RCLONE_PIN} is installed" in again.stderr
    assert "installing" not in again.stderr
    assert "downloading" not in again.stderr
    assert "hello through the mount\n" in again.stdout


def test_tampered_archive_is_refused_and_nothing_installed(s3, mirror, bare_node,
                                                           compile_task):
    (s3.bucket("data") / "hello.txt").write_text("must not be read\n")
    (s3.bucket("data") / "in").mkdir()
    genuine_sha = hashlib.sha256(nodes.rclone_zip()).hexdigest()
    tampered_sha = mirror.publish(nodes.rclone_zip(tamper=True))
    assert tampered_sha != genuine_sha
    [script] = compile_task(TASK, "--rclone-mirror", mirror.url, "--rclone-sha256",
                            f"amd64={genuine_sha}")

    res = up(bare_node, script)
    assert res.returncode != 0
    assert (f"SHA-256 mismatch for {mirror.url}/{nodes.RCLONE_PIN}/"
            f"rclone-{nodes.RCLONE_PIN}-linux-amd64.zip: expected {genuine_sha}, "
            f"got {tampered_sha}; not installing it") in res.stderr
    # The download itself worked (curl came from apt): the refusal is the checksum's.
    assert installed(bare_node, "curl")
    # Nothing unverified is on the node, nothing ran, nothing was mounted or written.
    assert not bare_node.path("/usr/local/bin/rclone").exists()
    assert bare_node.sh("command -v rclone").returncode != 0
    assert not bare_node.sh("ls -d /tmp/skycompile.* 2>/dev/null").stdout
    assert "must not be read" not in res.stdout
    assert "fuse" not in bare_node.sh("grep ' /data ' /proc/self/mountinfo || true").stdout
    assert not bare_node.path("/inputs/a.txt").exists()
    assert "result.txt" not in s3.objects("data")
