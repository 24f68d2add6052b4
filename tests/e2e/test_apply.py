"""The apply phase against real S3 servers (rclone serve s3; moto where AWS-exact behaviour
is needed): buckets created or reused (never a foreign one), incremental uploads through
the hash cache, --delete, `storage ls/delete`, interrupted uploads, then a node that uses
what was uploaded."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import skycompile
from skycompile import apply as apply_mod
from skycompile import cli, compiler
from skycompile.errors import ApplyError
from skycompile.manifest import Hasher
from skycompile.state import State

from . import nodes
from .applied import WORKDIR_BUCKET, local_tree, make_project

REPO = Path(skycompile.__file__).resolve().parent.parent
BUCKET = WORKDIR_BUCKET  # the managed bucket: skycompile-<user>-<task name>


@pytest.fixture
def env(tmp_path, monkeypatch, s3):
    monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SKYCOMPILE_USER", "tester")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env()["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env()["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, 70 * 2**20)  # big.bin: S3 multipart
    (tmp_path / "task.yaml").write_text(
        "name: applied\nworkdir: proj\nfile_mounts:\n  /out:\n    name: sc-applied-out\n"
        "    mode: MOUNT\nrun: ls ~/sky_workdir/src | wc -l; cat /out/seen 2>/dev/null || true\n")
    return tmp_path


def run_apply(endpoint: str, *extra: str, task: str = "task.yaml") -> tuple[dict, int]:
    """One real run in-process: (apply's counts, files whose contents were read)."""
    args = cli.parser().parse_args([task, "-o", "boot.sh", "--endpoint-url", endpoint, *extra])
    opts = cli.options(args)
    state = State()
    hasher = Hasher(state)
    try:
        compiled = compiler.compile_file(task, opts, hasher)
        hasher.save()
        return apply_mod.apply([t.plan for t in compiled.tasks], opts, state=state), hasher.read
    finally:
        state.close()


def process(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    """`python -m skycompile ARGS` as a user runs it (this environment, this checkout)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.Popen([sys.executable, "-m", "skycompile", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_first_upload_resync_and_one_change(env, s3):
    counts, read = run_apply(s3.endpoint)
    assert counts["uploaded"] == 31 and counts["skipped"] == 0 and read == 31
    objects = s3.objects(BUCKET)
    assert objects == {f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}
    records = {r.name: r for r in State().buckets()}
    assert records[BUCKET].status == "READY" and records["sc-applied-out"].status == "READY"
    # no change: nothing uploaded, no file read (the hash cache answers)
    counts, read = run_apply(s3.endpoint)
    assert counts == {"uploaded": 0, "skipped": 31, "bytes": 0, "deleted": 0} and read == 0
    # one file changed: only it is read, and only it goes
    (env / "proj" / "src" / "m3.py").write_text("changed\n")
    counts, read = run_apply(s3.endpoint)
    assert counts["uploaded"] == 1 and counts["skipped"] == 30 and read == 1
    assert s3.objects(BUCKET)["workdir/src/m3.py"] == hashlib.sha256(b"changed\n").hexdigest()
    # a file removed locally stays in the bucket (no --delete)
    (env / "proj" / "src" / "m4.py").unlink()
    run_apply(s3.endpoint)
    assert "workdir/src/m4.py" in s3.objects(BUCKET)


def test_the_python_api_applies_like_the_command_line(env, s3):
    """skycompile.compile_task without dry_run: the same buckets and uploads, counts in
    `applied`; a second call uploads nothing."""
    opts = skycompile.make_options(endpoint_url=s3.endpoint)
    first = skycompile.compile_task("task.yaml", options=opts)
    assert first.applied == {"uploaded": 31, "skipped": 0, "bytes": first.applied["bytes"],
                             "deleted": 0} and first.applied["bytes"] > 70 * 2**20
    assert s3.objects(BUCKET) == {f"workdir/{k}": v
                                  for k, v in local_tree(env / "proj").items()}
    again = skycompile.compile_task("task.yaml", options=opts)
    assert again.applied == {"uploaded": 0, "skipped": 31, "bytes": 0, "deleted": 0}
    assert again.tasks[0].scripts == first.tasks[0].scripts
    assert {r.name: r.status for r in State().buckets()}[BUCKET] == "READY"


def _opened(trace: Path, root: Path) -> set[str]:
    """Regular files below root that the traced process opened (directories excluded)."""
    found = set()
    for line in trace.read_text().splitlines():
        if "O_DIRECTORY" in line or '"' not in line or "= -1" in line:
            continue
        path = line.split('"')[1]
        if path.startswith(str(root) + "/") or not path.startswith("/"):
            found.add(os.path.relpath(os.path.join(root.parent, path), root)
                      if not path.startswith("/") else os.path.relpath(path, root))
    return found


def test_resync_opens_no_data_file(env, s3):
    """Seen from the kernel (strace), not from a counter: a second run of an unchanged tree
    opens none of its files, while the first run opens every one."""
    proj = env / "proj"
    args = ["task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint, "--quiet"]
    traces = []
    for n in range(2):
        trace = env / f"trace{n}"
        proc = process(["--version"], env)  # warm the import path once, outside the trace
        proc.communicate()
        strace = subprocess.run(
            ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(trace),
             sys.executable, "-m", "skycompile", *args], cwd=env,
            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
        assert strace.returncode == 0, strace.stderr
        traces.append(_opened(trace, proj))
    data = set(local_tree(proj))
    assert data <= traces[0], data - traces[0]  # the check can see reads
    assert not (traces[1] & data), traces[1] & data


def test_list_sources_single_files_symlinks_and_git(env, s3, cli):
    proj = env / "proj"
    subprocess.run(["git", "init", "-q", str(proj)], check=True)
    subprocess.run(["git", "-C", str(proj), "add", "src"], check=True)
    (proj / "link.py").symlink_to("src/m1.py")
    (env / "a").mkdir()
    (env / "a" / "x.txt").write_text("x\n")
    (env / "b.txt").write_text("b\n")
    (env / "task.yaml").write_text(
        "name: applied\nworkdir: proj\nfile_mounts:\n"
        "  /list:\n    name: sc-applied-list\n    source: [./a, ./b.txt]\n    mode: COPY\n"
        "  /single.txt: ./b.txt\nrun: x\n")
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint)
    assert res.code == 0, res.err
    assert "symlinks are not uploaded: link.py" in res.err
    sha = hashlib.sha256
    assert s3.objects("sc-applied-list") == {"a/x.txt": sha(b"x\n").hexdigest(),
                                             "b.txt": sha(b"b\n").hexdigest()}
    managed = s3.objects(BUCKET)
    workdir = {k: v for k, v in managed.items() if k.startswith("workdir/")}
    assert workdir == {f"workdir/{k}": v for k, v in local_tree(proj).items()}
    assert not any("/.git/" in k or k.endswith("link.py") for k in managed)
    single = [k for k in managed if not k.startswith("workdir/")]
    assert len(single) == 1 and managed[single[0]] == sha(b"b\n").hexdigest()
    # the single file is found again by the next run (its key is the prefix itself)
    counts, read = run_apply(s3.endpoint)
    assert counts["uploaded"] == 0 and read == 0


# names rclone's default encodings would rewrite (fullwidth look-alikes, %, spaces, quotes)
ODD_NAMES = ["％2F and ／ and ＼.txt", "100%.txt", " lead and trail ", "ünïcödé.txt",
             "#hash?query&.txt", "quote'\"`$(x).txt", "a+b.txt"]
# control characters: rclone serve s3 lists names it reads back from its disk with rclone's
# control-picture encoding ("cr\r" as "cr␍"), so for these the test looks at its disk
CONTROL_NAMES = ["new\nline.txt", "cr\r", "tab\there.txt"]


def test_odd_file_names_land_as_named(env, s3):
    odd = env / "proj" / "odd"
    odd.mkdir()
    for name in ODD_NAMES:
        (odd / name).write_text(name + "\n")
    counts, _ = run_apply(s3.endpoint)
    assert counts["uploaded"] == 31 + len(ODD_NAMES)
    assert s3.objects(BUCKET) == {f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}
    assert {f"workdir/odd/{n}" for n in ODD_NAMES} <= set(s3.objects(BUCKET, "workdir/odd/"))
    counts, read = run_apply(s3.endpoint)  # the keys the listing reports are the ones compared
    assert counts["uploaded"] == 0 and read == 0


def test_a_file_of_exactly_the_multipart_threshold_is_one_put(env, s3, proxy):
    """64 MiB is the largest file sent in one PUT (rclone starts a multipart upload at its
    cutoff itself, and a killed one would leave it open): seen at the proxy, the only
    multipart upload (a POST) is big.bin's (70 MiB), and the re-sync skips both."""
    from skycompile.manifest import MULTIPART_THRESHOLD
    (env / "proj" / "edge.bin").write_bytes(os.urandom(MULTIPART_THRESHOLD))
    counts, _ = run_apply(proxy.endpoint)
    assert counts["uploaded"] == 32
    posts = sum(n for (method, _), n in proxy.seen.items() if method == "POST")
    assert posts == 2  # big.bin: create and complete
    counts, read = run_apply(proxy.endpoint)
    assert counts["uploaded"] == 0 and read == 0


def test_control_characters_in_names_land_as_named(env, s3):
    odd = env / "proj" / "odd"
    odd.mkdir()
    for name in CONTROL_NAMES:
        (odd / name).write_bytes(name.encode() + b"\n")
    counts, _ = run_apply(s3.endpoint)
    assert counts["uploaded"] == 31 + len(CONTROL_NAMES)
    stored = s3.root / BUCKET / "workdir" / "odd"  # the server keeps each key as a path
    assert sorted(os.listdir(stored)) == sorted(CONTROL_NAMES)
    for name in CONTROL_NAMES:
        assert (stored / name).read_bytes() == name.encode() + b"\n"


def test_delete_flag_removes_only_what_no_local_file_matches(env, s3):
    run_apply(s3.endpoint)
    s3.client().put_object(Bucket=BUCKET, Key="workdir/stale.txt", Body=b"old")
    s3.client().put_object(Bucket=BUCKET, Key="elsewhere/keep.txt", Body=b"keep")
    (env / "proj" / "src" / "m5.py").unlink()
    counts, _ = run_apply(s3.endpoint)
    assert counts["deleted"] == 0 and "workdir/stale.txt" in s3.objects(BUCKET)
    counts, _ = run_apply(s3.endpoint, "--delete")
    assert counts["deleted"] == 2
    objects = s3.objects(BUCKET)
    assert "workdir/stale.txt" not in objects and "workdir/src/m5.py" not in objects
    assert "elsewhere/keep.txt" in objects  # outside every upload's prefix
    assert {k for k in objects if k.startswith("workdir/")} == \
        {f"workdir/{k}" for k in local_tree(env / "proj")}


def test_foreign_bucket_is_refused_before_any_upload(env, s3, cli):
    s3.bucket("sc-applied-out")  # exists, not created by skycompile
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint)
    assert res.code == 1
    assert ("s3 bucket sc-applied-out at " + s3.endpoint + " already exists and was not "
            "created by skycompile; to use it as it is, write `source: s3://sc-applied-out` "
            "instead of `name:`") in res.err
    assert not Path("boot.sh").exists()
    assert not (s3.root / BUCKET).exists()  # checked before anything was created


def test_no_access_names_the_bucket(env, s3, cli, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint)
    assert res.code == 1
    assert res.err.startswith("skycompile: error: cannot check s3 bucket ")
    assert "403: check that your credentials may access it" in res.err, res.err
    assert "Traceback" not in res.err


def test_real_runs_write_no_key_anywhere(env, s3, monkeypatch):
    """A real run (buckets created, data uploaded) and a refused one (a wrong secret): the
    keys are in neither's output, messages, script nor state (the SQLite files included)."""
    def written(proc) -> dict[str, bytes]:
        out, err = proc.communicate(timeout=300)
        files = {"stdout": out.encode(), "stderr": err.encode()}
        for root in (env / "state", env / "out"):
            files.update({str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()})
        return files, proc.returncode

    files, code = written(process(["task.yaml", "-o", "out/", "--endpoint-url", s3.endpoint], env))
    assert code == 0 and any("out/" in k for k in files) and s3.objects(BUCKET)
    secrets = [nodes.KEY, nodes.SECRET]
    assert not [(k, s) for k, v in files.items() for s in secrets if s.encode() in v]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sc-wrong-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sc-wrong-secret")
    (env / "proj" / "src" / "m3.py").write_text("changed\n")
    files, code = written(process(["task.yaml", "-o", "out/", "--endpoint-url", s3.endpoint], env))
    assert code == 1 and "403" in files["stderr"].decode()
    secrets += ["sc-wrong-key-id", "sc-wrong-secret"]
    assert not [(k, s) for k, v in files.items() for s in secrets if s.encode() in v]


def test_storage_ls_and_delete(env, s3, cli):
    (env / "task.yaml").write_text(
        "name: applied\nworkdir: proj\nfile_mounts:\n  /tmp1:\n    name: sc-applied-tmp\n"
        "    persistent: false\n    mode: MOUNT\nrun: x\n")
    assert cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint).code == 0
    s3.bucket("sc-foreign")
    res = cli("storage", "ls")
    lines = res.out.splitlines()
    assert lines[0].split() == ["NAME", "CREATED", "STORE", "COMMAND", "STATUS", "PERSISTENT"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {BUCKET, "sc-applied-tmp"}
    assert rows["sc-applied-tmp"].split()[-2:] == ["READY", "no"]
    assert "skycompile task.yaml" in rows[BUCKET] and rows[BUCKET].split()[-1] == "yes"
    listed = json.loads(cli("storage", "ls", "--json").out)
    assert {(b["name"], b["persistent"], b["status"]) for b in listed} == {
        (BUCKET, True, "READY"), ("sc-applied-tmp", False, "READY")}
    # refused: a bucket skycompile did not create; no --yes without a terminal
    res = cli("storage", "delete", "sc-foreign", "--yes")
    assert res.code == 2 and "not created by skycompile" in res.err
    assert (s3.root / "sc-foreign").is_dir()
    res = cli("storage", "delete", BUCKET)
    assert res.code == 2 and "pass --yes" in res.err
    # --ephemeral: the persistent: false one only, emptied first
    res = cli("storage", "delete", "--ephemeral", "--yes")
    assert res.code == 0, res.err
    assert not (s3.root / "sc-applied-tmp").exists() and (s3.root / BUCKET).is_dir()
    res = cli("storage", "delete", BUCKET, "--yes")
    assert res.code == 0, res.err
    assert not (s3.root / BUCKET).exists()
    assert "No buckets created by skycompile" in cli("storage", "ls").out
    assert (s3.root / "sc-foreign").is_dir()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_upload_then_rerun(env, s3, sig):
    """Killed mid-upload: every object already in the bucket is whole and right, the state
    says the upload did not finish, and a re-run completes it."""
    proj = env / "proj"
    for i in range(300):
        (proj / "src" / f"d{i}.bin").write_bytes(os.urandom(256 * 1024))
    (proj / "huge.bin").write_bytes(os.urandom(150 * 2**20))
    args = ["task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint]
    proc = process(args, env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        landed = list((s3.root / BUCKET).rglob("*.bin")) if (s3.root / BUCKET).exists() else []
        if len(landed) >= 20:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the upload finished before it could be interrupted"
    engines = children(proc.pid)  # rclone, sending the small files
    assert engines and all("rclone" in Path(f"/proc/{c}/exe").resolve().name for c in engines)
    for c in engines:  # the keys are in its environment, never on its command line
        argv = Path(f"/proc/{c}/cmdline").read_bytes()
        assert s3.env()["AWS_SECRET_ACCESS_KEY"].encode() not in argv
        assert s3.env()["AWS_ACCESS_KEY_ID"].encode() not in argv
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == (130 if sig == signal.SIGINT else -9), err
    deadline = time.monotonic() + 10  # rclone stops with skycompile, even after kill -9
    while any(Path(f"/proc/{c}").exists() for c in engines) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in engines if Path(f"/proc/{c}").exists()]
    assert "Traceback" not in err
    assert not (env / "boot.sh").exists()
    if sig == signal.SIGINT:
        assert State().bucket("s3", s3.endpoint, BUCKET).status == "UPLOAD_FAILED"
    want = {f"workdir/{k}": v for k, v in local_tree(proj).items()}
    partial = s3.objects(BUCKET)
    assert 0 < len(partial) < len(want)
    assert all(want[k] == v for k, v in partial.items())  # no partial or wrong object
    rerun = process(args, env)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert s3.objects(BUCKET) == want
    assert State().bucket("s3", s3.endpoint, BUCKET).status == "READY"
    # a multipart upload the killed run left open was aborted by the re-run
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert State().journal("s3", s3.endpoint, BUCKET).orphans() == []


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (from /proc/*/stat: the field after the name)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


KILLS = int(os.environ.get("SKYCOMPILE_KILLS", "20"))


@pytest.mark.long
def test_kill_9_at_random_moments_across_a_1_gb_tree(env, s3, cli):
    """KILLS rounds, each into a fresh bucket: the upload of a ~1.1 GiB tree (1,500 files
    from 1 KiB to 1 MiB, four of 64-100 MiB in parts) is SIGKILLed at a random moment,
    every object then in the bucket matches its file, and a re-run completes with no
    multipart upload left open. A moment is a random share of the bytes landed on the
    server; one round in five is killed before the first byte lands instead (while
    hashing, checking or creating the bucket), and half the rounds hash every file anew."""
    import random
    proj = env / "proj"
    rnd = random.Random()
    seed = rnd.randrange(2**32)
    rnd.seed(seed)
    for i in range(1500):
        (proj / "src" / f"d{i % 30}").mkdir(parents=True, exist_ok=True)
        (proj / "src" / f"d{i % 30}" / f"f{i}.bin").write_bytes(
            os.urandom(rnd.randint(1024, 2**20)))
    for i, mib in enumerate((64, 70, 90, 100)):
        (proj / f"huge{i}.bin").write_bytes(os.urandom(mib * 2**20))
    want = {f"workdir/{k}": v for k, v in local_tree(proj).items()}
    total = sum(p.stat().st_size for p in proj.rglob("*") if p.is_file())
    assert total > 2**30

    def server_files(bucket: str) -> dict[str, int]:
        """name -> size of every file in the server's bucket directory, its temp files
        included; files that vanish while being listed (the server's own renames) left out."""
        found = {}
        for top, _, names in os.walk(s3.root / bucket):  # os.walk skips vanished dirs
            for name in names:
                try:
                    found[os.path.join(top, name)] = os.stat(os.path.join(top, name)).st_size
                except FileNotFoundError:
                    pass
        return found

    def landed(bucket: str) -> int:  # bytes on the server, its partial uploads included
        return sum(server_files(bucket).values())

    def args(bucket: str) -> list[str]:
        return ["task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint, "--quiet",
                "--bucket", bucket]

    def settle(bucket: str) -> None:
        """Wait until the server has finished the killed client's requests: its files stop
        changing for a second. rclone serve s3, unlike S3, is not atomic when a dead
        client's PUT is still being written while the re-run PUTs the same key: its
        listing can then point at a vanished temp file. (The parts of an open multipart
        upload stay as temp files until the re-run aborts it.)"""
        last, since = None, time.monotonic()
        deadline = since + 60
        while time.monotonic() - since < 1.0:
            assert time.monotonic() < deadline, "the server never settled"
            now = server_files(bucket)
            if now != last:
                last, since = now, time.monotonic()
            time.sleep(0.1)
    moments = []
    for n in range(KILLS):
        bucket = f"sc-kill-{n}"
        if n % 2:  # new mtimes: the hash cache misses, every file is hashed again
            for p in proj.rglob("*.bin"):
                os.utime(p)
        early = rnd.random() < 0.2
        share = 0.0 if early else rnd.uniform(0.01, 0.99)
        delay = rnd.uniform(0.05, 1.0) if early else 0.0
        proc = process(args(bucket), env)
        start = time.monotonic()
        while proc.poll() is None:
            if (time.monotonic() - start >= delay if early else landed(bucket) >= share * total):
                proc.kill()
                break
            time.sleep(0.02)
        proc.wait()
        settle(bucket)
        what = f"{delay:.2f} s in" if early else f"{share:.0%} of the bytes"
        if proc.returncode == 0:
            moments.append(f"{what}: finished first")
        else:
            assert proc.returncode == -9, proc.stderr.read()
            moments.append(f"{what}: killed at {time.monotonic() - start:.1f} s, "
                           f"{landed(bucket) / total:.0%} landed")
        partial = s3.objects(bucket) if (s3.root / bucket).exists() else {}
        wrong = [k for k, v in partial.items() if want.get(k) != v]
        assert not wrong, (seed, n, moments[-1], wrong)
        assert (env / "boot.sh").exists() == (proc.returncode == 0)
        rerun = process(args(bucket), env)
        _, err = rerun.communicate(timeout=900)
        assert rerun.returncode == 0, (seed, n, err)
        assert s3.objects(bucket) == want, (seed, n)
        assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert State().journal("s3", s3.endpoint, bucket).orphans() == []
        (env / "boot.sh").unlink()
        assert cli("storage", "delete", bucket, "--yes").code == 0
    print(f"seed {seed}, {total} B; kill moments:\n  " + "\n  ".join(moments))
    assert sum(1 for m in moments if "killed" in m) >= KILLS * 3 // 4


@pytest.fixture
def moto(serve) -> nodes.MotoServer:
    return serve(nodes.MotoServer, "moto")


def test_moto_region_tag_and_a_second_machine(tmp_path, monkeypatch, moto, cli):
    """AWS-exact: the bucket is made in the task's region and tagged; a second machine
    (fresh state) recognises it by the tag and reuses it, and a bucket without the tag is
    refused."""
    for key, value in {"AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto",
                       "SKYCOMPILE_USER": "tester"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("f\n")
    (tmp_path / "task.yaml").write_text(
        "resources:\n  cloud: aws\n  region: eu-west-1\nfile_mounts:\n  /d:\n"
        "    name: sc-moto-data\n    source: ./d\nrun: x\n")
    for machine in ("one", "two"):
        monkeypatch.setenv("SKYCOMPILE_STATE_DIR", str(tmp_path / machine))
        res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", moto.endpoint)
        assert res.code == 0, res.err
    s3 = moto.client()
    assert s3.get_bucket_location(Bucket="sc-moto-data")["LocationConstraint"] == "eu-west-1"
    assert {"Key": "created-by", "Value": "skycompile"} in \
        s3.get_bucket_tagging(Bucket="sc-moto-data")["TagSet"]
    assert "1 file(s) up to date" in res.err  # machine two uploaded nothing
    second = State(tmp_path / "two" / "state.db").bucket("s3", moto.endpoint, "sc-moto-data")
    assert second and second.status == "READY"
    s3.create_bucket(Bucket="sc-moto-foreign")
    (tmp_path / "task.yaml").write_text(
        "file_mounts:\n  /d:\n    name: sc-moto-foreign\n    source: ./d\nrun: x\n")
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", moto.endpoint)
    assert res.code == 1 and "was not created by skycompile" in res.err
    assert "Contents" not in s3.list_objects_v2(Bucket="sc-moto-foreign")


def test_applied_task_runs_on_a_node(env, s3, cli, node):
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint)
    assert res.code == 0, res.err
    up = node.script(Path("boot.sh").read_text(), "up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.split()[0] == "30"
    assert node.path("/root/sky_workdir/big.bin").read_bytes() == (env / "proj/big.bin").read_bytes()


@pytest.fixture
def proxy(s3):
    p = nodes.FaultProxy(s3.port).start()
    yield p
    p.stop()


def test_throttling_and_5xx_are_retried_with_backoff(env, s3, proxy):
    """Every upload's first answers are 503 SlowDown / 500: retried, and all lands."""
    proxy.fail("PUT", 503, "SlowDown", 12, match="/workdir/")
    counts, _ = run_apply(proxy.endpoint)
    assert counts["uploaded"] == 31
    assert proxy.seen[("PUT", 503)] == 12
    assert s3.objects(BUCKET) == {f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}
    (env / "proj" / "src" / "m1.py").write_text("again\n")
    proxy.fail("PUT", 500, "InternalError", 3, match="/workdir/")
    counts, _ = run_apply(proxy.endpoint)
    assert counts["uploaded"] == 1 and proxy.seen[("PUT", 500)] == 3


def test_a_server_that_keeps_failing_gives_up_with_upload_failed(env, s3, proxy, cli,
                                                                 monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    # 500, not throttling: adaptive mode would also slow the client down (minutes here)
    proxy.fail("PUT", 500, "InternalError", 10_000, match="/workdir/")
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", proxy.endpoint, "--quiet")
    assert res.code == 1 and "Traceback" not in res.err
    assert "cannot upload " in res.err and (
        "InternalError: the server kept throttling or failing after 3 attempts") in res.err, res.err
    assert not Path("boot.sh").exists()
    statuses = {r.name: r.status for r in State().buckets()}
    assert statuses[BUCKET] == "UPLOAD_FAILED"
    # bounded: at most 3 attempts per file (queued files may never start)
    assert 3 <= proxy.seen[("PUT", 500)] <= 3 * 31


def test_two_runs_at_once_share_the_bucket_and_the_state(env, moto, monkeypatch):
    """Two skycompile processes on one task, one state file, at the same moment: the bucket
    is created once, both succeed, every object is right, the state is READY. (moto, whose
    PUTs are atomic as S3's are: rclone serve s3 can serve a torn object while two PUTs of
    one key overlap.)"""
    for i in range(200):
        (env / "proj" / "src" / f"c{i}.txt").write_text(f"{i}\n" * 1000)
    runs = [process(["task.yaml", "-o", f"boot{n}.sh", "--endpoint-url", moto.endpoint,
                     "--quiet"], env) for n in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    assert moto.objects(BUCKET) == {f"workdir/{k}": v for k, v in local_tree(env / "proj").items()}
    records = State().buckets()
    assert sorted(r.name for r in records) == sorted([BUCKET, "sc-applied-out"])
    assert all(r.status == "READY" for r in records)
    assert (env / "boot0.sh").read_text().replace("boot0.sh", "boot1.sh") == \
        (env / "boot1.sh").read_text()


def test_r2_keys_from_skypilots_credentials_file(env, s3, cli, monkeypatch):
    """Without AWS_* keys, an R2 bucket is filled with the [r2] profile of
    ~/.cloudflare/r2.credentials, where SkyPilot keeps them."""
    home = env / "home"
    (home / ".cloudflare").mkdir(parents=True)
    keys = s3.env()
    (home / ".cloudflare" / "r2.credentials").write_text(
        f"[r2]\naws_access_key_id = {keys['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {keys['AWS_SECRET_ACCESS_KEY']}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    (env / "task.yaml").write_text(
        "file_mounts:\n  /d:\n    name: sc-r2-data\n    store: r2\n    source: ./proj/src\n"
        "run: x\n")
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint, "--quiet")
    assert res.code == 0, res.err
    assert s3.objects("sc-r2-data") == {k[len("src/"):]: v for k, v in
                                        local_tree(env / "proj").items() if k.startswith("src/")}
    (home / ".cloudflare" / "r2.credentials").write_text("[r2]\n")
    res = cli("task.yaml", "-o", "boot.sh", "--endpoint-url", s3.endpoint, "--quiet")
    assert res.code == 1 and ("no credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                              "or AWS_PROFILE, or profile [r2] of ~/.cloudflare/r2.credentials"
                              ) in res.err, res.err


def test_oci_through_its_s3_compatibility_api(env, s3, cli, monkeypatch):
    """OCI buckets are created and filled through the S3 Compatibility API of the namespace
    (OCI_NAMESPACE) and region, with the [oci] profile of ~/.aws/credentials. The endpoint
    template is the one thing replaced: it points at the local server instead of
    NAMESPACE.compat.objectstorage.REGION.oraclecloud.com."""
    from skycompile.stores import s3_client
    home = env / "home"
    (home / ".aws").mkdir(parents=True)
    keys = s3.env()
    (home / ".aws" / "credentials").write_text(
        f"[oci]\naws_access_key_id = {keys['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {keys['AWS_SECRET_ACCESS_KEY']}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    (env / "task.yaml").write_text(
        "file_mounts:\n  /d:\n    name: sc-oci-data\n    store: oci\n    source: ./proj/src\n"
        "    mode: MOUNT\nresources:\n  cloud: oci\n  region: us-ashburn-1\nrun: x\n")
    res = cli("task.yaml", "-o", "boot.sh", "--quiet")
    assert res.code == 1 and "set OCI_NAMESPACE to what `oci os ns get` prints" in res.err
    assert not Path("boot.sh").exists() and s3.client().list_buckets()["Buckets"] == []

    with pytest.raises(ApplyError, match="region is not known; set resources.region, or write it in the URI: oci://b@REGION"):
        s3_client.OCIBucket("oci", "b", "", "", "tenancy1")
    monkeypatch.setenv("OCI_NAMESPACE", "tenancy1")
    seen = []
    real = s3_client.OCIBucket.__post_init__

    def post_init(self):
        seen.append(s3_client.OCI_ENDPOINT.format(namespace=self.account, region=self.region))
        self.endpoint = s3.endpoint
        real(self)
    monkeypatch.setattr(s3_client.OCIBucket, "__post_init__", post_init)
    res = cli("task.yaml", "-o", "boot.sh", "--quiet")
    assert res.code == 0, res.err
    assert seen[0] == "https://tenancy1.compat.objectstorage.us-ashburn-1.oraclecloud.com"
    assert s3.objects("sc-oci-data") == {k[len("src/"):]: v for k, v in
                                         local_tree(env / "proj").items() if k.startswith("src/")}
    script = Path("boot.sh").read_text()
    assert "namespace = tenancy1" in script and "region = us-ashburn-1" in script
    rec = State().bucket("oci", "", "sc-oci-data")
    assert rec and rec.status == "READY" and rec.account == "tenancy1"
    res = cli("storage", "delete", "sc-oci-data", "--yes")
    assert res.code == 0, res.err
    assert s3.client().list_buckets()["Buckets"] == []


def test_a_large_listing_is_split_by_directory_and_misses_nothing(monkeypatch, moto):
    """Over 1,000 keys, S3Bucket.listing lists again split by directory: Delimiter listings
    down the single-child chain data/only/, then its branches in parallel. The result is
    the plain listing's: the object named like the prefix and the files at every level
    in, the prefix's neighbours ("data.csv", "data-x/") out. AWS-exact server (moto)."""
    from skycompile.stores.s3_client import S3Bucket
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto")
    raw = moto.client()
    raw.create_bucket(Bucket="big")
    keys = ["data", "data.csv", "data-x/f", "data/top.txt", "data/only/mid.txt",
            *[f"data/only/b{i % 7}/s{i % 3}/f{i:04}" for i in range(1200)]]
    for key in keys:
        raw.put_object(Bucket="big", Key=key, Body=key.encode())
    bucket = S3Bucket("s3", "big", moto.endpoint, "us-east-1")
    asked = []
    real = bucket.client.list_objects_v2
    monkeypatch.setattr(bucket.client, "list_objects_v2",
                        lambda **kw: asked.append(kw.get("Delimiter", "")) or real(**kw))
    got = bucket.listing("data")
    want = {k: (len(k.encode()), hashlib.md5(k.encode()).hexdigest()) for k in keys
            if k == "data" or k.startswith("data/")}
    assert got == want
    assert asked.count("/") == 3  # "data", "data/", "data/only/": then 7 branches in parallel
    assert len(asked) == 1 + 3 + 7  # the first page only tells that there are more
    assert bucket.listing("") == {k: (len(k.encode()), hashlib.md5(k.encode()).hexdigest())
                                  for k in keys}
