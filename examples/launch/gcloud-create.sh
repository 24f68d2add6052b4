#!/usr/bin/env bash
# Create a Compute Engine VM that provisions itself from skycompile's cloud-init user data.
#
#   bash examples/launch/gcloud-create.sh TASK.yaml VM_NAME [ZONE]
#
# Use an image with cloud-init that reads the `user-data` metadata key (Ubuntu and Debian
# cloud images do). The VM's service account must be able to use the task's buckets.
set -euo pipefail
task=${1:?usage: $0 TASK.yaml VM_NAME [ZONE]}
name=${2:?usage: $0 TASK.yaml VM_NAME [ZONE]}
zone=${3:-us-central1-a}
out=$(mktemp -d)
trap 'rm -rf -- "$out"' EXIT

# A metadata value holds up to 256 KB of text: no gzip needed (and none allowed: the value
# must be text), --target gcp checks the size.
skycompile "$task" -o "$out/" --format cloud-init --target gcp

gcloud compute instances create "$name" --zone "$zone" \
  --image-family ubuntu-2204-lts --image-project ubuntu-os-cloud \
  --scopes storage-full \
  --metadata-from-file "user-data=$out/node-0.user-data"
