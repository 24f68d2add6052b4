#!/usr/bin/env bash
# An existing launcher that already starts machines and runs jobs: it keeps doing that, and
# lets the node script do the data part. On the node:
#   up --no-run    tools, workdir, COPY data, mounts, setup; not the task's `run`
#   (the launcher's own job runs here, reading and writing the mounted paths)
#   drain          wait until every file written to MOUNT_CACHED storage is in its bucket
#
#   bash examples/launch/launcher.sh HOST SCRIPT JOB_COMMAND
#   e.g. bash examples/launch/launcher.sh ubuntu@10.0.0.5 out/node-0.sh 'python3 train.py'
#
# NODE_SHELL: the command that runs a shell command on the node, default
# `ssh -o BatchMode=yes HOST`; SUDO: how to become root there, default `sudo`.
set -euo pipefail
host=${1:?usage: $0 HOST SCRIPT JOB_COMMAND}
script=${2:?usage: $0 HOST SCRIPT JOB_COMMAND}
job=${3:?usage: $0 HOST SCRIPT JOB_COMMAND}
read -r -a on_node <<<"${NODE_SHELL:-ssh -o BatchMode=yes $host}"
sudo=${SUDO-sudo}
node() { "${on_node[@]}" "$1"; }

node "cat > /tmp/skycompile-boot.sh" <"$script"
node "$sudo bash /tmp/skycompile-boot.sh up --no-run"
status=0
node "$job" || status=$?
# drain even after a failed job: its partial results (checkpoints) still reach the bucket
node "$sudo bash /tmp/skycompile-boot.sh drain"
exit "$status"
