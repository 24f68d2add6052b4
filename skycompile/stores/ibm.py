"""IBM Cloud Object Storage: cos://REGION/BUCKET[/PREFIX]."""
from __future__ import annotations

import re

from . import BucketRef, Store, UriError, check_prefix, dns_style_problems
from .credentials import aws_keys

_REGION = re.compile(r"^[a-z]{2}-[a-z]+(-[a-z0-9]+)*$")


def parse(uri: str) -> BucketRef:
    rest = uri[len("cos://"):]
    parts = rest.split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UriError(f"{uri!r} is not an IBM COS URI; write cos://REGION/BUCKET[/PREFIX]")
    region, bucket = parts[0], parts[1]
    if not _REGION.match(region):
        raise UriError(f"{uri!r}: {region!r} is not an IBM region (for example us-east)")
    prefix = parts[2].strip("/") if len(parts) == 3 else ""
    check_prefix(uri, prefix)
    return BucketRef("ibm", bucket, prefix, region=region)


def rclone_remote(ref: BucketRef, endpoint: str) -> dict[str, str]:
    region = ref.region or "us-east"
    return {"type": "s3", "provider": "IBMCOS", "env_auth": "true", "no_check_bucket": "true",
            "endpoint": endpoint or f"https://s3.{region}.cloud-object-storage.appdomain.cloud"}


STORE = Store(
    name="ibm", schemes=("cos",), clouds=("ibm",), s3_family=True, parse=parse,
    format_uri=lambda r: f"cos://{r.region or 'REGION'}/{r.bucket}"
    + (f"/{r.prefix}" if r.prefix else ""),
    credentials=lambda env, home: aws_keys(env, home, what="IBM COS HMAC"),
    bucket_name_problems=dns_style_problems, rclone_remote=rclone_remote,
    client="s3_client:S3Bucket",
    uri_hint="cos://REGION/BUCKET[/PREFIX]",
)
