#!/usr/bin/env python
"""Metrics history: how long the service page's metrics partial (history()
averaged per step, plus the charts) and the API's history take for a busy
service: `--instances` instances read every 15 s (CPU, memory, memory limit)
for 48 hours, the longest range kept by default.

    .venv/bin/python bench/metrics_history.py [--instances 10] [--database-url postgres://...]

Runs on a database of its own (a fresh SQLite file, or the PostgreSQL
database given, which it fills and empties). Target: the 48 h view under
300 ms, so that the page's 30 s refresh costs little.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="hakobune-bench-metrics-")
    os.environ["HAKOBUNE_DATA_DIR"] = workdir
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{workdir}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from hakobune.platform.observability.charts import build_charts
    from hakobune.platform.accounts.services import create_team
    from django.conf import settings

    from hakobune.platform.observability.collectors import history, roll_up
    from hakobune.platform.observability.models import MetricPoint
    from hakobune.platform.services.models import Service

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user(username=f"bench-{os.getpid()}")
    team = create_team(name=f"benchm{os.getpid() % 10000}", owner=owner)
    service = Service.objects.create(team=team, name="busy", created_by=owner)
    try:
        now = timezone.now()
        every = 15
        readings = args.hours * 3600 // every
        started = time.perf_counter()
        batch = []
        for index in range(readings):
            stamp = now - timedelta(seconds=index * every)
            epoch = int(stamp.timestamp())
            for instance in range(args.instances):
                name = f"hakobune-{team.name}-busy-v1-{instance}-abc123"
                batch += [
                    MetricPoint(service=service, timestamp=stamp, epoch=epoch, name="cpu_percent", value=index % 97, instance=name),
                    MetricPoint(service=service, timestamp=stamp, epoch=epoch, name="memory_bytes", value=5e7 + index, instance=name),
                    MetricPoint(service=service, timestamp=stamp, epoch=epoch, name="memory_limit_bytes", value=2.68e8, instance=name),
                ]
            if len(batch) >= 20000:
                MetricPoint.objects.bulk_create(batch)
                batch = []
        MetricPoint.objects.bulk_create(batch)
        count = MetricPoint.objects.filter(service=service).count()
        print(f"{count} points ({args.instances} instances × 3 readings every {every} s for {args.hours} h) "
              f"stored in {time.perf_counter() - started:.1f} s on {connection.vendor}")

        def measure(title):
            print(title)
            for label, hours in (("1 h", 1), ("24 h", 24), ("48 h", 48)):
                seconds = hours * 3600
                step = max(seconds // 60, 60)
                timings = []
                for _ in range(args.runs):
                    until = timezone.now()
                    since = until - timedelta(seconds=seconds)
                    began = time.perf_counter()
                    charts = build_charts(history(service, since, step), since, until, step)
                    timings.append(time.perf_counter() - began)
                print(f"  {label:>4}: {statistics.median(timings) * 1000:7.1f} ms median of {args.runs} "
                      f"(history + {len(charts)} charts)")

        measure("every reading kept:")
        began = time.perf_counter()
        replaced = roll_up(now)
        kept = MetricPoint.objects.filter(service=service).count()
        print(f"roll-up: {replaced} readings older than {settings.METRICS_RAW_HOURS} h became "
              f"{settings.METRICS_ROLLUP_SECONDS} s averages in {time.perf_counter() - began:.1f} s; {kept} rows left")
        measure("after the roll-up (what the platform keeps):")
    finally:
        MetricPoint.objects.filter(service=service).delete()
        service.delete()
        team.delete()
        owner.delete()


if __name__ == "__main__":
    main()
