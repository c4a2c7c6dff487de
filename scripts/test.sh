#!/usr/bin/env bash
# Installs what is needed, builds, and runs the whole test suite:
# 1. the release build (GCC): unit, service, client, end-to-end, PyTorch
#    conformance, Python client, contract, durability, robustness (hostile
#    load on the real server) and benchmark smoke tests;
# 2. the engine tests again under ThreadSanitizer (clang, engine only);
# 3. one clang build of the whole tree with AddressSanitizer,
#    UndefinedBehaviorSanitizer and -Wthread-safety -Werror: the C++ tests
#    again, the end-to-end and robustness suites against this build's own
#    server and CLI, and the fuzzers for 30 seconds each. ASan and UBSan
#    halt on the first report, in the tests and in every server they start
#    (tests/CMakeLists.txt sets the same options for the Python suites).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh test
jobs=$(nproc)

echo "== Release build and the whole suite =="
scripts/build.sh
(cd build && ctest --output-on-failure -j"$jobs")

echo "== Engine tests under ThreadSanitizer =="
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DEMBEDDING_TSAN_CORE_ONLY=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread" >/dev/null
cmake --build build-tsan -j"$jobs"
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1" ctest --output-on-failure)

echo "== Clang: ASan + UBSan + -Wthread-safety: C++ tests, e2e and robustness suites, fuzzers =="
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DEMBEDDING_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan &&
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    ctest --output-on-failure -j"$jobs")
