"""The Guanaco code location: one `Definitions`, with resources built from the settings in one place."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar
from dagster_aws.s3 import S3Resource

from assets import ALL_ASSETS
from guanaco_dagster.executors import choose_executor
from guanaco_dagster.settings import Settings, load_settings
from resources import DeployerResource, HubResource, PipelineConfigResource, S3CacheResource, StoreResource
from sensors import ALL_JOBS, ALL_SENSORS


def _secret(env_name: str, value: str) -> str | EnvVar:
    # An EnvVar keeps the value out of Dagit's resource view; the plain value serves tests and defaults.
    return EnvVar(env_name) if os.environ.get(env_name) else value


def build_resources(settings: Settings) -> dict[str, object]:
    """The resources of every asset and sensor, configured from `settings`."""
    secret_key = _secret("GUANACO_S3_SECRET_ACCESS_KEY", settings.s3_secret_access_key.get_secret_value())
    hf_token = settings.hf_token.get_secret_value() if settings.hf_token else None
    return {
        "store": StoreResource(database_url=settings.resolved_database_url),
        "hub": HubResource(
            endpoint=settings.hf_endpoint,
            token=_secret("GUANACO_HF_TOKEN", hf_token) if hf_token else None,
            attempts=settings.hub_retries,
            timeout_s=settings.hub_timeout_s,
        ),
        "s3_cache": S3CacheResource(
            s3=S3Resource(
                endpoint_url=settings.s3_endpoint,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=secret_key,
                region_name=settings.s3_region,
            ),
            bucket=settings.s3_bucket,
        ),
        "deployer": DeployerResource.from_settings(settings, s3_secret=secret_key),
        "pipeline": PipelineConfigResource(
            work_dir=str(settings.work_dir),
            max_parameters=settings.max_parameters,
            max_weight_bytes=settings.max_weight_bytes,
            stress_concurrency=settings.stress_concurrency,
            stress_requests=settings.stress_requests,
            stress_max_tokens=settings.stress_max_tokens,
            stress_timeout_s=settings.stress_timeout_s,
            slo_latency_p95_s=settings.slo_latency_p95_s,
            slo_ttft_p95_s=settings.slo_ttft_p95_s,
            slo_max_error_rate=settings.slo_max_error_rate,
        ),
    }


def build_definitions(settings: Settings | None = None) -> Definitions:
    """The code location's definitions for `settings` (the environment's when omitted)."""
    settings = settings or load_settings()
    return Definitions(
        assets=ALL_ASSETS,
        jobs=ALL_JOBS,
        sensors=ALL_SENSORS,
        resources=build_resources(settings),
        # Per-step processes cost ~3 s each here; one pod per run on Kubernetes (docs/kubernetes.md).
        executor=choose_executor(settings.executor),
    )


defs = build_definitions()
