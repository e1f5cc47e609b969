#!/usr/bin/env bash
# Runs the whole suite against real Redis, Docker Engine and Caddy, isolated
# from a running Hakobune: its own data directory, Redis database, Celery
# queue and router ports. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST_DATA_DIR="$(mktemp -d /tmp/hakobune-test.XXXXXX)"
trap 'rm -rf "$TEST_DATA_DIR"' EXIT
export HAKOBUNE_DATA_DIR="$TEST_DATA_DIR"
export HAKOBUNE_STACK_CACHE="${HAKOBUNE_STACK_CACHE:-$PWD/var/stacks}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
# A queue of this run's own, so that runs side by side never take each other's tasks.
export CELERY_QUEUE="hakobune-test-$(basename "$TEST_DATA_DIR")"
# Containers of this run carry its own instance label; reconciling never
# touches those of a live Hakobune or of another run.
export HAKOBUNE_INSTANCE="$CELERY_QUEUE"
if [[ "${DATABASE_URL:-}" == postgres* || "${LOGS_DATABASE_URL:-}" == postgres* ]]; then
  run_id="$(basename "$TEST_DATA_DIR" | tr -c 'a-zA-Z0-9\n' '_' | tr 'A-Z' 'a-z')"
  export TEST_DATABASE_NAME="test_hakobune_${run_id#hakobune_test_}"
fi
export ROUTER_ADMIN_URL="http://127.0.0.1:${TEST_ROUTER_ADMIN_PORT:-2999}"
export ROUTER_PORT="${TEST_ROUTER_PORT:-18080}"
export SECRET_KEY="test-only-secret-key"
export BOOT_TIMEOUT="${BOOT_TIMEOUT:-60}"
# The reconciler's test restarts the Docker Engine (set 0 to skip it on a shared host).
export HAKOBUNE_TEST_RESTART_DOCKERD="${HAKOBUNE_TEST_RESTART_DOCKERD:-1}"
# The tests' own git server on loopback, which the SSRF guard must let through
# (and nothing else on loopback).
export TEST_GIT_PORT="${TEST_GIT_PORT:-18418}"
export SOURCE_HTTP_HOSTS="127.0.0.1:$TEST_GIT_PORT"
export SOURCE_ALLOWED_HOSTS="127.0.0.1:$TEST_GIT_PORT"
# The tests' own notification receiver on loopback (tests/integration/test_notifications.py),
# which the guard must let through; a failed sending is tried again after a second.
export TEST_NOTIFY_PORT="${TEST_NOTIFY_PORT:-$((TEST_GIT_PORT + 1000))}"
export NOTIFY_HTTP_HOSTS="127.0.0.1:$TEST_NOTIFY_PORT"
export NOTIFY_ALLOWED_HOSTS="127.0.0.1:$TEST_NOTIFY_PORT"
export NOTIFY_RETRY_SECONDS=1

set +e
.venv/bin/python -m pytest "$@"
status=$?
if [[ -n "${TEST_DATABASE_NAME:-}" ]]; then
  # pytest-django drops its test database, unless a straggling connection held
  # it; then it is dropped here, so runs do not pile databases up.
  .venv/bin/python - "$TEST_DATABASE_NAME" <<'PY' || true
import os
import sys

import dj_database_url
import psycopg

config = dj_database_url.parse(os.environ["DATABASE_URL"])
with psycopg.connect(host=config["HOST"] or "127.0.0.1", port=config["PORT"] or 5432, user=config["USER"] or None,
                     password=config["PASSWORD"] or None, dbname="postgres", autocommit=True) as connection:
    # The platform's test database, and the runtime logs' when they are on PostgreSQL too.
    for name in (sys.argv[1], sys.argv[1] + "_logs"):
        connection.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [name])
        connection.execute(psycopg.sql.SQL("drop database if exists {}").format(psycopg.sql.Identifier(name)))
PY
fi
set -e
if [[ $status -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit $status
