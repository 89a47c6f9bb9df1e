"""Download a submitted model from the Hugging Face Hub at a pinned revision, refusing unsafe files early."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import httpx2
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from pydantic import BaseModel, Field
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from guanaco_dagster.config import secret_field
from guanaco_dagster.stages.weight_checks import WeightCheckError, check_repo_listing

# Only what vLLM needs is fetched: pickle checkpoints and remote code never reach the disk.
ALLOWED_PATTERNS = [
    "*.json",
    "*.safetensors",
    "tokenizer.model",
    "*.tiktoken",
    "merges.txt",
    "vocab.txt",
    "*.jinja",
]


class HubDownloadError(RuntimeError):
    """The model could not be fetched; the message says what the developer can do about it.

    `transient` marks failures worth another attempt later (5xx, rate limits, network), which the pipeline
    retries with Dagster's step retries.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class HubConfig(BaseModel):
    """Where models are downloaded from (`GUANACO_HF_*`, `GUANACO_HUB_*`)."""

    hf_endpoint: str | None = Field(
        default=None,
        description="Hub URL; unset keeps huggingface_hub's own resolution (HF_ENDPOINT, then "
        "huggingface.co).",
    )
    hf_token: str | None = secret_field(description="Hub token for private or gated repositories.")
    hub_retries: int = Field(
        default=4, ge=1, description="Attempts at a download before a transient Hub error fails it."
    )
    hub_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one Hub request, seconds.")


@dataclass(frozen=True)
class DownloadResult:
    """What `download_model` fetched."""

    local_dir: Path
    commit_sha: str
    files: list[str] = field(default_factory=list)
    total_bytes: int = 0
    seconds: float = 0.0


def _is_transient(error: BaseException) -> bool:
    """Server errors, rate limits and network failures are worth a retry; 4xx answers are not."""
    if isinstance(error, (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError)):
        return False
    if isinstance(error, HfHubHTTPError):
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
        return status is None or status >= 500 or status == 429
    # huggingface_hub 2.x speaks httpx2: refused, reset or dropped connections and timeouts surface as its
    # TransportError, which is not an OSError.
    return isinstance(error, (OSError, TimeoutError, httpx2.TransportError, httpx.TransportError))


def _explain(error: BaseException, repo_id: str, revision: str) -> HubDownloadError:
    if isinstance(error, GatedRepoError):
        return HubDownloadError(
            f"{repo_id} is gated or private: the platform's Hub token (GUANACO_HF_TOKEN) has no access. "
            "Make the repository public or grant access, then resubmit."
        )
    if isinstance(error, RevisionNotFoundError):
        return HubDownloadError(
            f"revision '{revision}' not found in {repo_id}: check the branch, tag or commit."
        )
    if isinstance(error, RepositoryNotFoundError):
        return HubDownloadError(
            f"repository {repo_id} not found on the Hub (or it is private and the platform has no access): "
            "check the spelling."
        )
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status in (401, 403):
        return HubDownloadError(f"{repo_id} refused access (HTTP {status}): it is private or gated.")
    return HubDownloadError(
        f"the Hub failed while fetching {repo_id}@{revision}: {error}. Try again later.",
        transient=_is_transient(error),
    )


def download_model(
    repo_id: str,
    revision: str,
    dest: Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    attempts: int = 1,
    max_weight_bytes: int | None = None,
    timeout_s: float = 30.0,
) -> DownloadResult:
    """Resolve `revision` to a commit, vet the file listing, and download the allowed files into `dest`.

    `attempts` > 1 retries transient failures here, for callers outside Dagster; the pipeline passes 1 and
    lets Dagster retry the step.
    """
    started = time.monotonic()
    retrying = retry(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=8),
        reraise=True,
    )
    api = HfApi(endpoint=endpoint, token=token)
    try:
        # Without a timeout a Hub that stops answering would hang the run forever.
        info = retrying(api.model_info)(repo_id, revision=revision, files_metadata=True, timeout=timeout_s)
        listing = {s.rfilename: (s.size or 0) for s in info.siblings or []}
        check_repo_listing(listing, max_weight_bytes=max_weight_bytes)
        # Download at the resolved sha so a branch moving mid-download cannot mix two commits.
        local = retrying(snapshot_download)(
            repo_id,
            revision=info.sha,
            local_dir=dest,
            allow_patterns=ALLOWED_PATTERNS,
            endpoint=endpoint,
            token=token,
            max_workers=4,
            etag_timeout=timeout_s,
        )
    except WeightCheckError:
        raise
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes one actionable message
        raise _explain(error, repo_id, revision) from error
    local_dir = Path(local)
    files = sorted(
        str(p.relative_to(local_dir)) for p in local_dir.rglob("*") if p.is_file() and ".cache" not in p.parts
    )
    total = sum((local_dir / f).stat().st_size for f in files)
    return DownloadResult(local_dir, info.sha, files, total, time.monotonic() - started)
