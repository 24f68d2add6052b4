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
    # The namespace is the tenancy's (OCI_NAMESPACE at compile time); without it rclone on
    # the node reads RCLONE_OOS_NAMESPACE.
    settings = {"type": "oracleobjectstorage", "provider": "instance_principal_auth"}
    if ref.account:
        settings["namespace"] = ref.account
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
    # the local side speaks OCI's Amazon S3 Compatibility API, with customer secret keys
    client="s3_client:OCIBucket", key_file=(".aws/credentials", "oci"),
    account_env="OCI_NAMESPACE", account_pattern=r"[a-z0-9][a-z0-9-]{0,63}",
)
