"""`up` on a real node: idempotent, repairs what broke, refuses what is not ours, and runs
setup/run with SkyPilot's environment."""
from __future__ import annotations

import hashlib

TASK = """
name: idem
file_mounts:
  /in: s3://data/in
  /mnt/ro:
    source: s3://data
    mode: MOUNT
  /mnt/out:
    source: s3://out
    mode: MOUNT_CACHED
setup: echo setup-ran >> /root/setup-count
run: |
  cat /in/a.txt
  ls /mnt/ro/in
  date +%s%N > /mnt/out/last-run
"""


def node_state(node) -> dict:
    mounts = [line.split()[1] for line in node.sh("cat /proc/self/mounts", check=True)
              .stdout.splitlines() if line.split()[2] == "fuse.rclone"]
    # live ones only: the namespace's init (sleep) does not reap killed daemons
    procs = node.sh("ps -C rclone -o stat= | grep -vc '^Z' || true").stdout.strip()
    stat = node.sh("stat -c '%i %Y' /in/a.txt", check=True).stdout.strip()
    conf = node.sh("stat -c %a /etc/skycompile/idem/rclone.conf; "
                   "grep -c '^\\[' /etc/skycompile/idem/rclone.conf", check=True).stdout.split()
    return {"mounts": sorted(mounts), "rclone processes": procs, "copied inode/mtime": stat,
            "rclone.conf mode, sections": conf}


def test_up_three_times_same_state(s3, node, compile_task):
    (s3.bucket("data") / "in").mkdir()
    (s3.root / "data" / "in" / "a.txt").write_text("payload\n")
    s3.bucket("out")
    [script] = compile_task(TASK)
    states = []
    for _ in range(3):
        res = node.script(script, "up")
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("payload\n")
        states.append(node_state(node))
    assert states[0] == states[1] == states[2]
    assert states[0]["mounts"] == ["/mnt/out", "/mnt/ro"]
    assert states[0]["rclone processes"] == "2"
    assert states[0]["rclone.conf mode, sections"] == ["600", "3"]
    assert node.path("/root/setup-count").read_text() == "setup-ran\n"
    assert "last-run" in s3.objects("out")


def test_stale_mount_is_repaired_and_status_tells(s3, node, compile_task):
    (s3.bucket("data") / "in").mkdir()
    (s3.root / "data" / "in" / "a.txt").write_text("payload\n")
    s3.bucket("out")
    [script] = compile_task(TASK)
    assert node.script(script, "up").returncode == 0
    node.sh("pkill -KILL -x rclone; sleep 0.5", check=True)
    broken = node.sh("ls /mnt/ro")
    assert broken.returncode != 0 and "Transport endpoint is not connected" in broken.stderr
    status = node.script(script, "status")
    assert status.stdout.count("dead mount") == 2, status.stdout
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert "unmounting the dead mount and mounting again" in res.stderr
    assert node.sh("cat /mnt/ro/in/a.txt", check=True).stdout == "payload\n"
    assert node_state(node)["rclone processes"] == "2"


def test_foreign_mount_and_data_are_refused_and_kept(s3, node, compile_task):
    s3.bucket("data")
    s3.bucket("out")
    [script] = compile_task("""
name: refuse
file_mounts:
  /mnt/ro:
    source: s3://data
    mode: MOUNT
""")
    node.sh("mkdir -p /mnt/ro && mount -t tmpfs tmpfs /mnt/ro && echo mine > /mnt/ro/keep",
            check=True)
    res = node.script(script, "up")
    assert res.returncode != 0
    assert "holds another mount" in res.stderr
    assert node.sh("cat /mnt/ro/keep", check=True).stdout == "mine\n"
    down = node.script(script, "down")
    assert down.returncode == 0 and "not ours; leaving it" in down.stderr
    assert node.sh("cat /mnt/ro/keep", check=True).stdout == "mine\n"
    node.sh("umount /mnt/ro && echo mine too > /mnt/ro/keep", check=True)
    res = node.script(script, "up")
    assert res.returncode != 0 and "with files in it" in res.stderr
    assert node.sh("cat /mnt/ro/keep", check=True).stdout == "mine too\n"


