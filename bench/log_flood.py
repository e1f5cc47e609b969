#!/usr/bin/env python
"""The portal during a log flood: how long the service page and its runtime
log card take while one service prints as fast as it can and the log
collector stores what the rate limit lets through (target: under 500 ms).

    .venv/bin/python bench/log_flood.py [--seconds 10] [--history 100000] [--database-url postgres://…]

A temporary data directory holds the platform's database and the log
database (SQLite files, or with --database-url PostgreSQL databases of the
benchmark's own, created and dropped here), a team and one live service with
`--history` stored lines. One container labelled as that service's instance
(under an instance label of the benchmark's own) prints as fast as it can for
`--seconds`, and the collector runs as `make run` starts it (`manage.py
collect_logs`, a process of its own). Meanwhile the owner's requests for the
service page, the log card and a filtered log card are timed (Django's test
client in this process, on the same databases), and the same before the
flood (on PostgreSQL after an ANALYZE of the seeded lines, as autovacuum
would have made). Where each page's time goes is shown beside it: the time
spent in queries to the log database and the CPU time of the request itself
(the rest is waiting: for a core, on a host the flood shares), and the CPU
time the collector, the Docker Engine and the flooding container took
meanwhile.
A fourth request is what the log card asks every 2 s while it follows with a
text filter (`?after=<the newest line before the flood>&q=…`). The container
is removed at the end (also on ^C)."""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from bench._local import PROJECT_DIR, append_results  # noqa: E402
from bench.collector import dockerd_cpu_seconds, image, make_services, remove_containers  # noqa: E402

TARGET_MS = 500


def setup(data_dir: str, instance: str, database_url: str | None) -> dict:
    env = {"HAKOBUNE_DATA_DIR": data_dir, "HAKOBUNE_INSTANCE": instance, "SECRET_KEY": "bench-only",
           "DJANGO_SETTINGS_MODULE": "hakobune.platform.settings"}
    if database_url:
        import dj_database_url
        import psycopg

        config = dj_database_url.parse(database_url)
        base = f"bench_flood_{secrets.token_hex(3)}"
        with psycopg.connect(host=config["HOST"] or "127.0.0.1", port=config["PORT"] or 5432,
                             user=config["USER"] or None, dbname="postgres", autocommit=True) as connection:
            for name in (base, base + "_logs"):
                connection.execute(f'create database "{name}"')
        root = database_url.rsplit("/", 1)[0]
        env.update(DATABASE_URL=f"{root}/{base}", LOGS_DATABASE_URL=f"{root}/{base}_logs", BENCH_PG=base)
    else:
        env.update(DATABASE_URL=f"sqlite:///{data_dir}/bench.sqlite3", LOGS_DATABASE_URL=f"sqlite:///{data_dir}/logs.sqlite3")
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("migrate", database="logs", verbosity=0)
    return env


