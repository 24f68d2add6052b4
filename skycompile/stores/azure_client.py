"""The local-side client of Azure Blob Storage (a bucket is a container), or of the Azurite
emulator that AZURE_STORAGE_CONNECTION_STRING named at compile time (the endpoint).

azure-storage-blob is imported here only, and only when a task uploads or creates a
container in azure (`pip install 'skycompile[azure]'`). Keys and connection strings are
read from the environment when the client is made and never appear in a message.
"""
from __future__ import annotations

import base64
import hashlib
import os
import threading
import uuid
from dataclasses import dataclass, field

from ..errors import ApplyError
from . import put_each
from .azure import EMULATOR_ACCOUNT, EMULATOR_KEY, emulator_endpoint

# Container metadata names must be C# identifiers: no '-'.
OWNER_METADATA = ("created_by", "skycompile")
CONN_ENV = "AZURE_STORAGE_CONNECTION_STRING"
KEY_ENVS = ("AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY")
ACCOUNT_ENV = "AZURE_STORAGE_ACCOUNT"
# Up to SINGLE_PUT bytes a file is one Put Blob; larger ones are staged in blocks of at
# least BLOCK bytes (the unit of progress and of cancellation) and committed at the end.
# Staged blocks that are never committed create no blob; Azure drops them after a week.
SINGLE_PUT = 8 * 2**20
BLOCK = 8 * 2**20
MAX_BLOCKS = 50_000  # per blob
POOL = 64  # HTTP connections: one per upload thread of apply, and some to spare
BATCH = 256  # blobs per batch delete


class _Cancelled(Exception):
    pass


class _Changed(Exception):
    pass


