#!/usr/bin/env python
"""Deploy latency: the time from upload to the first HTTP 200 showing the new
version, through Hakobune (portal form → pipeline → router) and by hand
(`docker build` + `docker run` of the equivalent Dockerfile), for a small Flask
app (tests/fixtures/apps/flask-hello).

    .venv/bin/python bench/deploy_latency.py [--runs-cold 5] [--runs-warm 7] [--check]

- platform cold: a NEW service whose requirements.txt is unique (a comment
  line), so pip really installs; uploaded through the portal's own form.
- platform warm: a one-line change of app.py deployed to the same service.
- by hand cold / warm: the same two changes built with the docker CLI from the
  Dockerfile the platform's own plan ejects, on the same base image (or, when
  the running platform was started from other code than this tree, from the
  Dockerfile its build log shows it built), then `docker run -p 127.0.0.1::8080`.

Where the platform's time goes comes from the Build row, its log lines, the
worker's log, Docker events, the containers' own gunicorn logs and Caddy's
admin log; it is printed per phase after the medians.

Platform and by-hand runs alternate (A, B, A, B, …) so machine noise hits both.
The platform must be running (`make run`). Everything the benchmark creates
(team `bench`'s services, containers and images, by-hand containers and images)
is removed at the end. Exit code 0 unless --check and a target is missed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEMPLATE_APP = PROJECT_DIR / "tests" / "fixtures" / "apps" / "flask-hello"
GREETING_LINE = re.compile(r'^GREETING = ".*"$', re.MULTILINE)
POLL_INTERVAL = 0.05
BYHAND_REPO = "hakobune-bench-byhand"

# Targets.
WARM_PLATFORM_MAX_S = 3.0
MAX_RATIO = 1.5  # cold
WARM_MAX_RATIO = 1.3  # issue 16: the warm redeploy on a busy platform


# -- the app -------------------------------------------------------------------


def app_files(greeting: str, requirements_note: str) -> dict[str, str]:
    """flask-hello with its greeting and a comment in requirements.txt changed."""
    app_py = (TEMPLATE_APP / "app.py").read_text()
    app_py, count = GREETING_LINE.subn(f'GREETING = "{greeting}"', app_py)
    assert count == 1, "the template app.py has no GREETING line"
    requirements = (TEMPLATE_APP / "requirements.txt").read_text().rstrip("\n") + f"\n# bench {requirements_note}\n"
    return {"app.py": app_py, "requirements.txt": requirements}


def tar_gz(files: dict[str, str], folder: str) -> bytes:
    """A .tar.gz of the app folder, as `tar czf app.tar.gz app/` makes it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        now = time.time()
        info = tarfile.TarInfo(folder)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
        tar.addfile(info)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- Django (setup, reading the pipeline's records, clean-up) --------------------


def setup_django(data_dir: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")
    os.environ["HAKOBUNE_DATA_DIR"] = str(data_dir)
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    import django

    django.setup()


def ensure_user_and_team(username: str, team_name: str) -> str:
    """The bench user (a fresh random password each run) owning the bench team."""
    from django.contrib.auth import get_user_model

    from hakobune.platform.accounts.models import Membership, Profile, Role, Team
    from hakobune.platform.accounts.services import create_team

    User = get_user_model()
    password = secrets.token_urlsafe(18)
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.is_active = True
    user.save()
    Profile.objects.filter(user=user).update(must_change_password=False)
    team = Team.objects.filter(name=team_name).first()
    if team is None:
        create_team(name=team_name, owner=user)
    else:
        Membership.objects.update_or_create(team=team, user=user, defaults={"role": Role.OWNER})
    return password


# The benchmark reads and deletes rows with explicit columns only, so that it
# works against a running platform whose database lags behind (or runs ahead
# of) the models in the working tree.
BUILD_FIELDS = ("id", "number", "status", "failure_reason", "image", "created_at", "started_at", "finished_at")
IN_PROGRESS = {"queued", "fetching", "detecting", "building", "deploying"}


def latest_build(team: str, service: str) -> dict | None:
    from hakobune.platform.builds.models import Build

    return (
        Build.objects.filter(service__team__name=team, service__name=service)
        .order_by("-number")
        .values(*BUILD_FIELDS)
        .first()
    )


def wait_for_build_end(team: str, service: str, timeout: float = 120) -> dict | None:
    """Waits (outside any timing) until the latest build has finished, so runs never overlap."""
    deadline = time.monotonic() + timeout
    while True:
        build = latest_build(team, service)
        if build is not None and build["status"] not in IN_PROGRESS:
            return build
        if time.monotonic() > deadline:
            return build
        time.sleep(0.2)


def remove_service_runtime(docker_client, team: str, service: str, log=print) -> None:
    """Stops a bench service the way the local backend's destroy() does: its
    containers (by their team and service labels) and its route. Done here,
    not through the backend, so that it works whichever version of the
    backend the running platform labelled its containers with."""
    from django.conf import settings

    from hakobune.runtime.docker_local import LABEL_SERVICE, LABEL_TEAM
    from hakobune.runtime.router import CaddyRouter

    for container in docker_client.containers.list(
        all=True, filters={"label": [f"{LABEL_TEAM}={team}", f"{LABEL_SERVICE}={service}"]}
    ):
        container.remove(force=True)
    try:
        CaddyRouter(settings.ROUTER_ADMIN_URL, settings.ROUTER_PORT).remove_route(f"{service}.{team}.{settings.BASE_DOMAIN}")
    except Exception as exc:  # noqa: BLE001 — the scheduler's sync_router drops it within a minute anyway
        log(f"  ! could not remove the route of {service}: {exc}")


def cleanup_platform(team: str, docker_client, log=print) -> None:
    """Removes the bench team's services: their containers, routes, rows,
    uploaded archives and the images the platform built for them (only those:
    hakobune/<team>/<service> of a service in the team, never the whole
    hakobune/<team>/* namespace, which others may use too), and the team's
    network."""
    from django.conf import settings
    from django.db import DEFAULT_DB_ALIAS, transaction

    from hakobune.platform.builds.models import Build, BuildLogLine
    from hakobune.platform.services.models import Release, Service
    from hakobune.runtime.docker_local import team_network_name

    services = list(Service.objects.filter(team__name=team).values_list("id", "name", "target"))
    for _, name, _ in services:
        remove_service_runtime(docker_client, team, name, log=log)
    if services:
        ids = [service_id for service_id, _, _ in services]
        build_ids = list(Build.objects.filter(service_id__in=ids).values_list("id", flat=True))
        # The log lines (the bulk) without Django's cascade, which would load
        # every column of each; the rest with it, so rows of models added
        # since (metrics, domains, ...) go too and no foreign key is left dangling.
        with transaction.atomic():
            Service.objects.filter(id__in=ids).update(live_release=None)
            BuildLogLine.objects.filter(build_id__in=build_ids)._raw_delete(DEFAULT_DB_ALIAS)
            # Releases, then builds (a service protects its builds), then the services.
            Release.objects.filter(service_id__in=ids).delete()
            Build.objects.filter(id__in=build_ids).delete()
            Service.objects.filter(id__in=ids).delete()
    for _, name, _ in services:
        shutil.rmtree(Path(settings.MEDIA_ROOT) / "sources" / team / name, ignore_errors=True)
    removed = 0
    for _, name, _ in services:
        repository = f"hakobune/{team}/{name}"
        for image in docker_client.images.list(name=repository):
            for tag in image.tags:
                if tag.rpartition(":")[0] != repository:
                    continue
                try:
                    docker_client.images.remove(tag, noprune=False)
                    removed += 1
                except Exception as exc:  # noqa: BLE001 — a benchmark clean-up reports and goes on
                    log(f"  ! could not remove image {tag}: {exc}")
    for network in docker_client.networks.list(names=[team_network_name(team)]):
        try:
            network.reload()
            if network.attrs.get("Containers"):
                continue  # still in use
            network.remove()
        except Exception as exc:  # noqa: BLE001
            log(f"  ! could not remove network {network.name}: {exc}")
    if services or removed:
        log(f"  removed {len(services)} bench service(s) and {removed} platform-built image(s)")


# -- Docker events (precise container start / image tag times) -------------------


class DockerEvents:
    """Records the Docker Engine's container and image events in the background."""

    def __init__(self, client):
        self.client = client
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.stream = client.events(decode=True, filters={"type": ["container", "image"]})
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for event in self.stream:
                with self.lock:
                    self.events.append(event)
        except Exception:  # noqa: BLE001 — closed at the end
            pass

    def close(self):
        try:
            self.stream.close()
        except Exception:  # noqa: BLE001
            pass

    def find(self, *, kind: str, action: str, name_prefix: str, after: float = 0.0) -> float | None:
        """The time (epoch s) of the first matching event after `after`."""
        with self.lock:
            events = list(self.events)
        for event in events:
            when = event.get("timeNano", 0) / 1e9
            if when < after or event.get("Type") != kind or event.get("Action") != action:
                continue
            name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
            if name.startswith(name_prefix):
                return when
        return None


# -- logs of the platform's processes ---------------------------------------------


def container_log_marks(container, user_agent: str) -> dict[str, float]:
    """From a gunicorn container's own log (Docker's timestamps): when the master
    listened, when the first worker booted, and when the first request from
    `user_agent` was answered."""
    marks: dict[str, float] = {}
    try:
        raw = container.logs(timestamps=True, stdout=True, stderr=True).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001
        return marks
    for line in raw.splitlines():
        stamp, _, text = line.partition(" ")
        head, _, fraction = stamp.rstrip("Z").partition(".")
        try:
            when = datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00").timestamp()
        except ValueError:
            continue
        if "Listening at:" in text:
            marks.setdefault("gunicorn_listening", when)
        elif "Booting worker" in text:
            marks.setdefault("gunicorn_worker", when)
        elif user_agent in text and '" 200 ' in text:
            marks.setdefault("first_request_served", when)
    return marks


WORKER_LINE = re.compile(
    r"^\[(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[^\]]+\] Task hakobune\.worker\.tasks\.(?P<task>\w+)"
    r"\[(?P<id>[0-9a-f-]+)\] (?P<what>received|succeeded in (?P<secs>[0-9.e-]+)s)"
)


def worker_tasks(log_dir: Path, start: float, end: float) -> dict[str, dict]:
    """The pipeline tasks the workers (one log per queue purpose) logged
    between start and end (epoch s): {task: {"received": t, "succeeded": t,
    "runtime": s}} (first of each)."""
    tasks: dict[str, dict] = {}
    lines = []
    for log_path in sorted(log_dir.glob("worker*.log")):
        try:
            lines += log_path.read_text(errors="replace").splitlines()
        except OSError:
            continue
    lines.sort(key=lambda line: line[:24])
    for line in lines:
        match = WORKER_LINE.match(line)
        if not match:
            continue
        when = time.mktime(time.strptime(match["ts"][:19], "%Y-%m-%d %H:%M:%S")) + int(match["ts"][20:]) / 1000
        if not start <= when <= end:
            continue
        entry = tasks.setdefault(match["task"], {})
        if match["what"] == "received":
            entry.setdefault("received", when)
        elif "succeeded" not in entry:
            entry["succeeded"] = when
            entry["runtime"] = float(match["secs"])
    return tasks


def router_switches(log_path: Path, start: float, end: float) -> list[tuple[float, str, str]]:
    """Route changes (PATCH/PUT/POST to Caddy's admin API) between start and end."""
    found = []
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        if '"admin.api"' not in line or '"received request"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if start <= entry.get("ts", 0) <= end and entry.get("method") in ("PATCH", "PUT", "POST"):
            found.append((entry["ts"], entry["method"], entry.get("uri", "")))
    return found


# -- measurements ----------------------------------------------------------------


@dataclass
class Run:
    kind: str  # "platform" | "by hand"
    phase: str  # "cold" | "warm"
    index: int
    seconds: float | None = None
    ok: bool = False
    error: str = ""
    label: str = ""
    marks: dict[str, float] = field(default_factory=dict)  # epoch seconds
    phases: dict[str, float] = field(default_factory=dict)  # seconds
    deps_cached: bool | None = None  # whether the build reused the dependency layer

    @property
    def valid(self) -> bool:
        """A finished run that measured what its phase means: a cold run whose
        dependencies really installed, a warm run whose dependency layer was
        reused (the shared Docker Engine's cache can be emptied by others)."""
        return self.ok and (self.deps_cached is None or self.deps_cached == (self.phase == "warm"))


BUILD_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


def dockerfile_from_build_log(lines) -> str | None:
    """The Dockerfile a classic `docker build` ran, from its "Step i/n : …"
    lines, without the trailing LABEL the build API appends for `labels=`."""
    steps: list[str] = []
    total = None
    for line in lines:
        match = BUILD_STEP.match(line.strip())
        if match:
            total = total or int(match[2])
            steps.append(match[3])
            if len(steps) == total:
                break
    if not steps or len(steps) != total:
        return None
    if steps[-1].startswith("LABEL org.hakobune."):
        steps.pop()
    return "\n".join(steps) + "\n"


def instructions(dockerfile: str) -> list[str]:
    return [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.lstrip().startswith("#")]


INSTALL_STEP = re.compile(r"^Step \d+/\d+ : RUN .*pip install")


def dependency_layer_cached(lines) -> bool | None:
    """From a classic `docker build` output: whether the pip install step came
    from the cache (True), ran (False), or was not found (None)."""
    lines = [line.strip() for line in lines if line.strip()]
    for number, line in enumerate(lines):
        if INSTALL_STEP.match(line):
            following = lines[number + 1] if number + 1 < len(lines) else ""
            if "Using cache" in following:
                return True
            if "Running in" in following:
                return False
    return None


class Portal:
    """The portal's HTML forms, spoken the way a browser does."""

    def __init__(self, base_url: str, team: str):
        import requests

        self.base = base_url.rstrip("/")
        self.team = team
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only, never a proxy

    def _token(self, path: str) -> str:
        response = self.http.get(self.base + path, timeout=30)
        response.raise_for_status()
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text)
        if not match:
            raise RuntimeError(f"no CSRF token in the form at {path}")
        return match.group(1)

    def _post(self, path: str, data: dict, files: dict | None = None, referer: str | None = None):
        return self.http.post(
            self.base + path,
            data=data,
            files=files,
            headers={"Origin": self.base, "Referer": self.base + (referer or path)},
            allow_redirects=False,
            timeout=120,
        )

    def login(self, username: str, password: str) -> None:
        token = self._token("/login/")
        response = self._post("/login/", {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": ""})
        if response.status_code != 302:
            raise RuntimeError(f"login failed: {response.status_code} {response.text[:300]}")

    def new_service_form(self) -> str:
        return self._token(f"/t/{self.team}/services/new/")

    def create_service(self, token: str, name: str, archive: bytes, filename: str):
        return self._post(
            f"/t/{self.team}/services/new/",
            {"name": name, "csrfmiddlewaretoken": token},
            files={"source": (filename, archive, "application/gzip")},
        )

    def deploy_form(self, service: str) -> str:
        return self._token(f"/t/{self.team}/{service}/")

    def deploy(self, token: str, service: str, archive: bytes, filename: str):
        return self._post(
            f"/t/{self.team}/{service}/deploy/",
            {"csrfmiddlewaretoken": token},
            files={"source": (filename, archive, "application/gzip")},
            referer=f"/t/{self.team}/{service}/",
        )


def poll_until(get, expected: str, timeout: float, failed=None) -> float | None:
    """Calls get() every POLL_INTERVAL until it answers 200 with `expected` in the
    body; returns the monotonic time of that answer, or None on timeout/failure."""
    deadline = time.monotonic() + timeout
    next_failure_check = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            response = get()
            if response.status_code == 200 and expected in response.text:
                return time.monotonic()
        except Exception:  # noqa: BLE001 — not up yet
            pass
        if failed is not None and time.monotonic() >= next_failure_check:
            next_failure_check = time.monotonic() + 1.0
            if failed():
                return None
        time.sleep(POLL_INTERVAL)
    return None


class Bench:
    def __init__(self, args):
        import docker
        import requests

        self.args = args
        self.team = args.team
        self.run_id = secrets.token_hex(3)
        self.docker = docker.from_env(timeout=300)
        self.events = DockerEvents(self.docker)
        self.portal = Portal(args.portal, self.team)
        self.router = requests.Session()
        self.router.trust_env = False
        self.router_host, self.router_port = args.router.rsplit(":", 1)
        self.direct = requests.Session()
        self.direct.trust_env = False
        self.workdir = Path(tempfile.mkdtemp(prefix="hakobune-bench-"))
        self.byhand_images: list[str] = []
        self.byhand_containers: list[str] = []
        self.platform_services: list[str] = []
        self.base_image = ""
        self.dockerfile = ""  # what the by-hand runs build
        self.plan_dockerfile = ""  # this tree's plan, ejected
        self.platform_dockerfile = ""  # what the running platform built (from its build log)
        self.warm_service = ""  # the platform service warm runs deploy to
        self.notes: dict[str, str] = {}  # service → its requirements.txt comment
        self.warm_requirements = ""  # the by-hand dependency layer warm runs reuse
        self.log_dir = Path(os.environ["HAKOBUNE_DATA_DIR"]) / "log"

    # -- preparation ----------------------------------------------------------

    def prepare(self) -> None:
        from django.conf import settings

        from hakobune.worker import stacks
        from hakobune.worker.buildpacks import detect

        cleanup_platform(self.team, self.docker, log=print)
        password = ensure_user_and_team(self.args.user, self.team)
        self.portal.login(self.args.user, password)

        self.base_image = self.args.base_image or self._platform_base_image(settings, stacks)
        probe = self.workdir / "probe"
        self._write_app(probe, app_files("probe", "probe"))
        detection = detect(probe)
        self.plan = detection.plan
        self.plan_dockerfile = self.dockerfile = detection.plan.dockerfile(self.base_image, with_ca_bundle=True)
        shutil.rmtree(probe)

    def _platform_base_image(self, settings, stacks) -> str:
        """The base image the platform builds Python apps on, resolved the
        platform's way (without pulling or building: the platform has resolved
        it already); else the one its last build logged."""
        try:
            return stacks.resolve_stack(
                self.docker,
                "python",
                settings.STACK_IMAGES["python"],
                suite=settings.STACK_DEBIAN_SUITE,
                mirror=settings.STACK_DEBIAN_MIRROR,
                ca_bundle=settings.BUILD_CA_BUNDLE or None,
                cache_dir=settings.STACK_CACHE_DIR,
                allow_pull=False,
                allow_build=False,
                log=lambda line: None,
            ).ref
        except Exception as exc:  # noqa: BLE001 — fall back to what the platform logged
            from hakobune.platform.builds.models import BuildLogLine

            line = (
                BuildLogLine.objects.filter(text__startswith="Building on ").order_by("-id").values_list("text", flat=True).first()
            )
            if not line:
                raise RuntimeError(f"cannot tell the platform's base image ({exc}); pass --base-image") from exc
            return line.removeprefix("Building on ").split(" ", 1)[0]

    def _write_app(self, folder: Path, files: dict[str, str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)

    # -- platform ---------------------------------------------------------------

    def _router_get(self, hostname: str):
        return lambda: self.router.get(
            f"http://{self.router_host}:{self.router_port}/",
            headers={"Host": f"{hostname}:{self.router_port}"},
            timeout=5,
        )

    def platform_run(self, phase: str, index: int) -> Run:
        run = Run("platform", phase, index)
        token = secrets.token_hex(4)
        if phase == "cold":
            service = f"cold-{index}-{secrets.token_hex(2)}"
            self.notes[service] = f"{self.run_id} cold {service} {token}"
            files = app_files(f"Hello cold {service} {token}", self.notes[service])
        else:
            service = self.warm_service
            # The cold deploy's requirements.txt, so the dependency layer is cached.
            files = app_files(f"Hello warm {index} {token}", self.notes[service])
        run.label = service
        greeting = files["app.py"].split('GREETING = "', 1)[1].split('"', 1)[0]
        archive = tar_gz(files, "flask-hello")
        hostname = f"{service}.{self.team}.localhost"
        failed = lambda: (lambda b: b is not None and b["status"] == "failed")(latest_build(self.team, service))  # noqa: E731

        form_token = self.portal.new_service_form() if phase == "cold" else self.portal.deploy_form(service)
        run.marks["t0"] = time.time()
        start = time.monotonic()
        if phase == "cold":
            response = self.portal.create_service(form_token, service, archive, "flask-hello.tar.gz")
        else:
            response = self.portal.deploy(form_token, service, archive, "flask-hello.tar.gz")
        run.marks["posted"] = run.marks["t0"] + (time.monotonic() - start)
        if response.status_code != 302:
            run.error = f"upload answered {response.status_code}: {response.text[:300]}"
            return run
        if phase == "cold":
            self.platform_services.append(service)
        done = poll_until(
            self._router_get(hostname), greeting, self.args.timeout_cold if phase == "cold" else self.args.timeout_warm, failed
        )
        if done is None:
            build = wait_for_build_end(self.team, service, timeout=5)
            run.error = f"no 200 with the new greeting (build {build and build['status']}: {build and build['failure_reason']})"
            return run
        run.seconds = done - start
        run.ok = True
        run.marks["200"] = run.marks["t0"] + run.seconds
        build = wait_for_build_end(self.team, service)
        self._platform_breakdown(run, build, service)
        return run

    def _platform_breakdown(self, run: Run, build, service: str) -> None:
        """Where the time went, from the Build row, its log lines' timestamps,
        the worker's task log, Docker events and Caddy's admin log."""
        m = run.marks
        if build is None:
            return
        from hakobune.platform.builds.models import BuildLogLine
        from hakobune.platform.services.models import Release

        m["created"] = build["created_at"].timestamp()
        if build["started_at"]:
            m["started"] = build["started_at"].timestamp()
        if build["finished_at"]:
            m["finished"] = build["finished_at"].timestamp()
        lines = list(BuildLogLine.objects.filter(build_id=build["id"]).order_by("id").values_list("text", "created_at"))
        run.deps_cached = dependency_layer_cached(text for text, _ in lines)
        if run.phase == "cold":
            self._follow_platform_dockerfile(dockerfile_from_build_log(text for text, _ in lines))
        for text, created in lines:
            for key, prefix in (
                ("log_fetched", "✓ "),
                ("log_detected", "✓ Detected"),
                ("log_image", "✓ Image"),
                ("log_starting", "Starting v"),
                ("log_live", "✓ Live"),
            ):
                if text.startswith(prefix) and key not in m:
                    if key == "log_fetched" and "files," not in text:
                        continue
                    m[key] = created.timestamp()
        end = m.get("finished", m["200"]) + 1
        tasks = worker_tasks(self.log_dir, m["t0"] - 0.5, end)
        for task in ("fetch_source", "detect_stack", "build_image", "deploy_release"):
            for what in ("received", "succeeded"):
                if what in tasks.get(task, {}):
                    m[f"{task}.{what}"] = tasks[task][what]
        if build["image"]:
            tagged = self.events.find(kind="image", action="tag", name_prefix=build["image"], after=m["t0"])
            if tagged:
                m["image_tagged"] = tagged
        release = Release.objects.filter(build_id=build["id"]).values_list("id", "number").first()
        if release is not None:
            release_id, release_number = release
            started = self.events.find(
                kind="container",
                action="start",
                name_prefix=f"hakobune-{self.team}-{service}-v{release_number}-",
                after=m["t0"],
            )
            if started:
                m["container_started"] = started
            for container in self.docker.containers.list(
                all=True, filters={"label": f"org.hakobune.release={release_id}"}
            ):
                m.update(container_log_marks(container, "hakobune-health-check"))
        switches = router_switches(self.log_dir / "router.log", m.get("log_starting", m["t0"]), m["200"])
        if switches:
            m["route_switch"] = switches[-1][0]

        def span(name, a, b):
            if a in m and b in m:
                run.phases[name] = m[b] - m[a]

        span("upload (POST until the 302)", "t0", "posted")
        span("portal: upload → Build row committed", "t0", "created")
        span("queue: Build row → worker claims fetch", "created", "started")
        span("fetch_source task", "fetch_source.received", "fetch_source.succeeded")
        span("hop fetch → detect", "fetch_source.succeeded", "detect_stack.received")
        span("detect_stack task", "detect_stack.received", "detect_stack.succeeded")
        span("hop detect → build", "detect_stack.succeeded", "build_image.received")
        span("build_image: task start → image tagged", "build_image.received", "image_tagged")
        span("build_image: image tagged → task end", "image_tagged", "build_image.succeeded")
        span("hop build → deploy", "build_image.succeeded", "deploy_release.received")
        span("deploy: task start → release row + log written", "deploy_release.received", "log_starting")
        span("deploy: → container created and started", "log_starting", "container_started")
        span("deploy: container started → gunicorn listening", "container_started", "gunicorn_listening")
        span("deploy: gunicorn listening → health check answered", "gunicorn_listening", "first_request_served")
        span("deploy: health check answered → route switch", "first_request_served", "route_switch")
        span("route switch → first 200 seen", "route_switch", "200")
        span("(not counted: first 200 → build marked live)", "200", "finished")

    def _follow_platform_dockerfile(self, built: str | None) -> None:
        """By hand builds the Dockerfile the running platform really built. It
        is this tree's plan unless the platform runs other code than this tree
        (started before a change and not restarted since); then say so."""
        if not built or instructions(built) == instructions(self.dockerfile):
            return
        self.platform_dockerfile = self.dockerfile = built
        if instructions(built) != instructions(self.plan_dockerfile):
            print(
                "  ! the running platform built another Dockerfile than this tree's plan ejects (it runs other "
                "code than this tree); by hand builds the platform's, from its build log:"
            )
            for line in instructions(built):
                print(f"      {line[:110]}")

    # -- by hand ------------------------------------------------------------------

    def byhand_run(self, phase: str, index: int) -> Run:
        run = Run("by hand", phase, index)
        token = secrets.token_hex(4)
        if phase == "cold":
            note = f"{self.run_id} byhand cold {index} {token}"
            files = app_files(f"Hello by hand cold {index} {token}", note)
        else:
            files = app_files(f"Hello by hand warm {index} {token}", self.warm_requirements)
        greeting = files["app.py"].split('GREETING = "', 1)[1].split('"', 1)[0]
        label = f"{self.run_id}-{phase}-{index}"
        run.label = label
        context = self.workdir / label
        self._write_app(context, files)
        (context / ".hakobune").mkdir()
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", context / ".hakobune" / "ca-certificates.crt")
        (context / "Dockerfile").write_text(self.dockerfile)
        image = f"{BYHAND_REPO}:{label}"
        name = f"{BYHAND_REPO}-{label}"
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder: this engine's default, and the platform's

        run.marks["t0"] = time.time()
        start = time.monotonic()
        build = subprocess.run(["docker", "build", "-t", image, str(context)], capture_output=True, text=True, env=env)
        run.marks["built"] = run.marks["t0"] + (time.monotonic() - start)
        if build.returncode != 0:
            run.error = "docker build failed: " + (build.stderr or build.stdout)[-500:]
            return run
        self.byhand_images.append(image)
        run.deps_cached = dependency_layer_cached(build.stdout.splitlines())
        started = subprocess.run(
            ["docker", "run", "-d", "--name", name, "-p", "127.0.0.1::8080", "-e", "PORT=8080", image],
            capture_output=True,
            text=True,
        )
        run.marks["run_returned"] = run.marks["t0"] + (time.monotonic() - start)
        if started.returncode != 0:
            run.error = "docker run failed: " + started.stderr[-500:]
            return run
        self.byhand_containers.append(name)
        port = subprocess.run(["docker", "port", name, "8080/tcp"], capture_output=True, text=True)
        address = port.stdout.split()[0] if port.returncode == 0 and port.stdout.strip() else ""
        run.marks["port_known"] = run.marks["t0"] + (time.monotonic() - start)
        if not address:
            run.error = "docker port found no published port: " + port.stderr
            self._remove_container(name)
            return run
        done = poll_until(
            lambda: self.direct.get(f"http://{address}/", timeout=5),
            greeting,
            self.args.timeout_cold if phase == "cold" else self.args.timeout_warm,
        )
        if done is None:
            run.error = "the container never answered 200 with the new greeting"
        else:
            run.seconds = done - start
            run.ok = True
            run.marks["200"] = run.marks["t0"] + run.seconds
            container_started = self.events.find(kind="container", action="start", name_prefix=name, after=run.marks["t0"])
            if container_started:
                run.marks["container_started"] = container_started
            time.sleep(0.3)  # let Docker collect the access log line of that request
            try:
                run.marks.update(container_log_marks(self.docker.containers.get(name), "python-requests"))
            except Exception:  # noqa: BLE001
                pass
            m = run.marks
            for phase_name, a, b in (
                ("docker build", "t0", "built"),
                ("docker run (until it returns)", "built", "run_returned"),
                ("docker port", "run_returned", "port_known"),
                ("container started → gunicorn listening", "container_started", "gunicorn_listening"),
                ("gunicorn listening → first request answered", "gunicorn_listening", "first_request_served"),
                ("first request answered → 200 seen", "first_request_served", "200"),
            ):
                if a in m and b in m:
                    run.phases[phase_name] = m[b] - m[a]
        self._remove_container(name)
        return run

    def _remove_container(self, name: str) -> None:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        if name in self.byhand_containers:
            self.byhand_containers.remove(name)

    # -- the whole benchmark ---------------------------------------------------------

    def run(self) -> list[Run]:
        runs: list[Run] = []
        self.prepare()
        print(f"base image {self.base_image}; platform team {self.team!r}; by-hand images {BYHAND_REPO}:{self.run_id}-*")
        print(f"polling every {POLL_INTERVAL * 1000:.0f} ms\n")

        cold_runs = max(self.args.runs_cold, 1 if self.args.runs_warm else 0)
        for index in range(1, cold_runs + 1):
            timed = index <= self.args.runs_cold
            for kind in ("platform", "by hand"):
                run = self.platform_run("cold", index) if kind == "platform" else self.byhand_run("cold", index)
                if timed:
                    runs.append(run)
                    report(run)
                else:
                    print(f"  (untimed priming run for warm: {kind} {run.label} {'ok' if run.ok else run.error})")
                if kind == "platform" and run.ok:
                    # The last cold service stays up for the warm runs; the others go.
                    if self.warm_service:
                        self._destroy_service(self.warm_service)
                    self.warm_service = run.label
                if kind == "by hand" and run.ok:
                    self.warm_requirements = self._byhand_requirements_note(run.label)
                time.sleep(self.args.pause)

        if self.args.runs_warm and not (self.warm_service and self.warm_requirements):
            print("! no cold run succeeded, so there is nothing to deploy warm to")
            return runs
        for index in range(1, self.args.runs_warm + 1):
            for kind in ("platform", "by hand"):
                run = self.platform_run("warm", index) if kind == "platform" else self.byhand_run("warm", index)
                runs.append(run)
                report(run)
                time.sleep(self.args.pause)
        return runs

    def _byhand_requirements_note(self, label: str) -> str:
        text = (self.workdir / label / "requirements.txt").read_text()
        return text.split("# bench ", 1)[1].strip()

    def _destroy_service(self, service: str) -> None:
        remove_service_runtime(self.docker, self.team, service)

    def cleanup(self) -> None:
        self.events.close()
        for name in list(self.byhand_containers):
            self._remove_container(name)
        for image in self.byhand_images:
            subprocess.run(["docker", "rmi", image], capture_output=True)
        if not self.args.keep:
            cleanup_platform(self.team, self.docker, log=print)
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- reporting ---------------------------------------------------------------------


def report(run: Run) -> None:
    if run.ok and not run.valid:
        state = "reused" if run.deps_cached else "rebuilt"
        print(
            f"  {run.phase:4} {run.kind:8} #{run.index}: {run.seconds:7.2f} s   ({run.label})"
            f"   EXCLUDED: the dependency layer was {state}, so this was not a {run.phase} run"
        )
    elif run.ok:
        print(f"  {run.phase:4} {run.kind:8} #{run.index}: {run.seconds:7.2f} s   ({run.label})")
    else:
        print(f"  {run.phase:4} {run.kind:8} #{run.index}:  FAILED  ({run.label}) {run.error}")


def median(runs: list[Run], kind: str, phase: str) -> float | None:
    values = [r.seconds for r in runs if r.valid and r.kind == kind and r.phase == phase]
    return statistics.median(values) if values else None


def breakdown(runs: list[Run], kind: str, phase: str) -> None:
    selected = [r for r in runs if r.valid and r.kind == kind and r.phase == phase]
    if not selected:
        return
    names: list[str] = []
    for r in selected:
        names += [n for n in r.phases if n not in names]
    print(f"\nBreakdown, {kind} {phase} (median over {len(selected)} runs; per run in brackets), seconds:")
    for name in names:
        values = [r.phases[name] for r in selected if name in r.phases]
        each = " ".join(f"{v:.3f}" for v in values)
        print(f"  {name:45} {statistics.median(values):7.3f}   [{each}]")
    print(f"  {'total (upload → first 200)':45} {statistics.median([r.seconds for r in selected]):7.3f}")


def summarize(runs: list[Run]) -> bool:
    pc, hc = median(runs, "platform", "cold"), median(runs, "by hand", "cold")
    pw, hw = median(runs, "platform", "warm"), median(runs, "by hand", "warm")

    def fmt(value):
        return "   n/a" if value is None else f"{value:6.2f}"

    def ratio(a, b):
        return None if a is None or not b else a / b

    print("\nMedians (s)        platform   by hand   platform/by hand")
    print(f"  cold             {fmt(pc)}    {fmt(hc)}     {fmt(ratio(pc, hc))}×")
    print(f"  warm             {fmt(pw)}    {fmt(hw)}     {fmt(ratio(pw, hw))}×")
    failures = [r for r in runs if not r.ok]
    if failures:
        print(f"  ({len(failures)} run(s) failed and are left out)")
    excluded = [r for r in runs if r.ok and not r.valid]
    if excluded:
        print(f"  ({len(excluded)} run(s) left out: their dependency layer was not what the phase needs)")

    # None: not measured (no runs of that phase asked for, or none valid).
    checks = [
        (f"warm platform median < {WARM_PLATFORM_MAX_S:g} s", None if pw is None else pw < WARM_PLATFORM_MAX_S),
        (f"warm platform ≤ {WARM_MAX_RATIO:g}× by hand",
         None if pw is None or hw is None else pw <= WARM_MAX_RATIO * hw),
        (f"cold platform ≤ {MAX_RATIO:g}× by hand", None if pc is None or hc is None else pc <= MAX_RATIO * hc),
    ]
    print("\nTargets")
    for text, ok in checks:
        print(f"  {'–' if ok is None else '✓' if ok else '✗'} {text}{' (not measured)' if ok is None else ''}")

    breakdown(runs, "platform", "warm")
    breakdown(runs, "by hand", "warm")
    breakdown(runs, "platform", "cold")
    breakdown(runs, "by hand", "cold")
    asked = {"warm": any(r.phase == "warm" for r in runs), "cold": any(r.phase == "cold" for r in runs)}
    # A phase that was run but yielded no valid measurement counts as missed.
    return all(ok if ok is not None else not asked[text.split()[0]] for text, ok in checks)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-cold", type=int, default=5)
    parser.add_argument("--runs-warm", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--portal", default="http://127.0.0.1:8000")
    parser.add_argument("--router", default="127.0.0.1:8080", help="host:port the router listens on")
    parser.add_argument("--team", default="bench")
    parser.add_argument("--user", default="bench")
    parser.add_argument("--data-dir", default=os.environ.get("HAKOBUNE_DATA_DIR", str(PROJECT_DIR / "var")))
    parser.add_argument("--base-image", help="the stack image to build by hand on (default: the platform's)")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    parser.add_argument("--timeout-cold", type=float, default=600)
    parser.add_argument("--timeout-warm", type=float, default=120)
    parser.add_argument("--keep", action="store_true", help="leave the bench team's services running at the end")
    parser.add_argument("--json", metavar="PATH", help="also write every run's numbers here")
    args = parser.parse_args(argv)

    setup_django(Path(args.data_dir).resolve())
    print(f"Hakobune deploy latency — {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"{args.runs_cold} cold and {args.runs_warm} warm runs each, platform and by hand interleaved\n")
    load_before = os.getloadavg()
    bench = Bench(args)
    try:
        runs = bench.run()
    finally:
        try:
            bench.cleanup()
        except Exception as exc:  # noqa: BLE001 - the numbers are still worth printing
            print(f"\n! the clean-up failed: {type(exc).__name__}: {exc}")
    ok = summarize(runs)
    load_after = os.getloadavg()
    print(
        "\nload average (1/5/15 min) before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(
            *load_before, *load_after
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in runs], indent=1))
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
