"""The other S3-family stores (R2, IBM COS) generate their own rclone remotes (provider,
region, endpoint): run them against the S3 test server, as a user points them at any
S3-compatible endpoint, so every setting the script writes is exercised by a real rclone."""
from __future__ import annotations

import hashlib

import pytest

TASK = """
file_mounts:
  /in:
    source: {base}data/in
    mode: COPY
  /mnt/data:
    source: {base}data
    mode: MOUNT
  /mnt/out:
    source: {base}out
    mode: MOUNT_CACHED
run: |
  set -e
  cat /in/a.txt
  cat /mnt/data/in/a.txt
  echo written > /mnt/data/w.txt
  echo cached > /mnt/out/c.txt
"""


@pytest.mark.parametrize("base,provider", [("r2://", "Cloudflare"), ("cos://us-south/", "IBMCOS")],
                         ids=["r2", "ibm"])
def test_copy_mount_and_cached_through_the_stores_remote(s3, node, compile_task, base,
                                                         provider):
    (s3.bucket("data") / "in").mkdir()
    (s3.root / "data" / "in" / "a.txt").write_text("payload\n")
    s3.bucket("out")
    [script] = compile_task(TASK.format(base=base))
    assert f"'provider = {provider}'" in script
    assert f"'endpoint = {s3.endpoint}'" in script
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "payload\npayload\n"
    assert s3.objects("data", "w.txt") == {"w.txt": hashlib.sha256(b"written\n").hexdigest()}
    assert s3.objects("out") == {"c.txt": hashlib.sha256(b"cached\n").hexdigest()}