@dataclass
class AzureBucket:
    store: str
    name: str  # the container
    endpoint: str  # Azurite's http://HOST:PORT/devstoreaccount1, or "" for Azure
    region: str  # unused: a container lives where its storage account does
    account: str = ""  # the storage account of the URI, if it named one
    # set to stop block uploads between blocks (Ctrl-C): nothing is committed then
    cancelled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        try:
            import requests
            import requests.adapters
            from azure.core.pipeline.transport import RequestsTransport
            from azure.storage.blob import BlobServiceClient, ExponentialRetry
            from urllib3.util.retry import Retry
        except ImportError:
            raise ApplyError(f"creating or filling {self.store} containers needs "
                             f"azure-storage-blob: pip install 'skycompile[azure]'") from None
        if not self.endpoint:
            self.account = self.account or os.environ.get(ACCOUNT_ENV, "")
        self.where = f"{self.store} container {self.name}" + (
            f" at {self.endpoint}" if self.endpoint else
            f" in storage account {self.account}" if self.account else "")
        # Our own session: a pool as large as apply's upload threads (requests' default of
        # 10 drops connections, and urllib3 warns about it); azure-core does the retrying.
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=POOL, pool_maxsize=POOL,
            max_retries=Retry(total=False, redirect=False, raise_on_status=False))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        kwargs = {"transport": RequestsTransport(session=session, session_owner=False),
                  # the SDK default waits 15 s, then 18 s, 24 s: too long for a typo
                  "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2,
                                                   retry_total=5)}
        if self.endpoint:
            service = self._emulator_service(BlobServiceClient, kwargs)
        else:
            service = self._azure_service(BlobServiceClient, kwargs)
        self.container = service.get_container_client(self.name)

    def _emulator_service(self, BlobServiceClient, kwargs):
        """Azurite: the connection string when it names this endpoint, else its one
        account's public key (the endpoint was recorded; the variable may be gone)."""
        conn = os.environ.get(CONN_ENV, "")
        try:
            same = bool(conn) and emulator_endpoint(conn) == self.endpoint
        except ValueError:
            same = False
        if same:
            return BlobServiceClient.from_connection_string(conn, **kwargs)
        return BlobServiceClient(self.endpoint, credential={"account_name": EMULATOR_ACCOUNT,
                                                            "account_key": EMULATOR_KEY},
                                 **kwargs)

    def _azure_service(self, BlobServiceClient, kwargs):
        """Azure: the account's key (AZURE_STORAGE_KEY), else a connection string for the
        account, else azure-identity's DefaultAzureCredential when it is installed."""
        conn = os.environ.get(CONN_ENV, "")
        conn_account = _setting(conn, "accountname")
        try:
            if conn and emulator_endpoint(conn):
                conn, conn_account = "", ""  # Azurite's: not for this container
        except ValueError:
            pass  # malformed as an emulator string; the SDK judges it below
        account = self.account or conn_account
        if not account:
            raise ApplyError(
                f"cannot reach {self.where}: no storage account; write the container as "
                f"https://ACCOUNT.blob.core.windows.net/{self.name}, or set {ACCOUNT_ENV}")
        if not self.account:
            self.account = account
            self.where += f" in storage account {account}"
        key = next((os.environ[k] for k in KEY_ENVS if os.environ.get(k)), "")
        url = f"https://{account}.blob.core.windows.net"
        if key:
            return BlobServiceClient(url, credential={"account_name": account,
                                                      "account_key": key}, **kwargs)
        if conn and conn_account == account:
            try:
                return BlobServiceClient.from_connection_string(conn, **kwargs)
            except ValueError:  # its own message may quote the string: it holds a key
                raise ApplyError(f"cannot reach {self.where}: {CONN_ENV} is not a valid "
                                 f"connection string") from None
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise ApplyError(
                f"cannot reach {self.where}: no Azure credentials; set AZURE_STORAGE_KEY to "
                f"the storage account's access key, or {CONN_ENV} to its connection "
                f"string (or pip install azure-identity and run `az login`)") from None
        return BlobServiceClient(url, credential=DefaultAzureCredential(), **kwargs)

    # --- errors ------------------------------------------------------------------------

    def _errors(self) -> tuple[type[BaseException], ...]:
        from azure.core.exceptions import AzureError
        return (AzureError, OSError, _Cancelled, _Changed)

    def _fail(self, what: str, err: BaseException) -> ApplyError:
        from azure.core import exceptions as ax
        if isinstance(err, _Cancelled):
            return ApplyError(f"{what} {self.where}: cancelled")
        if isinstance(err, _Changed):
            return ApplyError(f"{what} {self.where}: {err}: it changed after it was hashed; "
                              f"run skycompile again once nothing writes to it")
        if isinstance(err, ax.ClientAuthenticationError):
            check = ("that the endpoint is Azurite's" if self.endpoint else
                     f"AZURE_STORAGE_KEY (the key of account {self.account}) or {CONN_ENV}")
            return ApplyError(f"{what} {self.where}: authentication failed "
                              f"({getattr(err, 'error_code', None) or err.reason or 'denied'}); "
                              f"check {check}")
        if isinstance(err, (ax.ServiceRequestError, ax.ServiceResponseError)):
            check = (f"the emulator address ({CONN_ENV} at compile time) and that Azurite is "
                     "running" if self.endpoint else "the account name and the network")
            return ApplyError(f"{what} {self.where}: cannot connect; check {check}")
        if isinstance(err, ax.HttpResponseError):
            code = str(getattr(err, "error_code", None) or err.status_code or "?")
            hint = {
                "AuthorizationPermissionMismatch": "check that your credentials may access it",
                "AuthorizationFailure": "check that your credentials may access it "
                                        "(and the account's firewall)",
                "ContainerNotFound": "it does not exist (any more)",
                "ContainerAlreadyExists": "it was created meanwhile; run skycompile again",
                "ContainerBeingDeleted": "a container of this name was just deleted; Azure "
                                         "frees the name after about 30 seconds: run again then",
                "AccountIsDisabled": "the storage account is disabled",
                "Md5Mismatch": "the data was damaged on the way; run skycompile again",
                "ServerBusy": "the account is throttled; run skycompile again in a while",
            }.get(code, "check the container, the account and your credentials")
            return ApplyError(f"{what} {self.where}: {code}: {hint}")
        if isinstance(err, ax.AzureError):
            return ApplyError(f"{what} {self.where}: {type(err).__name__}: {err.message}")
        return ApplyError(f"{what} {self.where}: {err}")

    # --- BucketClient --------------------------------------------------------------------

    def exists(self) -> bool:
        try:
            return self.container.exists()
        except self._errors() as e:
            raise self._fail("cannot check", e) from None

    def tagged_ours(self) -> bool:
        """True when the container carries skycompile's metadata (another machine made it)."""
        try:
            metadata = self.container.get_container_properties().metadata or {}
        except self._errors() as e:
            raise self._fail("cannot read the metadata of", e) from None
        return metadata.get(OWNER_METADATA[0]) == OWNER_METADATA[1]

    def create(self) -> None:
        """The region plays no part: a container lives in its storage account's region."""
        try:
            self.container.create_container(metadata={OWNER_METADATA[0]: OWNER_METADATA[1]})
        except self._errors() as e:
            raise self._fail("cannot create", e) from None

    def listing(self, prefix: str) -> dict[str, tuple[int, str]]:
        """key -> (size, hex MD5) of the blob `prefix` and every blob under prefix/; "" for
        blobs without a Content-MD5."""
        out = {}
        try:
            for blob in self.container.list_blobs(name_starts_with=prefix or None):
                key = blob.name
                if not prefix or key == prefix or key.startswith(prefix + "/"):
                    md5 = blob.content_settings.content_md5
                    out[key] = (blob.size or 0, bytes(md5).hex() if md5 else "")
        except self._errors() as e:
            raise self._fail("cannot list", e) from None
        return out

    def put_many(self, items: list, progress=None, on_file=None) -> None:
        put_each(self, items, progress, on_file)

    def put(self, key: str, entry, progress=None) -> None:
        """The blob's Content-MD5 is set to the file's MD5, which Azure does not compute
        for blobs committed from blocks: `listing` reports it back. It is checked against
        the bytes actually sent first, so it never vouches for other data."""
        from azure.storage.blob import ContentSettings
        md5_hex = entry.etags.split()[0]
        settings = ContentSettings(content_type="application/octet-stream",
                                   content_md5=bytearray.fromhex(md5_hex))
        blob = self.container.get_blob_client(key)
        metadata = {"sha256": entry.sha256}
        try:
            with open(entry.path, "rb") as fh:
                if entry.size <= SINGLE_PUT:
                    data = fh.read(SINGLE_PUT + 1)
                    _same(entry, len(data), hashlib.md5(data).hexdigest())
                    # validate_content: Azure checks the request's MD5 (damage on the way)
                    blob.upload_blob(data, overwrite=True, content_settings=settings,
                                     metadata=metadata, validate_content=True)
                    if progress:
                        progress(len(data))
                else:
                    self._blocks(blob, fh, entry, settings, metadata, progress)
        except self._errors() as e:
            raise self._fail(f"cannot upload {key} to", e) from None

    def _blocks(self, blob, fh, entry, settings, metadata, progress) -> None:
        from azure.storage.blob import BlobBlock
        size = max(BLOCK, -(-entry.size // MAX_BLOCKS))
        upload = uuid.uuid4().hex[:16]  # block ids of this upload: another's never mix in
        blocks, whole, sent = [], hashlib.md5(), 0
        while data := fh.read(size):
            if self.cancelled.is_set():
                raise _Cancelled()
            whole.update(data)
            sent += len(data)
            block = base64.b64encode(f"{upload}-{len(blocks):06d}".encode()).decode()
            blob.stage_block(block, data, validate_content=True)
            blocks.append(BlobBlock(block_id=block))
            if progress:
                progress(len(data))
        _same(entry, sent, whole.hexdigest())
        blob.commit_block_list(blocks, content_settings=settings, metadata=metadata)

    def delete_keys(self, keys: list[str]) -> None:
        try:
            for i in range(0, len(keys), BATCH):
                results = self.container.delete_blobs(*keys[i:i + BATCH],
                                                      raise_on_any_failure=False)
                for key, res in zip(keys[i:i + BATCH], results):
                    if res.status_code not in (200, 202, 404):
                        raise ApplyError(f"cannot delete {key} from {self.where}: "
                                         f"{res.status_code} {res.reason}")
        except self._errors() as e:
            raise self._fail("cannot delete blobs from", e) from None

    def destroy(self) -> None:
        self.delete_keys(list(self.listing("")))
        try:
            self.container.delete_container()
        except self._errors() as e:
            raise self._fail("cannot delete", e) from None


def _same(entry, size: int, md5_hex: str) -> None:
    """The bytes read are the ones the manifest hashed."""
    if size != entry.size or md5_hex != entry.etags.split()[0]:
        raise _Changed(str(entry.path))


def _setting(conn: str, name: str) -> str:
    """One KEY=VALUE of a connection string (case-insensitive key), or ""."""
    for part in conn.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip().lower() == name:
            return value.strip()
    return ""
