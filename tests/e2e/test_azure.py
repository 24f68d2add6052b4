"""Azure Blob end to end: azure storages compiled with AZURE_STORAGE_CONNECTION_STRING naming
Azurite reach a real Azurite (npm `azurite`, installed by .ci/run) from a real node (COPY and
FUSE MOUNT), with rclone's built-in emulator key, and only then; a real connection string
changes nothing and never reaches the scripts."""
from __future__ import annotations

import hashlib

import pytest

from . import nodes

ACCOUNT = nodes.AzuriteServer.ACCOUNT


@pytest.fixture
def azurite(serve):
    return serve(nodes.AzuriteServer, "azurite")


@pytest.fixture
def compile_az(compile_with_env):
    """compile_az(yaml_text, *flags, conn=STRING or None) -> (scripts, --dry-run plan),
    compiled by the real CLI with AZURE_STORAGE_CONNECTION_STRING set to `conn` (unset:
    None). With `code=N`, the compile must exit N; then it returns ([], stderr)."""
    def run(text: str, *flags: str, conn: str | None, code: int = 0):
        return compile_with_env(text, *flags, env={"AZURE_STORAGE_CONNECTION_STRING": conn}, code=code)
    return run


def body(script: str) -> str:
    """A script without its comment lines (the header names the task file and -o)."""
    return "\n".join(line for line in script.splitlines() if not line.startswith("#"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uri(container: str, path: str = "", account: str = ACCOUNT) -> str:
    return f"https://{account}.blob.core.windows.net/{container}" + (f"/{path}" if path else "")


BLOB = bytes(range(256)) * 4096  # 1 MiB, binary


def test_copy_prefix_and_single_blob(azurite, plain_node, compile_az):
    azurite.create_container("sc-az-data")
    azurite.put("sc-az-data", "train/a.txt", "alpha\n")
    azurite.put("sc-az-data", "train/sub/b.bin", BLOB)
    azurite.put("sc-az-data", "config.json", '{"k": 1}\n')
    azurite.put("sc-az-data", "other.txt", "not asked for\n")
    # The second URI names another account, as a task written for real Azure does: the
    # emulator setting sends it to Azurite's one account all the same.
    [script], plan = compile_az(f"""
name: az-copy
file_mounts:
  /data/train: {uri("sc-az-data", "train")}
  /etc/app/config.json: {uri("sc-az-data", "config.json", account="myprodaccount")}
setup: |
  test -f /data/train/sub/b.bin
  cat /etc/app/config.json
run: echo ran
""", conn=azurite.connection_string)
    assert f"endpoint {azurite.endpoint}" in plan
    assert "Azurite emulator" in plan and "AZURE_STORAGE_CONNECTION_STRING" in plan
    assert nodes.rclone_remotes(script) == [{"type": "azureblob", "use_emulator": "true",
                                "endpoint": azurite.endpoint}] * 2
    assert azurite.KEY not in script  # rclone knows the emulator key itself

    res = plain_node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert plain_node.path("/data/train/a.txt").read_text() == "alpha\n"
    assert plain_node.path("/data/train/sub/b.bin").read_bytes() == BLOB
    assert not plain_node.path("/data/train/config.json").exists()
    assert not plain_node.path("/data/other.txt").exists()
    assert plain_node.path("/etc/app/config.json").read_text() == '{"k": 1}\n'
    assert '{"k": 1}' in res.stdout and "ran" in res.stdout
    conf = plain_node.path("/etc/skycompile/az-copy/rclone.conf").read_text()
    assert "use_emulator = true" in conf and "env_auth" not in conf and "key" not in conf
    fetched = azurite.downloads()
    assert fetched == 3  # a.txt, b.bin, config.json
    inode = plain_node.path("/data/train/sub/b.bin").stat().st_ino

    again = plain_node.script(script, "up")
    assert again.returncode == 0, again.stderr
    assert azurite.downloads() == fetched  # the re-run transferred nothing
    assert plain_node.path("/data/train/sub/b.bin").stat().st_ino == inode
    assert plain_node.path("/data/train/sub/b.bin").read_bytes() == BLOB


def test_mount_reads_and_writes_through_to_the_container(azurite, plain_node, compile_az):
    azurite.create_container("sc-az-shared")
    azurite.put("sc-az-shared", "input/words.txt", "one\ntwo\nthree\n")
    azurite.put("sc-az-shared", "input/blob.bin", BLOB)
    [script], plan = compile_az("""
name: az-mount
file_mounts:
  /shared:
    name: sc-az-shared
    store: azure
    mode: MOUNT
run: |
  set -e
  test "$(wc -l < /shared/input/words.txt)" = 3
  mkdir -p /shared/out
  tr a-z A-Z < /shared/input/words.txt > /shared/out/upper.txt
  cat /shared/input/blob.bin /shared/input/blob.bin > /shared/out/double.bin
  echo "rank $SKYPILOT_NODE_RANK" > /shared/out/rank.txt
""", conn=azurite.connection_string)
    assert nodes.rclone_remotes(script) == [{"type": "azureblob", "use_emulator": "true",
                                "endpoint": azurite.endpoint}]
    nodes.shared_mount_round_trip(azurite, plain_node, script, "sc-az-shared", BLOB)
    assert azurite.keys("sc-az-shared", "out/") == ["out/double.bin", "out/rank.txt",
                                                    "out/upper.txt"]

    down = plain_node.script(script, "down")
    assert down.returncode == 0, down.stderr
    assert plain_node.sh("mountpoint -q /shared").returncode != 0


TASK = f"""
name: az-ep
file_mounts:
  /a: {uri("sc-az-bucket", "x", account="myaccount")}
  /b: s3://sc-s3-bucket/y
run: echo ok
"""
REAL = {"type": "azureblob", "env_auth": "true", "account": "myaccount"}


def test_emulator_only_when_the_connection_string_names_azurite(compile_az):
    # No variable: the azure remote is unchanged (the node's credentials, the URI's account).
    [real], plan = compile_az(TASK, conn=None)
    assert nodes.rclone_remotes(real)[0] == REAL
    assert "use_emulator" not in real and "AZURE_STORAGE_CONNECTION_STRING" not in plan

    # A real account's connection string is ignored (said in the plan), its key goes nowhere.
    secret = "c2VjcmV0LWFjY291bnQta2V5LW5ldmVyLWVtYmVkZGVk"
    conn = (f"DefaultEndpointsProtocol=https;AccountName=myaccount;AccountKey={secret};"
            "EndpointSuffix=core.windows.net")
    [ignored], plan = compile_az(TASK, conn=conn)
    assert body(ignored) == body(real) and secret not in ignored
    assert "AZURE_STORAGE_CONNECTION_STRING names no Azurite emulator: ignored" in plan
    assert secret not in plan

    # UseDevelopmentStorage=true is Azurite's default address, as Azure's SDKs read it;
    # --endpoint-url stays with the S3 family.
    [dev], plan = compile_az(TASK, "--endpoint-url", "http://127.0.0.1:9",
                             conn="UseDevelopmentStorage=true")
    az_remote, s3_remote = nodes.rclone_remotes(dev)
    assert az_remote == {"type": "azureblob", "use_emulator": "true",
                         "endpoint": f"http://127.0.0.1:10000/{ACCOUNT}"}
    assert s3_remote["endpoint"] == "http://127.0.0.1:9" and "use_emulator" not in s3_remote

    # --embed-credentials reads no Azure key for the emulator (none is set here) and leaves
    # the emulator remote as it is.
    [embedded], _ = compile_az(TASK.replace("  /b: s3://sc-s3-bucket/y\n", ""),
                               "--embed-credentials", conn="UseDevelopmentStorage=true")
    assert nodes.rclone_remotes(embedded) == [az_remote]


@pytest.mark.parametrize("value, message", [
    ("garbage", "not a connection string"),
    ("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://127.0.0.1:1",
     "DevelopmentStorageProxyUri is not supported"),
    (f"AccountName={ACCOUNT};AccountKey=c2VjcmV0LW90aGVyLWtleQ==;"
     f"BlobEndpoint=http://127.0.0.1:1/{ACCOUNT}", "AccountKey is not the public key"),
    (f"AccountName={ACCOUNT}", "needs the emulator's BlobEndpoint"),
    (f"AccountName={ACCOUNT};BlobEndpoint=http://127.0.0.1:1", "is not an emulator endpoint"),
    (f"AccountName={ACCOUNT};BlobEndpoint=ftp://127.0.0.1:1/{ACCOUNT}",
     "is not an emulator endpoint"),
    (f"AccountName={ACCOUNT};BlobEndpoint=http://127.0.0.1:99999/{ACCOUNT}", "invalid port"),
])
def test_bad_emulator_connection_string_is_bad_input(value, message, compile_az):
    _, err = compile_az(f"file_mounts:\n  /a: {uri('sc-az-bucket')}\nrun: echo ok\n",
                        conn=value, code=2)
    assert err.startswith("skycompile: error: AZURE_STORAGE_CONNECTION_STRING: ")
    assert message in err
    assert "c2VjcmV0" not in err  # a key is never repeated
    # Only azure storages read it: an S3 task compiles whatever it says.
    [script], _ = compile_az("file_mounts:\n  /a: s3://sc-s3-bucket\nrun: echo ok\n", conn=value)
    assert "azureblob" not in script


def test_mount_cached_drains_into_the_container(azurite, plain_node, compile_az):
    azurite.create_container("sc-az-out")
    [script], _ = compile_az("""
name: az-cached
file_mounts:
  /out:
    name: sc-az-out
    store: azure
    mode: MOUNT_CACHED
run: |
  for i in $(seq 1 20); do echo "result $i" > /out/r$i.txt; done
  head -c 30000000 /dev/zero > /out/zeros.bin
""", conn=azurite.connection_string)
    res = plain_node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert "every closed file is in the bucket" in res.stderr
    assert azurite.keys("sc-az-out") == sorted([f"r{i}.txt" for i in range(1, 21)] + ["zeros.bin"])
    assert azurite.read("sc-az-out", "r7.txt") == b"result 7\n"
    assert azurite.read("sc-az-out", "zeros.bin") == bytes(30_000_000)
