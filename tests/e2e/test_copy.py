"""COPY on a real node: prefixes, single objects and sub-paths arrive before setup runs,
and a re-run transfers nothing."""
from __future__ import annotations


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
