# Terraform: an EC2 instance whose user data is skycompile's cloud-init output.
#
#   skycompile task.yaml -o out/ --format cloud-init --gzip --target aws
#   terraform apply -var ami=ami-0123456789abcdef0
#
# A binary gzip cannot go through `user_data` (a string): `user_data_base64` with
# filebase64() hands it over byte for byte. Without --gzip, the MIME text would go as
# `user_data = file("out/node-0.user-data")`, up to 16 KB.

variable "ami" {
  type = string
}

variable "instance_profile" {
  type    = string
  default = "skycompile-node"
}

resource "aws_instance" "node0" {
  ami                  = var.ami
  instance_type        = "t3.medium"
  iam_instance_profile = var.instance_profile
  user_data_base64     = filebase64("${path.module}/out/node-0.user-data.gz")

  # the user data is re-read only on a new instance: replace it when the scripts change
  user_data_replace_on_change = true
}
