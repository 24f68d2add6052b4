"""GCS end to end: gs:// storages compiled with STORAGE_EMULATOR_HOST reach a real
gcp-storage-emulator from a real node (COPY and FUSE MOUNT), anonymously, and only then.

Objects stay under 16 MiB: rclone's gcs backend cannot upload larger ones to this emulator
(DESIGN.md, testing stack)."""
from __future__ import annotations

import hashlib
import re

import pytest

from . import nodes


@pytest.fixture
def gcs(serve):
    return serve(nodes.GCSServer, "gcs")


@pytest.fixture
def compile_gcs(compile_with_env):
    """compile_gcs(yaml_text, *flags, emulator=URL or None) -> (scripts, --dry-run plan),
    compiled by the real CLI with STORAGE_EMULATOR_HOST set to `emulator` (unset: None).
    With `code=N`, the compile must exit N; then it returns ([], stderr)."""
    def run(text: str, *flags: str, emulator: str | None, code: int = 0):
        return compile_with_env(text, *flags, env={"STORAGE_EMULATOR_HOST": emulator}, code=code)
    return run


def downloads(gcs: nodes.GCSServer) -> int:
    """Object downloads the emulator has served so far (its access log)."""
    return len(re.findall(r'"GET /download/\S+ HTTP', gcs.log.read_text()))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


BLOB = bytes(range(256)) * 4096  # 1 MiB, binary


def test_copy_prefix_and_single_object(gcs, plain_node, compile_gcs):
    gcs.create_bucket("sc-gcs-data")
    gcs.put("sc-gcs-data", "train/a.txt", "alpha\n")
    gcs.put("sc-gcs-data", "train/sub/b.bin", BLOB)
    gcs.put("sc-gcs-data", "config.json", '{"k": 1}\n')
    gcs.put("sc-gcs-data", "other.txt", "not asked for\n")
    [script], plan = compile_gcs("""
name: gcs-copy
file_mounts:
  /data/train: gs://sc-gcs-data/train
  /etc/app/config.json: gs://sc-gcs-data/config.json
setup: |
  test -f /data/train/sub/b.bin
  cat /etc/app/config.json
run: echo ran
""", emulator=gcs.endpoint)
    assert f"endpoint {gcs.endpoint}" in plan
    assert "STORAGE_EMULATOR_HOST" in plan
    assert nodes.rclone_remotes(script) == [{
        "type": "google cloud storage", "anonymous": "true", "bucket_policy_only": "true",
        "endpoint": f"{gcs.endpoint}/storage/v1/"}] * 2

    res = plain_node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert plain_node.path("/data/train/a.txt").read_text() == "alpha\n"
    assert plain_node.path("/data/train/sub/b.bin").read_bytes() == BLOB
    assert not plain_node.path("/data/train/config.json").exists()
    assert not plain_node.path("/data/other.txt").exists()
    assert plain_node.path("/etc/app/config.json").read_text() == '{"k": 1}\n'
    assert '{"k": 1}' in res.stdout and "ran" in res.stdout
    conf = plain_node.path("/etc/skycompile/gcs-copy/rclone.conf").read_text()
    assert "anonymous = true" in conf and "env_auth" not in conf
    fetched = downloads(gcs)
    assert fetched == 3  # a.txt, b.bin, config.json

    again = plain_node.script(script, "up")
    assert again.returncode == 0, again.stderr
    assert downloads(gcs) == fetched  # the re-run transferred nothing
    assert plain_node.path("/data/train/sub/b.bin").read_bytes() == BLOB


