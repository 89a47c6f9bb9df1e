"""Dagster resources: the store, the Hub, the S3 cache, the deployer, pipeline settings, the reconciler.

Each resource inherits the configuration groups it reads (guanaco_dagster/config.py), so `build_resources`
hands it the settings' values for exactly those fields, and secrets travel as `EnvVar`s.
"""

from dagster import Definitions

from guanaco_dagster.beta.health import HealthSettings
from guanaco_dagster.deployment.kubernetes_config import KubernetesSettings
from guanaco_dagster.settings import Settings
from guanaco_dagster.submissions.reconciler import ReconcilerSettings
from resources.config import configured, settings_value
from resources.dagster_webserver import DagsterWebserverResource
from resources.deployer import DeployerResource, KubernetesDeployerConfig
from resources.feedback_categories import FeedbackCategoryResource
from resources.health import HealthResource
from resources.hub import HubResource
from resources.pipeline_config import PipelineConfigResource
from resources.privacy import PrivacyResource
from resources.reconciler import ReconcilerResource
from resources.s3_cache import S3CacheResource, S3ClientResource
from resources.store import StoreResource


def s3_resource(settings: Settings) -> S3ClientResource:
    """The S3 client resource for the cache (its botocore retries are the S3 retries)."""
    return S3ClientResource(
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings_value(settings, "s3_secret_access_key"),
        region_name=settings.s3_region,
    )


def build_resources(settings: Settings) -> dict[str, object]:
    """Every asset's and sensor's resources, from `settings` and `GUANACO_K8S_*` / `GUANACO_RECONCILER_*`."""
    kubernetes = (
        KubernetesDeployerConfig(**KubernetesSettings().model_dump())
        if settings.deployer == "kubernetes"
        else None
    )
    return {
        "store": StoreResource(database_url=settings.resolved_database_url),
        "hub": configured(HubResource, settings),
        "s3_cache": S3CacheResource(s3=s3_resource(settings), bucket=settings.s3_bucket),
        "deployer": configured(
            DeployerResource,
            settings,
            kind=settings.deployer,
            state_dir=str(settings.servers_dir),
            kubernetes=kubernetes,
        ),
        "pipeline": configured(PipelineConfigResource, settings, work_dir=str(settings.work_dir)),
        "feedback_categories": configured(FeedbackCategoryResource, settings),
        "privacy": PrivacyResource(
            home=str(settings.home), pseudonym_key=settings_value(settings, "pseudonym_key")
        ),
        "reconciler": ReconcilerResource(**ReconcilerSettings().model_dump()),
        "health": HealthResource(**HealthSettings().model_dump()),
        "dagster_webserver": DagsterWebserverResource(graphql_url=settings.dagster_graphql_url),
    }


def resource_definitions(settings: Settings) -> Definitions:
    """This area's definitions: the resources, for `settings`."""
    return Definitions(resources=build_resources(settings))


__all__ = [
    "DagsterWebserverResource",
    "DeployerResource",
    "HealthResource",
    "HubResource",
    "PipelineConfigResource",
    "PrivacyResource",
    "ReconcilerResource",
    "S3CacheResource",
    "S3ClientResource",
    "StoreResource",
    "build_resources",
    "resource_definitions",
]
