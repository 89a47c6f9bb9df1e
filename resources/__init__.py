"""Dagster resources: the store, the Hub, the S3 cache, the deployer and pipeline settings."""

from resources.deployer import DeployerResource
from resources.hub import HubResource
from resources.pipeline_config import PipelineConfigResource
from resources.s3_cache import S3CacheResource
from resources.store import StoreResource

__all__ = ["DeployerResource", "HubResource", "PipelineConfigResource", "S3CacheResource", "StoreResource"]
