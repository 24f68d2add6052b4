"""Google Cloud Storage."""
from __future__ import annotations

from . import BucketRef, Store, check_prefix, dns_style_problems, split_bucket_path


def parse(uri: str) -> BucketRef:
    bucket, prefix = split_bucket_path(uri, "gs")
    check_prefix(uri, prefix)
    return BucketRef("gcs", bucket, prefix)


def bucket_name_problems(name: str) -> list[str]:
    long_ok = "." in name and all(len(part) <= 63 for part in name.split("."))
    problems = dns_style_problems(name, max_len=222 if long_ok else 63, underscore=True)
    if name.startswith("goog") or "google" in name or "g00gle" in name:
        problems.append("must not start with 'goog' or contain 'google'")
    return problems


def rclone_remote(ref: BucketRef, endpoint: str) -> dict[str, str]:
    settings = {"type": "google cloud storage", "env_auth": "true", "bucket_policy_only": "true"}
    if endpoint:
        settings["endpoint"] = endpoint
    return settings


STORE = Store(
    name="gcs", schemes=("gs",), clouds=("gcp",), s3_family=False, parse=parse,
    format_uri=lambda r: f"gs://{r.bucket}" + (f"/{r.prefix}" if r.prefix else ""),
    bucket_name_problems=bucket_name_problems, rclone_remote=rclone_remote,
    uri_hint="gs://BUCKET[/PREFIX]",
)
