#!/usr/bin/env python
"""The metrics collector at 200 services: what one collection costs, in the
collector's own CPU time, in the Docker Engine's CPU time and in wall time,
and so what share of one core it takes at its period (15 s).

    .venv/bin/python bench/collector.py [--services 200] [--rounds 5] [--old 20]
    .venv/bin/python bench/collector.py --logs [--services 200] [--lines 10] [--seconds 60] [--profile FILE]

Starts `--services` small containers (the python stack's image, `sleep`, a
64 MiB and 0.1 CPU limit each) with the labels the local runtime gives its
instances, under an instance label of the benchmark's own, so the platform
and test runs never see them; a temporary SQLite database holds a team and
one live service per container. Then:

- the collection as the scheduler runs it (collectors.collect_all: one
  listing call, each container's cgroup files, one bulk insert), `--rounds`
  times after a first one (which gives no CPU percentages yet);
- the backend's bulk reading alone (DockerLocalBackend.metrics_all);
- the old path on `--old` of the containers: the Docker API's `stats` call
  per container, one after another (what collect_all did before).

With --logs, what the platform spends on observability while its services
talk: `--services` containers each printing `--lines` lines a second, each
service with `--secrets` environment values to mask, for `--seconds`. The
log collector runs as `make run` starts it (`manage.py collect_logs`, a
process of its own: its CPU time, all threads, from /proc) and the metrics
collection as the scheduler runs it (collect_all every 15 s, timed in this
process); the two together as a share of one core, the collector's resident
memory, the lines stored against the lines printed, how old the newest
stored line is (sampled every second) and dockerd's CPU time.

Every container it started is removed at the end (also on ^C)."""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from bench._local import PROJECT_DIR, append_results, commit  # noqa: E402

PERIOD = 15.0
IMAGE_CANDIDATES = ("hakobune/stack-python:bookworm", "hakobune/stack-static:bookworm")


