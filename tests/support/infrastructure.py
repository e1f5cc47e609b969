"""Real parts for integration tests: a Caddy router of the tests' own (ports
from ROUTER_ADMIN_URL and ROUTER_PORT), Celery worker processes (one per
queue purpose) consuming from real Redis and sharing the test database, the portal served as `make run`
serves it (on a port of its own, on the test database), and a clean-up of
every container and network the tests' teams made."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest
import requests
from django.conf import settings

from hakobune.runtime.addons import LABEL_ADDON_TEAM
from hakobune.runtime.docker_local import LABEL_TEAM, team_network_name
from tests.support.ports import free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


class CaddyProcess:
    """The tests' Caddy, which a fault test may kill and start again (from
    the empty boot config, or from another, such as the last good one)."""

    def __init__(self, boot: Path):
        self.boot = boot
        self.process = None

    def start(self, config: Path | None = None) -> None:
        home = self.boot.parent
        self.process = subprocess.Popen(
            ["caddy", "run", "--config", str(config or self.boot)],
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("CADDY_DEBUG_LOG", os.devnull), "ab"),
            env={**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)},
        )
        session = requests.Session()
        session.trust_env = False
        _wait_for(lambda: session.get(f"{settings.ROUTER_ADMIN_URL}/config/", timeout=1).ok, 15, "caddy")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def caddy(tmp_path_factory) -> CaddyProcess:
    """A Caddy of the tests' own, on the ports the settings name; its log goes
    to $CADDY_DEBUG_LOG when set (to see what it did to a failed request)."""
    if shutil.which("caddy") is None:
        pytest.fail("caddy is not installed; run `make test`, which installs it")
    admin = urlsplit(settings.ROUTER_ADMIN_URL).netloc
    config = tmp_path_factory.mktemp("caddy") / "boot.json"
    config.write_text(json.dumps({"admin": {"listen": admin}}))
    process = CaddyProcess(config)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def router(caddy):
    """The tests' Caddy (see `caddy`): its admin URL."""
    return settings.ROUTER_ADMIN_URL


def _stop(process, log, show_variable: str) -> None:
    """Ends a process the tests started; its log is printed when asked."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    if os.environ.get(show_variable):
        print(log.read_text())


def database_url(alias: str = "default") -> str:
    from django.db import connections

    config = connections[alias].settings_dict
    if config["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{config['NAME']}"
    user = config.get("USER") or ""
    password = f":{config['PASSWORD']}" if config.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{config.get('HOST') or '127.0.0.1'}:{config.get('PORT') or 5432}/{config['NAME']}"


# The workers as `make run` starts them: one per queue purpose, so a busy
# housekeeping worker or a long build holds up no pipeline step here either.
WORKER_PURPOSES = (("pipeline", 2), ("builds", 2), ("housekeeping", 1))


def start_worker(log: Path, queues: list[str], *, concurrency: int, env: dict | None = None,
                 wait: bool = True, include: str | None = None) -> subprocess.Popen:
    """A real Celery worker process on real Redis, using the test database,
    consuming `queues` (with their prefix, CELERY_QUEUE); waits until it is
    ready (see wait_until_ready)."""
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONPATH": str(PROJECT_DIR), **(env or {})}
    prefix = env.get("CELERY_QUEUE", settings.CELERY_TASK_DEFAULT_QUEUE)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "hakobune.platform", "worker", "--loglevel", "INFO",
         "-Q", ",".join(f"{prefix}.{queue}" for queue in queues),
         "--concurrency", str(concurrency), "--hostname", f"test-{queues[0]}-{secrets.token_hex(3)}@%h",
         *(["--include", include] if include else [])],
        cwd=PROJECT_DIR,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    if wait:
        wait_until_ready(process, log)
    return process


def wait_until_ready(process: subprocess.Popen, log: Path) -> None:
    try:
        _wait_for(lambda: b"ready." in log.read_bytes(), 60, "the celery worker")
    except RuntimeError:
        _stop(process, log, "SHOW_WORKER_LOG")
        raise


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker, router, tmp_path_factory):
    """Real Celery workers, one per queue purpose; yields {purpose: process}."""
    folder = tmp_path_factory.mktemp("worker")
    processes = {}
    try:
        for purpose, concurrency in WORKER_PURPOSES:
            processes[purpose] = start_worker(folder / f"worker-{purpose}.log", [purpose], concurrency=concurrency,
                                              wait=False)
        for purpose, process in processes.items():
            wait_until_ready(process, folder / f"worker-{purpose}.log")
        yield processes
    finally:
        for purpose, process in processes.items():
            _stop(process, folder / f"worker-{purpose}.log", "SHOW_WORKER_LOG")


@pytest.fixture(scope="session")
def drain_port():
    """The loopback port of the tests' log drain receiver, the one address
    the log collector's drains may reach there (LOG_DRAIN_ALLOWED_HOSTS)."""
    return free_port()


