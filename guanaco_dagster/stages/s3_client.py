"""One way to build S3 clients for the cache, so every caller signs and retries the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from guanaco_dagster.config import secret_field


class S3Config(BaseModel):
    """The S3 cache (`GUANACO_S3_*`); no endpoint on the embedded platform starts a local SeaweedFS."""

    s3_endpoint: str | None = Field(default=None, description="S3 endpoint URL; unset: AWS's own endpoints.")
    s3_bucket: str = Field(default="guanaco-models", description="Bucket of the artifact cache.")
    s3_region: str = Field(default="us-east-1", description="Region of the bucket.")
    s3_access_key_id: str = Field(default="guanaco", description="Access key of the cache (read and write).")
    s3_secret_access_key: str = secret_field(
        default="guanaco-local-secret", description="Secret key of the cache (read and write)."
    )
    # Model servers only read the cache: give them read-only keys where the S3 service can issue them.
    s3_read_access_key_id: str | None = Field(
        default=None, description="Read-only access key for model servers; unset: the cache's own keys."
    )
    s3_read_secret_access_key: str | None = secret_field(
        description="Read-only secret key for model servers; unset: the cache's own keys."
    )


def make_s3_client(endpoint_url: str, access_key: str, secret_key: str, region: str = "us-east-1") -> Any:
    """A boto3 S3 client for `endpoint_url` with path-style addressing (works for SeaweedFS and AWS)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def ensure_bucket(
    endpoint_url: str, access_key: str, secret_key: str, bucket: str, region: str = "us-east-1"
) -> bool:
    """Create `bucket` unless it exists; True when this call created it."""
    client = make_s3_client(endpoint_url, access_key, secret_key, region)
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    try:
        if region == "us-east-1":
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as error:
        # Another process may have created it between our check and our create.
        if error.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False
        raise
    return True


@dataclass(frozen=True)
class S3Bucket:
    """An S3 endpoint, its credentials and one bucket: what a process needs to reach the artifact cache."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    region: str = "us-east-1"

    def client(self) -> Any:
        """A boto3 S3 client with these credentials."""
        return make_s3_client(self.endpoint_url, self.access_key, self.secret_key, self.region)

    @property
    def env(self) -> dict[str, str]:
        """AWS_* variables pointing a process (tensorizer, boto3, `inference.serve`) at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }
