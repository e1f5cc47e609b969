#!/usr/bin/env bash
# Starts the router (Caddy), the portal (gunicorn, ASGI: scripts/portal.sh), the workers (one per
# queue purpose) and the scheduler (Celery) in the background, each once: a process whose pid file points at a
# live process is left alone, so running this twice changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -f .env ]]; then set -a; source .env; set +a; fi

VAR="${HAKOBUNE_DATA_DIR:-$PWD/var}"
RUN="$VAR/run"
LOG="$VAR/log"
mkdir -p "$RUN" "$LOG"
BIN="$PWD/.venv/bin"
PORTAL_PORT="${PORTAL_PORT:-8000}"
PORTAL_BIND="${PORTAL_BIND:-127.0.0.1}"
ROUTER_ADMIN_URL="${ROUTER_ADMIN_URL:-http://127.0.0.1:2019}"
ROUTER_ADMIN="${ROUTER_ADMIN_URL#http://}"

running() {
  local pidfile="$RUN/$1.pid"
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() {
  local name="$1"; shift
  if running "$name"; then
    echo "  ✓ $name already running (pid $(cat "$RUN/$name.pid"))"
    return
  fi
  nohup "$@" >>"$LOG/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  echo "  ✓ $name started (pid $!, log $LOG/$name.log)"
}

wait_for() {
  local what="$1" url="$2"
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null --noproxy '*' "$url" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "  ✗ $what did not answer at $url; see $LOG" >&2
  return 1
}

echo "Starting Hakobune"
# Caddy starts from the last config it took (kept by Hakobune in
# $ROUTER_STATE_DIR/last-good.json), so the services answer again before the
# sync below rebuilds it from the database; else from an empty one.
LAST_GOOD="${ROUTER_STATE_DIR:-$VAR/router}/last-good.json"
if ! "$BIN/python" - "$LAST_GOOD" "$ROUTER_ADMIN" >"$RUN/caddy-boot.json" 2>/dev/null <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["admin"] = {"listen": sys.argv[2]}
print(json.dumps(config))
PY
then
  printf '{"admin": {"listen": "%s"}}\n' "$ROUTER_ADMIN" >"$RUN/caddy-boot.json"
fi
start router caddy run --config "$RUN/caddy-boot.json"
wait_for router "$ROUTER_ADMIN_URL/config/"
"$BIN/python" manage.py sync_router

# One worker per purpose (hakobune/platform/queue.py), sized for 2 cores: the
# short pipeline steps never wait behind a build or the housekeeping. The
# builds worker also takes this host's own queue (<prefix>.host.<WORKER_HOST>).
QUEUE="${CELERY_QUEUE:-hakobune}"
start worker-pipeline "$BIN/celery" -A hakobune.platform worker --loglevel INFO -Q "$QUEUE.pipeline" \
  --concurrency "${PIPELINE_CONCURRENCY:-2}" --hostname "hakobune-pipeline@%h"
start worker-builds "$BIN/celery" -A hakobune.platform worker --loglevel INFO -Q "$QUEUE.builds" \
  --concurrency "${BUILD_CONCURRENCY:-2}" --hostname "hakobune-builds@%h"
start worker-housekeeping "$BIN/celery" -A hakobune.platform worker --loglevel INFO -Q "$QUEUE.housekeeping" \
  --concurrency "${HOUSEKEEPING_CONCURRENCY:-1}" --hostname "hakobune-housekeeping@%h"
# The log collector follows what every service prints as it prints it, and reads
# the router's access log into request metrics (docs/architecture.md, "Runtime logs").
start collector "$BIN/python" manage.py collect_logs
start scheduler "$BIN/celery" -A hakobune.platform beat --loglevel INFO --schedule "$RUN/celerybeat-schedule"
export PORTAL_BIND PORTAL_PORT
start portal bash scripts/portal.sh
wait_for portal "http://127.0.0.1:$PORTAL_PORT/login/"

echo
echo "Hakobune is running: http://localhost:$PORTAL_PORT/"
"$BIN/python" manage.py create_first_admin
echo "  services:  http://<service>.<team>.${BASE_DOMAIN:-localhost}:${ROUTER_PORT:-8080}/"
echo "  stop with: make stop"
