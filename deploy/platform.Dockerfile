# syntax=docker/dockerfile:1
# The Guanaco platform image: dagster-webserver, dagster-daemon, the code location (gRPC), every run pod
# (the K8sRunLauncher runs the code location's image), and the Guanaco service (`guanaco serve`).
# The model servers use another image (inference/Dockerfile).
#
# Build from the repository root:
#   docker build -f deploy/platform.Dockerfile -t REGISTRY/guanaco-platform:0.1.0 .
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    GUANACO_HOME=/guanaco-home \
    HF_HUB_DISABLE_TELEMETRY=1

# tensorizer shells out to curl for S3 reads.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

# CPU torch: the pipeline loads safetensors and writes tensorizer artifacts on CPU; GPUs are the model
# servers' business. (The default index would bring CUDA wheels, gigabytes the run pods never use.)
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/guanaco
COPY pyproject.toml ./
COPY guanaco_dagster ./guanaco_dagster
COPY assets ./assets
COPY sensors ./sensors
COPY resources ./resources
COPY inference ./inference
# Not editable and without the serve-cpu extra: vLLM does not run in these pods.
RUN pip install . \
    && useradd --uid 10001 --create-home guanaco \
    && mkdir -p "$DAGSTER_HOME" "$GUANACO_HOME" \
    && chown guanaco "$DAGSTER_HOME" "$GUANACO_HOME"

USER 10001
WORKDIR /home/guanaco
