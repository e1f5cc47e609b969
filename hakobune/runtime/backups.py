"""Backups of add-ons on the local runtime: dumping one (pg_dump in its custom
format, or a Redis RDB through `redis-cli --rdb`), restoring a dump into a
scratch container to count what it holds, and restoring it into an add-on.

Every container here is of the add-on's own image and confined as the add-on
is (its database's user, every capability dropped, no-new-privileges, a
read-only root with a tmpfs /tmp, memory, CPU and pids limits). The one that
dumps or restores into the add-on is on the team's network (never the
host's); the scratch one that checks a dump has no network at all. Files go
in and out through a scratch volume of their own (the Docker API's archive
calls), never through a path of this host mounted into a container.

Counts are the check: rows per table for PostgreSQL (taken in the very
snapshot pg_dump dumps, through an exported snapshot), keys for Redis (taken
just before and just after the RDB is made). A dump passes when the scratch
restore finds the same.

This module imports nothing of Django; it takes the local backend and plain values."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ReadTimeout

from .addons import DATA_DIRS, POSTGRES, REDIS, USERS, container_name, volume_name
from .base import RuntimeBackendError

LABEL_BACKUP = "org.hakobune.backup"
LABEL_BACKUP_TEAM = f"{LABEL_BACKUP}.team"
DUMP_FILE = "hakobune-dump"
EXTENSIONS = {POSTGRES: "dump", REDIS: "rdb"}

# Rows per table of the database it runs in, one line each: "count:<schema>.<table>=<rows>".
COUNT_SQL = (
    "SELECT 'count:' || n.nspname || '.' || c.relname || '=' || "
    "(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), "
    "false, true, '')))[1]::text "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1;"
)

PG_BIN = 'bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)\n'

# Dumps the add-on's database (on the team network) in pg_dump's custom format,
# and counts its rows in the same snapshot: one psql session opens a
# repeatable-read transaction, exports its snapshot, runs pg_dump on that
# snapshot, then counts in it. (Its own SQL only: nothing of a user is in it.)
# Compression level 1: most of the size saved at a fraction of the CPU of the
# default 6, so a dump is bounded by the disk rather than by one core
# (bench/RESULTS.md, "backing up and verifying").
PG_DUMP = PG_BIN + r"""set -eu
out="$BACKUP_DIR/hakobune-dump"
cat > /tmp/dump.sql <<EOF
BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SELECT pg_export_snapshot() AS snapshot \gset
\setenv SNAPSHOT :snapshot
\! "$bin/pg_dump" -Fc -Z 1 --snapshot="\$SNAPSHOT" --no-owner --no-privileges -f "$out" && touch /tmp/dumped
$COUNT_SQL
COMMIT;
EOF
"$bin/psql" -X -q -At -v ON_ERROR_STOP=1 -f /tmp/dump.sql > /tmp/counts
if [ ! -f /tmp/dumped ]; then echo "pg_dump did not finish" >&2; exit 3; fi
grep '^count:' /tmp/counts || true
"""

# Restores a dump into a fresh cluster of its own (no network: a Unix socket
# in /tmp) and counts its rows.
PG_CHECK = PG_BIN + r"""set -eu
cluster="$BACKUP_DIR/cluster"
"$bin/initdb" -D "$cluster" -U postgres --auth=trust -E UTF8 > /dev/null
"$bin/pg_ctl" -D "$cluster" -l /tmp/postgres.log -w -t 120 \
    -o "-c listen_addresses='' -k /tmp -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
    start > /dev/null || { tail -n 5 /tmp/postgres.log >&2; exit 4; }
"$bin/createdb" -h /tmp -U postgres restored
"$bin/pg_restore" -h /tmp -U postgres -d restored --no-owner --no-privileges --exit-on-error -j 2 \
    "$BACKUP_DIR/hakobune-dump"
