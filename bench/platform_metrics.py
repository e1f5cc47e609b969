#!/usr/bin/env python
"""The platform's own metrics: what one scrape of /metrics costs with many
services and builds in the database. Seeds `--services` services (across
teams of 10, a live release each, a log drain per team) with
`--builds-per-service` finished builds each (live, failed, superseded,
cancelled, with durations), then scrapes /metrics through Django's test
client `--runs` times: the whole answer's time, each source's own time (the
`hakobune_scrape_source_duration_seconds` it reports) and the number of SQL
queries.

    .venv/bin/python bench/platform_metrics.py [--services 200] [--builds-per-service 50] \
        [--database-url postgres://...] [--no-record]

Runs on a database of its own (a fresh SQLite file, or the PostgreSQL
database given, which it fills and empties) and a Redis queue prefix of its
own. Target: a scrape well under 100 ms, so that a 15 s scrape interval
costs the portal nothing noticeable. The host's load average is recorded
with the result (the host is shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

STATUSES = ("live", "superseded", "failed", "superseded", "cancelled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--builds-per-service", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to bench/RESULTS.md")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="hakobune-bench-scrape-")
    os.environ["HAKOBUNE_DATA_DIR"] = workdir
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{workdir}/bench.sqlite3"
    os.environ["CELERY_QUEUE"] = f"bench-scrape-{uuid.uuid4().hex[:8]}"
    os.environ["METRICS_TOKEN"] = "bench-token"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from prometheus_client.parser import text_string_to_metric_families

    from hakobune.platform.accounts.models import Membership, Team
    from hakobune.platform.builds.models import Build
    from hakobune.platform.crypto import encrypt
    from hakobune.platform.observability.models import LogDrain
    from hakobune.platform.services.models import Release, Service

    call_command("migrate", verbosity=0)
    call_command("migrate", database="logs", verbosity=0)
    owner = get_user_model().objects.create_user(username=f"bench-{os.getpid()}")
    suffix = os.getpid() % 10000
    teams = Team.objects.bulk_create([Team(name=f"bs{suffix}-{n}") for n in range((args.services + 9) // 10)])
    Membership.objects.bulk_create([Membership(team=team, user=owner, role="owner") for team in teams])
    try:
        began = time.perf_counter()
        services = Service.objects.bulk_create([
            Service(team=teams[n // 10], name=f"svc-{n}", target="local" if n % 4 else "cloudrun", created_by=owner)
            for n in range(args.services)
        ])
        now = timezone.now()
        builds = []
        for service in services:
            for number in range(1, args.builds_per_service + 1):
                status = "live" if number == args.builds_per_service else STATUSES[number % len(STATUSES)]
                started = now - timedelta(minutes=number * 7)
                took = 20 + (number * 37) % 600
                builds.append(Build(service=service, number=number, status=status, started_at=started,
                                    finished_at=started + timedelta(seconds=took), duration_seconds=took,
                                    failed_step="building" if status == "failed" else ""))
        Build.objects.bulk_create(builds, batch_size=2000)
        releases = []
        for build in Build.objects.filter(status__in=("live", "superseded")).only("id", "service_id", "number", "status"):
            releases.append(Release(service_id=build.service_id, build_id=build.id, number=build.number,
                                    image="hakobune/bench:1", status=build.status))
        Release.objects.bulk_create(releases, batch_size=2000)
        for service in services:
            live = Release.objects.filter(service=service, status="live").values_list("id", flat=True).first()
            Service.objects.filter(id=service.id).update(live_release_id=live)
        LogDrain.objects.bulk_create([
            LogDrain(team=team, kind="https", url_encrypted=encrypt("https://logs.example.com/x"),
                     url_shown="https://logs.example.com/x", shipped_lines=1000, last_success_at=now)
            for team in teams
        ])
        if connection.vendor == "postgresql":
            # As autovacuum leaves a table that has been in use a while: its
            # visibility map lets the counts read the indexes alone.
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE builds_build")
                cursor.execute("VACUUM ANALYZE services_release")
        seeded = (f"{len(services)} services in {len(teams)} teams, {Build.objects.count()} builds, "
                  f"{Release.objects.count()} releases, {len(teams)} log drains on {connection.vendor}")
        print(f"{seeded} (seeded in {time.perf_counter() - began:.1f} s)")

        client = Client()
        headers = {"HTTP_AUTHORIZATION": "Bearer bench-token", "HTTP_HOST": "localhost"}
        assert client.get("/metrics", **headers).status_code == 200  # warm
        totals, sources, queries = [], {}, []
        for _ in range(args.runs):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get("/metrics", **headers)
                totals.append(time.perf_counter() - started)
            assert response.status_code == 200
            queries.append(len(captured))
            for family in text_string_to_metric_families(response.content.decode()):
                if family.name == "hakobune_scrape_source_duration_seconds":
                    for sample in family.samples:
                        sources.setdefault(sample.labels["source"], []).append(sample.value)
        size = len(response.content)
        load = os.getloadavg()
    finally:
        Service.objects.filter(team__in=teams).update(live_release=None)
        Release.objects.filter(service__team__in=teams).delete()
        Build.objects.filter(service__team__in=teams).delete()
        Service.objects.filter(team__in=teams).delete()
        Team.objects.filter(id__in=[team.id for team in teams]).delete()
        owner.delete()

    def ms(values, share=0.5):
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                            text=True).stdout.strip() or "?"
    lines = [
        f"Commit {commit}.",
        "",
        f"{seeded}; {args.runs} scrapes through Django's test client (the view, the token check and every "
        f"source, Redis on 127.0.0.1); host load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(1 / 5 / 15 min, the host is shared).",
        "",
        "| what | median | p90 |",
        "|---|---|---|",
        f"| the whole scrape | {ms(totals):.1f} ms | {ms(totals, 0.9):.1f} ms |",
    ]
    lines += [f"| source `{name}` | {ms(values):.2f} ms | {ms(values, 0.9):.2f} ms |" for name, values in sources.items()]
    lines += ["", f"- {statistics.median(queries):.0f} SQL queries a scrape; the answer is {size:,} bytes"]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        from bench._local import append_results

        database = "PostgreSQL" if connection.vendor == "postgresql" else "SQLite"
        append_results(f"Platform metrics scrape (bench/platform_metrics.py, {database})", body)


if __name__ == "__main__":
    main()
