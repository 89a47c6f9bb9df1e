#!/usr/bin/env bash
# A one-node Kubernetes 1.20 on this machine, for `make test-cluster`: etcd, kube-apiserver (TLS + static tokens
# on 127.0.0.1:6443), controller-manager, scheduler and a kubelet on Docker (dockershim), node `127.0.0.1`.
#
#   deploy/local/cluster.sh up            # start it; prints the admin kubeconfig's path
#   deploy/local/cluster.sh down          # stop what `up` started (by pid), restore sysctls, remove its state
#   deploy/local/cluster.sh test CMD...   # up, run CMD with GUANACO_TEST_CLUSTER_DIR set, down (even on failure)
#
# Loopback only: every component binds 127.0.0.1; no CNI and no kube-proxy, so pods get no network of their own
# (tests/cluster puts the model server on the host's network); dockerd runs without bridge, NAT or IP forwarding.
# The kubelet changes a few kernel sysctls at start; they are saved first and restored by `down`.
# Ports: 6443 (API), 26379-26380 (etcd), 26250 and 26248 (kubelet), 26257 and 26259 (controllers, scheduler).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

STATE="$GUANACO_LOCAL_STATE/cluster"
PKI="$STATE/pki"
API_PORT=6443
ETCD_PORT=26379
ETCD_PEER_PORT=26380
KUBELET_PORT=26250
KUBELET_HEALTHZ_PORT=26248
CONTROLLER_MANAGER_PORT=26257
SCHEDULER_PORT=26259
PAUSE_IMAGE="local/pause:3.4"
# The node's name is its address: a kubelet refuses a loopback --node-ip ("nodeIP can't be loopback address")
# and then reports no address at all (no pod IP for host-network pods, no logs through the API server), but it
# takes an IP given as --hostname-override as the node's InternalIP without that check.
NODE=127.0.0.1
# What the kubelet sets at start (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables).
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
    kernel.keys.root_maxbytes)
COMPONENTS=(kubelet kube-scheduler kube-controller-manager kube-apiserver etcd)

component_pid() { cat "$STATE/$1.pid" 2>/dev/null || true; }