ENV_TASK = """
name: envs
num_nodes: 2
envs:
  GREETING: "it's $(touch /tmp/pwned) ok"
  FROM_NODE:
secrets:
  API_KEY:
setup: |
  echo "setup rank=$SKYPILOT_SETUP_NODE_RANK of $SKYPILOT_SETUP_NUM_NODES ips=$(echo $SKYPILOT_SETUP_NODE_IPS) greeting=$GREETING" >> ~/setup.log
  echo "setup sees run vars: ${SKYPILOT_NODE_RANK-none}" >> ~/setup.log
run: |
  echo "rank=$SKYPILOT_NODE_RANK of $SKYPILOT_NUM_NODES"
  echo "ips=$(echo $SKYPILOT_NODE_IPS)"
  echo "greeting=$GREETING"
  echo "from_node=$FROM_NODE key=$API_KEY pwd=$PWD"
"""


def test_envs_node_facts_setup_once_and_flags(node, compile_task):
    scripts = compile_task(ENV_TASK, "--node-ips", "10.0.0.1,10.0.0.2")
    script = scripts[1]
    assert "SECRET-VALUE" not in script
    missing = node.script(script, "up")
    assert missing.returncode != 0
    assert "set FROM_NODE API_KEY in the node's environment" in missing.stderr
    env = {"API_KEY": "SECRET-VALUE", "FROM_NODE": "hello from the node"}
    res = node.script(script, "up", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "rank=1 of 2", "ips=10.0.0.1 10.0.0.2", "greeting=it's $(touch /tmp/pwned) ok",
        "from_node=hello from the node key=SECRET-VALUE pwd=/root"]
    assert not node.path("/tmp/pwned").exists()
    assert node.path("/root/setup.log").read_text() == (
        "setup rank=1 of 2 ips=10.0.0.1 10.0.0.2 greeting=it's $(touch /tmp/pwned) ok\n"
        "setup sees run vars: none\n")
    # the secret never reaches the node's disk through skycompile
    assert node.sh("grep -rl SECRET-VALUE /var/lib/skycompile /var/log/skycompile /etc/skycompile"
                   " 2>/dev/null").stdout == ""
    # again: setup skipped, run runs; --no-setup; --force-setup; --no-run
    again = node.script(script, "up", env=env)
    assert "setup already succeeded" in again.stderr and again.stdout.startswith("rank=1")
    assert node.path("/root/setup.log").read_text().count("setup rank") == 1
    forced = node.script(script, "up", "--force-setup", "--no-run", env=env)
    assert forced.returncode == 0 and forced.stdout == ""
    assert node.path("/root/setup.log").read_text().count("setup rank") == 2
    skipped = node.script(script, "up", "--no-setup", env=env)
    assert skipped.returncode == 0 and "--no-setup: not running setup" in skipped.stderr
    assert node.path("/root/setup.log").read_text().count("setup rank") == 2
    # the node's SKYPILOT_NODE_IPS wins over the compiled list
    launcher = node.script(script, "up", "--no-setup",
                           env={**env, "SKYPILOT_NODE_IPS": "192.168.1.5\n192.168.1.6"})
    assert "ips=192.168.1.5 192.168.1.6" in launcher.stdout
    # a changed env value is a changed input: setup runs again
    [changed] = compile_task(ENV_TASK.replace("ok\"", "changed\""), "--node-ips",
                             "10.0.0.1,10.0.0.2")[1:]
    node.script(changed, "up", env=env)
    assert node.path("/root/setup.log").read_text().count("setup rank") == 3
    bad = node.script(script, "up", "--no-setup", "--force-setup")
    assert bad.returncode == 2 and "exclude each other" in bad.stderr


