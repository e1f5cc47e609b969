#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${HAKOBUNE_DATA_DIR:-$PWD/var}/run"
for name in router portal worker-pipeline worker-builds worker-housekeeping scheduler; do
  pidfile="$RUN/$name.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "  ✓ $name running (pid $(cat "$pidfile"))"
  else
    echo "  ✗ $name not running"
  fi
done
