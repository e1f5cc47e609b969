#!/usr/bin/env python
"""Scale to zero, waking: the time from the first request to a sleeping
service (its instance stopped, its route pointing at the waker) until that
request's 200, through the router, for the flask fixture app.

    .venv/bin/python bench/wake.py [--runs 9] [--check]

The platform must be running (`make run`): the bench deploys a service of its
own (team `bench-wake`) through the running worker, then puts it to sleep and
wakes it `--runs` times, and deletes it at the end. Target: under 1 s (Cloud
Run's Python cold start is 1–3 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")
os.environ.setdefault("HAKOBUNE_DATA_DIR", str(PROJECT_DIR / "var"))

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402

from hakobune.platform.accounts.models import Team  # noqa: E402
from hakobune.platform.accounts.services import create_team  # noqa: E402
from hakobune.platform.services import scaling  # noqa: E402
from hakobune.platform.services.models import Service  # noqa: E402
from hakobune.platform.services.services import create_service, delete_service, deploy_service  # noqa: E402
from tests.conftest import archive_of  # noqa: E402

TARGET_S = 1.0
TEAM = "bench-wake"


def get(hostname: str, timeout: float = 60) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    port = settings.ROUTER_PORT
    return session.get(f"http://127.0.0.1:{port}/", headers={"Host": f"{hostname}:{port}"}, timeout=timeout)


def wait_live(service: Service, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    build = service.builds.order_by("-number").first()
    while time.monotonic() < deadline:
        build.refresh_from_db()
        if not build.in_progress:
            if build.status != "live":
                sys.exit(f"the bench service did not go live: {build.failure_reason}")
            return
        time.sleep(0.2)
    sys.exit("the bench service did not go live in time; is the platform running (make run)?")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()

    user, _ = get_user_model().objects.get_or_create(username="bench-wake")
    team = Team.objects.filter(name=TEAM).first() or create_team(name=TEAM, owner=user)
    for leftover in Service.objects.filter(team=team):
        Service.objects.filter(id=leftover.id).update(live_release=None)
        leftover.releases.all().delete()
        leftover.delete()
    service = create_service(team=team, name="sleepy", created_by=user)
    deploy_service(
        service=service, source_file=SimpleUploadedFile("app.tar.gz", archive_of("flask-hello")), created_by=user
    )
    wait_live(service)
    Service.objects.filter(id=service.id).update(scale_to_zero=True)

    times = []
    try:
        for run in range(args.runs):
            service.refresh_from_db()
            scaling.put_to_sleep(service)
            time.sleep(1.0)  # let the stopped instance settle, as an idle one would be
            started = time.monotonic()
            answer = get(service.hostname)
            elapsed = time.monotonic() - started
            if answer.status_code != 200 or not answer.text.startswith("Hello from Hakobune"):
                sys.exit(f"run {run + 1}: the woken service answered {answer.status_code}: {answer.text[:200]}")
            times.append(elapsed)
            print(f"run {run + 1}: first request answered after {elapsed * 1000:.0f} ms")
            again = time.monotonic()
            get(service.hostname)
            print(f"         the next request took {(time.monotonic() - again) * 1000:.1f} ms (straight to the instance)")
    finally:
        delete_service(service=service)

    median = statistics.median(times)
    print()
    print(f"wake: median {median * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
          f"over {len(times)} runs; target < {TARGET_S * 1000:.0f} ms: {'met' if median < TARGET_S else 'MISSED'}")
    return 1 if args.check and median >= TARGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