def test_task_envs_named_like_the_scripts_own_variables(node, compile_task):
    """Setup and run get the task's envs from a fresh process (the script's TASK_LOADER), so
    names the script uses itself arrive intact, through runuser too, and the script itself
    (log, state, working directory) is unaffected by them."""
    names = ["LOG_FILE", "STATE_DIR", "WORKDIR", "TARGET_HOME", "TASK_LOADER", "REPLY",
             "NODE_USER", "SLUG", "TASK_RC", "RCLONE_CONFIG"]
    node.sh("useradd --create-home alice", check=True)
    task = ("envs:\n" + "".join(f"  {n}: v-{n}\n" for n in names) + "run: |\n"
            + "".join(f'  echo "{n}=${n}"\n' for n in names) + '  echo "pwd=$PWD $(id -un)"\n')
    [script] = compile_task(task, "--user", "alice")
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"{n}=v-{n}" for n in names] + ["pwd=/home/alice alice"]
    assert node.path("/var/log/skycompile").is_dir() and not node.path("v-LOG_FILE").exists()


def test_secrets_named_like_the_scripts_own_variables(node, compile_task):
    """Secrets and envs without a value come from the node's environment as the script
    found it, before it set any variable of its own: a secret named LOG_FILE or SLUG gets
    the node's value, not the script's."""
    node.sh("useradd --create-home bob", check=True)
    names = ["LOG_FILE", "SLUG", "NODE_INDEX", "SKYCOMPILE_VERSION", "TASK_LOADER"]
    # null: required; "": optional (the node may leave it unset)
    task = ("secrets:\n" + "".join(f"  {n}: null\n" for n in names)
            + "  STATE_DIR: ''\n  WORKDIR: ''\nrun: |\n"
            + "".join(f'  echo "{n}=${n}"\n' for n in [*names, "STATE_DIR", "WORKDIR"]))
    [script] = compile_task(task, "--user", "bob")
    env = {n: f"node-{n}" for n in names} | {"STATE_DIR": "node-STATE_DIR"}
    res = node.script(script, "up", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"{n}=node-{n}" for n in [*names, "STATE_DIR"]] + [
        "WORKDIR="]
    missing = node.script(script, "up", env={k: v for k, v in env.items() if k != "SLUG"})
    assert missing.returncode != 0 and "set SLUG in the node's environment" in missing.stderr


def test_single_node_ips_default_to_its_own_address(node, compile_task):
    [script] = compile_task("run: echo \"ips=$SKYPILOT_NODE_IPS\"\n")
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    ip = res.stdout.strip().removeprefix("ips=")
    assert ip and hashlib.sha256(ip.encode()).hexdigest()  # non-empty, one line
    assert "\n" not in ip


def test_embedded_credentials_only_in_the_0600_config(s3, make_node, compile_task, monkeypatch,
                                                      tmp_path):
    (s3.bucket("data") / "a.txt").write_text("payload\n")
    task = """
name: keys
file_mounts:
  /in: s3://data
  /mnt/data:
    source: s3://data
    mode: MOUNT
run: cat /mnt/data/a.txt
"""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env()["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env()["AWS_SECRET_ACCESS_KEY"])
    [plain] = compile_task(task)
    assert s3.env()["AWS_SECRET_ACCESS_KEY"] not in plain
    [script] = compile_task(task, "--embed-credentials")
    assert script.count(s3.env()["AWS_SECRET_ACCESS_KEY"]) == 2  # one line per remote
    # a node without ambient credentials works with the embedded ones
    node = make_node("bare", env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    res = node.script(script, "up")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "payload\n"
    secret = s3.env()["AWS_SECRET_ACCESS_KEY"]
    node.put("/tmp/pattern", secret)  # not on grep's own command line
    holders = node.sh("grep -rlF -f /tmp/pattern /etc /var/log /var/lib /run "
                      "/proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null || true"
                      ).stdout.split()
    assert holders == ["/etc/skycompile/keys/rclone.conf"]
    assert node.sh("stat -c %a /etc/skycompile/keys/rclone.conf", check=True).stdout == "600\n"
    # the same node without the keys cannot read the bucket: the embedded ones did the work
    other = make_node("bare2", env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert other.script(plain, "up").returncode != 0
