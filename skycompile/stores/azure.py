"""Azure Blob Storage: https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX], or the
Azurite emulator named by AZURE_STORAGE_CONNECTION_STRING at compile time."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from . import (BucketRef, Emulator, Store, UriError, check_prefix,
               hyphen_name_problems)
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


# Azurite's one built-in account and its key: public, the same on every machine (Microsoft
# documents them; rclone's `use_emulator` has them built in). Never a real account's key.
EMULATOR_ACCOUNT = "devstoreaccount1"
EMULATOR_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                "K1SZFPTOtr/KBHBeksoGMGw==")
_HOST_PORT = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def emulator_endpoint(connection_string: str) -> str:
    """`AZURE_STORAGE_CONNECTION_STRING` -> Azurite's blob endpoint
    `http(s)://HOST[:PORT]/devstoreaccount1`, or "" when the string names a real account
    (skycompile then ignores it: azure storages keep the node's credentials).

    An emulator string is `UseDevelopmentStorage=true` (http://127.0.0.1:10000, as Azure's
    SDKs read it) or names AccountName=devstoreaccount1 with its BlobEndpoint. Raises
    ValueError for a malformed string, an emulator string without a usable BlobEndpoint, or
    a devstoreaccount1 key other than the public one. Messages quote nothing of the string
    but its BlobEndpoint: a real one carries an account key."""
    pairs = [part.split("=", 1) for part in connection_string.strip().rstrip(";").split(";")]
    if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise ValueError("not a connection string (KEY=VALUE pairs separated by ';')")
    settings = {key.strip().lower(): value.strip() for key, value in pairs}
    if settings.get("usedevelopmentstorage", "").lower() == "true":
        if "developmentstorageproxyuri" in settings:
            raise ValueError("DevelopmentStorageProxyUri is not supported")
        return f"http://127.0.0.1:10000/{EMULATOR_ACCOUNT}"
    if settings.get("accountname") != EMULATOR_ACCOUNT:
        return ""
    if settings.get("accountkey", EMULATOR_KEY) != EMULATOR_KEY:
        raise ValueError(f"AccountKey is not the public key of Azurite's {EMULATOR_ACCOUNT} "
                         "(the emulator's remote knows no other)")
    raw = settings.get("blobendpoint", "")
    if not raw:
        raise ValueError(f"AccountName={EMULATOR_ACCOUNT} needs the emulator's "
                         f"BlobEndpoint=http://HOST:PORT/{EMULATOR_ACCOUNT}")
    url = urlsplit(raw)
    if url.scheme not in ("http", "https") or not _HOST_PORT.match(url.netloc) \
            or url.path.rstrip("/") != f"/{EMULATOR_ACCOUNT}" or url.query or url.fragment:
        raise ValueError(f"BlobEndpoint {raw!r} is not an emulator endpoint "
                         f"http://HOST:PORT/{EMULATOR_ACCOUNT}")
    try:
        _ = url.port  # ValueError when out of range
    except ValueError:
        raise ValueError(f"BlobEndpoint {raw!r} has an invalid port") from None
    return f"{url.scheme}://{url.netloc}/{EMULATOR_ACCOUNT}"


def rclone_remote(ref: BucketRef, endpoint: str) -> dict[str, str]:
    """Real Azure: credentials from the node (env_auth: managed identity, or AZURE_CLIENT_*).
    With an endpoint: Azurite.

    An azure endpoint only ever comes from emulator_endpoint (resolve.endpoint_for refuses
    config.endpoint_url for azure), so it is always Azurite's, account path included
    (rclone appends the container to it as it is). Its remote is `use_emulator`: rclone's
    built-in devstoreaccount1 key, so the script holds no key. Checked with rclone v1.75.2
    against Azurite on a non-default port: `use_emulator` alone dials 127.0.0.1:10000;
    `endpoint` without the /devstoreaccount1 path lists nothing ("directory not found");
    env_auth refuses an http endpoint ("authorized requests are not permitted for non-TLS
    protected (https) endpoints"); another `account` (the URI's), or none and no key, gets
    403 from Azurite. So every azure storage, whatever account its URI names, uses the
    emulator's one account."""
    if endpoint:
        return {"type": "azureblob", "use_emulator": "true", "endpoint": endpoint}
    settings = {"type": "azureblob", "env_auth": "true"}
    if ref.account:
        settings["account"] = ref.account
    return settings


STORE = Store(
    name="azure", schemes=("https",), clouds=("azure",), s3_family=False, parse=parse,
    format_uri=lambda r: f"https://{r.account or 'ACCOUNT'}.blob.core.windows.net/{r.bucket}"
    + (f"/{r.prefix}" if r.prefix else ""),
    credentials=azure_key,
    bucket_name_problems=bucket_name_problems, rclone_remote=rclone_remote,
    client="azure_client:AzureBucket",
    uri_hint="https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]",
    emulator=Emulator(
        env="AZURE_STORAGE_CONNECTION_STRING", endpoint=emulator_endpoint,
        fix="Set it to Azurite's (UseDevelopmentStorage=true, or AccountName=devstoreaccount1 "
            "with BlobEndpoint=http://HOST:PORT/devstoreaccount1), or unset it to use Azure.",
        using="azure storages use the Azurite emulator at {endpoint} "
              "(AZURE_STORAGE_CONNECTION_STRING), whatever account their URI names",
        ignored="AZURE_STORAGE_CONNECTION_STRING names no Azurite emulator: ignored "
                "(azure storages use the node's credentials)"),
)
