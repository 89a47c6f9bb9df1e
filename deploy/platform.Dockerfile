# The Guanaco platform image: dagster-webserver, dagster-daemon, the code location (gRPC), every run pod
# (the K8sRunLauncher runs the code location's image), and the Guanaco service (`guanaco serve`).
# The model servers use another image (inference/Dockerfile).
#
# Build from the repository root:
#   docker build -f deploy/platform.Dockerfile -t REGISTRY/guanaco-platform:0.1.0 .
# Where neither Docker Hub nor the PyTorch index can be reached, `make images` builds it on a local Debian base
# with torch from a local wheel folder (deploy/local/images.sh sets BASE_IMAGE, TORCH_PIP_ARGS and PIP_CERT).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# CPU torch: the pipeline loads safetensors and writes tensorizer artifacts on CPU; GPUs are the model
# servers' business. (The default index would bring CUDA wheels, gigabytes the run pods never use.)
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# The CA bundle pip trusts while building (a TLS-intercepting proxy's bundle goes in deploy/local/build-extras/).
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    GUANACO_HOME=/guanaco-home \
    HF_HUB_DISABLE_TELEMETRY=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# tensorizer shells out to curl for S3 reads.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Wheels and CA bundles for builds without the public indexes; holds only a .gitignore elsewhere. A venv, so
# the same steps work on python:3.11-slim and on Debian's own (externally managed) Python.
COPY deploy/local/build-extras/ /tmp/build-extras/
RUN python3 -m venv /opt/venv \
    && pip install torch==2.13.0 $TORCH_PIP_ARGS

WORKDIR /opt/guanaco
COPY pyproject.toml ./
COPY guanaco_dagster ./guanaco_dagster
COPY assets ./assets
COPY sensors ./sensors
COPY resources ./resources
COPY inference ./inference
# Not editable and without the serve-cpu extra: vLLM does not run in these pods.
RUN pip install . \
    && rm -rf /tmp/build-extras \
    && useradd --uid 10001 --create-home guanaco \
    && mkdir -p "$DAGSTER_HOME" "$GUANACO_HOME" \
    && chown guanaco "$DAGSTER_HOME" "$GUANACO_HOME"

USER 10001
WORKDIR /home/guanaco
