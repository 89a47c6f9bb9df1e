"""The environment of a model server: an allow-list, because it runs weights written by strangers.

Nothing of the platform reaches it (beta token, developer keys, store URL, S3 write keys, any other
`GUANACO_*` variable): only what a process needs to run, what vLLM/torch/OpenMP read, and S3 credentials
for reading the artifact.
"""

from __future__ import annotations

from collections.abc import Mapping

# Exact names a server may inherit: process basics, locale, TLS trust, dynamic linking (vLLM on CPU wants
# tcmalloc/iomp preloaded), caches.
INHERITED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "LD_PRELOAD",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "AWS_CA_BUNDLE",
        "XDG_CACHE_HOME",
        "HF_HUB_DISABLE_XET",
        "HF_HUB_DISABLE_TELEMETRY",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "NVIDIA_VISIBLE_DEVICES",
    }
)
# Prefixes of the variables vLLM, torch, OpenMP and the math libraries read.
INHERITED_PREFIXES = (
    "LC_",
    "VLLM_",
    "TORCH_",
    "TORCHINDUCTOR_",
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "NCCL_",
)


def inherited_variables(base_env: Mapping[str, str]) -> dict[str, str]:
    """The variables of `base_env` a model server may see (never a `GUANACO_*` one)."""
    return {
        name: value
        for name, value in base_env.items()
        if not name.startswith("GUANACO_")
        and (name in INHERITED_NAMES or name.startswith(INHERITED_PREFIXES))
    }


def model_server_environment(
    base_env: Mapping[str, str],
    s3_endpoint_url: str,
    s3_read_access_key: str,
    s3_read_secret_key: str,
    s3_region: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a model server: allowed variables, S3 read credentials, `extra` on top."""
    return {
        **inherited_variables(base_env),
        "AWS_ENDPOINT_URL_S3": s3_endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_read_access_key,
        "AWS_SECRET_ACCESS_KEY": s3_read_secret_key,
        "AWS_DEFAULT_REGION": s3_region,
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }
