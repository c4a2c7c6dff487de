#!/usr/bin/env bash
# The crash loop's long mode: kill -9 the real embedding_server at random
# moments while it saves checkpoints under lookups and pushes, restart it,
# and check that the restored table is one complete checkpoint, N times
# (default 200). The suite runs the same loop 20 times
# (tests/durability/test_crash_loop.py; tests/durability/crash_loop.py
# says what is checked). Needs a build (scripts/build.sh).
#
#   scripts/crash_loop.sh [N] [--seed S] [--dir CHECKPOINT_DIR]
#
# Prints a line per 10 iterations and a summary: iterations, failures,
# kills that landed inside a save, time. Exits 1 if any iteration failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
iterations=200
if [[ $# -gt 0 && $1 != -* ]]; then
  iterations=$1
  shift
fi
export EMBEDDING_SERVER=${EMBEDDING_SERVER:-$ROOT/build/server/embedding_server}
export PYTHONPATH=$ROOT/build/python:$ROOT/client/python:$ROOT${PYTHONPATH:+:$PYTHONPATH}
cd "$ROOT"
exec /usr/bin/python3 -m tests.durability.crash_loop \
  --iterations "$iterations" "$@"
