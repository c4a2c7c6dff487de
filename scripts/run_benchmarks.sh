#!/usr/bin/env bash
# Runs the whole performance comparison of issue 5 in one go and writes
# BENCHMARKS.md and docs/benchmark_rows_per_second.png from it.
#
#   scripts/run_benchmarks.sh           # full: 1M x 64 table, 3 repetitions
#   scripts/run_benchmarks.sh --quick   # a minute or so: 100k rows, 1 rep
#
# Installs what it needs (Debian packages, skipped when present), builds
# Release in build/, starts embedding_server, the bare gRPC server and
# redis-server on free loopback ports, runs embedding_bench against each
# (interleaved, so noise hits all alike) and the engine micro-benchmark, and
# stops everything it started. Loads target 127.0.0.1 only, bounded in time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
QUICK=0
if [[ "${1:-}" == "--quick" ]]; then QUICK=1; fi

if ((QUICK)); then
  ROWS=100000 REPS=1 DURATION=1 WARMUP=0.3 BATCHES=(1 64 4096)
  ENGINE_MIN_TIME=0.1
else
  ROWS=1000000 REPS=3 DURATION=3 WARMUP=0.5 BATCHES=(1 16 64 256 1024 4096)
  ENGINE_MIN_TIME=0.5
fi
DIM=64
# Throughput runs: one client thread keeping OUTSTANDING requests in flight,
# spread over CHANNELS gRPC channels (Redis: one connection, pipelined as
# deep). Latency runs: one request in flight.
THREADS=1 CHANNELS=2 OUTSTANDING=4
OPEN_RATE=2000

"$ROOT/scripts/install_deps.sh"
if [[ ! -f "$BUILD/build.ninja" ]]; then
  flock /tmp/embedding-build.lock cmake -S "$ROOT" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
flock /tmp/embedding-build.lock cmake --build "$BUILD" -j2 --target \
  embedding_server bare_server embedding_bench engine_benchmark

