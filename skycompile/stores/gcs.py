"""Google Cloud Storage, or a GCS emulator named by STORAGE_EMULATOR_HOST at compile time."""
from __future__ import annotations

from urllib.parse import urlsplit

from . import (BucketRef, Emulator, Store, check_prefix, dns_style_problems,
               split_bucket_path)
from .credentials import gcs_service_account


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


def emulator_endpoint(host: str) -> str:
    """`STORAGE_EMULATOR_HOST` -> the emulator's base URL, `http(s)://HOST[:PORT]`.

    Google's own clients read the variable the same way: a bare `HOST:PORT` means http, and
    they talk to the emulator without credentials. Raises ValueError for anything else (a
    path, a query, another scheme, no host)."""
    text = host.strip()
    url = urlsplit(text if "://" in text else f"http://{text}")
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/") \
            or url.query or url.fragment or url.username or any(c.isspace() for c in text):
        raise ValueError(f"{host!r} is not an emulator address")
    try:
        _ = url.port  # ValueError when out of range or not a number
    except ValueError:
        raise ValueError(f"{host!r} has an invalid port") from None
    return f"{url.scheme}://{url.netloc}"


def rclone_remote(ref: BucketRef, endpoint: str) -> dict[str, str]:
    """Real GCS: credentials from the node (env_auth: instance service account, or
    GOOGLE_APPLICATION_CREDENTIALS). With an endpoint: an emulator.

    A gcs endpoint only ever comes from STORAGE_EMULATOR_HOST (resolve.endpoint_for refuses
    config.endpoint_url for gcs), and an emulator has no credentials to check: with env_auth,
    rclone stops at "could not find default credentials" on a node without Google
    credentials, so the emulator remote is anonymous. rclone ignores STORAGE_EMULATOR_HOST
    itself and takes `endpoint` as the JSON API's base URL (a scheme-less one becomes
    https): HOST/storage/v1/, as on storage.googleapis.com and as Google's clients derive
    it from STORAGE_EMULATOR_HOST."""
    if endpoint:
        return {"type": "google cloud storage", "anonymous": "true",
                "bucket_policy_only": "true", "endpoint": f"{endpoint}/storage/v1/"}
    return {"type": "google cloud storage", "env_auth": "true", "bucket_policy_only": "true"}


STORE = Store(
    name="gcs", schemes=("gs",), clouds=("gcp",), s3_family=False, parse=parse,
    format_uri=lambda r: f"gs://{r.bucket}" + (f"/{r.prefix}" if r.prefix else ""),
    credentials=gcs_service_account,
    bucket_name_problems=bucket_name_problems, rclone_remote=rclone_remote,
    client="gcs_client:GCSBucket",
    uri_hint="gs://BUCKET[/PREFIX]",
    emulator=Emulator(
        env="STORAGE_EMULATOR_HOST", endpoint=emulator_endpoint,
        fix="Set it to http://HOST:PORT of a GCS emulator, or unset it to use Google Cloud "
            "Storage.",
        using="gcs storages use the emulator at {endpoint} (STORAGE_EMULATOR_HOST), "
              "anonymously"),
)
