"""A small Hakobune of each fault test's own, whose parts the test may kill:
a Redis (no disk, like the platform's), a Caddy, a Celery worker and the
scheduler, all on free loopback ports, sharing the test database, data
folder and Docker Engine with the rest of the suite. The test process sends
its tasks to that Redis, so a live platform or another run on this host
keeps its own queue.

Each process runs in a session of its own, so that killing it (kill -9 of
the process group) takes its children too, as a crash or a reboot would."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from celery import Celery
from django.contrib.auth import get_user_model

from hakobune.platform import queue
from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds.models import Build
from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import archive_of
from tests.faults.checks import wait_until
from tests.support.infrastructure import PROJECT_DIR, database_url
from tests.support.ports import free_port

# Each fault test is bounded: it fails rather than waits past this.
FAULT_TEST_SECONDS = 420


@dataclass
class Platform:
    """The test's own Hakobune; see the module's docstring."""

    folder: Path
    extra_env: dict = field(default_factory=dict)
    processes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.redis_port = free_port()
        self.admin_port = free_port()
        self.router_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        base = os.environ.get("CELERY_QUEUE", "hakobune-test")
        self.queue = f"{base}-faults-{secrets.token_hex(3)}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "PYTHONPATH": str(PROJECT_DIR),
            "REDIS_URL": self.redis_url,
            "CELERY_QUEUE": self.queue,
            "HAKOBUNE_INSTANCE": self.queue,
            "ROUTER_ADMIN_URL": f"http://127.0.0.1:{self.admin_port}",
            "ROUTER_PORT": str(self.router_port),
            **self.extra_env,
        }
        self.sender = Celery("hakobune-faults", broker=self.redis_url, set_as_current=False)
        self.sender.conf.task_default_queue = self.queue
        self.sender.conf.broker_connection_retry_on_startup = True

    # -- the processes -------------------------------------------------------------------

    def _start(self, name: str, command: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "ab")
        process = subprocess.Popen(command, cwd=PROJECT_DIR, env=env or self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kills the process and every process it started (its session)."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_redis(self) -> None:
        self._start("redis", ["redis-server", "--save", "", "--appendonly", "no", "--port", str(self.redis_port),
                              "--bind", "127.0.0.1", "--protected-mode", "no"])
        wait_until(lambda: redis.Redis.from_url(self.redis_url).ping(), 15, "the test's Redis did not answer")

    def start_router(self) -> None:
        home = self.folder / "caddy"
        home.mkdir(exist_ok=True)
        config = home / "boot.json"
        config.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{self.admin_port}"}}))
        env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
        self._start("router", ["caddy", "run", "--config", str(config)], env=env)
        wait_until(lambda: self.session().get(f"http://127.0.0.1:{self.admin_port}/config/", timeout=1).ok, 15,
                  "the test's Caddy did not answer")

    def start_worker(self) -> None:
        start = len(self.log("worker"))
        self._start("worker", [sys.executable, "-m", "celery", "-A", "hakobune.platform", "worker", "--loglevel",
                               "INFO", "--concurrency", "2", "--hostname", f"{self.queue}@%h"])
        wait_until(lambda: "ready." in self.log("worker")[start:], 60, "the test's worker was not ready")

    def start_scheduler(self) -> None:
        self._start("scheduler", [sys.executable, "-m", "celery", "-A", "hakobune.platform", "beat", "--loglevel",
                                  "INFO", "--schedule", str(self.folder / "celerybeat-schedule")])

    def start_all(self) -> None:
        self.start_redis()
        self.start_router()
        self.start_worker()
        self.start_scheduler()

    def stop_all(self, sig: int = signal.SIGKILL) -> None:
        for name in ("scheduler", "worker", "router", "redis"):
            self.kill(name, sig)

    # -- talking to it ---------------------------------------------------------------------

    @staticmethod
    def session() -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        return session

    def get(self, hostname: str, path: str = "/", timeout: float = 5) -> requests.Response:
        """A request to a service through the test's Caddy."""
        return self.session().get(f"http://127.0.0.1:{self.router_port}{path}",
                                  headers={"Host": f"{hostname}:{self.router_port}"}, timeout=timeout,
                                  allow_redirects=False)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)

    def locks_held(self) -> list[bytes]:
        return self.redis().keys("hakobune:deploy-lock:*")


@pytest.fixture
def platform_env():
    """Settings of the test's own Hakobune (environment variables), set by a
    test's own fixture before `platform` starts it."""
    return {}


@pytest.fixture
def platform(tmp_path, monkeypatch, platform_env, django_db_setup):
    """The test's own Hakobune, started; stopped (and its parts killed)
    afterwards. Tasks the test process sends go to its Redis."""
    for program in ("redis-server", "caddy"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed; `make test` installs what the suite needs")
    own = Platform(tmp_path, extra_env=platform_env)
    monkeypatch.setattr(queue, "current_app", own.sender)
    own.start_all()
    yield own
    own.stop_all()
    if os.environ.get("SHOW_FAULT_LOGS"):
        for name in ("worker", "scheduler", "redis"):
            print(f"---- {name} ----\n{own.log(name)}")


@pytest.fixture
def deployer(team_name, platform, django_db_blocker):
    """Deploys an app (files over the flask-hello fixture app) as a service of
    the test's team, with the service's settings; returns the Build. (The
    team's containers go after the platform stopped: nothing restarts them.)"""
    with django_db_blocker.unblock():
        owner = get_user_model().objects.create_user(username=f"owner-{team_name}", password="x")
        team = create_team(name=team_name, owner=owner)

    def deploy(name: str, *, files: dict | None = None, **service_settings) -> Build:
        from django.core.files.uploadedfile import SimpleUploadedFile

        data = archive_of("flask-hello", extra=files or {}, folder=name)
        upload = SimpleUploadedFile(f"{name}.tar.gz", data, content_type="application/octet-stream")
        with django_db_blocker.unblock():
            service = team.services.filter(name=name).first() or create_service(team=team, name=name,
                                                                                created_by=owner)
            for key, value in service_settings.items():
                setattr(service, key, value)
            service.save()
            return deploy_service(service=service, source_file=upload, created_by=owner)

    return deploy
