"""Dagster UI metadata of the pipeline assets: what a person reads on each materialization."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import MetadataValue

from assets.stage import markdown_table, megabytes_per_s

if TYPE_CHECKING:  # the stage modules import torch, tensorizer and boto3; metadata needs only their types
    from guanaco_dagster.stages.hub_download import DownloadResult
    from guanaco_dagster.stages.s3_cache import CachedArtifact
    from guanaco_dagster.stages.stress import LatencyReport, Slo, SloVerdict
    from guanaco_dagster.stages.tensorize import TensorizedArtifact
    from guanaco_dagster.stages.weight_checks import IntakeLimits, WeightReport
    from guanaco_dagster.submissions.handoff import StageHandoff


def download_metadata(
    handoff: StageHandoff, download: DownloadResult, report: WeightReport, limits: IntakeLimits
) -> dict[str, object]:
    """Where the weights came from, how fast, and what the sanity checks found."""
    return {
        "repository": handoff.model_repo,
        "requested_revision": handoff.requested_revision,
        "commit_sha": download.commit_sha,
        "architecture": report.architecture,
        "parameters": MetadataValue.int(report.parameter_count),
        "weight_bytes": MetadataValue.int(report.weight_bytes),
        "download_s": MetadataValue.float(round(download.seconds, 3)),
        "download_MB_per_s": MetadataValue.float(megabytes_per_s(download.total_bytes, download.seconds)),
        "files": MetadataValue.json(download.files),
        "checks": markdown_table(
            {
                "config.json parses": "yes",
                "custom code (auto_map)": "none",
                "architecture served by vLLM": "yes (text generation)",
                "weights format": f"safetensors, {report.shard_count} shard(s), " + "/".join(report.dtypes),
                "tensor sizes match their byte spans": f"yes, {report.tensor_count} tensors",
                "values finite (no NaN/Inf)": f"yes, scanned in {report.finite_scan_s:.2f} s",
                "parameters": f"{report.parameter_count:,} (limit {limits.max_parameters:,})",
                "context length": f"{report.context_length:,} tokens ({report.context_length_source})"
                if report.context_length
                else "not stated in config.json",
                "tokenizer": f"{report.tokenizer_class}, {report.tokenizer_vocab_size} tokens",
                "chat template": "shipped by the model" if report.chat_template else "none shipped",
            }
        ),
        "model_context_length": MetadataValue.int(report.context_length or 0),
        "local_path": MetadataValue.path(str(download.local_dir)),
    }


def tensorize_metadata(artifact: TensorizedArtifact, digest: str) -> dict[str, object]:
    """The serialized artifact: size, tensors, speed and its verified hash."""
    return {
        "artifact_sha256": digest,
        "weights_sha256": artifact.sha256,
        "weights_bytes": MetadataValue.int(artifact.weights_bytes),
        "tensors": MetadataValue.int(artifact.tensor_count),
        "serialize_s": MetadataValue.float(round(artifact.serialize_s, 3)),
        "serialize_MB_per_s": MetadataValue.float(
            megabytes_per_s(artifact.weights_bytes, artifact.serialize_s)
        ),
        "verify_s": MetadataValue.float(round(artifact.verify_s, 3)),
        "hash_verified": True,
        "files": MetadataValue.json(sorted(artifact.copied_files)),
        "chat_template": "built from the formatter (the model ships none)"
        if artifact.supplied_chat_template
        else "the model's own",
        "local_path": MetadataValue.path(str(artifact.weights_path)),
    }


def upload_metadata(cached: CachedArtifact, endpoint_url: str | None) -> dict[str, object]:
    """Where the artifact is cached and whether it had to be sent."""
    return {
        "uri": cached.uri,
        "weights_uri": cached.weights_uri,
        "reused_cached_artifact": cached.reused,
        "uploaded_bytes": MetadataValue.int(cached.uploaded_bytes),
        "artifact_bytes": MetadataValue.int(cached.total_bytes),
        "upload_s": MetadataValue.float(round(cached.seconds, 3)),
        "upload_MB_per_s": MetadataValue.float(megabytes_per_s(cached.uploaded_bytes, cached.seconds)),
        "s3_endpoint": MetadataValue.url(endpoint_url) if endpoint_url else "default",
    }


def latency_metadata(report: LatencyReport, verdict: SloVerdict, slo: Slo) -> dict[str, object]:
    """The stress test's numbers against the SLO."""
    return {
        "latency_p50_s": MetadataValue.float(round(report.latency_p50_s, 3)),
        "latency_p95_s": MetadataValue.float(round(report.latency_p95_s, 3)),
        "latency_p99_s": MetadataValue.float(round(report.latency_p99_s, 3)),
        "ttft_p95_s": MetadataValue.float(round(report.ttft_p95_s, 3)),
        "tokens_per_s": MetadataValue.float(round(report.tokens_per_s, 1)),
        "error_rate": MetadataValue.float(report.error_rate),
        "empty_replies": MetadataValue.int(report.empty_replies),
        "repeated_replies": MetadataValue.int(report.repeated_replies),
        "undecodable_replies": MetadataValue.int(report.undecodable_replies),
        "report": markdown_table(
            {
                "requests / concurrency": f"{report.requests} / {report.concurrency}",
                "latency p50 / p95 / p99": f"{report.latency_p50_s:.3f} / {report.latency_p95_s:.3f} / "
                f"{report.latency_p99_s:.3f} s (SLO p95 ≤ {slo.slo_latency_p95_s} s)",
                "time to first token p50 / p95": f"{report.ttft_p50_s:.3f} / {report.ttft_p95_s:.3f} s "
                f"(SLO p95 ≤ {slo.slo_ttft_p95_s} s)",
                "output tokens / throughput": f"{report.output_tokens} / {report.tokens_per_s:.1f} tok/s",
                "errors": f"{report.errors} ({report.error_rate:.1%}, SLO ≤ {slo.slo_max_error_rate:.1%})",
                "output gate (empty / repeated / undecodable)": f"{report.empty_replies} / "
                f"{report.repeated_replies} / {report.undecodable_replies} of "
                f"{report.requests - report.errors} replies (at most {slo.slo_max_bad_reply_share:.0%} each)",
                "verdict": "deployed" if verdict.passed else f"failed: {verdict.reason()}",
            }
        ),
    }


def slo_check_metadata(report: LatencyReport, verdict: SloVerdict) -> dict[str, object]:
    """Numbers on the SLO check itself, so the check's page in the Dagster UI can plot them."""
    return {
        "latency_p50_s": MetadataValue.float(round(report.latency_p50_s, 3)),
        "latency_p95_s": MetadataValue.float(round(report.latency_p95_s, 3)),
        "ttft_p95_s": MetadataValue.float(round(report.ttft_p95_s, 3)),
        "error_rate": MetadataValue.float(report.error_rate),
        "bad_replies": MetadataValue.int(
            max(report.empty_replies, report.repeated_replies, report.undecodable_replies)
        ),
        "violations": MetadataValue.json(verdict.violations),
    }