def dockerd_cpu_seconds() -> float | None:
    """The Docker Engine's CPU time so far (user + system), from /proc."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd":
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return None


def image(client) -> str:
    for name in IMAGE_CANDIDATES:
        try:
            client.images.get(name)
            return name
        except docker.errors.ImageNotFound:
            continue
    raise SystemExit(f"none of {IMAGE_CANDIDATES} is on this host: run `make stack` first")


def start_containers(client, instance: str, team: str, count: int, image_name: str) -> list[str]:
    from hakobune.runtime.docker_local import LABEL_MANAGED, LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM

    def one(number: int) -> str:
        container = client.containers.run(
            image_name, ["sleep", "infinity"], detach=True, name=f"{instance}-s{number}",
            labels={LABEL_MANAGED: instance, LABEL_TEAM: team, LABEL_SERVICE: f"s{number}", LABEL_RELEASE: "1"},
            mem_limit="64m", nano_cpus=100_000_000, network_mode="none", pids_limit=16,
        )
        return container.id

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def remove_containers(client, instance: str) -> int:
    from hakobune.runtime.docker_local import LABEL_MANAGED

    found = client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}={instance}"})

    def remove(container):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(remove, found))
    return len(found)


def start_talkers(client, instance: str, team: str, count: int, image_name: str, per_second: int) -> list[str]:
    from hakobune.runtime.docker_local import LABEL_MANAGED, LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM

    program = (f"import time\nn = 0\nwhile True:\n    n += 1\n    print(f'GET /items/{{n}} 200 in 3 ms', flush=True)\n"
               f"    time.sleep({1 / per_second})\n")

    def one(number: int) -> str:
        container = client.containers.run(
            image_name, ["python3", "-c", program], detach=True, name=f"{instance}-s{number}",
            labels={LABEL_MANAGED: instance, LABEL_TEAM: team, LABEL_SERVICE: f"s{number}", LABEL_RELEASE: "1"},
            mem_limit="64m", nano_cpus=100_000_000, network_mode="none", pids_limit=16,
        )
        return container.id

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def process_cpu_seconds(pid: int) -> float:
    """A process's CPU time so far, all its threads (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_log_files(pid: int) -> int:
    """The engine's json-file logs a process holds open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").endswith("-json.log")
        except OSError:
            continue
    return count


def give_secrets(team_name: str, per_service: int) -> None:
    """Environment values as apps have them (a database URL, keys), so that
    the collector masks as it does for real services."""
    from hakobune.platform.crypto import encrypt
    from hakobune.platform.services.models import EnvVar, Service

    EnvVar.objects.bulk_create([
        EnvVar(service=service, key=f"SECRET_{n}", value_encrypted=encrypt(f"{service.name}-{n}-{secrets.token_hex(12)}"))
        for service in Service.objects.filter(team__name=team_name) for n in range(per_service)
    ])


def logs_main(args) -> None:
    """The log collector as `make run` starts it (`manage.py collect_logs`,
    a process of its own) and the metrics collection as the scheduler runs
    it (collect_all once per 15 s, here in this process)."""
    from datetime import datetime, timedelta
    from datetime import timezone as dt_timezone

    suffix = secrets.token_hex(3)
    instance, team = f"hakobune-bench-logs-{suffix}", f"bl{suffix}"
    data_dir = tempfile.mkdtemp(prefix="hakobune-bench-logs.")
    os.environ["ROUTER_ACCESS_LOG"] = str(Path(data_dir) / "access.log")
    setup_django(data_dir, instance)
    from django.core.management import call_command
    from django.db.models import Max

    call_command("migrate", database="logs", verbosity=0)
    from hakobune.platform.observability import collectors
    from hakobune.platform.observability.models import LogLine

    client = docker.from_env(timeout=120)
    load_before = os.getloadavg()
    collector = None
    log_path = Path(data_dir) / "collector.log"
    try:
        started = time.perf_counter()
        start_talkers(client, instance, team, args.services, image(client), args.lines)
        start_s = time.perf_counter() - started
        make_services(team, args.services)
        give_secrets(team, args.secrets)
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        collector = subprocess.Popen(
            [sys.executable, *profile, "manage.py", "collect_logs"], cwd=PROJECT_DIR,
            env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)}, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while b"collecting runtime logs" not in log_path.read_bytes():
            if collector.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the collector did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        rss_before = rss_mb(collector.pid)
        collectors.collect_all()  # the first reading: no CPU percentages yet
        time.sleep(10)  # every container followed, the backlog read
        window_start = datetime.now(tz=dt_timezone.utc)
        engine_before, wall_before = dockerd_cpu_seconds(), time.perf_counter()
        cpu_before = process_cpu_seconds(collector.pid)
        rss_peak, lags, metrics_cpu, collections = rss_before, [], 0.0, 0
        next_metrics = time.monotonic()
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            if time.monotonic() >= next_metrics:
                thread_before = time.thread_time()
                collectors.collect_all()
                metrics_cpu += time.thread_time() - thread_before
                collections += 1
                next_metrics += PERIOD
            time.sleep(1)
            rss_peak = max(rss_peak, rss_mb(collector.pid))
            newest = LogLine.objects.aggregate(newest=Max("timestamp"))["newest"]
            if newest is not None:
                lags.append((datetime.now(tz=dt_timezone.utc) - newest).total_seconds())
        wall = time.perf_counter() - wall_before
        cpu = process_cpu_seconds(collector.pid) - cpu_before
        load_after = os.getloadavg()
        engine_after = dockerd_cpu_seconds()
        window_end = window_start + timedelta(seconds=wall)
        time.sleep(3)  # the window's last lines stored
        stored = LogLine.objects.filter(timestamp__gte=window_start, timestamp__lt=window_end).count()
        files, threads = open_log_files(collector.pid), len(os.listdir(f"/proc/{collector.pid}/task"))
    finally:
        removed = remove_containers(client, instance)
        if collector is not None:
            collector.terminate()
            try:
                collector.wait(timeout=30)
            except subprocess.TimeoutExpired:
                collector.kill()
                raise SystemExit(f"the collector did not stop within 30 s:\n{log_path.read_text()}") from None
    engine = (engine_after - engine_before) if engine_before is not None and engine_after is not None else None
    expected = args.services * args.lines * wall
    metrics_share = metrics_cpu / (collections * PERIOD) if collections else 0.0
    total_share = cpu / wall + metrics_share
    lags.sort()
    lines = [
        f"`bench/collector.py --logs --services {args.services} --lines {args.lines} --seconds {args.seconds} "
        f"--secrets {args.secrets}`: {args.services} containers (python in {image(client)}, each printing "
        f"{args.lines} lines a second, started in {start_s:.0f} s), labelled as the local runtime labels its "
        f"instances, one live service each with {args.secrets} environment values to mask; the log collector as "
        f"`make run` starts it (`manage.py collect_logs`, its own process; CPU of all its threads from /proc), "
        f"storing into a SQLite log database; the metrics collection (collect_all, cgroup files) every "
        f"{PERIOD:.0f} s in the benchmark's process. Commit {commit()}. Load average at the start: "
        f"{load_before[0]:.1f}, at the end: {load_after[0]:.1f} on {os.cpu_count()} CPUs (other runs share this "
        f"host; the {args.services} printing containers add their own).",
        "",
        "| lines stored | of about | log collector CPU | metrics collection CPU | together | collector memory (RSS) "
        "| newest line's age (median / max) | dockerd CPU |",
        "|---|---|---|---|---|---|---|---|",
        f"| {stored:,} printed in {wall:.0f} s | {expected:,.0f} | {cpu:.1f} s, {cpu / wall * 100:.1f} % of one core | "
        f"{metrics_cpu / max(collections, 1) * 1000:.0f} ms per collection, {metrics_share * 100:.1f} % | "
        f"**{total_share * 100:.1f} %** | {rss_peak:.0f} MB (before following: {rss_before:.0f} MB) | "
        f"{statistics.median(lags) if lags else 0:.1f} s / {lags[-1] if lags else 0:.1f} s | "
        f"{(engine or 0):.1f} s ({(engine or 0) / wall * 100:.1f} % of one core) |",
        "",
        f"- target (log and metrics collection under 5 % of one core for 200 services at 10 lines a second): "
        f"**{'met' if total_share < 0.05 else 'not met'}**",
        f"- the collector had {files} log files open and {threads} threads",
        f"- removed {removed} containers",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        append_results("Log and metrics collection (bench/collector.py --logs)", body)


def setup_django(data_dir: str, instance: str):
    os.environ.update({
        "HAKOBUNE_DATA_DIR": data_dir, "HAKOBUNE_INSTANCE": instance, "SECRET_KEY": "bench-only",
        "DATABASE_URL": f"sqlite:///{data_dir}/bench.sqlite3", "DJANGO_SETTINGS_MODULE": "hakobune.platform.settings",
    })
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def make_services(team_name: str, count: int):
    from django.contrib.auth import get_user_model

    from hakobune.platform.accounts.models import Team
    from hakobune.platform.builds.models import Build
    from hakobune.platform.services.models import DesiredState, Release, Service

    owner = get_user_model().objects.create(username="bench")
    team = Team.objects.create(name=team_name, created_by=owner)
    for number in range(count):
        service = Service.objects.create(team=team, name=f"s{number}", target="local",
                                         desired_state=DesiredState.RUNNING)
        build = Build.objects.create(service=service, number=1, status="live", image="bench")
        release = Release.objects.create(service=service, build=build, number=1, status=Release.Status.LIVE,
                                         image="bench")
        Service.objects.filter(id=service.id).update(live_release=release)


def measure(action, rounds: int) -> dict:
    walls, cpus, engine = [], [], []
    result = None
    for _ in range(rounds):
        engine_before = dockerd_cpu_seconds()
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        result = action()
        walls.append(time.perf_counter() - wall_before)
        cpus.append(time.process_time() - cpu_before)
        engine_after = dockerd_cpu_seconds()
        if engine_before is not None and engine_after is not None:
            engine.append(engine_after - engine_before)
    return {"wall": statistics.median(walls), "wall_max": max(walls), "cpu": statistics.median(cpus),
            "engine": statistics.median(engine) if engine else None, "result": result, "rounds": rounds}


def share(seconds: float) -> str:
    return f"{seconds / PERIOD * 100:.2f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--old", type=int, default=20, help="containers read the old way (stats per container)")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    parser.add_argument("--logs", action="store_true", help="measure the log collector instead")
    parser.add_argument("--lines", type=int, default=10, help="with --logs: lines a second per container")
    parser.add_argument("--seconds", type=int, default=60, help="with --logs: how long to measure")
    parser.add_argument("--secrets", type=int, default=3, help="with --logs: environment values per service")
    parser.add_argument("--profile", metavar="FILE",
                        help="with --logs: run the collector under cProfile (its main loop), its stats written to FILE "
                        "(the CPU measured then is not the collector's alone: profile and measure in separate runs)")
    args = parser.parse_args()
    if args.logs:
        logs_main(args)
        return

    suffix = secrets.token_hex(3)
    instance, team = f"hakobune-bench-collector-{suffix}", f"bc{suffix}"
    data_dir = tempfile.mkdtemp(prefix="hakobune-bench-collector.")
    setup_django(data_dir, instance)
    from hakobune.platform.observability import collectors
    from hakobune.platform.observability.models import MetricPoint
    from hakobune.platform.services.backends import get_backend

    client = docker.from_env(timeout=120)
    load_before = os.getloadavg()
    try:
        started = time.perf_counter()
        ids = start_containers(client, instance, team, args.services, image(client))
        start_s = time.perf_counter() - started
        make_services(team, args.services)
        backend = get_backend("local")
        cgroup_layout = f"cgroup v{backend.cgroups.version} under {backend.cgroups.root}"
        time.sleep(2)

        collectors.collect_all()  # the first reading: no CPU percentages yet
        time.sleep(1)
        full = measure(collectors.collect_all, args.rounds)
        bulk = measure(backend.metrics_all, args.rounds)
        samples = bulk["result"]
        cpu_samples = sum(1 for found in samples.values() for s in found if s.name == "cpu_percent")
        points = MetricPoint.objects.count()

        subset = ids[: args.old]

        def old_path():
            for container_id in subset:
                client.api.stats(container_id, stream=False)

        old = measure(old_path, max(1, min(args.rounds, 2)))
    finally:
        removed = remove_containers(client, instance)
        left = client.containers.list(all=True, filters={"label": f"org.hakobune.managed={instance}"})

    per_container_old = old["wall"] / max(len(subset), 1)
    lines = [
        f"`bench/collector.py --services {args.services} --rounds {args.rounds} --old {args.old}`: "
        f"{args.services} containers (`sleep` in {image(client)}, 64 MiB / 0.1 CPU each, labelled as the local runtime "
        f"labels its instances, started in {start_s:.0f} s), one live service each in a temporary SQLite database; "
        f"{cgroup_layout}. Medians of {args.rounds} collections after a first one. CPU = the collector process's own "
        f"CPU time (user + system); engine = dockerd's CPU time over the same span (/proc). Load average at the "
        f"start: {load_before[0]:.1f} on {os.cpu_count()} CPUs (other runs share this host).",
        "",
        "| path | containers | wall | collector CPU | engine CPU | collector CPU at a 15 s period | with the engine's |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name, count, m):
        engine = m["engine"] or 0.0
        lines.append(
            f"| {name} | {count} | {m['wall'] * 1000:.0f} ms (max {m['wall_max'] * 1000:.0f} ms) | "
            f"{m['cpu'] * 1000:.0f} ms | {engine * 1000:.0f} ms | {share(m['cpu'])} of one core | "
            f"{share(m['cpu'] + engine)} |"
        )

    row("collect_all (cgroup files, one listing call, bulk insert)", args.services, full)
    row("DockerLocalBackend.metrics_all alone", args.services, bulk)
    row("old: `stats` per container, serial", len(subset), old)
    lines += [
        "",
        f"- each collection stored {full['result']} points ({cpu_samples} CPU readings from the second on; "
        f"{points} points in all after {args.rounds + 1} collections)",
        f"- old path: {per_container_old:.2f} s per container, so about {per_container_old * args.services:.0f} s "
        f"for {args.services} (the period is {PERIOD:.0f} s)",
        f"- target (collection of 200 services under 5 % of one core at 15 s): "
        f"**{'met' if full['cpu'] / PERIOD < 0.05 else 'not met'}** ({share(full['cpu'])} collector, "
        f"{share(full['cpu'] + (full['engine'] or 0))} with dockerd's listing)",
        f"- removed {removed} containers; {len(left)} left",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        append_results("Metrics collection (bench/collector.py)", body)


if __name__ == "__main__":
    main()
