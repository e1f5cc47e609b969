"""PostgreSQL connections come from a pool per process (settings.py,
DB_POOL_*): a request borrows one and gives it back, instead of opening one
(bench/portal_load.py: p95 310 ms on PostgreSQL without it). The settings are
read once per process, so each case reads them in a process of its own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def database_settings(tmp_path, alias="default", **env) -> dict:
    """A database's settings as a process with `env` reads them."""
    code = (
        "import json, django\n"
        "from django.conf import settings\n"
        f"db = settings.DATABASES[{alias!r}]\n"
        "print(json.dumps({'engine': db['ENGINE'], 'options': db.get('OPTIONS', {}), 'age': db['CONN_MAX_AGE']}))\n"
    )
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DB_", "LOGS_DB_")) and k not in ("DATABASE_URL", "LOGS_DATABASE_URL")}
    answer = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True,
        env={**clean, "DJANGO_SETTINGS_MODULE": "hakobune.platform.settings", "HAKOBUNE_DATA_DIR": str(tmp_path),
             **env},
    )
    if answer.returncode:
        return {"error": answer.stderr.strip().splitlines()[-1]}
    return json.loads(answer.stdout.strip().splitlines()[-1])


def test_postgresql_gets_a_pool_sized_for_a_portal_process(tmp_path):
    db = database_settings(tmp_path, DATABASE_URL=POSTGRES)
    assert db["options"]["pool"] == {"min_size": 1, "max_size": 20, "timeout": 30}
    assert db["age"] == 0  # the pool hands connections out; none is kept per thread


def test_the_pool_is_sized_by_the_operator_or_turned_off(tmp_path):
    sized = database_settings(tmp_path, DATABASE_URL=POSTGRES, DB_POOL_MAX_SIZE="20", DB_POOL_MIN_SIZE="4",
                              DB_POOL_TIMEOUT="3")
    assert sized["options"]["pool"] == {"min_size": 4, "max_size": 20, "timeout": 3}
    off = database_settings(tmp_path, DATABASE_URL=POSTGRES, DB_POOL_MAX_SIZE="0")
    assert "pool" not in off["options"]


def test_connections_kept_per_thread_and_the_pool_exclude_each_other(tmp_path):
    refused = database_settings(tmp_path, DATABASE_URL=POSTGRES, DB_CONN_MAX_AGE="60")
    assert "DB_POOL_MAX_SIZE=0" in refused["error"]
    kept = database_settings(tmp_path, DATABASE_URL=POSTGRES, DB_CONN_MAX_AGE="60", DB_POOL_MAX_SIZE="0")
    assert kept["age"] == 60 and "pool" not in kept["options"]


def test_the_log_database_on_postgresql_has_a_smaller_pool_of_its_own(tmp_path):
    logs = database_settings(tmp_path, "logs", LOGS_DATABASE_URL=POSTGRES)
    assert logs["options"]["pool"] == {"min_size": 1, "max_size": 10, "timeout": 30} and logs["age"] == 0
    sized = database_settings(tmp_path, "logs", LOGS_DATABASE_URL=POSTGRES, LOGS_DB_POOL_MAX_SIZE="4")
    assert sized["options"]["pool"]["max_size"] == 4
    off = database_settings(tmp_path, "logs", LOGS_DATABASE_URL=POSTGRES, LOGS_DB_POOL_MAX_SIZE="0")
    assert "pool" not in off["options"]
    # Connections kept per thread (DB_CONN_MAX_AGE, the platform's pool off): the log database's too.
    kept = database_settings(tmp_path, "logs", DATABASE_URL=POSTGRES, LOGS_DATABASE_URL=POSTGRES,
                             DB_CONN_MAX_AGE="60", DB_POOL_MAX_SIZE="0")
    assert kept["age"] == 60 and "pool" not in kept["options"]
    assert "pool" not in database_settings(tmp_path, "logs")["options"]  # SQLite


def test_sqlite_has_no_pool(tmp_path):
    db = database_settings(tmp_path)
    assert db["engine"] == "django.db.backends.sqlite3" and "pool" not in db["options"]


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="PostgreSQL runs")
@pytest.mark.django_db(transaction=True)
def test_requests_borrow_their_connection_from_the_pool_and_give_it_back(client, owner, login):
    from django.db import close_old_connections, connection

    login(owner)
    close_old_connections()  # the login's connection goes back first
    connection.pool.pop_stats()  # counted from here: the pool lives as long as the test process
    for _ in range(5):
        assert client.get("/").status_code == 200
        # What the server's handler does at the end of each request (Django's
        # test client leaves it out).
        close_old_connections()
    stats = connection.pool.pop_stats()
    # Each page borrowed a connection, and they were the same one or two, opened once.
    assert stats.get("requests_num", 0) >= 5 and stats.get("connections_num", 0) <= 2
