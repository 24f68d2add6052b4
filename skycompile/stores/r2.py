"""Cloudflare R2 (S3-compatible; the account endpoint comes from config.endpoint_url or
--endpoint-url, https://ACCOUNT_ID.r2.cloudflarestorage.com)."""
from __future__ import annotations

import re

from . import BucketRef, Store, check_prefix, split_bucket_path


def parse(uri: str) -> BucketRef:
    bucket, prefix = split_bucket_path(uri, "r2")
    check_prefix(uri, prefix)
    return BucketRef("r2", bucket, prefix)


def bucket_name_problems(name: str) -> list[str]:
    problems = []
    if not 3 <= len(name) <= 63:
        problems.append(f"must be 3 to 63 characters long (it is {len(name)})")
    if re.search(r"[^a-z0-9-]", name):
        problems.append("may contain only lowercase letters, digits and hyphens")
    if name and not (name[0].isalnum() and name[-1].isalnum()):
        problems.append("must start and end with a lowercase letter or digit")
    return problems


def rclone_remote(ref: BucketRef, endpoint: str) -> dict[str, str]:
    return {"type": "s3", "provider": "Cloudflare", "env_auth": "true", "region": "auto",
            "no_check_bucket": "true", "endpoint": endpoint}


STORE = Store(
    name="r2", schemes=("r2",), clouds=("cloudflare",), s3_family=True, parse=parse,
    format_uri=lambda r: f"r2://{r.bucket}" + (f"/{r.prefix}" if r.prefix else ""),
    bucket_name_problems=bucket_name_problems, rclone_remote=rclone_remote,
    uri_hint="r2://BUCKET[/PREFIX]",
    notes=("needs the account endpoint: config.endpoint_url or --endpoint-url",),
)
