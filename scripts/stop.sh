#!/usr/bin/env bash
# Stops exactly the processes scripts/start.sh started, by their pid files.
# Deployed apps keep running in Docker and come back with the router on the
# next `make run`; Docker Engine and Redis are left running.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -f .env ]]; then set -a; source .env; set +a; fi
RUN="${HAKOBUNE_DATA_DIR:-$PWD/var}/run"

for name in portal scheduler collector worker-pipeline worker-builds worker-housekeeping worker router; do
  pidfile="$RUN/$name.pid"
  if [[ ! -f "$pidfile" ]]; then continue; fi
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "  ✓ $name stopped (pid $pid)"
  fi
  rm -f "$pidfile"
done
