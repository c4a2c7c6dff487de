#!/usr/bin/env bash
# Configures and builds the project (Release) into build/.
#
#   scripts/build.sh            everything, tests and benchmark tools included
#   scripts/build.sh --server   only embedding_server, embedding_cli and the
#                               Python stubs
set -euo pipefail
cd "$(dirname "$0")/.."
tests=ON
targets=()
if [[ "${1:-}" == "--server" ]]; then
  tests=OFF
  targets=(--target embedding_server embedding_cli embedding_python_stubs)
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DEMBEDDING_BUILD_TESTS="$tests" >/dev/null
cmake --build build -j"$(nproc)" "${targets[@]}"
