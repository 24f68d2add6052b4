"""Cloudflare R2 (S3-compatible; the account endpoint comes from config.endpoint_url or
--endpoint-url, https://ACCOUNT_ID.r2.cloudflarestorage.com)."""
from __future__ import annotations

from pathlib import Path

from . import BucketRef, Store, check_prefix, hyphen_name_problems, split_bucket_path
from .credentials import aws_keys


def parse(uri: str) -> BucketRef:
    bucket, prefix = split_bucket_path(uri, "r2")
    check_prefix(uri, prefix)
    return BucketRef("r2", bucket, prefix)


# SkyPilot keeps R2 keys here, in profile [r2]
KEY_FILE = (".cloudflare/r2.credentials", "r2")


def r2_keys(environ, home: Path) -> dict[str, str]:
    """The [r2] profile of ~/.cloudflare/r2.credentials; else AWS_*."""
    file = home / KEY_FILE[0]
    if file.exists() and not environ.get("AWS_ACCESS_KEY_ID"):
        return aws_keys(environ, home, file=file, profile=KEY_FILE[1], what="R2")
    return aws_keys(environ, home, what="R2")


def rclone_remote(ref: BucketRef, endpoint: str) -> dict[str, str]:
    return {"type": "s3", "provider": "Cloudflare", "env_auth": "true", "region": "auto",
            "no_check_bucket": "true", "endpoint": endpoint}


STORE = Store(
    name="r2", schemes=("r2",), clouds=("cloudflare",), s3_family=True, parse=parse,
    format_uri=lambda r: f"r2://{r.bucket}" + (f"/{r.prefix}" if r.prefix else ""),
    credentials=r2_keys,
    bucket_name_problems=hyphen_name_problems, rclone_remote=rclone_remote,
    client="s3_client:S3Bucket", key_file=KEY_FILE,
    uri_hint="r2://BUCKET[/PREFIX]",
    needs_endpoint="https://ACCOUNT_ID.r2.cloudflarestorage.com",
    notes=("needs the account endpoint: config.endpoint_url or --endpoint-url",),
)
