#!/usr/bin/env bash
# The container test (CI runs it after scripts/test.sh). Builds the image,
# brings up the 3-shard compose cluster (docker/compose.yaml) on free
# 127.0.0.1 ports under a project name of its own, and drives it from the
# host with the sharded Python client (tests/container/drive_cluster.py) and
# embedding_cli --server=a,b,c:
#   1. every container runs and is healthy, publishes the port this test
#      chose, logs its shard flags, and its server holds no table yet (so it
#      is this cluster and no other server answers on those ports);
#   2. create, lookup, bags, pushes (torch as the oracle), checkpoint;
#   3. `stop` shard 1: calls touching it fail with UNAVAILABLE naming its
#      address, the others work; start it again;
#   4. stop all (a graceful exit 0 after the final checkpoint), remove the
#      containers, bring the cluster up again on the same volumes: every
#      row, step and version equal to before.
# Containers, network and volumes are removed on exit, pass or fail.
#
# Uses docker when a Docker engine answers, else podman (set up by
# scripts/install_container_tools.sh; images are built with --format docker,
# else podman drops the HEALTHCHECK). Installs what it needs and builds the
# host binaries (build/) when they are missing. Takes a few minutes, most of
# it the image build on a cold cache.
#
#   scripts/container_test.sh
# Environment: CONTAINER_ENGINE (docker|podman); BUILD_JOBS (compile jobs in
# the image build, default: cores); EMBEDDING_TEST_IMAGE (the tag built,
# default localhost/embedding-service:container-test); CONTAINER_TEST_NO_BUILD=1
# (test that image as it is); BUILD_DIR (host embedding_cli and Python stubs,
# default build/, built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

start_time=$SECONDS
step() { echo "== [$((SECONDS - start_time)) s] $*"; }
fail() {
  echo "container_test: FAIL: $*" >&2
  exit 1
}

step "host dependencies and binaries"
scripts/install_deps.sh python
build_dir=${BUILD_DIR:-build}
cli=$build_dir/client/cpp/embedding_cli
if [[ ! -x $cli || ! -f $build_dir/python/embedding/v1/embedding_service_pb2_grpc.py ]]; then
  [[ $build_dir == build ]] || fail "no embedding_cli or Python stubs in $build_dir"
  scripts/build.sh --server
fi
python=(env PYTHONPATH="$build_dir/python:client/python:." /usr/bin/python3)

