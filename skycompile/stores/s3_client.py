"""The local-side client of the S3 family (AWS S3, R2, IBM COS, any endpoint_url server),
and of OCI through its Amazon S3 Compatibility API.

boto3 is imported here only, and only when a task uploads or creates a bucket in an
S3-family store (`pip install 'skycompile[s3]'`).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from concurrent.futures import ThreadPoolExecutor

from ..errors import ApplyError
from ..manifest import MULTIPART_THRESHOLD, PART
from . import put_each, rclone_upload

# Directories of a large listing listed at once (S3Bucket.listing): each page waits for the
# previous one's token, so a distant server's round trips add up (BENCHMARKS.md).
LIST_THREADS = 8

OWNER_TAG = ("created-by", "skycompile")
DEFAULT_ATTEMPTS = 8
_RETRIED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
            "TooManyRequests", "InternalError", "ServiceUnavailable", "500", "502", "503",
            "504"}
# OCI's Amazon S3 Compatibility API, per namespace and region
OCI_ENDPOINT = "https://{namespace}.compat.objectstorage.{region}.oraclecloud.com"
_NO_BATCH_DELETE = {"NotImplemented", "501", "MethodNotAllowed", "405"}


def _session(store: str):
    """A boto3 session with the SDK's usual credential chain, or, for a store that keeps
    its own key file (R2: ~/.cloudflare/r2.credentials; OCI: [oci] of ~/.aws/credentials),
    that file's profile when AWS_ACCESS_KEY_ID is unset."""
    import boto3
    import botocore.session
    from . import get
    key_file = get(store).key_file
    core = botocore.session.get_session()
    # Timestamps stay strings, as the AWS CLI keeps them: nothing here reads one, and parsing
    # LastModified took ~1 s of a 10,000-object listing (BENCHMARKS.md)
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=lambda value: value)
    if key_file and not os.environ.get("AWS_ACCESS_KEY_ID"):
        path = Path.home() / key_file[0]
        if path.exists():
            core.set_config_variable("credentials_file", str(path))
            core.set_config_variable("profile", key_file[1])
    return boto3.session.Session(botocore_session=core)


