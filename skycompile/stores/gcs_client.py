"""The local-side client of Google Cloud Storage, or of the GCS emulator that
STORAGE_EMULATOR_HOST named at compile time (the bucket's endpoint).

google-cloud-storage is imported here only, and only when a task uploads or creates a
bucket in gcs (`pip install 'skycompile[gcs]'`).
"""
from __future__ import annotations

import base64
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import ApplyError
from . import put_each

OWNER_LABEL = ("created-by", "skycompile")
# Files above the library's 8 MiB multipart limit go up as a resumable upload in chunks of
# this size (a multiple of 256 KiB): the unit of progress, of retry and of cancellation.
# An unfinished resumable upload creates no object; GCS drops the session after a week.
CHUNK = 16 * 2**20
POOL = 64  # HTTP connections: one per upload thread of apply, and some to spare
DELETE_THREADS = 16
# Bucket and listing calls retry transient errors (429, 5xx, broken connections) for at
# most this long; uploads keep the library's own retry (per chunk when resumable).
RETRY_SECONDS = 30.0


class _Cancelled(Exception):
    pass


@dataclass
class GCSBucket:
    store: str
    name: str
    endpoint: str  # the emulator's base URL, or "" for Google Cloud Storage
    region: str
    account: str = ""  # unused: GCS has no accounts in URIs
    # set to stop resumable uploads between chunks (Ctrl-C); small uploads finish or fail
    cancelled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        try:
            import google.auth
            import requests.adapters
            from google.auth.credentials import AnonymousCredentials
            from google.auth.exceptions import DefaultCredentialsError
            from google.auth.transport.requests import AuthorizedSession
            from google.cloud import storage
            from google.cloud.storage.retry import DEFAULT_RETRY
        except ImportError:
            raise ApplyError(f"creating or filling {self.store} buckets needs "
                             f"google-cloud-storage: pip install 'skycompile[gcs]'") from None
        self.where = f"{self.store} bucket {self.name}" + (
            f" at {self.endpoint}" if self.endpoint else "")
        self.retry = DEFAULT_RETRY.with_timeout(RETRY_SECONDS)
        if self.endpoint:
            # An emulator checks no credentials (and Google's clients send none to it).
            credentials, project = AnonymousCredentials(), "skycompile"
            options = {"api_endpoint": self.endpoint}
        else:
            try:
                credentials, project = google.auth.default(scopes=storage.Client.SCOPE)
            except DefaultCredentialsError as e:
                raise self._fail("cannot reach", e) from None
            # explicit, so that a STORAGE_EMULATOR_HOST set now cannot redirect a bucket that
            # was compiled for (and recorded as) Google Cloud Storage
            options = {"api_endpoint": "https://storage.googleapis.com"}
        project = (os.environ.get("GOOGLE_CLOUD_PROJECT")
                   or os.environ.get("CLOUDSDK_CORE_PROJECT") or project)
        self.project = project or ""
        # Our own session, for a connection pool as large as apply's upload threads
        # (requests' default of 10 would drop and reopen connections).
        http = AuthorizedSession(credentials)
        adapter = requests.adapters.HTTPAdapter(pool_connections=POOL, pool_maxsize=POOL)
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        self.client = storage.Client(project=project or "<none>", credentials=credentials,
                                     client_options=options, _http=http)
        self.bucket = self.client.bucket(self.name)

    # --- errors ------------------------------------------------------------------------

    def _errors(self) -> tuple[type[BaseException], ...]:
        import requests
        from google.api_core.exceptions import GoogleAPICallError, RetryError
        from google.auth.exceptions import GoogleAuthError
        from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
        return (GoogleAPICallError, RetryError, GoogleAuthError, requests.RequestException,
                InvalidResponse, DataCorruption, OSError, _Cancelled)

    def _fail(self, what: str, err: BaseException, hints: dict[int, str] | None = None
              ) -> ApplyError:
        """ApplyError for `err`; `hints` overrides the advice for HTTP status codes."""
        import requests
        from google.api_core import exceptions as gx
        from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
        if isinstance(err, gx.RetryError) and err.cause is not None:
            err = err.cause  # retried until the deadline: report the last failure
        if isinstance(err, _Cancelled):
            return ApplyError(f"{what} {self.where}: cancelled")
        if isinstance(err, DefaultCredentialsError):
            named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            found = f"GOOGLE_APPLICATION_CREDENTIALS: {str(err).rstrip('.')}" if named else \
                "no Google credentials found"
            return ApplyError(f"{what} {self.where}: {found}; run `gcloud auth "
                              f"application-default login`, or set "
                              f"GOOGLE_APPLICATION_CREDENTIALS to a service account key file")
        if isinstance(err, GoogleAuthError):
            return ApplyError(f"{what} {self.where}: cannot get an access token ({err}); check "
                              f"GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth "
                              f"application-default login`")
        if isinstance(err, requests.ConnectionError):
            check = ("the emulator address (STORAGE_EMULATOR_HOST at compile time) and that it "
                     "is running" if self.endpoint else "the network")
            return ApplyError(f"{what} {self.where}: cannot connect; check {check}")
        if isinstance(err, gx.GoogleAPICallError):
            if isinstance(err, gx.BadRequest) and "MD5" in _detail(err):
                hint = ("the file changed after it was hashed; run skycompile again once "
                        "nothing writes to it")
            else:
                hint = {
                    401: "check your Google credentials (gcloud auth application-default "
                         "login, or GOOGLE_APPLICATION_CREDENTIALS)",
                    403: "check that your credentials may access it (roles/storage.admin "
                         "creates buckets; roles/storage.objectAdmin fills them)",
                    404: "it does not exist (any more)",
                    409: "it conflicts with another request; run skycompile again",
                    412: "a precondition failed; run skycompile again",
                    429: "too many requests; run skycompile again in a while",
                    **(hints or {}),
                }.get(err.code or 0, "check the bucket, the project and your credentials")
            return ApplyError(f"{what} {self.where}: {err.code}"
                              + (f" {_detail(err)}" if _detail(err) else "") + f": {hint}")
        if isinstance(err, OSError) and not isinstance(err, requests.RequestException):
            return ApplyError(f"{what} {self.where}: {err}")
        return ApplyError(f"{what} {self.where}: {type(err).__name__}: {err}")

    # --- BucketClient --------------------------------------------------------------------

    def exists(self) -> bool:
        from google.api_core.exceptions import NotFound
        try:
            self.bucket.reload(retry=self.retry)
            return True
        except NotFound:
            return False
        except self._errors() as e:
            raise self._fail("cannot check", e, {403: "check that your credentials may access "
                             "it; if they may, another project owns this name (bucket names "
                             "are global): pick another"}) from None

    def tagged_ours(self) -> bool:
        """True when the bucket carries skycompile's label (another machine created it)."""
        try:
            self.bucket.reload(retry=self.retry)
        except self._errors() as e:
            raise self._fail("cannot read the labels of", e) from None
        return (self.bucket.labels or {}).get(OWNER_LABEL[0]) == OWNER_LABEL[1]

    def create(self) -> None:
        """In the region as the GCS location. Without a region GCS picks its default
        location, the US multi-region. Uniform bucket-level access, as the nodes' rclone
        remote (bucket_policy_only) expects."""
        from google.cloud import storage
        if not self.endpoint and not self.project:
            raise ApplyError(f"cannot create {self.where}: no Google Cloud project to create "
                             f"it in; set GOOGLE_CLOUD_PROJECT (or `gcloud config set project`)")
        bucket = storage.Bucket(self.client, self.name)
        bucket.labels = {OWNER_LABEL[0]: OWNER_LABEL[1]}
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        try:
            made = self.client.create_bucket(bucket, location=self.region or None,
                                             retry=self.retry)
            if (made.labels or {}).get(OWNER_LABEL[0]) != OWNER_LABEL[1]:
                # servers that drop labels on insert (gcp-storage-emulator) take a patch
                made.labels = {OWNER_LABEL[0]: OWNER_LABEL[1]}
                made.patch(retry=self.retry)
        except self._errors() as e:
            raise self._fail("cannot create", e, {409: "the name is taken: GCS bucket names "
                             "are global, so another project may own it; pick another name"}
                             ) from None
        self.bucket = made

    def listing(self, prefix: str) -> dict[str, tuple[int, str]]:
        """key -> (size, hex MD5) of the object `prefix` and every object under prefix/;
        "" for objects without an MD5 (composite objects)."""
        out = {}
        try:
            for blob in self.client.list_blobs(self.name, prefix=prefix or None,
                                               retry=self.retry):
                key = blob.name
                if not prefix or key == prefix or key.startswith(prefix + "/"):
                    md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else ""
                    out[key] = (blob.size or 0, md5)
        except self._errors() as e:
            raise self._fail("cannot list", e) from None
        return out

    def put_many(self, items: list, progress=None, on_file=None) -> None:
        put_each(self, items, progress, on_file)

    def put(self, key: str, entry, progress=None) -> None:
        """One request up to 8 MiB, else a resumable upload in CHUNKs. The object's md5Hash
        is sent with it: the server refuses content that is not what was hashed (a file
        changed meanwhile), so the MD5 that `listing` reports always matches the data."""
        blob = self.bucket.blob(key, chunk_size=CHUNK)
        blob.metadata = {"sha256": entry.sha256}
        blob.md5_hash = base64.b64encode(bytes.fromhex(entry.etags.split()[0])).decode()
        try:
            with open(entry.path, "rb") as fh:
                blob.upload_from_file(_Reader(fh, progress, self.cancelled), size=entry.size,
                                      content_type="application/octet-stream")
        except self._errors() as e:
            raise self._fail(f"cannot upload {key} to", e) from None

    def delete_keys(self, keys: list[str]) -> None:
        from google.api_core.exceptions import NotFound

        def delete(key: str) -> None:
            try:
                self.bucket.delete_blob(key, retry=self.retry)
            except NotFound:
                pass  # already gone: what we wanted
        try:
            with ThreadPoolExecutor(max_workers=DELETE_THREADS) as pool:
                for _ in pool.map(delete, keys):
                    pass
        except self._errors() as e:
            raise self._fail("cannot delete objects from", e) from None

    def destroy(self) -> None:
        self.delete_keys(list(self.listing("")))
        try:
            self.bucket.delete(retry=self.retry)
        except self._errors() as e:
            raise self._fail("cannot delete", e, {409: "it is not empty: something wrote to "
                             "it meanwhile, or an upload into it is unfinished"}) from None


