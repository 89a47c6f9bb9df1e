"""What a failed submission may leave behind, as far as the given resources can reach it."""

from guanaco_dagster.submissions.failure import Leftovers
from resources.deployer import DeployerResource
from resources.pipeline_config import PipelineConfigResource
from resources.s3_cache import S3CacheResource


def leftovers_of(
    deployer: DeployerResource | None = None,
    s3_cache: S3CacheResource | None = None,
    pipeline: PipelineConfigResource | None = None,
) -> Leftovers:
    """The `Leftovers` these resources can remove: the server, the cached artifact, the staging folder."""
    return Leftovers(
        # Built only when needed: a Kubernetes deployer loads its API client.
        teardown_server=(lambda sid: deployer.get_deployer().teardown(sid)) if deployer is not None else None,
        staging=pipeline.staging if pipeline is not None else None,
        delete_artifact=s3_cache.delete_artifact if s3_cache is not None else None,
    )
