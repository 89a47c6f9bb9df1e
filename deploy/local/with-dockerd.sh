#!/usr/bin/env bash
# Run a command with a Docker daemon available: the running one, else one started here (lib.sh) and stopped by
# pid when the command ends. `make test-containers` runs its tests this way.
#
#   deploy/local/with-dockerd.sh COMMAND [ARGS...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

trap stop_dockerd_if_started EXIT
ensure_dockerd
"$@"