WORK=$(mktemp -d /tmp/embedding-bench.XXXXXX)
RESULTS=$WORK/results
mkdir -p "$RESULTS"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_file() {
  for _ in $(seq 100); do
    [[ -s "$1" ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

"$BUILD/server/embedding_server" --listen_address=127.0.0.1:0 \
  --port_file="$WORK/server.port" --log_level=warn >"$WORK/server.log" 2>&1 &
PIDS+=($!)
"$BUILD/tests/bench/bare_server" --listen_address=127.0.0.1:0 \
  --port_file="$WORK/bare.port" >"$WORK/bare.log" 2>&1 &
PIDS+=($!)
REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
  --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_for_file "$WORK/server.port"
wait_for_file "$WORK/bare.port"
for _ in $(seq 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
SERVICE=127.0.0.1:$(cat "$WORK/server.port")
BARE=127.0.0.1:$(cat "$WORK/bare.port")
REDIS=127.0.0.1:$REDIS_PORT

BENCH=$BUILD/tests/bench/embedding_bench
COMMON=(--table_rows="$ROWS" --dim="$DIM" --warmup_s="$WARMUP"
  --duration_s="$DURATION" --threads="$THREADS" --channels="$CHANNELS")
COMMANDS=$WORK/commands.txt
{
  echo "scripts/run_benchmarks.sh${1:+ $1}"
  echo "# servers (ports chosen free at run time):"
  echo "build/server/embedding_server --listen_address=127.0.0.1:0 --port_file=... --log_level=warn"
  echo "build/tests/bench/bare_server --listen_address=127.0.0.1:0 --port_file=..."
  echo "redis-server --bind 127.0.0.1 --port PORT --save '' --appendonly no"
  echo "# each run (ADDRESS = the target's; every lookup run verifies its bytes against the service first):"
} >"$COMMANDS"

# run GROUP TARGET WORKLOAD BATCH REP [extra flags...]
run() {
  local group=$1 target=$2 workload=$3 batch=$4 rep=$5
  shift 5
  local address=$SERVICE
  [[ $target == bare ]] && address=$BARE
  local flags=("${COMMON[@]}" --target="$target" --workload="$workload"
    --batch="$batch" --address="$address" --redis_address="$REDIS" "$@")
  if [[ $workload == lookup && $target != service ]]; then
    flags+=(--verify_address="$SERVICE")
  fi
  local out="$RESULTS/${group}__${target}__${workload}__b${batch}__r${rep}.json"
  if ((rep == 1)) && [[ $batch == "${BATCHES[-1]}" || $group != tput ]]; then
    echo "build/tests/bench/embedding_bench ${flags[*]}" |
      sed -e "s#$SERVICE#SERVICE#g; s#$BARE#BARE#g; s#$REDIS#REDIS#g" \
        >>"$COMMANDS"
  fi
  "$BENCH" "${flags[@]}" --json="$out" 2>>"$WORK/bench.log"
  /usr/bin/python3 - "$out" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["errors"] == 0, r["first_error"]
if r["verified"] is False:
    # Kept in the results: report.py lists it in BENCHMARKS.md.
    print("WARNING: %s returned other bytes than the service" % r["target"])
print("%-8s %-13s %-12s batch %5d: %12.0f rows/s  p50 %8.1f us" % (
    sys.argv[1].split("/")[-1].split("__")[0], r["target"], r["workload"],
    r["batch"], r["rows_per_s"], r["latency_us"]["p50"]))
EOF
}

echo "== Setting up tables (service, bare, Redis: $ROWS x $DIM) =="
for target in service bare redis; do
  "$BENCH" "${COMMON[@]}" --target="$target" --address="$([[ $target == bare ]] && echo "$BARE" || echo "$SERVICE")" \
    --redis_address="$REDIS" --batch=1 --duration_s=0.1 --warmup_s=0 \
    --json=/dev/null 2>>"$WORK/bench.log"
done
for workload in push_sgd push_adagrad; do
  "$BENCH" "${COMMON[@]}" --target=service --address="$SERVICE" \
    --workload="$workload" --batch=1 --duration_s=0.1 --warmup_s=0 \
    --json=/dev/null 2>>"$WORK/bench.log"
done

echo "== Runs: $REPS repetition(s) x batches ${BATCHES[*]} =="
for rep in $(seq "$REPS"); do
  for batch in "${BATCHES[@]}"; do
    for target in service bare redis local; do
      run tput "$target" lookup "$batch" "$rep" --outstanding="$OUTSTANDING"
    done
    for workload in push_sgd push_adagrad bag; do
      run tput service "$workload" "$batch" "$rep" \
        --outstanding="$OUTSTANDING"
    done
  done
  for target in service bare redis; do
    run lat "$target" lookup 64 "$rep" --outstanding=1
  done
  for target in service bare; do
    run open "$target" lookup 64 "$rep" --rate="$OPEN_RATE"
  done
done

echo "== Engine micro-benchmark =="
ENGINE_JSON=$WORK/engine.json
echo "EMBEDDING_BENCH_ROWS=$ROWS build/tests/bench/engine_benchmark --benchmark_min_time=$ENGINE_MIN_TIME --benchmark_repetitions=$REPS --benchmark_format=json" >>"$COMMANDS"
EMBEDDING_BENCH_ROWS=$ROWS "$BUILD/tests/bench/engine_benchmark" \
  --benchmark_min_time="$ENGINE_MIN_TIME" --benchmark_repetitions="$REPS" \
  --benchmark_format=json >"$ENGINE_JSON" 2>>"$WORK/bench.log"

mkdir -p "$ROOT/docs"
/usr/bin/python3 "$ROOT/tests/bench/report.py" \
  --results "$RESULTS" --engine "$ENGINE_JSON" --commands "$COMMANDS" \
  --notes "$ROOT/tests/bench/benchmarks_notes.md" \
  --markdown "$ROOT/BENCHMARKS.md" \
  --plot "$ROOT/docs/benchmark_rows_per_second.png" \
  --config "$ROWS x $DIM float32 table, uniform random ids; $THREADS client thread, $CHANNELS channels, $OUTSTANDING requests in flight; ${DURATION}s per run after ${WARMUP}s warm-up; $REPS repetition(s)$( ((QUICK)) && echo '; --quick')"
echo "Wrote $ROOT/BENCHMARKS.md and $ROOT/docs/benchmark_rows_per_second.png"
