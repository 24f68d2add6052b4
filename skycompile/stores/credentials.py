"""Reading keys on the compiling machine, for `--embed-credentials` only.

By default no credential ever reaches a script: on the node rclone finds them itself
(`env_auth`: instance roles, the metadata server, the node's environment). With the opt-in,
a store's `credentials(environ, home)` returns the rclone settings that replace `env_auth`;
the script writes them only into its 0600 rclone config. Each reader raises
`MissingCredentials` saying what to set.
"""
from __future__ import annotations

import configparser
import json
from pathlib import Path
from typing import Mapping


class MissingCredentials(ValueError):
    pass


def aws_keys(environ: Mapping[str, str], home: Path, *, file: Path | None = None,
             profile: str | None = None, what: str = "S3") -> dict[str, str]:
    """AWS-style keys: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else
    the profile (AWS_PROFILE, else `default`) of the shared credentials file."""
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    token = environ.get("AWS_SESSION_TOKEN", "")
    if not (key and secret):
        path = file or Path(environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws/credentials")
        name = profile or environ.get("AWS_PROFILE") or "default"
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as e:
            raise MissingCredentials(f"cannot read {path}: {e}") from None
        section = parser[name] if parser.has_section(name) else {}
        key, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
        token = section.get("aws_session_token", "")
        if not (key and secret):
            raise MissingCredentials(
                f"no {what} keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put them "
                f"in profile [{name}] of {path}")
    out = {"env_auth": "false", "access_key_id": key, "secret_access_key": secret}
    if token:
        out["session_token"] = token
    return out


def gcs_service_account(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    path = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        raise MissingCredentials("no GCS key: set GOOGLE_APPLICATION_CREDENTIALS to a service "
                                 "account key file (JSON)")
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MissingCredentials(f"cannot read the service account key {path}: {e}") from None
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise MissingCredentials(f"{path} is not a service account key (\"type\": "
                                 f"\"service_account\"); user credentials cannot be embedded")
    # rclone takes the key's JSON itself, on one line.
    return {"env_auth": "false",
            "service_account_credentials": json.dumps(data, separators=(",", ":"))}


def azure_key(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    key = environ.get("AZURE_STORAGE_KEY") or environ.get("AZURE_STORAGE_ACCOUNT_KEY")
    if not key:
        raise MissingCredentials("no Azure key: set AZURE_STORAGE_KEY to the storage "
                                 "account's access key")
    return {"env_auth": "false", "key": key}
