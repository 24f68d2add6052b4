"""COPY on a real node: prefixes, single objects and sub-paths arrive before setup runs,
and a re-run transfers nothing."""
from __future__ import annotations

import random
import time

from . import nodes
from .applied import local_tree


def test_copy_prefix_object_and_subpath(s3, node, compile_task):
    data = s3.bucket("data")
    (data / "train").mkdir()
    (data / "train" / "a.txt").write_text("alpha\n")
    (data / "train" / "sub").mkdir()
    (data / "train" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    (data / "config.json").write_text('{"k": 1}\n')
    (data / "other.txt").write_text("not asked for\n")
    [script] = compile_task("""
file_mounts:
  /data/train: s3://data/train
  /etc/app/config.json: s3://data/config.json
  ~/everything:
    source: s3://data
    mode: COPY
setup: |
  test -f /data/train/sub/b.bin
  cat /etc/app/config.json
run: echo ran
""")
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert node.path("/data/train/a.txt").read_text() == "alpha\n"
    assert node.path("/data/train/sub/b.bin").read_bytes() == bytes(range(256)) * 100
    assert not node.path("/data/train/config.json").exists()
    assert node.path("/etc/app/config.json").read_text() == '{"k": 1}\n'
    assert node.path("/root/everything/other.txt").read_text() == "not asked for\n"
    assert '{"k": 1}' in res.stdout
    again = node.script(script, "up")
    assert again.returncode == 0, again.stderr


def test_copy_retries_until_the_server_is_back(s3, node, compile_task):
    (s3.bucket("data") / "a.txt").write_text("late\n")
    [script] = compile_task("file_mounts:\n  /data: s3://data\nrun: cat /data/a.txt\n")
    s3.stop()
    proc = node.popen("bash", "-c", f"cat > /root/boot.sh <<'EOF_SCRIPT'\n{script}EOF_SCRIPT\n"
                      "bash /root/boot.sh up")
    time.sleep(4)
    s3.start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out == "late\n"


def test_copy_gives_up_with_a_message_naming_the_mount(s3, node, compile_task):
    (s3.bucket("data") / "model.bin").write_bytes(b"weights" * 1000)
    [script] = compile_task("file_mounts:\n  /data: s3://data/model.bin\n")
    s3.stop()
    res = node.script(script, "up", timeout=200, env={"SKYCOMPILE_RETRIES": "2"})
    assert res.returncode != 0
    assert "giving up after 2 attempts" in res.stderr
    assert "cannot look up sc-m0:data/model.bin (for /data)" in res.stderr
    # the server is back: a later run completes
    s3.start()
    again = node.script(script, "up")
    assert again.returncode == 0, again.stderr
    assert node.path("/data").read_bytes() == b"weights" * 1000


def test_server_stopped_in_the_middle_of_a_copy_then_back(s3, node, compile_task):
    """The server goes away while COPY is transferring 150 files and comes back 5 s later:
    the script retries and completes, every file byte-exact."""
    rnd = random.Random(3)
    data = s3.bucket("data")
    for i in range(150):
        (data / f"d{i % 5}").mkdir(exist_ok=True)
        (data / f"d{i % 5}" / f"f{i}.bin").write_bytes(rnd.randbytes(
            30 * 2**20 if i % 50 == 0 else rnd.randint(0, 400_000)))
    [script] = compile_task("file_mounts:\n  /data: s3://data\nrun: echo ran\n")
    node.put("/root/boot.sh", script, 0o755)
    proc = node.popen("bash", "/root/boot.sh", "up")
    deadline = time.monotonic() + 120
    while not any(node.path("/data").rglob("*.bin")) if node.path("/data").exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, "the copy never started"
        time.sleep(0.02)
    s3.stop()
    arrived = sum(1 for _ in node.path("/data").rglob("*.bin"))
    time.sleep(5)
    s3.start()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert arrived < 150, "the copy finished before the server stopped: nothing was tested"
    assert local_tree(node.path("/data")) == local_tree(data)
    assert out == "ran\n"


def test_copies_into_home_belong_to_the_task_user(s3, node, compile_task):
    data = s3.bucket("data")
    (data / "train").mkdir()
    (data / "train" / "a.txt").write_text("alpha\n")
    node.sh("useradd --create-home alice", check=True)
    [script] = compile_task("""
file_mounts:
  ~/datasets/train: s3://data/train
  /srv/shared/train: s3://data/train
run: |
  echo more > ~/datasets/train/mine.txt
  echo "home=$HOME user=$(id -un)"
""", "--user", "alice")
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "home=/home/alice user=alice\n"
    owners = node.sh("stat -c '%U %n' /home/alice/datasets /home/alice/datasets/train "
                     "/home/alice/datasets/train/a.txt /srv/shared /srv/shared/train/a.txt /srv",
                     check=True).stdout.splitlines()
    assert owners == ["alice /home/alice/datasets", "alice /home/alice/datasets/train",
                      "alice /home/alice/datasets/train/a.txt", "alice /srv/shared",
                      "alice /srv/shared/train/a.txt", "root /srv"]


def test_a_rerun_of_a_copied_bucket_is_one_listing_and_still_sees_changes(s3, node,
                                                                           compile_task):
    """rclone's default reads each S3 object's time from its metadata, a HEAD per object on
    every re-run; the script compares the bucket's own times (RCLONE_FETCH), which its
    listing carries. The objects are put without rclone's mtime metadata, so this server
    lists them as S3 does (rclone serve s3 lists the metadata's time instead of its own)."""
    client = s3.client()
    s3.bucket("data")
    for i in range(40):
        client.put_object(Bucket="data", Key=f"d/f{i:02}.txt", Body=f"{i:02}\n".encode())
    proxy = nodes.FaultProxy(s3.port).start()
    try:
        [script] = compile_task("file_mounts:\n  /in: s3://data/d\n", "--endpoint-url",
                                proxy.endpoint, endpoint=False)
        assert node.script(script, "up").returncode == 0
        assert node.path("/in/f07.txt").read_text() == "07\n"
        proxy.seen.clear()
        again = node.script(script, "up")
        assert again.returncode == 0, again.stderr
        # the kind lookup (object or prefix?: two HEADs and a listing), the copy's listing
        assert sum(proxy.seen.values()) <= 4, proxy.seen
        # a same-size object replaced in the bucket is fetched again
        time.sleep(1.5)
        client.put_object(Bucket="data", Key="d/f07.txt", Body=b"XX\n")
        assert node.script(script, "up").returncode == 0
        assert node.path("/in/f07.txt").read_text() == "XX\n"
    finally:
        proxy.stop()
