# Shared by the scripts in deploy/local/ (sourced, not run): a Docker daemon that touches no host networking.
#
# ensure_dockerd starts dockerd only when no daemon answers, and then with no bridge, no NAT, no iptables rules
# and IP forwarding left alone; stop_dockerd_if_started stops it again by pid. Everything then runs with
# `--network host`. The daemon's default runtime is runc behind deploy/local/runc-clamp-oom (see there), which
# the one-node cluster needs and which changes nothing for builds or plain `docker run`.

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$LOCAL_DIR/../.." && pwd)"
GUANACO_LOCAL_STATE="${GUANACO_LOCAL_STATE:-/var/tmp/guanaco-local}"
DOCKERD_STARTED_PID=""

die() { echo "$*" >&2; exit 1; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

docker_answers() { docker info >/dev/null 2>&1; }

ensure_dockerd() {
    if docker_answers; then
        return 0
    fi
    command -v dockerd >/dev/null || die "no Docker daemon is running and dockerd is not installed: apt-get install docker.io"
    [ "$(id -u)" = 0 ] || die "no Docker daemon is running, and starting one needs root"
    mkdir -p "$GUANACO_LOCAL_STATE"
    local log="$GUANACO_LOCAL_STATE/dockerd.log"
    say "starting dockerd (no bridge, no NAT; log $log)"
    dockerd --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
        --add-runtime "guanaco-runc=$LOCAL_DIR/runc-clamp-oom" --default-runtime guanaco-runc \
        --pidfile "$GUANACO_LOCAL_STATE/dockerd.pid" >"$log" 2>&1 &
    DOCKERD_STARTED_PID=$!
    for _ in $(seq 1 60); do
        docker_answers && return 0
        kill -0 "$DOCKERD_STARTED_PID" 2>/dev/null || die "dockerd exited at start; see $log"
        sleep 0.5
    done
    die "dockerd did not answer within 30 s; see $log"
}

stop_dockerd_if_started() {
    [ -n "$DOCKERD_STARTED_PID" ] || return 0
    say "stopping the dockerd this script started (pid $DOCKERD_STARTED_PID)"
    kill "$DOCKERD_STARTED_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$DOCKERD_STARTED_PID" 2>/dev/null || break
        sleep 0.5
    done
    kill -9 "$DOCKERD_STARTED_PID" 2>/dev/null || true
    DOCKERD_STARTED_PID=""
}