engine=${CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
  engine=podman
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  fi
fi
if [[ $engine == podman ]]; then
  scripts/install_container_tools.sh
  compose_cmd=(podman-compose)
  # The local base image (no registry here), and the docker image format:
  # the OCI format has no HEALTHCHECK.
  build_flags=(--pull=never --format docker)
else
  compose_cmd=(docker compose)
  build_flags=()
fi
step "engine: $engine"

"${python[@]}" tests/container/check_manifests.py docker/compose.yaml \
  docker/kubernetes/embedding-service.yaml

image=${EMBEDDING_TEST_IMAGE:-localhost/embedding-service:container-test}
if [[ -n ${CONTAINER_TEST_NO_BUILD:-} ]]; then
  step "using the image $image as it is"
else
  step "building $image"
  "$engine" build "${build_flags[@]}" --build-arg BUILD_JOBS="${BUILD_JOBS:-$(nproc)}" \
    -t "$image" -f docker/Dockerfile .
fi
healthcheck=$("$engine" image inspect --format '{{json .Config.Healthcheck}}' "$image")
[[ $healthcheck == *embedding_cli* ]] || fail "the image has no HEALTHCHECK: $healthcheck"
user=$("$engine" image inspect --format '{{.Config.User}}' "$image")
[[ -n $user && $user != 0* && $user != root* ]] || fail "the image runs as root ('$user')"

project="embct$$"
state=$(mktemp -d)
shards=(0 1 2)
label="label=com.docker.compose.project=$project"
cleanup() {
  local status=$?
  set +e
  if ((status != 0)); then
    for id in $("$engine" ps -aq --filter "$label"); do
      echo "---- logs of $("$engine" inspect --format '{{.Name}}' "$id")" >&2
      "$engine" logs --tail 30 "$id" >&2
    done
  fi
  step "cleaning up project $project"
  local kind ids
  mapfile -t ids < <("$engine" ps -aq --filter "$label")
  ((${#ids[@]} == 0)) || "$engine" rm -f "${ids[@]}" >/dev/null 2>&1
  for kind in volume network; do # Once no container uses them.
    mapfile -t ids < <("$engine" "$kind" ls -q --filter "$label")
    ((${#ids[@]} == 0)) || "$engine" "$kind" rm "${ids[@]}" >/dev/null
  done
  rm -rf "$state"
  exit $status
}
trap cleanup EXIT

# Six ports free on 127.0.0.1 now (held together, so they differ): gRPC
# then metrics, per shard.
read -r -a ports < <(/usr/bin/python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
metrics_ports=("${ports[@]:3}")
ports=("${ports[@]:0:3}")
addresses=()
for k in "${shards[@]}"; do addresses+=("127.0.0.1:${ports[k]}"); done
addrs=$(IFS=,; echo "${addresses[*]}")
export EMBEDDING_IMAGE=$image EMBEDDING_PORT_0=${ports[0]} \
  EMBEDDING_PORT_1=${ports[1]} EMBEDDING_PORT_2=${ports[2]} \
  EMBEDDING_METRICS_PORT_0=${metrics_ports[0]} \
  EMBEDDING_METRICS_PORT_1=${metrics_ports[1]} \
  EMBEDDING_METRICS_PORT_2=${metrics_ports[2]}

container() { # container K: the id of shard K's container (exactly one).
  local ids
  ids=$("$engine" ps -aq --filter "$label" \
    --filter "label=com.docker.compose.service=shard$1")
  [[ $(wc -w <<<"$ids") == 1 ]] || fail "shard $1: containers '${ids//$'\n'/ }'"
  echo "$ids"
}

# wait_healthy K...: each shard's container runs and passes its health
# check. podman runs health checks from systemd timers, which this kind of
# machine lacks: run them here; docker runs them itself.
wait_healthy() {
  local k id status health
  for k in "$@"; do
    id=$(container "$k")
    for attempt in $(seq 120); do
      status=$("$engine" inspect --format '{{.State.Status}}' "$id")
      [[ $status == running ]] ||
        fail "shard $k's container is $status (exit code $("$engine" inspect \
          --format '{{.State.ExitCode}}' "$id"))"
      if [[ $engine == podman ]]; then
        "$engine" healthcheck run "$id" >/dev/null 2>&1 || true
      fi
      health=$("$engine" inspect --format '{{.State.Health.Status}}' "$id")
      [[ $health == healthy ]] && break
      ((attempt < 120)) || fail "shard $k is not healthy after 120 s ($health)"
      sleep 1
    done
  done
}

# check_identity K...: shard K's container publishes 127.0.0.1:PORT_K and
# started with --shard_index=K --shard_count=3 and the checkpoint volume.
check_identity() {
  local k id published logs
  for k in "$@"; do
    id=$(container "$k")
    published=$("$engine" port "$id" 50051/tcp)
    [[ $published == "127.0.0.1:${ports[k]}" ]] ||
      fail "shard $k publishes '$published', expected 127.0.0.1:${ports[k]}"
    logs=$("$engine" logs "$id" 2>&1)
    grep -q "listening on port 50051 (listen address 0.0.0.0:50051, shard $k of 3,.*checkpoints /var/lib/embedding)" \
      <<<"$logs" || fail "shard $k's log lacks its start line: $logs"
  done
}

# check_graceful K...: shard K's server exited 0 after SIGTERM (its final
# checkpoint written), well within the stop timeout, not killed.
check_graceful() {
  local k id code logs
  for k in "$@"; do
    id=$(container "$k")
    code=$("$engine" inspect --format '{{.State.ExitCode}}' "$id")
    [[ $code == 0 ]] || fail "shard $k exited with $code on SIGTERM"
    # Into a variable first: with pipefail, `logs | grep -q` fails when grep
    # quits early and the engine dies of SIGPIPE (a restarted shard's log).
    logs=$("$engine" logs "$id" 2>&1)
    grep -q "stopped" <<<"$logs" || fail "shard $k did not log its graceful stop"
  done
}

# compose ARGS...: the compose command on this project; its chatter (podman
# reports the missing systemd of this kind of machine) goes to a log shown
# when it fails.
compose() {
  "${compose_cmd[@]}" -p "$project" -f docker/compose.yaml "$@" >"$state/compose.log" 2>&1 ||
    fail "compose $* failed: $(cat "$state/compose.log")"
}

compose_up() {
  compose up -d --no-build
  wait_healthy "${shards[@]}"
  check_identity "${shards[@]}"
}

host_cli=$cli
cli=("$cli" --server="$addrs" --timeout=10s)
cli_lookup() { "${cli[@]}" lookup cli_table --indices=0,1,2,3,4,5,6 --shape=7; }

step "cluster up: project $project, ports ${ports[*]}"
compose_up
"${python[@]}" tests/container/drive_cluster.py empty "$addrs"

step "Python client: create, lookup, bags, pushes, checkpoint"
"${python[@]}" tests/container/drive_cluster.py populate "$addrs" "$state"

step "CLI: create, lookup, bag, push, checkpoint"
"${cli[@]}" create-table cli_table --num_embeddings=30 --embedding_dim=4 \
  --optimizer=sgd --lr=0.5 >/dev/null
"${cli[@]}" lookup-bag cli_table --indices=0,1,2,3,4,5 --offsets=0,3 --mode=sum
"${cli[@]}" push cli_table --indices=0,1,2 --grad=1,1,1,1,2,2,2,2,3,3,3,3
"${cli[@]}" checkpoint
cli_lookup | tee "$state/cli_lookup.txt"
for k in "${shards[@]}"; do # Each address alone: the shard it must be.
  described=$("$host_cli" --server="${addresses[k]}" describe cli_table)
  grep -q "^shard: *$k of 3$" <<<"$described" ||
    fail "${addresses[k]} does not describe itself as shard $k of 3"
done

step "metrics: every shard counts the lookups it served"
for k in "${shards[@]}"; do
  "${python[@]}" tests/container/check_metrics.py \
    "http://127.0.0.1:${metrics_ports[k]}/metrics" ||
    fail "shard $k's metrics on 127.0.0.1:${metrics_ports[k]}"
done

step "stop shard 1 under a client in use"
id=$(container 1)
stop=("$engine" stop -t 30 "$id")
"${python[@]}" tests/container/drive_cluster.py shard-down "$addrs" 1 "${stop[@]}"
check_graceful 1
if "${cli[@]}" --max_retries=0 lookup cli_table --indices=0,1 2>"$state/err"; then
  fail "CLI lookup of row 1 succeeded with shard 1 stopped"
fi
grep -q "UNAVAILABLE.*${addresses[1]}" "$state/err" ||
  fail "CLI error does not say UNAVAILABLE naming ${addresses[1]}: $(cat "$state/err")"
echo "CLI: $(cat "$state/err")"
"$engine" start "$id" >/dev/null 2>"$state/start.log" ||
  fail "start failed: $(cat "$state/start.log")"
wait_healthy 1

step "stop all, remove the containers, up again from the volumes"
ids=()
for k in "${shards[@]}"; do
  id=$(container "$k")
  ids+=("$id")
done
"$engine" stop -t 30 "${ids[@]}" >/dev/null 2>"$state/stop.log" ||
  fail "stop failed: $(cat "$state/stop.log")"
check_graceful "${shards[@]}"
compose down
[[ -z $("$engine" ps -aq --filter "$label") ]] || fail "containers left after down"
compose_up
"${python[@]}" tests/container/drive_cluster.py verify "$addrs" "$state"
cli_lookup | diff "$state/cli_lookup.txt" - || fail "CLI table changed over the restart"

step "container test passed"