"$bin/psql" -h /tmp -U postgres -d restored -X -q -At -v ON_ERROR_STOP=1 -c "$COUNT_SQL"
"$bin/pg_ctl" -D "$cluster" -m immediate stop > /dev/null
"""

# Restores a dump into the add-on's own database (on the team network), in one
# transaction: what the dump has replaces what the database has of it.
PG_RESTORE = PG_BIN + r"""set -eu
"$bin/pg_restore" --clean --if-exists --no-owner --no-privileges --single-transaction --exit-on-error \
    -d "$PGDATABASE" "$BACKUP_DIR/hakobune-dump"
"$bin/psql" -X -q -At -v ON_ERROR_STOP=1 -c "$COUNT_SQL"
"""

REDIS_KEYS = r"""keys() {
    redis-cli --no-auth-warning "$@" info keyspace | tr -d '\r' \
        | sed -n 's/^db[0-9]*:keys=\([0-9]*\),.*/\1/p' | awk '{ total += $1 } END { print total + 0 }'
}
"""

REDIS_DUMP = REDIS_KEYS + r"""set -eu
before=$(keys -h "$ADDON_HOST" -p 6379)
redis-cli --no-auth-warning -h "$ADDON_HOST" -p 6379 --rdb "$BACKUP_DIR/hakobune-dump" >&2
after=$(keys -h "$ADDON_HOST" -p 6379)
echo "count:keys-before=$before"
echo "count:keys-after=$after"
"""

# Starts a Redis of its own on a Unix socket, loading the RDB in `$1`.
REDIS_SERVE = r"""serve() {
    redis-server --port 0 --unixsocket /tmp/redis.sock --dir "$(dirname "$1")" --dbfilename "$(basename "$1")" \
        --appendonly no --save '' > /tmp/redis.log 2>&1 &
    server=$!
    tries=0
    until [ "$(redis-cli -s /tmp/redis.sock ping 2>/dev/null)" = PONG ]; do
        if ! kill -0 "$server" 2>/dev/null; then
            echo "Redis could not load it: $(grep -v '^$' /tmp/redis.log | tail -n 3 | tr '\n' ' ')" >&2; exit 5
        fi
        tries=$((tries + 1))
        if [ "$tries" -gt 3000 ]; then echo "Redis did not load it within 300 s" >&2; exit 5; fi
        sleep 0.1
    done
}
"""

REDIS_CHECK = REDIS_KEYS + REDIS_SERVE + r"""set -eu
if ! redis-check-rdb "$BACKUP_DIR/hakobune-dump" > /tmp/check.log 2>&1; then
    echo "redis-check-rdb finds it damaged: $(grep -i 'error\|wrong\|unexpected' /tmp/check.log | head -n 2 | tr '\n' ' ')" >&2
    exit 4
fi
serve "$BACKUP_DIR/hakobune-dump"
echo "count:keys=$(keys -s /tmp/redis.sock)"
redis-cli -s /tmp/redis.sock shutdown nosave > /dev/null 2>&1 || true
"""

# Run on the add-on's volume while the add-on is stopped: the RDB is loaded by
# a Redis of its own, which writes it out as the append-only file the add-on
# reads at start. What was there before is put back if anything fails.
REDIS_RESTORE = REDIS_KEYS + REDIS_SERVE + r"""set -eu
cd /data
rm -rf .before-restore
mkdir .before-restore
for name in appendonlydir appendonly.aof dump.rdb; do
    if [ -e "$name" ]; then mv "$name" .before-restore/; fi
