#!/usr/bin/env python
"""Twenty builds queued at once on two cores: bounded, fair per team, no
out-of-memory.

Three teams deploy at once, 14, 4 and 2 services (the big team's deploys sent
first, the worst case for a plain first-come queue). Each is a small Flask app
(tests/fixtures/apps/flask-hello with its own greeting, so its code layer is
built; its dependency layer comes from the cache, so nothing is downloaded)
whose build command works for a few seconds and holds 150 MB, as a small
compile step does. A real Celery worker (4 processes) builds and deploys them
on this host's Docker Engine, behind a Caddy of the benchmark's own.

Recorded: the order builds were admitted (team by team), the most builds seen
fetching/detecting/building at once (sampled every 0.2 s from the database,
and the build cgroups with a running step), each team's wait from deploy to
admission, the peak memory (the builds' cgroups, summed; and the host's used
memory from /proc/meminfo, as `free` shows it), out-of-memory kills in the
builds' cgroups, and the total time from the first deploy to the last live.

    .venv/bin/python bench/build_queue.py [--concurrency 2] [--compare 20] [--record]

--compare N runs the same burst again with BUILD_CONCURRENCY=N (the worker's
4 processes then bound it instead). Everything the benchmark makes (its data
folder, worker, Caddy, the teams' containers, networks and images) goes at the
end. Needs the python stack and a flask-hello dependency layer in the build
cache (deploy flask-hello once, or run the integration tests, first)."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from bench._local import append_results, own_caddy, remove_team  # noqa: E402

TEAMS = (("a", 14), ("b", 4), ("c", 2))
WORKER_PROCESSES = 4
BUILD_COMMAND = (
    "python -c \"import time; held = b'x' * (150 << 20); t = time.time(); "
    "[sum(range(20000)) for _ in iter(lambda: time.time() - t > 4, True)]\""
)
CGROUP_PARENT = "/hakobune-builds"
ADMITTED = ("fetching", "detecting", "building")


def app_py(greeting: str) -> str:
    return ("from flask import Flask\napp = Flask(__name__)\n\n\n@app.get('/')\n"
            f"def index():\n    return {greeting!r} + '\\n'\n\n\n@app.get('/healthz')\n"
            "def healthz():\n    return {'ok': True}\n")


def host_used_bytes() -> int:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info[key] = int(value.split()[0]) * 1024
    return info["MemTotal"] - info["MemAvailable"]


def memory_dir() -> Path | None:
    for candidate in (Path("/sys/fs/cgroup/memory") / CGROUP_PARENT.strip("/"), Path("/sys/fs/cgroup") / CGROUP_PARENT.strip("/")):
        if candidate.is_dir():
            return candidate
    return None


def read_int(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def oom_kills(folder: Path) -> int:
    for name in ("memory.oom_control", "memory.events"):
        try:
            for line in (folder / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            continue
    return 0


class Sampler:
    """Every 0.2 s: builds admitted (database), build cgroups with a running
    step, their memory, the host's used memory."""

    def __init__(self, prefixes: tuple[str, ...]):
        self.prefixes = prefixes
        self.max_admitted = 0
        self.max_steps = 0
        self.peak_cgroups = 0
        self.peak_host = 0
        self.baseline_host = host_used_bytes()
        self.oom = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def _ours(self):
        folder = memory_dir()
        if folder is None:
            return []
        return [entry for entry in folder.iterdir() if entry.is_dir() and entry.name.startswith(self.prefixes)]

    def _run(self):
        from django.db import connection

        from hakobune.platform.builds.models import Build

        while not self._stop.wait(0.2):
            admitted = Build.objects.filter(status__in=ADMITTED, service__team__name__in=self.prefixes_as_teams).count()
            self.max_admitted = max(self.max_admitted, admitted)
            cgroups = self._ours()
            steps = sum(1 for cgroup in cgroups if any(child.is_dir() for child in cgroup.iterdir()))
            self.max_steps = max(self.max_steps, steps)
            self.peak_cgroups = max(self.peak_cgroups, sum(read_int(c / "memory.usage_in_bytes") or
                                                           read_int(c / "memory.current") for c in cgroups))
            self.peak_host = max(self.peak_host, host_used_bytes())
            for cgroup in cgroups:
                self.oom[cgroup.name] = max(self.oom.get(cgroup.name, 0), oom_kills(cgroup))
        connection.close()


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "hakobune.platform", "worker", "--loglevel", "INFO",
         "--concurrency", str(WORKER_PROCESSES), "--hostname", f"bench-queue-{secrets.token_hex(3)}@%h"],
        cwd=PROJECT_DIR, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while b"ready." not in log.read_bytes():
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"the worker did not start; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def burst(concurrency: int, args, data: Path) -> dict:
    """One run: a fresh database, worker and teams; returns what was measured."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile

    from hakobune.platform.accounts.services import create_team
    from hakobune.platform.builds.models import FINISHED, Build
    from hakobune.platform.services.services import create_service, deploy_service
    from tests.conftest import archive_of

    settings.BUILD_CONCURRENCY = concurrency
    run = secrets.token_hex(3)
    teams = {label: f"q{label}{run}" for label, _ in TEAMS}
    user = get_user_model().objects.create(username=f"bench{run}")
    services = []
    for label, count in TEAMS:
        team = create_team(name=teams[label], owner=user)
        for index in range(count):
            services.append(create_service(team=team, name=f"app{index}", created_by=user,
                                           build_command=BUILD_COMMAND))
    env = {**os.environ, "BUILD_CONCURRENCY": str(concurrency), "PYTHONPATH": str(PROJECT_DIR)}
    worker = start_worker(env, data / f"worker-{concurrency}.log")
    sampler = Sampler(tuple(f"{name}-" for name in teams.values()))
    sampler.prefixes_as_teams = list(teams.values())
    builds = []
    try:
        with sampler:
            started = time.monotonic()
            for service in services:  # team a's fourteen first, then b's four, then c's two
                archive = archive_of("flask-hello", extra={"app.py": app_py(f"{service.team.name} {service.name} {run}")})
                builds.append(deploy_service(service=service, source_file=SimpleUploadedFile("app.tar.gz", archive),
                                             created_by=user))
            accepted = time.monotonic() - started
            deadline = time.monotonic() + args.timeout
            while Build.objects.filter(id__in=[b.id for b in builds]).exclude(status__in=FINISHED).exists():
                if time.monotonic() > deadline:
                    raise SystemExit("the builds did not all finish in time; see " + str(data))
                time.sleep(0.5)
            total = time.monotonic() - started
    finally:
        stop(worker)
    from django.db.models import Min

    rows = list(Build.objects.filter(id__in=[b.id for b in builds]).select_related("service__team")
                .annotate(began=Min("log_lines__created_at")))
    label_of = {name: label for label, name in teams.items()}

    def order_by(key):
        return "".join(label_of[b.service.team.name].upper() for b in sorted(rows, key=lambda b: (key(b), b.id)))

    waits, began, live = {}, {}, {}
    for label, _ in TEAMS:
        ours = [b for b in rows if label_of[b.service.team.name] == label]
        seconds = [(b.started_at - b.created_at).total_seconds() for b in ours]
        waits[label] = (statistics.mean(seconds), max(seconds))
        seconds = [(b.began - b.created_at).total_seconds() for b in ours]
        began[label] = (statistics.mean(seconds), max(seconds))
        seconds = [(b.finished_at - b.created_at).total_seconds() for b in ours]
        live[label] = (statistics.mean(seconds), max(seconds))
    result = {
        "concurrency": concurrency,
        "order": order_by(lambda b: b.started_at),
        "began_order": order_by(lambda b: b.began),
        "began": began,
        "live": live,
        "statuses": {status: sum(1 for b in rows if b.status == status) for status in {b.status for b in rows}},
        "max_admitted": sampler.max_admitted,
        "max_steps": sampler.max_steps,
        "peak_cgroups_mb": sampler.peak_cgroups / 2**20,
        "peak_host_mb": sampler.peak_host / 2**20,
        "baseline_host_mb": sampler.baseline_host / 2**20,
        "oom_kills": sum(sampler.oom.values()),
        "waits": waits,
        "total": total,
        "accepted": accepted,
        "build_seconds": statistics.median((b.finished_at - b.started_at).total_seconds() for b in rows),
        "teams": list(teams.values()),
    }
    return result


def report(result: dict) -> str:
    def per_team(key):
        return ", ".join(f"team {label.upper()} ({count} builds) mean {result[key][label][0]:.1f} s, "
                         f"max {result[key][label][1]:.1f} s" for label, count in TEAMS)

    return (
        f"- BUILD_CONCURRENCY={result['concurrency']} (worker: {WORKER_PROCESSES} processes): "
        f"{', '.join(f'{n} {s}' for s, n in sorted(result['statuses'].items()))}; total {result['total']:.1f} s "
        f"from the first deploy to the last live (the 20 deploys accepted within {result['accepted']:.1f} s; "
        f"median build + deploy {result['build_seconds']:.1f} s)\n"
        f"  - admitted in the order {result['order']}; began fetching (first log line) in the order "
        f"{result['began_order']}\n"
        f"  - most builds in fetching/detecting/building at once: {result['max_admitted']} (database); "
        f"with a running build step: {result['max_steps']} (cgroups)\n"
        f"  - wait from deploy to admission: {per_team('waits')}\n"
        f"  - wait from deploy to its fetch beginning: {per_team('began')}\n"
        f"  - time from deploy to live: {per_team('live')}\n"
        f"  - peak memory of the builds' cgroups together: {result['peak_cgroups_mb']:.0f} MiB; host used "
        f"{result['peak_host_mb']:.0f} MiB at peak ({result['baseline_host_mb']:.0f} MiB before); "
        f"out-of-memory kills in the builds' cgroups: {result['oom_kills']}\n"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--compare", type=int, default=0, help="run again with this BUILD_CONCURRENCY")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--admin-port", type=int, default=int(os.environ.get("TEST_ROUTER_ADMIN_PORT", 3103)))
    parser.add_argument("--router-port", type=int, default=int(os.environ.get("TEST_ROUTER_PORT", 18103)))
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args(argv)

    data = Path(tempfile.mkdtemp(prefix="hakobune-bench-queue."))
    (data / "stacks").symlink_to(PROJECT_DIR / "var" / "stacks")
    run = secrets.token_hex(3)
    os.environ.update({
        "HAKOBUNE_DATA_DIR": str(data), "DATABASE_URL": f"sqlite:///{data / 'db.sqlite3'}",
        "HAKOBUNE_STACK_CACHE": str(PROJECT_DIR / "var" / "stacks"),
        "CELERY_QUEUE": f"hakobune-bench-queue-{run}", "HAKOBUNE_INSTANCE": f"hakobune-bench-queue-{run}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "ROUTER_ADMIN_URL": f"http://127.0.0.1:{args.admin_port}", "ROUTER_PORT": str(args.router_port),
        "SECRET_KEY": "bench-only", "DJANGO_SETTINGS_MODULE": "hakobune.platform.settings",
    })
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import docker

    client = docker.from_env()
    results = []
    try:
        with own_caddy(args.admin_port, args.router_port):
            for concurrency in [args.concurrency] + ([args.compare] if args.compare else []):
                result = burst(concurrency, args, data)
                results.append(result)
                print(report(result), flush=True)
                for team in result["teams"]:
                    remove_team(client, team)
                    for image in client.images.list(name=f"hakobune/{team}/*"):
                        for tag in image.tags:
                            try:
                                client.images.remove(tag, noprune=False)
                            except docker.errors.APIError:
                                pass
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if args.record:
        body = (
            "`bench/build_queue.py`: 20 deploys sent at once by three teams (14, 4 and 2 services, the big team's "
            "first), each a flask-hello whose build command works ~4 s holding 150 MB; a real worker builds and "
            "deploys them on this host's Docker Engine.\n\n" + "".join(report(result) for result in results)
        )
        append_results("Build queue: 20 builds at once", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
