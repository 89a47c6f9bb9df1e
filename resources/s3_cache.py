"""The S3 artifact cache: dagster-aws's S3 resource plus the bucket our artifacts live in."""

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource


class S3CacheResource(ConfigurableResource):
    """A bucket on an S3 server; the client comes from dagster-aws."""

    s3: S3Resource
    bucket: str

    def client(self):  # noqa: ANN201 - boto3 clients are untyped
        return self.s3.get_client()

    @property
    def endpoint_url(self) -> str | None:
        return self.s3.endpoint_url
