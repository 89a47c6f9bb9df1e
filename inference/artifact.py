"""The artifact layout shared by the producer (tensorize + upload) and the model server.

An artifact is an S3 prefix `s3://bucket/models/<sha256 of the weights>/` holding the tensorizer weights
(`model.tensors`) plus the config, generation config and tokenizer files vLLM needs from a local folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

WEIGHTS_FILENAME = "model.tensors"
MODELS_PREFIX = "models"


class ArtifactError(RuntimeError):
    """The artifact is missing or incomplete; the message names the URI and what is wrong."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split `s3://bucket/key/path` into (bucket, key); the key keeps a trailing slash if given."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an S3 URI (expected s3://bucket/key): {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def artifact_prefix_uri(bucket: str, weights_sha256: str) -> str:
    """The artifact URI for weights with this digest: s3://bucket/models/<sha256>/."""
    return f"s3://{bucket}/{MODELS_PREFIX}/{weights_sha256}/"


def normalize_artifact_uri(artifact_uri: str) -> str:
    """The artifact URI with exactly one trailing slash (it names a prefix, not an object)."""
    parse_s3_uri(artifact_uri)
    return artifact_uri.rstrip("/") + "/"


def weights_uri(artifact_uri: str) -> str:
    """s3://.../model.tensors inside the artifact."""
    return normalize_artifact_uri(artifact_uri) + WEIGHTS_FILENAME


def download_model_files(artifact_uri: str, dest_dir: Path, s3_client: Any) -> list[Path]:
    """Fetch every object under the artifact prefix except the weights into `dest_dir`; return the paths.

    Raises ArtifactError when the prefix is empty or lacks config.json or the weights.
    """
    bucket, prefix = parse_s3_uri(normalize_artifact_uri(artifact_uri))
    keys: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    relative = [key[len(prefix) :] for key in keys if not key.endswith("/")]
    if not relative:
        raise ArtifactError(f"no artifact at {artifact_uri}: the prefix holds no objects")
    if WEIGHTS_FILENAME not in relative:
        raise ArtifactError(f"artifact {artifact_uri} has no {WEIGHTS_FILENAME}: re-run the tensorize step")
    if "config.json" not in relative:
        raise ArtifactError(f"artifact {artifact_uri} has no config.json: re-run the tensorize step")
    dest_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in relative:
        if name == WEIGHTS_FILENAME:
            continue
        target = (dest_dir / name).resolve()
        if not target.is_relative_to(dest_dir.resolve()):
            raise ArtifactError(f"artifact {artifact_uri} has an unsafe object name: {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3_client.download_file(bucket, prefix + name, str(target))
        written.append(target)
    return written
