"""Amazon S3, and any S3-compatible server through an endpoint URL."""
from __future__ import annotations

from . import BucketRef, Store, check_prefix, dns_style_problems, split_bucket_path
from .credentials import aws_keys


def parse(uri: str) -> BucketRef:
    bucket, prefix = split_bucket_path(uri, "s3")
    check_prefix(uri, prefix)
    return BucketRef("s3", bucket, prefix)


def bucket_name_problems(name: str) -> list[str]:
    problems = dns_style_problems(name)
    if name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        problems.append("must not start with 'xn--'/'sthree-' or end with '-s3alias'/'--ol-s3'")
    return problems


def rclone_remote(ref: BucketRef, endpoint: str) -> dict[str, str]:
    settings = {"type": "s3", "provider": "AWS" if not endpoint else "Other", "env_auth": "true",
                "no_check_bucket": "true"}
    if ref.region:
        settings["region"] = ref.region
    if endpoint:
        settings["endpoint"] = endpoint
        settings["force_path_style"] = "true"
    return settings


STORE = Store(
    name="s3", schemes=("s3",), clouds=("aws",), s3_family=True, parse=parse,
    format_uri=lambda r: f"s3://{r.bucket}" + (f"/{r.prefix}" if r.prefix else ""),
    credentials=aws_keys,
    bucket_name_problems=bucket_name_problems, rclone_remote=rclone_remote,
    client="s3_client:S3Bucket",
    uri_hint="s3://BUCKET[/PREFIX]",
)
