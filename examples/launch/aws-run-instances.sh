#!/usr/bin/env bash
# Launch an EC2 instance that provisions itself from skycompile's cloud-init user data,
# and brings its mounts back after every reboot or stop/start.
#
#   INSTANCE_PROFILE=my-profile bash examples/launch/aws-run-instances.sh TASK.yaml AMI_ID [TYPE]
#
# The AMI needs cloud-init (Ubuntu, Debian, Amazon Linux 2023 ...). The scripts carry no
# keys: the instance profile must be allowed to read (and, for MOUNT_CACHED, write) the
# task's buckets. One instance per node; for num_nodes > 1 pass --node-ips to skycompile,
# or use a launcher that knows the addresses (launcher.sh).
set -euo pipefail
task=${1:?usage: $0 TASK.yaml AMI_ID [INSTANCE_TYPE]}
ami=${2:?usage: $0 TASK.yaml AMI_ID [INSTANCE_TYPE]}
type=${3:-t3.medium}
out=$(mktemp -d)
trap 'rm -rf -- "$out"' EXIT

# Creates the buckets and uploads local sources, then writes out/node-K.user-data.gz;
# --target aws stops here (exit 2) if the user data would be over EC2's 16 KB.
skycompile "$task" -o "$out/" --format cloud-init --gzip --target aws

for data in "$out"/node-*.user-data.gz; do
  # fileb:// hands the bytes over as they are (gzip is binary); the CLI base64-encodes them.
  aws ec2 run-instances --image-id "$ami" --instance-type "$type" --count 1 \
    --iam-instance-profile "Name=${INSTANCE_PROFILE:?set INSTANCE_PROFILE}" \
    --user-data "fileb://$data" --query 'Instances[0].InstanceId' --output text
done
