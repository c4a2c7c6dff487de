#!/usr/bin/env bash
# Installs what is needed, builds, and runs the server in the foreground.
# Extra arguments go to embedding_server (see build/server/embedding_server --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
exec build/server/embedding_server "$@"
