#!/usr/bin/env bash
# Installs what the server needs, builds it (and the CLI), and runs it in the
# foreground. Extra arguments go to embedding_server (see
# build/server/embedding_server --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh run
scripts/build.sh --server
exec build/server/embedding_server "$@"
