"""The S3 artifact cache: dagster-aws's S3 resource plus the bucket our artifacts live in."""

from typing import Any

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource

from guanaco_dagster.stages.s3_cache import delete_artifact


class S3CacheResource(ConfigurableResource):
    """A bucket on an S3 server; the client (and its retries) come from dagster-aws."""

    s3: S3Resource
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
