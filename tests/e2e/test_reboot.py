"""A node that crashes and reboots in the middle of its work (every process SIGKILLed,
mounts gone, /run and /tmp empty, the disk kept), then runs `up` again: nothing is lost.
And two `up` runs at once on one node: the lock serialises them."""
from __future__ import annotations

import hashlib
import random
import time

from .applied import local_tree
from .test_mount_cached import task as cached_task


def files(n: int = 120, seed: int = 5) -> dict[str, bytes]:
    """n files, three of them 40 MB (multipart, slow enough to be caught mid-upload)."""
    rnd = random.Random(seed)
    return {(f"d{i % 4}/f{i:03}.bin" if i % 2 else f"f{i:03}.bin"):
            rnd.randbytes(40 * 2**20 + i if i % 40 == 0 else rnd.randint(0, 200_000))
            for i in range(n)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(check, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_reboot_mid_upload_of_cached_writes_loses_nothing(s3, node, compile_task):
    """Files closed under MOUNT_CACHED, the node crashes while rclone is uploading them:
    after the reboot `up` remounts, the uploads resume from the cache on disk, and every
    object in the bucket has its file's checksum."""
    s3.bucket("results")
    data = files()
    for key, blob in data.items():
        node.put(f"/srv/src/{key}", blob)
    [script] = compile_task(cached_task("true", write_back="1s"))
    assert node.script(script, "up", "--no-run").returncode == 0
    node.sh("cp -r /srv/src/. /out/", check=True)  # every file closed: now it is rclone's
    bucket = s3.root / "results"

    def stored() -> set[str]:  # the server's own files, without its upload temp files
        return {str(p.relative_to(bucket)) for p in bucket.rglob("*")
                if p.is_file() and not p.name.startswith(".rclone_temp")}
    wait_for(lambda: len(stored()) >= 10, "the first uploads")
    arrived = stored()
    node.reboot()
    assert arrived < set(data), "every upload finished before the crash: nothing was tested"
    up = node.script(script, "up", "--no-run")
    assert up.returncode == 0, up.stderr
    drained = node.script(script, "drain", timeout=600)
    assert drained.returncode == 0, drained.stderr
    assert s3.objects("results") == {k: sha(v) for k, v in data.items()}
    assert "pending uploads: 0" in node.script(script, "status").stdout


def test_reboot_mid_copy_then_up_completes_byte_exact(s3, node, compile_task):
    """The node crashes while COPY is downloading: the next `up` finishes the copy, every
    file byte-exact, and runs the task."""
    data = files(seed=6)
    for key, blob in data.items():
        path = s3.bucket("inputs") / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    [script] = compile_task("file_mounts:\n  /data: s3://inputs\nrun: touch /root/ran\n")
    node.put("/root/boot.sh", script, 0o755)
    proc = node.popen("bash", "/root/boot.sh", "up")
    wait_for(lambda: any(node.path("/data").rglob("*.bin")) if node.path("/data").exists()
             else False, "the copy to start")
    node.reboot()
    proc.wait(30)
    assert not node.path("/root/ran").exists()
    up = node.script(script, "up", timeout=600)
    assert up.returncode == 0, up.stderr
    assert local_tree(node.path("/data")) == {k: sha(v) for k, v in data.items()}
    assert node.path("/root/ran").exists()


def test_two_ups_at_once_are_serialised_by_the_lock(s3, node, compile_task):
    """Both runs exit 0, one after the other: one mount per mount point, setup once."""
    s3.bucket("shared")
    [script] = compile_task(
        "file_mounts:\n  /shared:\n    source: s3://shared\n    mode: MOUNT\n"
        "setup: echo setup >> /root/setups; sleep 2\n"
        "run: echo \"$$ start\" >> /root/runs; sleep 2; echo \"$$ end\" >> /root/runs\n")
    node.put("/root/boot.sh", script, 0o755)
    procs = [node.popen("bash", "/root/boot.sh", "up") for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert node.path("/root/setups").read_text() == "setup\n"
    runs = node.path("/root/runs").read_text().split()
    # the two runs did not overlap: start, end, start, end
    assert runs[1::2] == ["start", "end", "start", "end"], runs
    mounts = [ln for ln in node.sh("cat /proc/mounts").stdout.splitlines()
              if ln.split()[1] == "/shared"]
    assert len(mounts) == 1, mounts


def test_a_second_up_gives_up_clearly_while_the_first_holds_the_lock(s3, node, compile_task):
    """A run longer than the lock wait: the second `up` exits non-zero saying who holds
    the lock and what to do; the first is unharmed."""
    [script] = compile_task("run: sleep 75\n")
    node.put("/root/boot.sh", script, 0o755)
    first = node.popen("bash", "/root/boot.sh", "up")
    wait_for(lambda: "running" in node.sh("cat /var/log/skycompile/*.log 2>/dev/null").stdout,
             "the first run to start")
    second = node.run("bash", "/root/boot.sh", "up", timeout=120)
    assert second.returncode != 0
    assert "another skycompile run" in second.stderr and "still holds" in second.stderr, \
        second.stderr
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
