#!/usr/bin/env python
"""Queries and time per page of the portal, for one person of a seeded
database (bench/portal_seed.py): what bench/portal_load.py's people look at,
each page asked --repeat times through Django's test client, in process.
Where a page's time under load goes, without the load: the pages with the
most queries are the first to grow slow on PostgreSQL, where each query is a
round trip to another process.

    HAKOBUNE_DATA_DIR=<seeded> [DATABASE_URL=...] .venv/bin/python bench/portal_queries.py --plan <plan.json>
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402


def pages(plan: dict, person: dict) -> list[tuple[str, str, dict]]:
    team = person["teams"][0]["team"]
    service = plan["services"][team][0]
    build = service["builds"][-1]
    api = {"HTTP_AUTHORIZATION": f"Bearer {person['token']}"}
    base = f"/t/{team}/{service['name']}"
    return [
        ("dashboard", "/", {}),
        ("service page", f"{base}/", {}),
        ("build page", f"{base}/builds/{build['number']}/", {}),
        ("build log (lines)", f"{base}/builds/{build['number']}/log/", {}),
        ("build status", f"{base}/builds/{build['number']}/status/", {}),
        ("metrics charts (24h)", f"{base}/metrics/?range=24h", {}),
        ("runtime status", f"{base}/runtime/", {}),
        ("API teams", "/api/v1/teams/", api),
        ("API services", f"/api/v1/teams/{team}/services/", api),
        ("API service", f"/api/v1/teams/{team}/services/{service['name']}/", api),
        ("API build", f"/api/v1/builds/{build['id']}/", api),
        ("API build log", f"/api/v1/builds/{build['id']}/log", api),
        ("API metrics (24h)", f"/api/v1/teams/{team}/services/{service['name']}/metrics?since=24h&step=60", api),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True)
    parser.add_argument("--person", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--show", default="", help="print the queries of this page, grouped")
    args = parser.parse_args()
    plan = json.loads(Path(args.plan).read_text())
    person = plan["people"][args.person]
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username=person["username"]))
    print(f"{connection.vendor}; {person['username']}, teams {[t['team'] for t in person['teams']]}")
    print("| page | status | queries | median ms |")
    print("|---|---|---|---|")
    for name, path, headers in pages(plan, person):
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(path, **headers)
                if getattr(response, "streaming", False):
                    b"".join(response.streaming_content)
                times.append((time.perf_counter() - started) * 1000)
        print(f"| {name} | {response.status_code} | {len(captured.captured_queries)} | {statistics.median(times):.0f} |")
        if args.show and args.show == name:
            shapes = Counter(q["sql"][:160] for q in captured.captured_queries)
            for sql, count in shapes.most_common():
                print(f"    {count} × {sql}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
