"""Add-ons on the local runtime: a PostgreSQL or Redis container of one team,
on that team's network only (no published port, no route), reached by the
team's services at ``<name>:5432`` / ``<name>:6379``, its data in a named
volume ``hakobune-<team>-addon-<name>`` that outlives the container.

The container runs as the database's own unprivileged user (postgres, redis)
from the first instruction, so it needs no capability at all: the data
directory of a fresh volume already belongs to that user (Docker copies the
image directory's owner into an empty volume), so nothing has to chown or
switch users. It is confined like an instance: every capability dropped,
no-new-privileges, a read-only root with a tmpfs /tmp, pids/memory/CPU limits.

This module imports nothing of Django; it takes the local backend and plain values."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig

from .base import RuntimeBackendError

POSTGRES, REDIS = "postgres", "redis"
PORTS = {POSTGRES: 5432, REDIS: 6379}
DATA_DIRS = {POSTGRES: "/var/lib/postgresql/data", REDIS: "/data"}
# The unprivileged user each image has for its database (Debian's packages and
# the official images alike).
USERS = {POSTGRES: "postgres", REDIS: "redis"}
LABEL_ADDON = "org.hakobune.addon"
LABEL_ADDON_TEAM = f"{LABEL_ADDON}.team"
LABEL_ADDON_KIND = f"{LABEL_ADDON}.kind"
# Redis reads its password from a file on the tmpfs, never from its command line
# (which every process of the container could read in /proc).
REDIS_COMMAND = (
    'umask 077 && printf "requirepass %s\\n" "$REDIS_PASSWORD" > /tmp/redis.conf && unset REDIS_PASSWORD && '
    "exec redis-server /tmp/redis.conf --dir /data --appendonly yes --bind 0.0.0.0 --port 6379"
)


def container_name(team: str, name: str) -> str:
    return f"hakobune-{team}-addon-{name}"


def volume_name(team: str, name: str) -> str:
    return f"hakobune-{team}-addon-{name}"


@dataclass(frozen=True)
class AddOnSpec:
    team: str
    name: str
    kind: str
    image: str
    password: str
    database: str = ""
    memory_mb: int = 256
    cpu: float = 0.5
    network_subnet: str = ""
    egress_allow: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class AddOnState:
    container_id: str
    running: bool
    address: str  # on the team network


class LocalAddOns:
    """The add-on containers of one local backend (hakobune/runtime/docker_local.py)."""

    def __init__(self, backend):
        self.backend = backend

    @property
    def client(self):
        return self.backend.client

    def provision(self, spec: AddOnSpec, *, ready_timeout: float = 60.0) -> AddOnState:
        """Starts the add-on's container (made if missing, its volume too) and
        waits until the database answers inside it."""
        try:
            self.client.images.get(spec.image)
        except ImageNotFound:
            raise RuntimeBackendError(
                f"the image {spec.image} is not on this host; run `python manage.py stack ensure {spec.kind}`")
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        network = self.backend._ensure_team_network(spec.team, allow=spec.egress_allow, subnet=spec.network_subnet)
        name = container_name(spec.team, spec.name)
        try:
            container = self._container(spec.team, spec.name)
            if container is None:
                container = self._create(spec, name, network)
            if container.status != "running":
                container.start()
        except APIError as exc:
            raise RuntimeBackendError(f"the add-on container {name} could not start: {exc.explanation or exc}",
                                      permanent=False)
        self.wait_until_ready(container, spec.kind, spec.password, timeout=ready_timeout)
        return self.state(spec.team, spec.name)

    def _create(self, spec: AddOnSpec, name: str, network):
        self._volume(spec.team, spec.name)
        environment, command = {}, None
        if spec.kind == POSTGRES:
            environment = {
                "POSTGRES_USER": "app", "POSTGRES_PASSWORD": spec.password, "POSTGRES_DB": spec.database,
                "PGDATA": DATA_DIRS[POSTGRES],
            }
            tmpfs = {"/tmp": "rw,nosuid,nodev,size=64m", "/var/run/postgresql": "rw,nosuid,nodev,size=1m,mode=1777"}
        else:
            environment = {"REDIS_PASSWORD": spec.password}
            command = ["/bin/sh", "-c", REDIS_COMMAND]
            tmpfs = {"/tmp": "rw,nosuid,nodev,size=16m"}
        memory = f"{spec.memory_mb}m"
        return self.client.containers.create(
            spec.image,
            command=command,
            name=name,
            hostname=spec.name,
            labels={LABEL_ADDON: self.backend.instance, LABEL_ADDON_TEAM: spec.team, LABEL_ADDON_KIND: spec.kind,
                    f"{LABEL_ADDON}.name": spec.name},
            environment=environment,
            user=USERS[spec.kind],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs=tmpfs,
            # PostgreSQL's shared memory lives in /dev/shm.
            shm_size=64 * 1024 * 1024,
            volumes={volume_name(spec.team, spec.name): {"bind": DATA_DIRS[spec.kind], "mode": "rw"}},
            mem_limit=memory,
            memswap_limit=memory,
            cpu_period=100_000,
            cpu_quota=max(int(spec.cpu * 100_000), 1000),
            pids_limit=self.backend.pids_limit,
            log_config=LogConfig(type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "3"}),
            # On the team network only, under the add-on's name; no published port.
            network=network.name,
            networking_config={network.name: self.client.api.create_endpoint_config(aliases=[spec.name])},
            restart_policy={"Name": "unless-stopped"},
            privileged=False,
            stop_signal="SIGINT" if spec.kind == POSTGRES else "SIGTERM",
        )

    def _volume(self, team: str, name: str):
        volume = volume_name(team, name)
        try:
            return self.client.volumes.get(volume)
        except NotFound:
            return self.client.volumes.create(
                name=volume, labels={LABEL_ADDON: self.backend.instance, LABEL_ADDON_TEAM: team})

    def _container(self, team: str, name: str):
        try:
            return self.client.containers.get(container_name(team, name))
        except NotFound:
            return None

    def wait_until_ready(self, container, kind: str, password: str, *, timeout: float) -> None:
        """Until the database answers inside its container (pg_isready, redis-cli
        ping), or RuntimeBackendError with the end of its log."""
        if kind == POSTGRES:
            probe = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432", "-U", "app"]
            environment = {}
        else:
            probe = ["redis-cli", "--no-auth-warning", "-p", "6379", "ping"]
            environment = {"REDISCLI_AUTH": password}
        deadline = time.monotonic() + timeout
        while True:
            container.reload()
            if container.status in ("exited", "dead"):
                raise RuntimeBackendError(f"the add-on stopped while starting: {self._tail(container)}",
                                          permanent=False)
            try:
                code, output = container.exec_run(probe, environment=environment, user=USERS[kind])
            except APIError:
                code, output = 1, b""
            if code == 0 and (kind == POSTGRES or output.strip() == b"PONG"):
                return
            if time.monotonic() > deadline:
                raise RuntimeBackendError(
                    f"the add-on did not answer within {timeout:g}s: {self._tail(container)}", permanent=False)
            time.sleep(0.2)

    @staticmethod
    def _tail(container, lines: int = 8) -> str:
        try:
            return container.logs(tail=lines).decode(errors="replace").strip() or "(no output)"
        except DockerException:
            return "(no output)"

    def state(self, team: str, name: str) -> AddOnState | None:
        container = self._container(team, name)
        if container is None:
            return None
        networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        address = next((net.get("IPAddress") or "" for net in networks.values()), "")
        return AddOnState(container.id, container.status == "running", address)

    def observe(self) -> dict[tuple[str, str], str]:
        """Every add-on container of this platform, in one listing: (team,
        name) -> its status ("running", "exited", "restarting"…)."""
        try:
            containers = self.client.containers.list(
                all=True, sparse=True, filters={"label": f"{LABEL_ADDON}={self.backend.instance}"})
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        found = {}
        for container in containers:
            labels = container.attrs.get("Labels") or {}
            team, name = labels.get(LABEL_ADDON_TEAM), labels.get(f"{LABEL_ADDON}.name")
            if team and name:
                found[(team, name)] = container.attrs.get("State") or ""
        return found

    def repair(self, spec: AddOnSpec, status: str | None) -> str:
        """Brings back an add-on whose container is not running: started again
        when stopped (killed, or stopped by hand: the engine's restart policy
        leaves those alone), made again on its volume when gone. `status` is
        what `observe` saw (None: no container). Returns what it did ("started",
        "recreated") or "" when there was nothing to do; it does not wait until
        the database answers."""
        if status in ("running", "restarting"):
            return ""
        try:
            container = self._container(spec.team, spec.name) if status is not None else None
            if container is None:
                self.client.images.get(spec.image)
                network = self.backend._ensure_team_network(spec.team, allow=spec.egress_allow,
                                                            subnet=spec.network_subnet)
                container = self._create(spec, container_name(spec.team, spec.name), network)
                done = "recreated"
            else:
                container.reload()
                if container.status in ("running", "restarting"):
                    return ""
                done = "started"
            if container.status == "paused":
                container.unpause()
            else:
                container.start()
        except ImageNotFound:
            raise RuntimeBackendError(
                f"the image {spec.image} is not on this host; run `python manage.py stack ensure {spec.kind}`")
        except DockerException as exc:
            raise RuntimeBackendError(
                f"the add-on container {container_name(spec.team, spec.name)} could not start: "
                f"{getattr(exc, 'explanation', None) or exc}", permanent=False)
        return done

    def restart(self, team: str, name: str, kind: str, password: str, *, timeout: float = 60.0) -> None:
        container = self._container(team, name)
        if container is None:
            raise RuntimeBackendError(f"the add-on {name} has no container")
        container.restart(timeout=30)
        self.wait_until_ready(container, kind, password, timeout=timeout)

    def start(self, team: str, name: str, kind: str, password: str, *, timeout: float = 60.0) -> None:
        """Starts a stopped add-on (its team's network was made again) and
        waits until it answers."""
        container = self._container(team, name)
        if container is None:
            raise RuntimeBackendError(f"the add-on {name} has no container")
        if container.status != "running":
            try:
                container.start()
            except APIError as exc:
                raise RuntimeBackendError(f"the add-on container {container.name} could not start: "
                                          f"{exc.explanation or exc}", permanent=False)
        self.wait_until_ready(container, kind, password, timeout=timeout)

    def remove(self, team: str, name: str, *, delete_volume: bool) -> list[str]:
        """Removes the container; the volume too only when `delete_volume`."""
        done = []
        container = self._container(team, name)
        if container is not None:
            container.remove(force=True)
            done.append(f"removed the container {container_name(team, name)}")
        if delete_volume:
            try:
                self.client.volumes.get(volume_name(team, name)).remove(force=True)
                done.append(f"removed the volume {volume_name(team, name)}")
            except NotFound:
                pass
        return done