def drop_databases(database_url: str, base: str) -> None:
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(database_url)
    with psycopg.connect(host=config["HOST"] or "127.0.0.1", port=config["PORT"] or 5432,
                         user=config["USER"] or None, dbname="postgres", autocommit=True) as connection:
        for name in (base, base + "_logs"):
            connection.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [name])
            connection.execute(f'drop database if exists "{name}"')


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    logs_db: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def timed(client, urls: dict, until: float) -> dict[str, Timing]:
    """Asks for each page in turn until `until`: each request's wall time,
    its time in queries to the log database and its thread's CPU time (ms)."""
    from django.db import connections

    spent = [0.0]

    def clock(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent[0] += time.perf_counter() - started

    times = {name: Timing() for name in urls}
    with connections["logs"].execute_wrapper(clock):
        while time.monotonic() < until:
            for name, url in urls.items():
                spent[0] = 0.0
                started, cpu = time.perf_counter(), time.thread_time()
                response = client.get(url)
                times[name].wall.append((time.perf_counter() - started) * 1000)
                times[name].cpu.append((time.thread_time() - cpu) * 1000)
                times[name].logs_db.append(spent[0] * 1000)
                assert response.status_code == 200, (url, response.status_code)
    return times


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def container_cpu_seconds(container) -> float:
    return container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9


def counted(service_id: int) -> tuple[int, int, int]:
    """The lines the flood printed (its last line says; 0 while the collector
    has not read it), stored and said dropped: once they add up, or after
    60 s (the collector says a drop at the end of its 10 s window, and reads
    a flood's backlog from the engine after it)."""
    from django.db.models import Sum

    from hakobune.platform.observability.models import LogLine

    lines = LogLine.objects.filter(service_id=service_id)
    emitted = stored = dropped = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        said = lines.filter(text__startswith="emitted ").values_list("text", flat=True).first()
        emitted = int(said.split()[1]) if said else 0
        stored = lines.filter(text__startswith="flood ").count()
        dropped = lines.filter(stream="platform").aggregate(total=Sum("dropped"))["total"] or 0
        if emitted and emitted == stored + dropped:
            break
        time.sleep(1)
    return emitted, stored, dropped


def commit() -> str:
    run = lambda *argv: subprocess.run(["git", *argv], cwd=PROJECT_DIR, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return run("rev-parse", "--short", "HEAD") + (" with changes" if run("status", "--porcelain", "--", "hakobune") else "")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} / {p95(values):.0f} / {max(values):.0f} ms ({len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--history", type=int, default=100_000, help="lines stored before the flood")
    parser.add_argument("--database-url", help="a PostgreSQL server (postgres://user@host:port/db)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    suffix = secrets.token_hex(3)
    instance, team = f"hakobune-bench-flood-{suffix}", f"bf{suffix}"
    data_dir = tempfile.mkdtemp(prefix="hakobune-bench-flood.")
    env = setup(data_dir, instance, args.database_url)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from hakobune.platform.accounts.models import Membership, Role
    from hakobune.platform.observability.models import LogLine
    from hakobune.platform.services.models import Service
    from hakobune.runtime.docker_local import LABEL_MANAGED, LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM

    make_services(team, 1)
    service = Service.objects.get(team__name=team)
    owner = get_user_model().objects.get(username="bench")
    Membership.objects.get_or_create(team=service.team, user=owner, defaults={"role": Role.OWNER})
    now = timezone.now()
    LogLine.objects.bulk_create([
        LogLine(service_id=service.id, team_id=service.team_id, timestamp=now, instance="old", stream="stdout",
                text=f"GET /items/{n} 200 in 3 ms", size=24) for n in range(args.history)
    ], batch_size=5000)
    if args.database_url:
        # As PostgreSQL's autovacuum does within a minute of so many new rows:
        # without statistics its planner reads all of them for the last page.
        from django.db import connections

        with connections["logs"].cursor() as cursor:
            cursor.execute("ANALYZE observability_logline")
    client = Client(HTTP_HOST="localhost")
    client.force_login(owner)
    card = reverse("observability:runtime_logs", args=[team, service.name])
    newest = LogLine.objects.filter(service_id=service.id).order_by("-id").values_list("id", flat=True).first()
    urls = {
        "service page": reverse("services:detail", args=[team, service.name]),
        "log card (last page)": card,
        "log card, text filter": card + "?q=items%2F4242",
        "log card following, text filter": card + f"?after={newest}&q=items%2F4242",
    }
    docker_client = docker.from_env(timeout=120)
    collector = None
    load_before = os.getloadavg()
    try:
        quiet = timed(client, urls, time.monotonic() + 5)
        collector_log = open(Path(data_dir) / "collector.log", "wb")
        collector = subprocess.Popen([sys.executable, "manage.py", "collect_logs"], cwd=PROJECT_DIR,
                                     env={**os.environ, **env}, stdout=collector_log, stderr=subprocess.STDOUT)
        time.sleep(3)
        cpu_before = {"collector": process_cpu_seconds(collector.pid), "dockerd": dockerd_cpu_seconds(),
                      "this process (the pages)": time.process_time()}
        program = ("import sys, time\nw = sys.stdout.write\nn = 0\nend = time.monotonic() + %d\n"
                   "while time.monotonic() < end:\n    n += 1\n    w(f'flood {n}\\n')\n"
                   "sys.stdout.flush()\ntime.sleep(2)\nprint(f'emitted {n}', flush=True)\ntime.sleep(3600)\n"
                   % args.seconds)
        flood = docker_client.containers.run(
            image(docker_client), ["python3", "-u", "-c", program], detach=True, name=f"{instance}-flood",
            labels={LABEL_MANAGED: instance, LABEL_TEAM: team, LABEL_SERVICE: service.name, LABEL_RELEASE: "1"},
            mem_limit="128m", network_mode="none", pids_limit=16,
        )
        flood_started = time.monotonic()
        flooding = timed(client, urls, time.monotonic() + args.seconds + 5)
        flood_wall = time.monotonic() - flood_started
        cpu = {"collector": process_cpu_seconds(collector.pid) - cpu_before["collector"],
               "dockerd": (dockerd_cpu_seconds() or 0) - (cpu_before["dockerd"] or 0),
               "the flooding container": container_cpu_seconds(flood),
               "this process (the pages)": time.process_time() - cpu_before["this process (the pages)"]}
        load_during = os.getloadavg()
        emitted, stored, dropped = counted(service.id)
    finally:
        remove_containers(docker_client, instance)
        if collector is not None:
            collector.terminate()
            collector.wait(timeout=30)
    if args.database_url:
        from django.db import connections

        connections.close_all()
        drop_databases(args.database_url, env["BENCH_PG"])
    store = "PostgreSQL" if args.database_url else "SQLite"
    worst = max(p95(timing.wall) for timing in flooding.values())
    lines = [
        f"`bench/log_flood.py --seconds {args.seconds} --history {args.history}"
        f"{' --database-url …' if args.database_url else ''}` on {store}: one service with {args.history:,} stored "
        f"lines; one container printing as fast as it can for {args.seconds} s, followed by `manage.py collect_logs`. "
        f"The owner's pages timed with Django's test client on the same databases (median / p95 / max, count). "
        f"Load average at the start: {load_before[0]:.1f}, at the end of the flood: {load_during[0]:.1f}, on "
        f"{os.cpu_count()} CPUs (a shared host: other people's builds and tests run meanwhile). Commit "
        f"{commit()}; filtered pages read at most {settings.LOGS_SEARCH_LINES:,} lines (LOGS_SEARCH_LINES).",
        "",
        "| page | quiet | during the flood | of which: log database, median | of which: CPU, median |",
        "|---|---|---|---|---|",
        *(f"| {name} | {summary(quiet[name].wall)} | {summary(flooding[name].wall)} | "
          f"{statistics.median(flooding[name].logs_db):.0f} ms | {statistics.median(flooding[name].cpu):.0f} ms |"
          for name in urls),
        "",
        f"- CPU time during the flood's {flood_wall:.0f} s: "
        + ", ".join(f"{who} {seconds:.1f} s" for who, seconds in cpu.items())
        + " (dockerd's includes what other runs ask of it)",
        (f"- the container printed {emitted:,} lines; the collector stored {stored:,} and said {dropped:,} dropped "
         f"(rate limit {os.environ.get('LOGS_RATE_PER_SECOND', '200')} lines a second): "
         + ("they add up" if emitted == stored + dropped else f"{emitted - stored - dropped:,} not accounted for")
         if emitted else
         f"- 60 s after the flood the collector had not read its last line yet (still reading the engine's backlog): "
         f"{stored:,} stored and {dropped:,} said dropped so far"),
        f"- target (page time under {TARGET_MS} ms during the flood, p95): **{'met' if worst < TARGET_MS else 'not met'}** "
        f"(worst p95 {worst:.0f} ms)",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        append_results(f"Portal during a log flood (bench/log_flood.py, {store})", body)


if __name__ == "__main__":
    main()
