#!/usr/bin/env bash
# Make the local base image `local/python:3.11-bookworm` (Debian bookworm + Python 3.11 + venv) with debootstrap
# and import it into Docker, unless it is there already. It stands in for `python:3.11-slim-bookworm` where no
# registry can be reached: both Dockerfiles build on it with BASE_IMAGE=local/python:3.11-bookworm.
#
#   deploy/local/base-image.sh          # needs root, debootstrap and a running Docker daemon (lib.sh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BASE_IMAGE="${GUANACO_LOCAL_BASE_IMAGE:-local/python:3.11-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    exit 0
fi
command -v debootstrap >/dev/null || die "cannot make $BASE_IMAGE: debootstrap is not installed (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || die "cannot make $BASE_IMAGE: debootstrap needs root"

rootfs="$(mktemp -d /var/tmp/guanaco-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
say "debootstrap bookworm into $rootfs (about 1 min)"
nice -n 10 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$MIRROR" \
    >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; die "debootstrap failed (log above)"; }
rm -f "$rootfs.log"
# Slim like the image it stands in for: no package lists or caches.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$BASE_IMAGE" >/dev/null
say "imported $BASE_IMAGE ($(docker image inspect --format '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec))"
