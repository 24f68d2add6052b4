"""The local-side client of the S3 family (AWS S3, R2, IBM COS, any endpoint_url server).

boto3 is imported here only, and only when a task uploads or creates a bucket in an
S3-family store (`pip install 'skycompile[s3]'`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ApplyError

OWNER_TAG = ("created-by", "skycompile")
# One PUT up to this size; above it, multipart uploads of PART bytes (the ETag is then the
# MD5 of the parts' MD5s, "-N": `etag()` computes the same thing locally).
MULTIPART_THRESHOLD = 64 * 2**20
PART = 64 * 2**20


def etag(path: Path, size: int) -> tuple[str, str]:
    """(ETags, sha256) of a file, in one read. ETags: the MD5 of the content and, for a file
    we upload in parts, AWS's MD5 of the parts' MD5s "-N", space-separated: S3 reports the
    latter for multipart objects, while many S3-compatible servers report the former."""
    sha, whole = hashlib.sha256(), hashlib.md5()
    md5s, part = [], hashlib.md5()
    filled = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            whole.update(chunk)
            while chunk:
                take = chunk[:PART - filled]
                part.update(take)
                filled += len(take)
                chunk = chunk[len(take):]
                if filled == PART:
                    md5s.append(part.digest())
                    part, filled = hashlib.md5(), 0
    if filled:
        md5s.append(part.digest())
    tags = whole.hexdigest()
    if size > MULTIPART_THRESHOLD:
        tags += f" {hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"
    return tags, sha.hexdigest()


@dataclass
class S3Bucket:
    store: str
    name: str
    endpoint: str
    region: str

    def __post_init__(self):
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ApplyError(f"creating or filling {self.store} buckets needs boto3: pip install "
                             f"'skycompile[s3]'") from None
        self.where = f"{self.store} bucket {self.name}" + (
            f" at {self.endpoint}" if self.endpoint else "")
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint or None, region_name=self.region or None,
            config=Config(retries={"max_attempts": 8, "mode": "adaptive"},
                          max_pool_connections=64,
                          s3={"addressing_style": "path" if self.endpoint else "auto"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    def _fail(self, what: str, err: Exception) -> ApplyError:
        import botocore.exceptions as bx
        if isinstance(err, bx.NoCredentialsError):
            return ApplyError(f"{what} {self.where}: no credentials found; set "
                              f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if isinstance(err, bx.EndpointConnectionError):
            return ApplyError(f"{what} {self.where}: cannot connect ({err}); check the "
                              f"endpoint URL and the network")
        if isinstance(err, bx.ClientError):
            code = err.response.get("Error", {}).get("Code", "?")
            hint = {"403": "check that your credentials may access it",
                    "AccessDenied": "check that your credentials may access it",
                    "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID",
                    "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY",
                    "PermanentRedirect": "the bucket is in another region; set the region",
                    "301": "the bucket is in another region; set the region",
                    "AuthorizationHeaderMalformed": "the bucket is in another region"}.get(
                        code, "check the bucket, the region and your credentials")
            return ApplyError(f"{what} {self.where}: {code}: {hint}")
        return ApplyError(f"{what} {self.where}: {err}")

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
        """key -> (size, ETag) of every object under prefix."""
        import botocore.exceptions as bx
        out = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.name, Prefix=f"{prefix}/" if prefix else "")
            for page in pages:
                for obj in page.get("Contents", []):
                    out[obj["Key"]] = (obj["Size"], obj["ETag"].strip('"'))
        except (bx.ClientError, bx.BotoCoreError) as e:
            raise self._fail("cannot list", e) from None
        return out

    def put(self, key: str, path: Path, size: int, sha256: str) -> None:
        import botocore.exceptions as bx
        try:
            if size <= MULTIPART_THRESHOLD:
                with open(path, "rb") as fh:
                    self.client.put_object(Bucket=self.name, Key=key, Body=fh,
                                           Metadata={"sha256": sha256})
            else:
                from boto3.s3.transfer import TransferConfig
                # s3transfer aborts the multipart upload when it fails: no partial object
                self.client.upload_file(str(path), self.name, key,
                                        ExtraArgs={"Metadata": {"sha256": sha256}},
                                        Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                                              multipart_chunksize=PART,
                                                              max_concurrency=4))
        except (bx.ClientError, bx.BotoCoreError, OSError) as e:
            raise self._fail(f"cannot upload {key} to", e) from None