done
put_back() {
    if [ "$?" != 0 ]; then
        rm -rf appendonlydir appendonly.aof dump.rdb
        for name in .before-restore/* ; do if [ -e "$name" ]; then mv "$name" .; fi; done
    fi
}
trap put_back EXIT
mv hakobune-dump dump.rdb
serve /data/dump.rdb
redis-cli -s /tmp/redis.sock config set appendonly yes > /dev/null
tries=0
until redis-cli -s /tmp/redis.sock info persistence | tr -d '\r' | grep -q '^aof_rewrite_in_progress:0' \
      && redis-cli -s /tmp/redis.sock info persistence | tr -d '\r' | grep -q '^aof_rewrite_scheduled:0' \
      && [ -d appendonlydir ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 3000 ]; then echo "Redis did not write its append-only file within 300 s" >&2; exit 6; fi
    sleep 0.1
done
if ! redis-cli -s /tmp/redis.sock info persistence | tr -d '\r' | grep -q '^aof_last_bgrewrite_status:ok'; then
    echo "Redis could not write its append-only file: $(tail -n 3 /tmp/redis.log | tr '\n' ' ')" >&2; exit 6
fi
echo "count:keys=$(keys -s /tmp/redis.sock)"
redis-cli -s /tmp/redis.sock shutdown > /dev/null 2>&1 || true
wait "$server" || true
rm -rf dump.rdb .before-restore
"""


@dataclass(frozen=True)
class BackupSource:
    """An add-on, as the containers here reach it."""
    team: str
    name: str
    kind: str
    image: str
    password: str
    database: str = ""
    network: str = ""  # the team network's name


@dataclass(frozen=True)
class Dumped:
    path: Path
    size: int
    sha256: str
    counts: dict[str, int]


class BackupFailed(RuntimeBackendError):
    """A step of a backup or a restore failed; the message says which and why."""


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_counts(output: str) -> dict[str, int]:
    counts = {}
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("count:") and "=" in line:
            name, _, value = line[len("count:"):].rpartition("=")
            try:
                counts[name] = int(value)
            except ValueError:
                continue
    return counts


class _Chunks(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the Docker API's archive stream)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._left = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


class LocalBackups:
    """Dumps, checks and restores of the add-ons of one local backend."""

    def __init__(self, backend, *, memory_mb: int = 512, cpu: float = 1.0, timeout: float = 1800.0):
        self.backend = backend
        self.memory_mb = memory_mb
        self.cpu = cpu
        self.timeout = timeout

    @property
    def client(self):
        return self.backend.client

    # -- the three steps --------------------------------------------------------------

    def dump(self, source: BackupSource, dest: Path) -> Dumped:
        """Dumps the add-on into `dest` (a file of this host) and counts what it held."""
        script = PG_DUMP if source.kind == POSTGRES else REDIS_DUMP
        with self._scratch(source, script, network=source.network, purpose="dump",
                           environment=self._client_environment(source)) as run:
            output = run.wait("dumping it")
            size, digest = run.copy_out(dest)
        counts = parse_counts(output)
        if source.kind == POSTGRES:
            pass  # a database without tables counts nothing, and that is what it held
        elif "keys-before" not in counts or "keys-after" not in counts:
            raise BackupFailed(f"the key count of {source.name} could not be read: {self._last(output)}")
        return Dumped(dest, size, digest, counts)

    def check(self, source: BackupSource, dump: Path) -> dict[str, int]:
        """Restores the dump into a scratch database with no network and counts what it holds."""
        script = PG_CHECK if source.kind == POSTGRES else REDIS_CHECK
        with self._scratch(source, script, network=None, purpose="check") as run:
            run.copy_in(dump)
            run.start()
            output = run.wait("restoring it into a scratch database")
        counts = parse_counts(output)
        if source.kind == REDIS and "keys" not in counts:
            raise BackupFailed(f"the restored copy's keys could not be counted: {self._last(output)}")
        return counts

    def restore(self, source: BackupSource, dump: Path, *, ready_timeout: float = 90.0) -> dict[str, int]:
        """Restores the dump into the add-on itself; returns what it holds after."""
        if source.kind == POSTGRES:
            with self._scratch(source, PG_RESTORE, network=source.network, purpose="restore",
                               environment=self._client_environment(source)) as run:
                run.copy_in(dump)
                run.start()
                return parse_counts(run.wait(f"restoring it into {source.name}"))
        return self._restore_redis(source, dump, ready_timeout=ready_timeout)

    def _restore_redis(self, source: BackupSource, dump: Path, *, ready_timeout: float) -> dict[str, int]:
        from .addons import LocalAddOns

        addons = LocalAddOns(self.backend)
        container = addons._container(source.team, source.name)
        if container is None:
            raise BackupFailed(f"the add-on {source.name} has no container")
        try:
            container.stop(timeout=30)
            with self._scratch(source, REDIS_RESTORE, network=None, purpose="restore",
                               volume=volume_name(source.team, source.name)) as run:
                run.copy_in(dump)
                run.start()
                output = run.wait(f"restoring it into {source.name}")
        finally:
            try:
                container.start()
            except APIError as exc:
                raise BackupFailed(f"the add-on {source.name} could not start again: {exc.explanation or exc}")
            addons.wait_until_ready(container, REDIS, source.password, timeout=ready_timeout)
        counts = parse_counts(output)
        if "keys" not in counts:
            raise BackupFailed(f"the keys of {source.name} could not be counted after the restore: {self._last(output)}")
        return counts

    # -- scratch containers -------------------------------------------------------------

    @staticmethod
    def _client_environment(source: BackupSource) -> dict:
        if source.kind == POSTGRES:
            return {"PGHOST": source.name, "PGPORT": "5432", "PGUSER": "app", "PGPASSWORD": source.password,
                    "PGDATABASE": source.database, "PGCONNECT_TIMEOUT": "10"}
        return {"ADDON_HOST": source.name, "REDISCLI_AUTH": source.password}

    @staticmethod
    def _last(output: str, lines: int = 4) -> str:
        kept = [line for line in output.strip().splitlines() if line.strip()][-lines:]
        return " ".join(kept) or "(no output)"

    def _scratch(self, source: BackupSource, script: str, *, network: str | None, purpose: str,
                 environment: dict | None = None, volume: str | None = None):
        return _Scratch(self, source, script, network=network, purpose=purpose, environment=environment or {},
                        volume=volume)

    def remove_leftovers(self, team: str | None = None, *, older_than: float | None = None) -> int:
        """Removes the scratch containers and volumes of backups (all, or a
        team's; with `older_than`, only those made more than that many seconds
        ago: what a worker that died left, never a step still running)."""
        labels = [f"{LABEL_BACKUP}={self.backend.instance}"]
        if team:
            labels.append(f"{LABEL_BACKUP_TEAM}={team}")

        def old(created: str) -> bool:
            if older_than is None:
                return True
            try:
                made = datetime.fromisoformat(created.replace("Z", "+00:00")[:26] + "+00:00"
                                              if "." in created else created.replace("Z", "+00:00"))
            except ValueError:
                return False
            return (datetime.now(timezone.utc) - made).total_seconds() > older_than

        removed = 0
        for container in self.client.containers.list(all=True, filters={"label": labels}):
            if old(container.attrs.get("Created", "")):
                container.remove(force=True)
                removed += 1
        for volume in self.client.volumes.list(filters={"label": labels}):
            if not old(volume.attrs.get("CreatedAt", "")):
                continue
            try:
                volume.remove(force=True)
                removed += 1
            except (NotFound, APIError):
                pass
        return removed


class _Scratch:
    """One short-lived container (and its scratch volume) for a step; removed on leaving."""

    def __init__(self, owner: LocalBackups, source: BackupSource, script: str, *, network, purpose, environment,
                 volume):
        self.owner, self.source, self.script = owner, source, script
        self.network, self.purpose, self.environment = network, purpose, environment
        self.own_volume = volume is None
        token = secrets.token_hex(4)
        self.volume = volume or f"hakobune-{source.team}-backup-{purpose}-{token}"
        self.name = f"{container_name(source.team, source.name)}-{purpose}-{token}"
        self.container = None
        self.mount = DATA_DIRS[source.kind]

    @property
    def client(self):
        return self.owner.client

    def __enter__(self):
        labels = {LABEL_BACKUP: self.owner.backend.instance, LABEL_BACKUP_TEAM: self.source.team}
        try:
            self.client.images.get(self.source.image)
        except ImageNotFound:
            raise BackupFailed(f"the add-on's image {self.source.image} is not on this host")
        except DockerException as exc:
            raise BackupFailed(f"the Docker Engine failed: {exc}", permanent=False)
        try:
            if self.own_volume:
                self.client.volumes.create(name=self.volume, labels=labels)
            memory = f"{self.owner.memory_mb}m"
            options = {}
            if self.network:
                options["network"] = self.network
            else:
                options["network_mode"] = "none"
            self.container = self.client.containers.create(
                self.source.image,
                command=["/bin/sh", "-c", self.script],
                name=self.name,
                labels=labels,
                environment={**self.environment, "BACKUP_DIR": self.mount, "COUNT_SQL": COUNT_SQL},
                user=USERS[self.source.kind],
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                tmpfs={"/tmp": "rw,nosuid,nodev,size=64m", "/var/run/postgresql": "rw,nosuid,nodev,size=1m"},
                shm_size=128 * 1024 * 1024,
                volumes={self.volume: {"bind": self.mount, "mode": "rw"}},
                mem_limit=memory,
                memswap_limit=memory,
                cpu_period=100_000,
                cpu_quota=max(int(self.owner.cpu * 100_000), 1000),
                pids_limit=self.owner.backend.pids_limit,
                privileged=False,
                **options,
            )
        except APIError as exc:
            self.__exit__(None, None, None)
            raise BackupFailed(f"a container to {self.purpose} it could not be made: {exc.explanation or exc}",
                               permanent=False)
        if self.purpose == "dump":
            self.start()
        return self

    def start(self):
        try:
            self.container.start()
        except APIError as exc:
            raise BackupFailed(f"the container to {self.purpose} it could not start: {exc.explanation or exc}",
                               permanent=False)

    def wait(self, doing: str) -> str:
        """Waits for the script; its standard output, or BackupFailed with its last lines."""
        try:
            result = self.container.wait(timeout=self.owner.timeout)
        except (ReadTimeout, RequestsConnectionError):
            raise BackupFailed(f"{doing} took longer than {self.owner.timeout:g} s and was stopped")
        output = self.container.logs(stdout=True, stderr=False).decode(errors="replace")
        if result.get("StatusCode") != 0:
            errors = self.container.logs(stdout=False, stderr=True).decode(errors="replace")
            raise BackupFailed(f"{doing} failed: {LocalBackups._last(errors or output)}")
        return output

    def copy_out(self, dest: Path) -> tuple[int, str]:
        """The dump, out of the stopped container's volume into `dest`: its size and SHA-256."""
        try:
            chunks, _ = self.container.get_archive(f"{self.mount}/{DUMP_FILE}")
            digest, size = hashlib.sha256(), 0
            with tarfile.open(fileobj=io.BufferedReader(_Chunks(chunks), 1 << 20), mode="r|") as archive:
                member = next(iter(archive), None)
                if member is None or not member.isfile():
                    raise BackupFailed("the dump made no file")
                source = archive.extractfile(member)
                with open(dest, "wb") as handle:
                    os.chmod(dest, 0o600)
                    for chunk in iter(lambda: source.read(1 << 20), b""):
                        handle.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
        except (NotFound, APIError) as exc:
            raise BackupFailed(f"the dump could not be read out of its container: {exc}")
        return size, digest.hexdigest()

    def copy_in(self, dump: Path) -> None:
        """Puts the dump into the (created, not started) container's volume, readable by its user."""
        with tempfile.TemporaryFile(dir=dump.parent) as packed:
            with tarfile.open(fileobj=packed, mode="w") as archive:
                info = archive.gettarinfo(str(dump), arcname=DUMP_FILE)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o644
                with open(dump, "rb") as handle:
                    archive.addfile(info, handle)
            packed.seek(0)
            try:
                if not self.container.put_archive(self.mount, packed):
                    raise BackupFailed("the dump could not be put into its container")
            except APIError as exc:
                raise BackupFailed(f"the dump could not be put into its container: {exc.explanation or exc}")

    def __exit__(self, *exc):
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except (NotFound, APIError):
                pass
        if self.own_volume:
            for attempt in range(5):
                try:
                    self.client.volumes.get(self.volume).remove(force=True)
                    break
                except NotFound:
                    break
                except APIError:  # still in use by the container being removed
                    time.sleep(0.2)
        return False
