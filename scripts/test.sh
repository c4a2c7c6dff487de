#!/usr/bin/env bash
# Installs what is needed, builds, and runs the whole test suite: unit,
# service, end-to-end, PyTorch conformance, Python client, benchmark smoke;
# then the engine tests again under ThreadSanitizer and the engine fuzzer
# under AddressSanitizer and UndefinedBehaviorSanitizer (clang, separate
# builds).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
(cd build && ctest --output-on-failure -j2)

echo "== Engine tests under ThreadSanitizer =="
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DEMBEDDING_TSAN_CORE_ONLY=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread" >/dev/null
cmake --build build-tsan -j"$(nproc)"
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1" ctest --output-on-failure)

echo "== Engine fuzzer (libFuzzer, ASan, UBSan), 30 seconds =="
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DEMBEDDING_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)"
(cd build-fuzz && ctest --output-on-failure)
