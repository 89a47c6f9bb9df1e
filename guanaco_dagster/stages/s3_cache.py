"""Upload a tensorized artifact to the S3 cache under a content-addressed prefix (at most once)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from inference.artifact import WEIGHTS_FILENAME, artifact_prefix_uri, parse_s3_uri

MULTIPART = TransferConfig(
    multipart_threshold=16 * 1024**2, multipart_chunksize=16 * 1024**2, max_concurrency=4
)


class S3CacheError(RuntimeError):
    """The S3 cache could not take the artifact."""


@dataclass(frozen=True)
class CachedArtifact:
    """Where an artifact lives in the cache and what this call had to upload."""

    uri: str
    bucket: str
    prefix: str
    uploaded_bytes: int
    total_bytes: int
    reused: bool
    seconds: float

    @property
    def weights_uri(self) -> str:
        return f"{self.uri}{WEIGHTS_FILENAME}"


def artifact_prefix(bucket: str, digest: str) -> str:
    """The content-addressed key prefix: identical artifacts land on the same keys."""
    return parse_s3_uri(artifact_prefix_uri(bucket, digest))[1]


def _object_size(client, bucket: str, key: str) -> int | None:  # noqa: ANN001 - boto3 clients are untyped
    try:
        return client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def upload_artifact(client, bucket: str, artifact_dir: Path, digest: str) -> CachedArtifact:  # noqa: ANN001
    """Upload `artifact_dir` under `models/<digest>/`, weights last, unless that artifact is already cached.

    The weights object appears only when its (multipart) upload completes, so its presence with the
    right size marks a complete artifact. On failure the objects this call wrote are removed.
    """
    started = time.monotonic()
    prefix = artifact_prefix(bucket, digest)
    files = sorted(
        (p for p in artifact_dir.rglob("*") if p.is_file()),
        key=lambda p: (p.name == WEIGHTS_FILENAME, str(p)),
    )
    total = sum(p.stat().st_size for p in files)
    weights_path = artifact_dir / WEIGHTS_FILENAME
    uri = f"s3://{bucket}/{prefix}"
    try:
        if _object_size(client, bucket, prefix + WEIGHTS_FILENAME) == weights_path.stat().st_size:
            return CachedArtifact(uri, bucket, prefix, 0, total, True, time.monotonic() - started)
        abort_stale_multipart_uploads(client, bucket, prefix)
        written: list[str] = []
        try:
            for path in files:
                key = prefix + path.relative_to(artifact_dir).as_posix()
                client.upload_file(
                    str(path),
                    bucket,
                    key,
                    ExtraArgs={"Metadata": {"artifact-sha256": digest}},
                    Config=MULTIPART,
                )
                written.append(key)
        except BaseException:
            for key in written:
                client.delete_object(Bucket=bucket, Key=key)
            raise
    except (BotoCoreError, ClientError) as error:
        raise S3CacheError(f"upload to s3://{bucket}/{prefix} failed: {error}") from error
    return CachedArtifact(uri, bucket, prefix, total, total, False, time.monotonic() - started)


def abort_stale_multipart_uploads(client, bucket: str, prefix: str) -> int:  # noqa: ANN001
    """Abort unfinished multipart uploads under `prefix` (left by a run cut off mid-upload); return how many.

    A concurrent upload of the identical artifact would be aborted too and retried by its run; a bucket
    lifecycle rule that expires incomplete uploads is the production backstop.
    """
    aborted = 0
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    return aborted


def delete_artifact(client, bucket: str, digest: str) -> int:  # noqa: ANN001
    """Remove a cached artifact's objects; returns how many were deleted."""
    prefix = artifact_prefix(bucket, digest)
    keys = [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]
    for key in keys:
        client.delete_object(Bucket=bucket, Key=key)
    return len(keys)
