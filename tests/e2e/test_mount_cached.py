"""MOUNT_CACHED on a real node: writes land in the cache, drain returns only when every
closed file is in the bucket, an outage is survived without losing anything."""
from __future__ import annotations

import hashlib
import random
import re
import time

def make_files() -> dict[str, bytes]:
    """200 files, 4 of them over 60 MB, the rest up to 300 kB, some in nested directories."""
    rnd = random.Random(7)
    out = {}
    for i in range(200):
        size = 60 * 2**20 + i if i % 50 == 0 else rnd.randint(0, 300_000)
        key = f"deep/er/f{i:03}.bin" if i % 3 == 0 else f"f{i:03}.bin"
        out[key] = rnd.randbytes(size)
    return out


def task(run: str, drain_timeout: str = "10m", write_back: str = "5s") -> str:
    return f"""
name: cached
file_mounts:
  /out:
    source: s3://results
    mode: MOUNT_CACHED
    config:
      mount_cached:
        drain_timeout: {drain_timeout}
        write_back: {write_back}
run: |
{''.join('  ' + line + chr(10) for line in run.splitlines())}
"""


def test_200_files_reach_the_bucket_before_up_returns(s3, node, compile_task):
    s3.bucket("results")
    files = make_files()
    for key, data in files.items():
        node.put(f"/srv/src/{key}", data)
    # run writes them through the mount (cp: open, write, close per file), then up drains
    [script] = compile_task(task("cp -r /srv/src/. /out/"))
    res = node.script(script, "up", timeout=600)
    assert res.returncode == 0, res.stderr
    assert "every closed file is in the bucket" in res.stderr
    # the node's rclone is still up, but the check is the server's, object by object
    assert s3.objects("results") == {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    status = node.script(script, "status")
    assert "pending uploads: 0" in status.stdout


def test_outage_drain_times_out_listing_files_then_nothing_is_lost(s3, node, compile_task):
    """The server goes down, then the task writes: the writes succeed at once (MOUNT_CACHED
    keeps its directory listings, so rclone need not ask the server), drain times out
    listing them, and after the server returns a second drain delivers every one."""
    s3.bucket("results")
    [script] = compile_task(task("true", drain_timeout="8s", write_back="1s"))
    assert node.script(script, "up", "--no-run").returncode == 0
    node.sh("mkdir -p '/out/sub dir' && ls '/out/sub dir'", check=True)  # made before
    time.sleep(3)  # more than rclone's MOUNT default (2s) of directory listing time
    s3.stop()
    start = time.monotonic()
    node.sh("for i in 1 2 3; do echo \"result $i\" > /out/r$i.txt; done; "
            "echo nested > '/out/sub dir/n 1.txt'", check=True, timeout=60)
    assert time.monotonic() - start < 10, "writes stalled while the server was down"
    failed = node.script(script, "drain", timeout=120)
    assert failed.returncode != 0
    listed = set(re.findall(r"warning:   (.+) \(upload tries: \d+\)", failed.stderr))
    assert listed == {"r1.txt", "r2.txt", "r3.txt", "sub dir/n 1.txt"}, failed.stderr
    assert "NOT in the bucket" in failed.stderr
    # down refuses while uploads pend: rclone does not flush on unmount
    down = node.script(script, "down", timeout=120)
    assert down.returncode != 0 and "nothing was unmounted" in down.stderr
    assert node.sh("mountpoint -q /out").returncode == 0
    # the cache still holds them; the server comes back; a second drain delivers everything
    cached = node.sh("find /var/cache/skycompile/cached/m0/vfs -type f | wc -l")
    assert int(cached.stdout) == 4
    s3.start()
    # as the message says: run drain again until it succeeds (rclone's backoff from the
    # outage may outlast one 8 s drain)
    for _ in range(6):
        ok = node.script(script, "drain", timeout=120)
        if ok.returncode == 0:
            break
    assert ok.returncode == 0, ok.stderr
    assert s3.objects("results") == {
        **{f"r{i}.txt": hashlib.sha256(f"result {i}\n".encode()).hexdigest() for i in (1, 2, 3)},
        "sub dir/n 1.txt": hashlib.sha256(b"nested\n").hexdigest()}
    assert node.script(script, "down").returncode == 0
    assert node.sh("mountpoint -q /out").returncode != 0


def test_failed_run_keeps_its_exit_code_after_drain(s3, node, compile_task):
    s3.bucket("results")
    [script] = compile_task(task("echo partial > /out/partial.txt\nexit 3"))
    res = node.script(script, "up")
    assert res.returncode == 3, res.stderr
    assert "run failed with exit code 3" in res.stderr
    assert s3.objects("results") == {
        "partial.txt": hashlib.sha256(b"partial\n").hexdigest()}


def test_one_transfer_keeps_the_write_order(s3, node, compile_task):
    """Seed 001: by default files reach the bucket in the order they were closed. The
    server's ctime (set by its own writes, not by the client) tells the arrival order."""
    s3.bucket("results")
    names = [f"{c}-{i:02}.txt" for i, c in enumerate("qwertyuiopasdfghjklz")]  # not sorted
    writes = "".join(f"echo {n} > /out/{n}; sleep 0.05\n" for n in names)
    [script] = compile_task(task(writes, write_back="1s"))
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    arrived = sorted(names, key=lambda n: (s3.root / "results" / n).stat().st_ctime_ns)
    assert arrived == names


def test_killed_rclone_pending_uploads_resume_from_the_cache(s3, node, compile_task):
    s3.bucket("results")
    [script] = compile_task(task("true", write_back="1h"))
    assert node.script(script, "up", "--no-run").returncode == 0
    node.sh("for i in 1 2 3; do echo \"kept $i\" > /out/k$i.txt; done", check=True)
    node.sh("pkill -KILL -x rclone; sleep 0.5", check=True)
    assert s3.objects("results") == {}
    status = node.script(script, "status")
    assert "dead mount" in status.stdout, status.stdout
    res = node.script(script, "up", "--no-run")
    assert res.returncode == 0, res.stderr
    drained = node.script(script, "drain")
    assert drained.returncode == 0, drained.stderr
    assert s3.objects("results") == {
        f"k{i}.txt": hashlib.sha256(f"kept {i}\n".encode()).hexdigest() for i in (1, 2, 3)}


def test_drain_sends_files_held_by_write_back_at_once_in_batches(s3, node, compile_task):
    """Files waiting out a 1-hour --vfs-write-back are sent as soon as drain starts. They are
    expedited EXPEDITE_BATCH (500) per rclone call: 1,201 files take three calls, and each
    batch must be whole (a file left waiting would hold drain until its timeout)."""
    s3.bucket("results")
    [script] = compile_task(task("true", drain_timeout="150s", write_back="1h"))
    assert "readonly EXPEDITE_BATCH=500" in script
    assert node.script(script, "up", "--no-run").returncode == 0
    node.sh("mkdir /out/d && cd /out/d && for i in $(seq 1201); do echo $i > f$i; done",
            check=True, timeout=300)
    time.sleep(2)
    assert s3.objects("results") == {}  # held back
    drained = node.script(script, "drain", timeout=300)
    assert drained.returncode == 0, drained.stderr
    assert len(s3.objects("results", "d/")) == 1201


def test_persistent_upload_errors_end_drain_before_its_timeout(s3, node, compile_task):
    """rclone retries a failing upload forever and its erroredFiles stays 0: drain must see
    the retries (vfs/queue tries) and give up long before a 10-minute timeout, naming the
    file, and the run's own success must not hide it."""
    s3.bucket("results")
    [script] = compile_task(task("echo lost > /out/doomed.txt", write_back="1s"))
    # the bucket vanishes under the mount (as when it is deleted or access is revoked)
    res = node.script(script, "up", "--no-run")
    assert res.returncode == 0, res.stderr
    s3.client().delete_bucket(Bucket="results")
    up = node.script(script, "up", timeout=400)
    assert up.returncode != 0
    assert "uploads keep failing" in up.stderr, up.stderr
    assert "doomed.txt (upload tries:" in up.stderr
    assert "up: the task finished, but some uploads did not reach the bucket" in up.stderr


def test_a_new_up_lists_what_reached_the_bucket_since(s3, node, compile_task):
    """MOUNT_CACHED listings do not expire (an outage must not fail writes), so a file
    another machine puts in the bucket shows after the next `up`, which refreshes them."""
    s3.bucket("results")
    [script] = compile_task(task("true"))
    assert node.script(script, "up", "--no-run").returncode == 0
    node.sh("ls /out", check=True)  # listed now, and kept
    s3.client().put_object(Bucket="results", Key="late.txt", Body=b"from elsewhere\n")
    time.sleep(3)
    assert "late.txt" not in node.sh("ls /out").stdout
    again = node.script(script, "up", "--no-run")
    assert again.returncode == 0, again.stderr
    assert node.sh("cat /out/late.txt", check=True).stdout == "from elsewhere\n"
