#!/usr/bin/env bash
# Runs a command with the settings of .env (if there is one) exported.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -f .env ]]; then
  set -a
  # shellcheck disable=SC1091
  source .env
  set +a
fi
exec "$@"