def test_mount_reads_and_writes_through_to_the_bucket(gcs, plain_node, compile_gcs):
    gcs.create_bucket("sc-gcs-shared")
    gcs.put("sc-gcs-shared", "input/words.txt", "one\ntwo\nthree\n")
    gcs.put("sc-gcs-shared", "input/blob.bin", BLOB)
    [script], _ = compile_gcs("""
name: gcs-mount
file_mounts:
  /shared:
    name: sc-gcs-shared
    store: gcs
    mode: MOUNT
run: |
  set -e
  test "$(wc -l < /shared/input/words.txt)" = 3
  mkdir -p /shared/out
  tr a-z A-Z < /shared/input/words.txt > /shared/out/upper.txt
  cat /shared/input/blob.bin /shared/input/blob.bin > /shared/out/double.bin
  echo "rank $SKYPILOT_NODE_RANK" > /shared/out/rank.txt
""", emulator=gcs.endpoint)
    nodes.shared_mount_round_trip(gcs, plain_node, script, "sc-gcs-shared", BLOB)

    down = plain_node.script(script, "down")
    assert down.returncode == 0, down.stderr
    assert plain_node.sh("mountpoint -q /shared").returncode != 0


def test_emulator_only_when_storage_emulator_host_is_set(gcs, compile_gcs):
    task = """
name: gcs-ep
file_mounts:
  /a: gs://sc-gcs-bucket/x
  /b: s3://sc-s3-bucket/y
run: echo ok
"""
    [real], plan = compile_gcs(task, emulator=None)
    gcs_remote, s3_remote = nodes.rclone_remotes(real)
    assert gcs_remote == {"type": "google cloud storage", "env_auth": "true",
                          "bucket_policy_only": "true"}
    assert "anonymous" not in real and "STORAGE_EMULATOR_HOST" not in plan

    # --endpoint-url is for the S3 family; STORAGE_EMULATOR_HOST for gcs only.
    [both], _ = compile_gcs(task, "--endpoint-url", "http://127.0.0.1:9", emulator=gcs.endpoint)
    gcs_remote, s3_remote = nodes.rclone_remotes(both)
    assert gcs_remote["endpoint"] == f"{gcs.endpoint}/storage/v1/"
    assert gcs_remote["anonymous"] == "true" and "env_auth" not in gcs_remote
    assert s3_remote["endpoint"] == "http://127.0.0.1:9" and "anonymous" not in s3_remote

    # Google's clients take a bare HOST:PORT for http.
    [bare], _ = compile_gcs(task, emulator=f"127.0.0.1:{gcs.port}/")
    assert nodes.rclone_remotes(bare)[0]["endpoint"] == f"{gcs.endpoint}/storage/v1/"


@pytest.mark.parametrize("value", ["ftp://127.0.0.1:1", "http://127.0.0.1:1/storage/v1",
                                   "http://127.0.0.1:99999", "http://"])
def test_bad_storage_emulator_host_is_bad_input(value, compile_gcs):
    _, err = compile_gcs("file_mounts:\n  /a: gs://sc-gcs-bucket\nrun: echo ok\n",
                         emulator=value, code=2)
    assert err.startswith(f"skycompile: error: STORAGE_EMULATOR_HOST: {value!r} ")
    # Only gcs storages read it: an S3 task compiles whatever it says.
    [script], _ = compile_gcs("file_mounts:\n  /a: s3://sc-s3-bucket\nrun: echo ok\n",
                              emulator=value)
    assert "google cloud storage" not in script


def test_mount_cached_drains_into_the_bucket(gcs, plain_node, compile_gcs):
    gcs.create_bucket("sc-gcs-out")
    [script], _ = compile_gcs("""
name: gcs-cached
file_mounts:
  /out:
    source: gs://sc-gcs-out/run1
    mode: MOUNT_CACHED
run: |
  for i in $(seq 1 20); do echo "result $i" > /out/r$i.txt; done
  head -c 3000000 /dev/zero > /out/zeros.bin
""", emulator=gcs.endpoint)
    res = plain_node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert "every closed file is in the bucket" in res.stderr
    expected = {f"run1/r{i}.txt": sha(f"result {i}\n".encode()) for i in range(1, 21)}
    expected["run1/zeros.bin"] = sha(bytes(3_000_000))
    assert gcs.objects("sc-gcs-out") == expected
