"""Azure Blob Storage: https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]."""
from __future__ import annotations

import re

from . import BucketRef, Store, UriError, check_prefix, hyphen_name_problems
from .credentials import azure_key

_URI = re.compile(r"^https://([a-z0-9]{3,24})\.blob\.core\.windows\.net/([^/]*)(?:/(.*))?$")


def parse(uri: str) -> BucketRef:
    m = _URI.match(uri)
    if not m:
        raise UriError(f"{uri!r} is not an Azure blob URI; write "
                       "https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX] "
                       "(ACCOUNT: 3-24 lowercase letters and digits)")
    account, container, prefix = m.group(1), m.group(2), (m.group(3) or "").strip("/")
    if not container:
        raise UriError(f"{uri!r} has no container name")
    check_prefix(uri, prefix)
    return BucketRef("azure", container, prefix, account=account)


def bucket_name_problems(name: str) -> list[str]:
    problems = hyphen_name_problems(name)
    if "--" in name:
        problems.append("must not contain consecutive hyphens")
    return problems


def rclone_remote(ref: BucketRef, endpoint: str) -> dict[str, str]:
    settings = {"type": "azureblob", "env_auth": "true"}
    if ref.account:
        settings["account"] = ref.account
    if endpoint:
        settings["endpoint"] = endpoint
    return settings


STORE = Store(
    name="azure", schemes=("https",), clouds=("azure",), s3_family=False, parse=parse,
    format_uri=lambda r: f"https://{r.account or 'ACCOUNT'}.blob.core.windows.net/{r.bucket}"
    + (f"/{r.prefix}" if r.prefix else ""),
    credentials=azure_key,
    bucket_name_problems=bucket_name_problems, rclone_remote=rclone_remote,
    uri_hint="https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]",
)
