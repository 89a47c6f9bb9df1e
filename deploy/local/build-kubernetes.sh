#!/usr/bin/env bash
# Build Kubernetes 1.20 (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet) once, from Debian
# bookworm's source package, into the cache; later calls print the cached folder and do nothing else.
#
#   deploy/local/build-kubernetes.sh            # prints the folder holding the four binaries
#
# Why from source: no registry reachable from the development machines ships these binaries; Debian's
# source package is the full tree with vendor/, so it builds offline (GOPROXY=off). About 11 min on 2 cores.
# Needs (apt): golang-1.19-go rsync dpkg-dev golang-github-modern-go-reflect2-dev. The apt source list used is
# private to the cache folder: the host's apt configuration is left alone.
#
# The tree vendors github.com/modern-go/reflect2 v1.0.1, which crashes binaries built with Go >= 1.18 ("fatal
# error: fault" in mapiterinit, seen in kube-apiserver while encoding an admission review): v1.0.2 from Debian
# replaces it before the build. Binaries built without that fix are rebuilt (the stamp file says which).
set -euo pipefail

CACHE="${GUANACO_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guanaco-k8s}"
BIN="$CACHE/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet)

REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
STAMP="$BIN/.built-with-reflect2-1.0.2"

have_all() {
    [ -f "$STAMP" ] || return 1
    for binary in "${BINARIES[@]}"; do [ -x "$BIN/$binary" ] || return 1; done
}

if have_all; then
    echo "$BIN"
    exit 0
fi

GO=/usr/lib/go-1.19/bin
for need in "$GO/go" /usr/bin/rsync /usr/bin/dpkg-source "$REFLECT2/go.mod"; do
    [ -e "$need" ] || {
        echo "missing $need: apt-get install golang-1.19-go rsync dpkg-dev golang-github-modern-go-reflect2-dev" >&2
        exit 1
    }
done

APT="$CACHE/apt"
SRC="$CACHE/src"
mkdir -p "$APT/lists/partial" "$SRC" "$BIN"
if [ ! -d "$SRC/kubernetes" ]; then
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" \
        > "$APT/sources.list"
    apt_private=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o "Dir::State::Lists=$APT/lists")
    apt-get "${apt_private[@]}" -qq update
    (cd "$SRC" && apt-get "${apt_private[@]}" -qq source --download-only kubernetes)
    (cd "$SRC" && dpkg-source -x kubernetes_*.dsc kubernetes >/dev/null)
fi

vendored="$SRC/kubernetes/vendor/github.com/modern-go/reflect2"
rm -rf "$vendored" && mkdir -p "$vendored"
cp "$REFLECT2"/*.go "$REFLECT2"/*.s "$vendored/"

echo "building ${BINARIES[*]} from $SRC/kubernetes (about 11 min on 2 cores)" >&2
whats=""
for binary in "${BINARIES[@]}"; do whats="$whats cmd/$binary"; done
(
    cd "$SRC/kubernetes"
    PATH="$GO:$PATH" GOPROXY=off GOFLAGS=-mod=vendor GOCACHE="$CACHE/go-build" \
        nice -n "${GUANACO_BUILD_NICE:-10}" make WHAT="${whats# }" >&2
)
for binary in "${BINARIES[@]}"; do
    install -m 0755 "$SRC/kubernetes/_output/bin/$binary" "$BIN/$binary"
done
touch "$STAMP"
echo "$BIN"