@dataclass
class S3Bucket:
    store: str
    name: str
    endpoint: str
    region: str
    account: str = ""  # unused: the S3 family has no accounts in URIs
    # set to stop multipart uploads between parts (Ctrl-C): they abort instead of finishing
    cancelled: threading.Event = field(default_factory=threading.Event)
    journal: object = None  # state.Journal: multipart uploads in flight, for abort_orphans

    def __post_init__(self):
        try:
            import boto3  # noqa: F401  (the check: _session needs it)
            from botocore.config import Config
        except ImportError:
            raise ApplyError(f"creating or filling {self.store} buckets needs boto3: pip install "
                             f"'skycompile[s3]'") from None
        # Throttling and 5xx are retried with backoff by botocore's adaptive mode; the
        # standard AWS_MAX_ATTEMPTS changes the count.
        self.attempts = int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_ATTEMPTS)
        self.where = f"{self.store} bucket {self.name}" + (
            f" at {self.endpoint}" if self.endpoint else "")
        self.session = _session(self.store)
        self.client = self.session.client(
            "s3", endpoint_url=self.endpoint or None, region_name=self.region or None,
            config=Config(retries={"total_max_attempts": self.attempts, "mode": "adaptive"},
                          max_pool_connections=64,
                          s3={"addressing_style": "path" if self.endpoint else "auto"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    def _fail(self, what: str, err: Exception) -> ApplyError:
        import botocore.exceptions as bx
        if isinstance(err, bx.NoCredentialsError):
            from . import get
            key_file = get(self.store).key_file
            extra = f", or profile [{key_file[1]}] of ~/{key_file[0]}" if key_file else ""
            return ApplyError(f"{what} {self.where}: no credentials found; set "
                              f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE{extra}")
        if isinstance(err, bx.EndpointConnectionError):
            return ApplyError(f"{what} {self.where}: cannot connect ({err}); check the "
                              f"endpoint URL and the network")
        if isinstance(err, bx.ClientError):
            return self._coded(what, err.response.get("Error", {}).get("Code", "?"))
        return ApplyError(f"{what} {self.where}: {err}")

    def _coded(self, what: str, code: str) -> ApplyError:
        """The message for the server's error `code` (S3's, or an HTTP status)."""
        if code in _RETRIED:
            return ApplyError(f"{what} {self.where}: {code}: the server kept throttling "
                              f"or failing after {self.attempts} attempts with backoff; "
                              f"try again later (AWS_MAX_ATTEMPTS raises the count)")
        hint = {"403": "check that your credentials may access it",
                "AccessDenied": "check that your credentials may access it",
                "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID",
                "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY",
                "PermanentRedirect": "the bucket is in another region; set the region",
                "301": "the bucket is in another region; set the region",
                "AuthorizationHeaderMalformed": "the bucket is in another region"}.get(
                    code, "check the bucket, the region and your credentials")
        return ApplyError(f"{what} {self.where}: {code}: {hint}")

    def exists(self) -> bool:
        import botocore.exceptions as bx
        try:
            self.client.head_bucket(Bucket=self.name)
            return True
        except bx.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise self._fail("cannot check", e) from None
        except bx.BotoCoreError as e:
            raise self._fail("cannot check", e) from None

    def tagged_ours(self) -> bool:
        """True when the bucket carries skycompile's tag (another machine created it)."""
        import botocore.exceptions as bx
        try:
            tags = self.client.get_bucket_tagging(Bucket=self.name).get("TagSet", [])
        except (bx.ClientError, bx.BotoCoreError):
            return False  # no tags, or a server without bucket tagging
        return {"Key": OWNER_TAG[0], "Value": OWNER_TAG[1]} in tags

    def create(self) -> None:
        import botocore.exceptions as bx
        args = {"Bucket": self.name}
        if self.region and self.region != "us-east-1" and self.store == "s3":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**args)
        except (bx.ClientError, bx.BotoCoreError) as e:
            raise self._fail("cannot create", e) from None
        try:
            self.client.put_bucket_tagging(Bucket=self.name, Tagging={"TagSet": [
                {"Key": OWNER_TAG[0], "Value": OWNER_TAG[1]}]})
        except (bx.ClientError, bx.BotoCoreError):
            pass  # servers without bucket tagging: the state DB still knows

    def listing(self, prefix: str) -> dict[str, tuple[int, str]]:
        """key -> (size, ETag) of the object `prefix` and every object under prefix/.

        One page holds 1,000 keys and each page needs the previous one's token, so a large
        listing is a chain of round trips. When the first page is not the last, the
        listing is done again split by "directory": Delimiter listings walk down to the
        first level below the prefix that branches, and its directories are listed in
        parallel (LIST_THREADS).

        botocore makes the requests (signing, retries, proxies, errors), but each page's
        body is read here with ElementTree for the fields used: botocore's generic parser
        took 0.7 s of a 10,000-object listing (BENCHMARKS.md). It is handed a body with
        only the paging fields."""
        import botocore.exceptions as bx
        local = threading.local()  # the page being read, per thread

        def take(response_dict, **_):
            if response_dict.get("status_code") == 200:
                local.page = _list_page(response_dict["body"])
                response_dict["body"] = local.page.pop("summary")

        def pages(**args):
            """(objects, common prefixes, whether more pages follow) of each page."""
            while True:
                answer = self.client.list_objects_v2(Bucket=self.name, **args)
                token = answer.get("NextContinuationToken")
                more = bool(answer.get("IsTruncated") and token)
                yield local.page["objects"], local.page["prefixes"], more
                if not more:
                    return
                args["ContinuationToken"] = token

        def wanted(key: str) -> bool:
            return not prefix or key == prefix or key.startswith(prefix + "/")

        def add(objects) -> None:
            out.update((k, (size, etag)) for k, size, etag in objects if wanted(k))

        out: dict[str, tuple[int, str]] = {}
        handler = f"skycompile-listing-{id(self)}"
        self.client.meta.events.register("before-parse.s3.ListObjectsV2", take,
                                         unique_id=handler)
        try:
            objects, _, more = next(pages(Prefix=prefix))
            add(objects)
            if not more:
                return out
            # Many keys: list again, split by directory. Nothing here relies on the order
            # of keys (S3's directory buckets do not sort them): every key under the prefix
            # is a direct child of a level walked below, or under one of `dirs`.
            dirs = []
            for objects, found, _ in pages(Prefix=prefix, Delimiter="/"):
                add(objects)
                dirs += [d for d in found if not prefix or d == prefix + "/"]
            for _ in range(8):  # down single-child levels to where the tree branches
                if len(dirs) != 1:
                    break
                below, dirs = dirs[0], []
                for objects, found, _ in pages(Prefix=below, Delimiter="/"):
                    add(objects)
                    dirs += found
            with ThreadPoolExecutor(max_workers=LIST_THREADS) as pool:
                for got in pool.map(lambda d: [o for objects, _, _ in pages(Prefix=d)
                                               for o in objects], dirs):
                    add(got)
            return out
        except (bx.ClientError, bx.BotoCoreError) as e:
            raise self._fail("cannot list", e) from None
        finally:
            self.client.meta.events.unregister("before-parse.s3.ListObjectsV2",
                                               unique_id=handler)

    def put_many(self, items: list, progress=None, on_file=None) -> None:
        """Files up to MULTIPART_THRESHOLD through rclone (rclone_upload: Go speed, one PUT
        each), the larger ones meanwhile through `put`, whose multipart uploads the state
        journals."""
        small = [(k, e) for k, e in items if e.size <= MULTIPART_THRESHOLD]
        large = [(k, e) for k, e in items if e.size > MULTIPART_THRESHOLD]
        if not small:
            return put_each(self, large, progress, on_file)
        settings = self._rclone_settings()
        with ThreadPoolExecutor(max_workers=1) as side:
            parts = side.submit(put_each, self, large, progress, on_file) if large else None
            try:
                rclone_upload.upload(small, bucket=self.name, settings=settings,
                                     explain=self._explain, attempts=self.attempts,
                                     progress=progress, on_file=on_file)
            except BaseException:
                self.cancelled.set()  # the multipart uploads stop between parts and abort
                raise
            if parts is not None:
                parts.result()

    def _explain(self, key: str, code: str, detail: str) -> ApplyError:
        """The message for a file rclone could not upload: the server's error code, as the
        SDK path words it, else rclone's own words."""
        what = f"cannot upload {key} to" if key else "cannot upload to"
        if code:
            return self._coded(what, code)
        return ApplyError(f"{what} {self.where}: {detail}")

    def _rclone_settings(self) -> dict[str, str]:
        """rclone's s3 remote for this bucket: this client's endpoint, region and the
        credentials its SDK chain resolved (a key file's profile included)."""
        import botocore.exceptions as bx
        creds = self.session.get_credentials()
        if creds is None:
            raise self._fail("cannot upload to", bx.NoCredentialsError())
        frozen = creds.get_frozen_credentials()
        settings = {"type": "s3", "access_key_id": frozen.access_key,
                    "secret_access_key": frozen.secret_key,
                    "region": self.client.meta.region_name or "us-east-1"}
        if frozen.token:
            settings["session_token"] = frozen.token
        if self.endpoint:
            settings.update(provider="Other", endpoint=self.endpoint, force_path_style="true")
        else:
            settings.update(provider="AWS")
        return settings

    def put(self, key: str, entry, progress=None) -> None:
        import botocore.exceptions as bx
        path, size, sha256 = entry.path, entry.size, entry.sha256
        try:
            if size <= MULTIPART_THRESHOLD:
                with open(path, "rb") as fh:
                    self.client.put_object(Bucket=self.name, Key=key, Body=fh,
                                           Metadata={"sha256": sha256})
                if progress:
                    progress(size)
            else:
                self._multipart(key, path, size, sha256, progress)
        except (bx.ClientError, bx.BotoCoreError, OSError) as e:
            raise self._fail(f"cannot upload {key} to", e) from None

    def _multipart(self, key: str, path: str, size: int, sha256: str, progress) -> None:
        """Parts of PART bytes (the ETag `manifest.fingerprint` predicts); aborted on any
        failure or cancellation, so no partial object and no open upload is left."""
        upload = self.client.create_multipart_upload(Bucket=self.name, Key=key,
                                                     Metadata={"sha256": sha256})["UploadId"]
        if self.journal:
            self.journal.opened(key, upload)
        try:
            parts = []
            with open(path, "rb") as fh:
                for number in range(1, -(-size // PART) + 1):
                    if self.cancelled.is_set():
                        raise KeyboardInterrupt
                    body = fh.read(PART)
                    tag = self.client.upload_part(Bucket=self.name, Key=key, UploadId=upload,
                                                  PartNumber=number, Body=body)["ETag"]
                    parts.append({"ETag": tag, "PartNumber": number})
                    if progress:
                        progress(len(body))
            self.client.complete_multipart_upload(Bucket=self.name, Key=key, UploadId=upload,
                                                  MultipartUpload={"Parts": parts})
            if self.journal:
                self.journal.closed(upload)
        except BaseException:
            self._abort(key, upload)
            raise

    def _abort(self, key: str, upload: str) -> None:
        import botocore.exceptions as bx
        try:
            self.client.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=upload)
        except bx.ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
                return  # still open: the journal keeps it for the next run
        except bx.BotoCoreError:
            return
        if self.journal:
            self.journal.closed(upload)

    def abort_orphans(self) -> int:
        """Abort the multipart uploads that a killed run of this machine left open in
        this bucket (from `journal`, never another run's). Returns how many."""
        orphans = self.journal.orphans() if self.journal else []
        for key, upload in orphans:
            self._abort(key, upload)
        return len(orphans)

    def delete_keys(self, keys: list[str]) -> None:
        import botocore.exceptions as bx
        try:
            for i in range(0, len(keys), 1000):
                batch = keys[i:i + 1000]
                try:
                    res = self.client.delete_objects(Bucket=self.name, Delete={
                        "Objects": [{"Key": k} for k in batch], "Quiet": True})
                except bx.ClientError as e:
                    if e.response.get("Error", {}).get("Code") not in _NO_BATCH_DELETE:
                        raise
                    for key in batch:  # a server without multi-object delete
                        self.client.delete_object(Bucket=self.name, Key=key)
                    continue
                if res.get("Errors"):
                    err = res["Errors"][0]
                    raise ApplyError(f"cannot delete {err.get('Key')} from {self.where}: "
                                     f"{err.get('Code')}: {err.get('Message')}")
        except (bx.ClientError, bx.BotoCoreError) as e:
            raise self._fail("cannot delete objects from", e) from None

    def destroy(self) -> None:
        import botocore.exceptions as bx
        try:  # the bucket goes: every upload still open in it goes first
            open_uploads = self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        except (bx.ClientError, bx.BotoCoreError):
            open_uploads = []  # servers without the listing
        for up in open_uploads:
            self._abort(up["Key"], up["UploadId"])
        self.delete_keys(list(self.listing("")))
        try:
            self.client.delete_bucket(Bucket=self.name)
        except (bx.ClientError, bx.BotoCoreError) as e:
            raise self._fail("cannot delete", e) from None


@dataclass
class OCIBucket(S3Bucket):
    """An OCI bucket through the Amazon S3 Compatibility API of its namespace and region
    (OCI_ENDPOINT, path-style), signed with a customer secret key (AWS_* variables, or the
    [oci] profile of ~/.aws/credentials). No test reaches real OCI: the tests point
    OCI_ENDPOINT at a local S3 server."""

    def __post_init__(self):
        if not self.account:
            raise ApplyError(f"oci bucket {self.name}: the namespace is not known; set "
                             f"OCI_NAMESPACE to what `oci os ns get` prints")
        if not self.region:
            raise ApplyError(f"oci bucket {self.name}: the region is not known; set "
                             f"resources.region, or write it in the URI: oci://{self.name}@REGION")
        self.endpoint = self.endpoint or OCI_ENDPOINT.format(namespace=self.account,
                                                              region=self.region)
        super().__post_init__()


def _list_page(body: bytes) -> dict:
    """One ListObjectsV2 page: "objects" as (key, size, ETag), keys form-decoded (as
    botocore's own handler does) when the page says EncodingType=url, which botocore asks
    for; "summary", the same page with only the paging fields, for botocore to parse."""
    from urllib.parse import unquote_plus
    from xml.etree import ElementTree
    root = ElementTree.fromstring(body)
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    encoded = root.findtext(f"{ns}EncodingType") == "url"
    objects = []
    for item in root.iterfind(f"{ns}Contents"):
        key = item.findtext(f"{ns}Key") or ""
        objects.append((unquote_plus(key) if encoded else key, int(item.findtext(f"{ns}Size") or 0),
                        (item.findtext(f"{ns}ETag") or "").strip('"')))
    prefixes = [unquote_plus(p) if encoded else p
                for p in (item.findtext(f"{ns}Prefix") or ""
                          for item in root.iterfind(f"{ns}CommonPrefixes"))]
    summary = ElementTree.Element(root.tag)
    for name in ("IsTruncated", "NextContinuationToken", "KeyCount", "EncodingType"):
        found = root.find(f"{ns}{name}")
        if found is not None:
            summary.append(found)
    return {"objects": objects, "prefixes": prefixes, "summary": ElementTree.tostring(summary)}