def _detail(err) -> str:
    """The server's own words of an API error, without the request line the library puts
    in front of them ("GET https://...: ")."""
    for item in err.errors or []:
        if isinstance(item, dict) and item.get("message"):
            return str(item["message"]).splitlines()[0].rstrip(".")
    response = getattr(err, "response", None)  # uploads: only the raw response
    try:
        payload = response.json() if response is not None else None
    except ValueError:
        return ""
    error = payload.get("error") if isinstance(payload, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    return str(text).splitlines()[0].rstrip(".") if text else ""


class _Reader:
    """The file as the library reads it: progress counts each byte once (a retry that
    rewinds re-reads without counting again), and a cancelled upload stops at the next
    read, i.e. between chunks, before the resumable upload is finalized."""

    def __init__(self, fh, progress, cancelled: threading.Event):
        self.fh, self.progress, self.cancelled = fh, progress, cancelled
        self.seen = 0

    def read(self, n: int = -1) -> bytes:
        if self.cancelled.is_set():
            raise _Cancelled()
        data = self.fh.read(n)
        end = self.fh.tell()
        if end > self.seen:
            if self.progress:
                self.progress(end - self.seen)
            self.seen = end
        return data

    def seek(self, *args) -> int:
        return self.fh.seek(*args)

    def tell(self) -> int:
        return self.fh.tell()
