"""Oracle Cloud Infrastructure Object Storage: oci://BUCKET[@REGION][/PREFIX]."""
from __future__ import annotations

import re

from . import BucketRef, Store, UriError, check_prefix


def parse(uri: str) -> BucketRef:
    rest = uri[len("oci://"):]
    head, _, prefix = rest.partition("/")
    bucket, _, region = head.partition("@")
    if not bucket:
        raise UriError(f"{uri!r} has no bucket name; write oci://BUCKET[@REGION][/PREFIX]")
    if "@" in head and not region:
        raise UriError(f"{uri!r} has an empty region after '@'")
    prefix = prefix.strip("/")
    check_prefix(uri, prefix)
    return BucketRef("oci", bucket, prefix, region=region)


def bucket_name_problems(name: str) -> list[str]:
    problems = []
    if not 1 <= len(name) <= 256:
        problems.append(f"must be 1 to 256 characters long (it is {len(name)})")
    if re.search(r"[^A-Za-z0-9_.-]", name):
        problems.append("may contain only letters, digits, hyphens, underscores and periods")
    return problems


def rclone_remote(ref: BucketRef, endpoint: str) -> dict[str, str]:
    # The namespace is the tenancy's; on the node rclone reads it from RCLONE_OCI_NAMESPACE
    # style environment when not set here (see README, OCI).
    settings = {"type": "oracleobjectstorage", "provider": "instance_principal_auth"}
    if ref.region:
        settings["region"] = ref.region
    if endpoint:
        settings["endpoint"] = endpoint
    return settings


STORE = Store(
    name="oci", schemes=("oci",), clouds=("oci",), s3_family=False, parse=parse,
    format_uri=lambda r: f"oci://{r.bucket}" + (f"@{r.region}" if r.region else "")
    + (f"/{r.prefix}" if r.prefix else ""),
    credentials=None,  # instance principals only: nothing to embed
    bucket_name_problems=bucket_name_problems, rclone_remote=rclone_remote,
    uri_hint="oci://BUCKET[@REGION][/PREFIX]",
)