@pytest.fixture(scope="session")
def log_collector(django_db_setup, django_db_blocker, tmp_path_factory, drain_port):
    """The log collector as scripts/start.sh starts it (`manage.py
    collect_logs`), on the test databases, reading request metrics every 5 s
    and shipping log drains every 0.2 s; yields its log's path."""
    log = tmp_path_factory.mktemp("collector") / "collector.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "LOGS_DATABASE_URL": database_url("logs"),
           "PYTHONPATH": str(PROJECT_DIR), "METRICS_SECONDS": "5",
           "LOG_DRAIN_ALLOWED_HOSTS": f"127.0.0.1:{drain_port}", "LOG_DRAIN_POLL_SECONDS": "0.2"}
    process = subprocess.Popen([sys.executable, "manage.py", "collect_logs"], cwd=PROJECT_DIR, env=env,
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: b"collecting runtime logs" in log.read_bytes(), 60, "the log collector")
    except RuntimeError:
        _stop(process, log, "SHOW_COLLECTOR_LOG")
        raise
    yield log
    _stop(process, log, "SHOW_COLLECTOR_LOG")


@dataclass
class Portal:
    url: str
    address: str  # host:port, what the router dials
    log: Path


@pytest.fixture(scope="session")
def portal(django_db_setup, django_db_blocker, tmp_path_factory):
    """The portal served the way `make run` serves it (scripts/portal.sh), on a
    free loopback port, on the test database and the tests' settings."""
    port = free_port()
    log = tmp_path_factory.mktemp("portal") / "portal.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONPATH": str(PROJECT_DIR),
           "PORTAL_BIND": "127.0.0.1", "PORTAL_PORT": str(port)}
    process = subprocess.Popen(
        ["bash", str(PROJECT_DIR / "scripts" / "portal.sh")],
        cwd=PROJECT_DIR, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    session = requests.Session()
    session.trust_env = False
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: session.get(f"{url}/login/", timeout=2).status_code == 200, 60, "the portal")
    except RuntimeError:
        process.terminate()
        raise RuntimeError(f"the portal did not come up; its log:\n{log.read_text()}")
    yield Portal(url, f"127.0.0.1:{port}", log)
    _stop(process, log, "SHOW_PORTAL_LOG")


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env()
    yield client
    # The team networks are gone; so go their isolation rules (runtime/firewall.py).
    from hakobune.runtime.firewall import FirewallError, prune_removed_networks

    try:
        prune_removed_networks(client)
    except FirewallError:
        pass


@pytest.fixture
def team_name(docker_client):
    """A team name of this test only; its containers and network go afterwards."""
    name = f"it{secrets.token_hex(3)}"
    yield name
    remove_team_containers_and_network(docker_client, name)
    # Untag the team's images; their layers stay as build cache for the next run.
    for image in docker_client.images.list(name=f"hakobune/{name}/*"):
        for tag in (tag for tag in image.tags if tag.startswith(f"hakobune/{name}/")):
            try:
                docker_client.images.remove(tag, noprune=True)
            except docker.errors.APIError:
                pass  # still used by an instance the worker is starting as the test ends


def get_through_router(hostname: str, path: str = "/", timeout: float = 5) -> requests.Response:
    """GETs a service's URL through the tests' Caddy, as a browser resolving
    *.localhost to 127.0.0.1 would."""
    session = requests.Session()
    session.trust_env = False
    return session.get(
        f"http://127.0.0.1:{settings.ROUTER_PORT}{path}", headers={"Host": f"{hostname}:{settings.ROUTER_PORT}"},
        timeout=timeout, allow_redirects=False,  # a redirect is an answer to look at, not to follow
    )


def wait_for_build(build, timeout=300):
    """Waits until the build has finished; returns it, refreshed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        build.refresh_from_db()
        if not build.in_progress:
            return build
        time.sleep(0.25)
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    raise AssertionError(f"build still {build.status} after {timeout} s; log:\n{log}")


def remove_team_containers(docker_client, team_name: str) -> None:
    """Every container of the team, gone; one the worker removes in between
    (a drain, a prune) is not an error, and one it is removing is waited for."""
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_TEAM}={team_name}"}):
        _remove_container(docker_client, container)


def _remove_container(docker_client, container) -> None:
    """Removes it, or waits for the removal the worker began (the instances
    of a replaced release retire as a test ends): its network goes next."""
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise

        def gone():
            try:
                docker_client.containers.get(container.id)
            except docker.errors.NotFound:
                return True
            return False

        _wait_for(gone, 60, f"the removal of {container.name}")


def remove_team_addons(docker_client, team_name: str) -> None:
    """The team's add-on containers and their data volumes (labelled apart
    from its instances: runtime/addons.py)."""
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_ADDON_TEAM}={team_name}"}):
        _remove_container(docker_client, container)
    for volume in docker_client.volumes.list(filters={"label": f"{LABEL_ADDON_TEAM}={team_name}"}):
        try:
            volume.remove(force=True)
        except docker.errors.NotFound:
            pass


def remove_team_containers_and_network(docker_client, team_name: str) -> None:
    """A test's clean-up: every container of the team (its add-ons and
    their volumes too), then its network and its volumes."""
    remove_team_containers(docker_client, team_name)
    remove_team_addons(docker_client, team_name)
    for network in docker_client.networks.list(names=[team_network_name(team_name)]):
        network.remove()
    for volume in docker_client.volumes.list(filters={"label": f"org.hakobune.volume.team={team_name}"}):
        volume.remove(force=True)
