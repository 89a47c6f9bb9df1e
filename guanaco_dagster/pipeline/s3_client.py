"""One way to build S3 clients for the cache, so every caller signs and retries the same way."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


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
