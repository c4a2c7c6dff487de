#!/usr/bin/env bash
# Installs the Debian bookworm packages a task needs. Idempotent: installs
# only what is missing.
#
#   scripts/install_deps.sh run      build and run the server and the CLI
#   scripts/install_deps.sh python   + the Python client and its torch modules
#   scripts/install_deps.sh test     + everything the test suite and the
#                                    benchmarks use (the default)
set -euo pipefail

run=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libxxhash-dev prometheus-cpp-dev
)
python=(
  python3 python3-grpcio python3-protobuf python3-numpy python3-torch
)
test=(
  git libgtest-dev libgmock-dev libbenchmark-dev
  python3-pytest python3-setuptools python3-pip python3-venv
  clang-14 libclang-rt-14-dev
  redis-server libhiredis-dev python3-matplotlib python3-yaml openssl
  prometheus # its promtool checks the /metrics page in tests/security
)

case "${1:-test}" in
  run) packages=("${run[@]}") ;;
  python) packages=("${run[@]}" "${python[@]}") ;;
  test) packages=("${run[@]}" "${python[@]}" "${test[@]}") ;;
  *)
    echo "usage: $0 [run|python|test]" >&2
    exit 2
    ;;
esac

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "Installing: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
