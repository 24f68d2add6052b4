"""MOUNT on real nodes: streamed reads, close-to-open writes, two nodes on one bucket."""
from __future__ import annotations

import hashlib
import time

MOUNT_TASK = """
num_nodes: 2
file_mounts:
  /shared:
    source: s3://shared
    mode: MOUNT
  /sub:
    source: s3://shared/part
    mode: MOUNT
run: |
  set -eu
  if [ "$SKYPILOT_NODE_RANK" = 0 ]; then me=ping; other=pong; else me=pong; other=ping; fi
  wait_for() {
    for _ in $(seq 1 200); do
      if [ -f "$1" ]; then return 0; fi
      sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    return 1
  }
  for i in 1 2 3; do
    if [ "$me" = pong ]; then wait_for "/shared/ping-$i"; fi
    echo "$me $i from $SKYPILOT_NODE_RANK" > "/shared/$me-$i"
    if [ "$me" = ping ]; then wait_for "/shared/pong-$i"; cat "/shared/pong-$i"; fi
  done
"""


def test_two_nodes_ping_pong_through_one_bucket(s3, make_node, compile_task):
    s3.bucket("shared")
    scripts = compile_task(MOUNT_TASK)
    assert len(scripts) == 2
    nodes = [make_node(f"node{i}") for i in range(2)]
    for n, script in zip(nodes, scripts):
        n.put("/root/boot.sh", script, 0o755)
    start = time.monotonic()
    procs = [n.popen("bash", "/root/boot.sh", "up") for n in nodes]
    outs = [p.communicate(timeout=120) for p in procs]
    elapsed = time.monotonic() - start
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    # node 0 read every pong node 1 wrote, each within the wait loop's 20 s
    assert outs[0][0].splitlines() == [f"pong {i} from 1" for i in (1, 2, 3)]
    assert sorted(s3.objects("shared")) == sorted(
        [f"ping-{i}" for i in (1, 2, 3)] + [f"pong-{i}" for i in (1, 2, 3)])
    assert elapsed < 60


def test_close_to_open_subpath_and_write_rules(s3, node, compile_task):
    bucket = s3.bucket("shared")
    (bucket / "part").mkdir()
    blob = bytes(range(256)) * 40_000  # 10 MB, streamed
    (bucket / "part" / "big.bin").write_bytes(blob)
    [script] = compile_task(MOUNT_TASK.replace("num_nodes: 2", "num_nodes: 1")
                            .split("run:")[0])
    assert node.script(script, "up").returncode == 0
    # streamed read through the sub-path mount
    res = node.sh("sha256sum /sub/big.bin", check=True)
    assert res.stdout.split()[0] == hashlib.sha256(blob).hexdigest()
    # close() returned -> the object is in the bucket, no waiting
    node.sh("printf 'written on the node' > /sub/new.txt", check=True)
    assert "part/new.txt" in s3.objects("shared", "part/")
    assert (bucket / "part" / "new.txt").read_text() == "written on the node"
    # another writer's object appears in the listing within seconds (short dir cache)
    node.sh("ls /shared >/dev/null", check=True)
    s3.client().put_object(Bucket="shared", Key="from-elsewhere.txt", Body=b"hi")
    seen = node.sh("for i in $(seq 1 50); do [ -f /shared/from-elsewhere.txt ] && exit 0;"
                   " sleep 0.1; done; exit 1")
    assert seen.returncode == 0
    # appending to / rewriting part of an existing object cannot be streamed: it fails
    append = node.sh("echo more >> /sub/new.txt")
    assert append.returncode != 0
    assert (bucket / "part" / "new.txt").read_text() == "written on the node"
    rand = node.sh("printf X | dd of=/sub/big.bin bs=1 seek=5 conv=notrunc status=none")
    assert rand.returncode != 0
    assert (bucket / "part" / "big.bin").read_bytes() == blob


def test_mount_is_usable_by_the_task_user(s3, node, compile_task):
    s3.bucket("shared")
    node.sh("useradd --create-home alice", check=True)
    [script] = compile_task("""
file_mounts:
  /shared:
    source: s3://shared
    mode: MOUNT
  ~/data:
    source: s3://shared
    mode: MOUNT
run: |
  set -e
  test "$(id -un)" = alice
  echo "by alice" > /shared/alice.txt
  cat ~/data/alice.txt
  stat -c %U ~/data
""", "--user", "alice")
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["by alice", "alice"]
    assert (s3.root / "shared" / "alice.txt").read_text() == "by alice\n"
