#!/usr/bin/env bash
# Serves the portal in the foreground, as gunicorn with its ASGI worker
# (hakobune/platform/gunicorn_conf.py). scripts/start.sh runs it in the
# background for `make run`; the tests start it the same way on a port of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR="${HAKOBUNE_DATA_DIR:-$PWD/var}"
mkdir -p "$VAR/log" "$VAR/run"
exec "$PWD/.venv/bin/gunicorn" -c python:hakobune.platform.gunicorn_conf hakobune.platform.asgi \
  --bind "${PORTAL_BIND:-127.0.0.1}:${PORTAL_PORT:-8000}" --access-logfile "$VAR/log/portal-access.log"
