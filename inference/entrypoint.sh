#!/bin/sh
# Container entrypoint of the model server: `python3 -m inference.serve ARGS...`.
# The KubernetesDeployer sets the same command explicitly; this makes `docker run IMAGE --artifact-uri ...`
# work too. exec: the server becomes PID 1's child-free replacement and receives SIGTERM from the kubelet.
set -eu
exec python3 -m inference.serve "$@"
