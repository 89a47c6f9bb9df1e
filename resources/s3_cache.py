"""The S3 artifact cache: a boto3 client built as dagster-aws's S3 resource builds it, plus our bucket."""

from typing import Any

import boto3
from botocore.config import Config
from dagster import ConfigurableResource

from guanaco_dagster.stages.s3_cache import delete_artifact


class S3ClientResource(ConfigurableResource):
    """S3 clients with dagster-aws's `S3Resource` fields and retries (botocore standard mode, 5 retries).

    Not dagster-aws itself: importing any part of it loads every AWS component it ships (Athena, ECS, EMR,
    Secrets Manager, …), which was the largest share of every run worker's start-up, for one boto3 client.
    """

    endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    region_name: str | None = None
    max_attempts: int = 5

    def get_client(self) -> Any:
        """A boto3 S3 client (boto3 clients are untyped)."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            region_name=self.region_name,
            config=Config(retries={"max_attempts": self.max_attempts, "mode": "standard"}),
        )


class S3CacheResource(ConfigurableResource):
    """A bucket on an S3 server, reached through `S3ClientResource`."""

    s3: S3ClientResource
    bucket: str

    def client(self) -> Any:
        """A boto3 S3 client for the cache (boto3 clients are untyped)."""
        return self.s3.get_client()

    @property
    def endpoint_url(self) -> str | None:
        return self.s3.endpoint_url

    def delete_artifact(self, digest: str) -> int:
        """Remove the artifact with this content address from the cache; returns the objects deleted."""
        return delete_artifact(self.client(), self.bucket, digest)