start_component() {  # start_component NAME COMMAND...: in the background, log and pid in $STATE
    local name="$1"
    shift
    "$@" >"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/$name.pid"
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...
    local what="$1" seconds="$2"
    shift 2
    for _ in $(seq 1 $((seconds * 2))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$what not ready after $seconds s; logs in $STATE"
}

make_pki() {
    mkdir -p "$PKI"
    [ -f "$PKI/ca.crt" ] && return 0
    (
        cd "$PKI"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=guanaco-local-ca -keyout ca.key -out ca.crt 2>/dev/null
        sign() {  # sign NAME SUBJECT [SAN]
            local ext
            ext="$(mktemp)"
            printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
            [ -n "${3:-}" ] && echo "subjectAltName=$3" >>"$ext"
            openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
            openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$ext" \
                -out "$1.crt" 2>/dev/null
            rm -f "$1.csr" "$ext"
        }
        sign apiserver /CN=kube-apiserver "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1"
        sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
        sign kubelet /CN=localhost "IP:127.0.0.1,DNS:localhost"
        # For admission webhooks the tests serve on loopback.
        sign loopback-serving /CN=127.0.0.1 "IP:127.0.0.1,DNS:localhost"
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        for who in admin kubelet controller-manager scheduler; do
            openssl rand -hex 24 >"$who.token"
        done
        {
            echo "$(cat admin.token),guanaco-admin,guanaco-admin,system:masters"
            echo "$(cat kubelet.token),system:node:$NODE,kubelet,system:nodes"
            echo "$(cat controller-manager.token),system:kube-controller-manager,controller-manager"
            echo "$(cat scheduler.token),system:kube-scheduler,scheduler"
        } >tokens.csv
    )
}

write_kubeconfig() {  # write_kubeconfig WHO: $STATE/WHO.kubeconfig with WHO's token
    cat >"$STATE/$1.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: guanaco-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $1
  user:
    token: $(cat "$PKI/$1.token")
contexts:
- name: guanaco-local
  context: {cluster: guanaco-local, user: $1}
current-context: guanaco-local
KUBECONFIG
}

ensure_pause_image() {
    docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
    local kubernetes_src build
    kubernetes_src="$(dirname "$K8S_BIN")/src/kubernetes"
    build="$(mktemp -d)"
    gcc -Os -static -DVERSION=3.4 -o "$build/pause" "$kubernetes_src/build/pause/linux/pause.c"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$build/Dockerfile"
    DOCKER_BUILDKIT=0 docker build --network host -q -t "$PAUSE_IMAGE" "$build" >/dev/null
    rm -rf "$build"
}

up() {
    local started=$SECONDS
    K8S_BIN="$("$LOCAL_DIR/build-kubernetes.sh")"
    command -v etcd >/dev/null || die "etcd is not installed: apt-get install etcd-server"
    [ "$(id -u)" = 0 ] || die "the kubelet needs root"
    if [ -n "$(component_pid kube-apiserver)" ] && kill -0 "$(component_pid kube-apiserver)" 2>/dev/null; then
        die "a cluster from $STATE is running already: deploy/local/cluster.sh down"
    fi
    rm -rf "$STATE"
    mkdir -p "$STATE"
    ensure_dockerd
    [ -n "$DOCKERD_STARTED_PID" ] && echo "$DOCKERD_STARTED_PID" >"$STATE/dockerd-started.pid"
    if [ "$(docker info --format '{{.DefaultRuntime}}')" != guanaco-runc ]; then
        say "warning: dockerd's default runtime is not deploy/local/runc-clamp-oom; pod sandboxes may fail to start"
    fi
    for name in "${SYSCTLS[@]}"; do echo "$name=$(sysctl -n "$name")"; done >"$STATE/sysctls.saved"
    for dir in /var/log/pods /var/log/containers; do [ -e "$dir" ] || echo "$dir"; done >"$STATE/created-dirs"
    make_pki
    for who in admin kubelet controller-manager scheduler; do write_kubeconfig "$who"; done
    ensure_pause_image

    start_component etcd etcd --name guanaco-local --data-dir "$STATE/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "guanaco-local=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls ""
    wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

    start_component kube-apiserver "$K8S_BIN/kube-apiserver" --bind-address=127.0.0.1 --secure-port=$API_PORT \
        --insecure-port=0 --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" --authorization-mode=Node,RBAC \
        --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI/apiserver-kubelet-client.key" --kubelet-preferred-address-types=InternalIP \
        --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$PKI/sa.pub" \
        --service-account-signing-key-file="$PKI/sa.key" --service-cluster-ip-range=10.96.0.0/16 \
        --enable-admission-plugins=NodeRestriction --allow-privileged=true --cert-dir="$STATE/apiserver"
    wait_for kube-apiserver 60 curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(cat "$PKI/admin.token")" \
        "https://127.0.0.1:$API_PORT/readyz"

    start_component kube-controller-manager "$K8S_BIN/kube-controller-manager" \
        --kubeconfig="$STATE/controller-manager.kubeconfig" --bind-address=127.0.0.1 \
        --secure-port=$CONTROLLER_MANAGER_PORT --port=0 --leader-elect=false --use-service-account-credentials \
        --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
        --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$STATE/controller-manager.kubeconfig"
    start_component kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$STATE/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=$SCHEDULER_PORT --port=0 --leader-elect=false \
        --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
        --authorization-kubeconfig="$STATE/scheduler.kubeconfig"

    mkdir -p "$STATE/kubelet" "$STATE/dockershim" "$STATE/volume-plugins"
    # --oom-score-adj=0: lowering it needs CAP_SYS_RESOURCE; high eviction thresholds off: the machine is shared.
    start_component kubelet "$K8S_BIN/kubelet" --kubeconfig="$STATE/kubelet.kubeconfig" \
        --hostname-override=$NODE --address=127.0.0.1 --port=$KUBELET_PORT \
        --read-only-port=0 --healthz-bind-address=127.0.0.1 --healthz-port=$KUBELET_HEALTHZ_PORT \
        --tls-cert-file="$PKI/kubelet.crt" --tls-private-key-file="$PKI/kubelet.key" \
        --client-ca-file="$PKI/ca.crt" --anonymous-auth=false --authorization-mode=AlwaysAllow \
        --container-runtime=docker --pod-infra-container-image=$PAUSE_IMAGE \
        --container-runtime-endpoint="unix://$STATE/dockershim.sock" \
        --image-service-endpoint="unix://$STATE/dockershim.sock" \
        --root-dir="$STATE/kubelet" --experimental-dockershim-root-directory="$STATE/dockershim" \
        --volume-plugin-dir="$STATE/volume-plugins" --cert-dir="$PKI" \
        --make-iptables-util-chains=false --cgroup-driver=cgroupfs --cgroups-per-qos=false \
        --enforce-node-allocatable= --fail-swap-on=false --oom-score-adj=0 \
        --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
        --eviction-hard="memory.available<100Mi,nodefs.available<1%,imagefs.available<1%" \
        --register-node=true --node-status-update-frequency=4s --sync-frequency=5s
    wait_for "node $NODE" 120 sh -c "kubectl --kubeconfig='$STATE/admin.kubeconfig' get node $NODE \
        -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
    say "one-node cluster up in $((SECONDS - started)) s (kubeconfig $STATE/admin.kubeconfig)"
}

down() {
    [ -d "$STATE" ] || return 0
    local kubectl=(kubectl --kubeconfig="$STATE/admin.kubeconfig" --request-timeout=10s)
    # Pods first, while the kubelet still runs, so it unmounts their volumes itself.
    if [ -n "$(component_pid kubelet)" ] && kill -0 "$(component_pid kubelet)" 2>/dev/null; then
        "${kubectl[@]}" delete pods --all-namespaces --all --grace-period=5 --wait=true --timeout=60s >/dev/null 2>&1 || true
    fi
    for name in "${COMPONENTS[@]}"; do
        local pid
        pid="$(component_pid "$name")"
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$STATE/$name.pid"
    done
    # Containers the kubelet left (dockershim labels every one it creates).
    if docker_answers; then
        docker ps -aq --filter label=io.kubernetes.docker.type | xargs -r docker rm -f >/dev/null
    fi
    grep -o " $STATE/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    if [ -f "$STATE/sysctls.saved" ]; then
        while IFS= read -r setting; do sysctl -q -w "$setting" >/dev/null || say "could not restore $setting"; done \
            <"$STATE/sysctls.saved"
    fi
    if [ -f "$STATE/created-dirs" ]; then
        while IFS= read -r dir; do rm -rf "$dir"; done <"$STATE/created-dirs"
    fi
    if [ -f "$STATE/dockerd-started.pid" ]; then
        DOCKERD_STARTED_PID="$(cat "$STATE/dockerd-started.pid")"
        stop_dockerd_if_started
    fi
    # Keep the logs for a post-mortem; the rest (etcd data, keys, kubelet dirs) goes.
    mkdir -p "$GUANACO_LOCAL_STATE/cluster-logs"
    cp "$STATE"/*.log "$GUANACO_LOCAL_STATE/cluster-logs/" 2>/dev/null || true
    rm -rf "$STATE"
}

case "${1:-}" in
    up) up; echo "$STATE/admin.kubeconfig" ;;
    down) down ;;
    test)
        shift
        trap down EXIT
        trap 'exit 143' INT TERM
        up
        GUANACO_TEST_CLUSTER_DIR="$STATE" "$@"
        ;;
    *) die "usage: $0 up | down | test COMMAND..." ;;
esac
