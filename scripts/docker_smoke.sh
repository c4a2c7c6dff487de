#!/usr/bin/env bash
# Builds the image and checks it serves: one container, then the two-shard
# compose file, each driven from the host with embedding_cli over ports
# published on 127.0.0.1. Uses docker if present, else podman (see
# ../shared/CONTAINERS.md for podman on machines without a Docker engine).
# Not part of scripts/test.sh: it needs a container engine and a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${CONTAINER_ENGINE:-$(docker info >/dev/null 2>&1 && echo docker || echo podman)}
compose=("$engine" compose)
pull=()
if [[ $engine == podman ]]; then
  compose=(podman-compose)
  pull=(--pull=never)  # the local base image, see CONTAINERS.md
fi
cli=build/client/cpp/embedding_cli
[[ -x $cli ]] || scripts/build.sh

"$engine" build "${pull[@]}" -t embedding-service:latest -f docker/Dockerfile .

wait_for() {  # wait_for PORT: until the server there answers.
  for _ in $(seq 100); do
    "$cli" --server="127.0.0.1:$1" --timeout=1s list >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "no server on port $1" >&2
  return 1
}

"$engine" run -d --init --name es-smoke -p 127.0.0.1:50151:50051 embedding-service:latest
trap '"$engine" rm -f es-smoke >/dev/null 2>&1 || true' EXIT
wait_for 50151
"$cli" --server=127.0.0.1:50151 create-table smoke --num_embeddings=10 --embedding_dim=3
"$cli" --server=127.0.0.1:50151 lookup smoke --indices=1,2
"$engine" stop es-smoke
"$engine" rm es-smoke

"${compose[@]}" -p es-smoke -f docker/compose.yaml up -d
# podman-compose's down leaves the project network behind; remove it too.
trap '"${compose[@]}" -p es-smoke -f docker/compose.yaml down || true
      [[ $engine == podman ]] && podman network rm -f es-smoke_default' EXIT
wait_for 50051
wait_for 50052
for port in 50051 50052; do
  "$cli" --server="127.0.0.1:$port" create-table sharded --num_embeddings=10 --embedding_dim=3
  "$cli" --server="127.0.0.1:$port" describe sharded | grep shard
done
"$cli" --server=127.0.0.1:50052 lookup sharded --indices=1,3
echo "docker smoke test passed"
