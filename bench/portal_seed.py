"""Fills a portal's database with a platform in use, for bench/portal_load.py:
teams with owners, developers and viewers, services with a live release,
builds with their logs, metric readings (raw for the last METRICS_RAW_HOURS,
rolled up before), and an API token per person. Writes what the simulated
people need (who they are, their teams, services, builds) as JSON.

Run by bench/portal_load.py in a process whose environment names the data
directory and the database (HAKOBUNE_DATA_DIR, DATABASE_URL); the database
must be migrated. Rows are written in bulk, so seeding 2,000 builds with
their logs takes seconds, not the minutes real deploys would."""

from __future__ import annotations

import json
import os
import random
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hakobune.platform.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from hakobune.platform.accounts.models import ApiToken, Membership, Role, Team  # noqa: E402
from hakobune.platform.accounts.tokens import TOKEN_PREFIX, hash_token  # noqa: E402
from hakobune.platform.builds.models import Build, BuildLogLine, BuildStatus  # noqa: E402
from hakobune.platform.observability.models import MetricPoint  # noqa: E402
from hakobune.platform.services.models import Release, Service  # noqa: E402

PASSWORD = "load-test-password-1"

LOG_TEMPLATE = [
    "==> Fetching source ({kind})",
    "==> Detected python: requirements.txt found",
    "Step 1/9 : FROM hakobune/stack-python:bookworm",
    " ---> 3f1c2a9b7d10",
    "Step 2/9 : WORKDIR /app",
    " ---> Using cache",
    "Step 3/9 : COPY requirements.txt .",
    "Step 4/9 : RUN pip install --no-cache-dir -r requirements.txt",
    "Collecting flask==3.0.3 (from -r requirements.txt (line 1))",
    "  Downloading flask-3.0.3-py3-none-any.whl.metadata (3.2 kB)",
    "Collecting gunicorn==22.0.0 (from -r requirements.txt (line 2))",
    "Collecting Werkzeug>=3.0.0 (from flask==3.0.3->-r requirements.txt (line 1))",
    "Collecting Jinja2>=3.1.2 (from flask==3.0.3->-r requirements.txt (line 1))",
    "Installing collected packages: MarkupSafe, itsdangerous, click, blinker, Werkzeug, Jinja2, gunicorn, flask",
    "Successfully installed Jinja2-3.1.4 MarkupSafe-2.1.5 Werkzeug-3.0.3 blinker-1.8.2 click-8.1.7 flask-3.0.3",
    "Step 5/9 : COPY . .",
    "Step 6/9 : USER 10001",
    "Step 7/9 : EXPOSE 8080",
    "Step 8/9 : CMD gunicorn --bind 0.0.0.0:$PORT app:app",
    "Step 9/9 : LABEL hakobune.build={number}",
    "Successfully built 9c1e0f7a{number:04d}",
    "==> Starting 1 instance",
    "==> Waiting for the app to answer on port 8080",
]


def seed(*, teams: int, people: int, services_per_team: int, builds_per_service: int, log_lines: int, out: Path) -> dict:
    rng = random.Random(16)
    now = timezone.now()
    password_hash = make_password(PASSWORD)  # once: 50 hashes of Django's cost would take a minute
    with transaction.atomic():
        users = User.objects.bulk_create(
            [User(username=f"person{i:02d}", email=f"person{i:02d}@example.test", password=password_hash) for i in range(people)]
        )
        users = list(User.objects.filter(username__startswith="person").order_by("username"))
        team_rows = Team.objects.bulk_create([Team(name=f"team{i:02d}", created_by=users[i % people]) for i in range(teams)])
        team_rows = list(Team.objects.order_by("name"))
        memberships = []
        member_of: dict[str, list[tuple[str, str]]] = {user.username: [] for user in users}
        for index, team in enumerate(team_rows):
            # One owner per team (the first `teams` people), and developers and viewers.
            chosen = {index % people: Role.OWNER}
            for _ in range(3):
                other = rng.randrange(people)
                chosen.setdefault(other, rng.choice([Role.DEVELOPER, Role.DEVELOPER, Role.VIEWER]))
            for person, role in chosen.items():
                memberships.append(Membership(team=team, user=users[person], role=role))
                member_of[users[person].username].append((team.name, str(role)))
        for person, user in enumerate(users):
            if not member_of[user.username]:  # everybody is in a team
                team = team_rows[person % teams]
                memberships.append(Membership(team=team, user=user, role=Role.DEVELOPER))
                member_of[user.username].append((team.name, str(Role.DEVELOPER)))
        Membership.objects.bulk_create(memberships)

        tokens, token_rows = {}, []
        for user in users:
            token = TOKEN_PREFIX + f"load{user.pk:04d}" + "x" * 32
            tokens[user.username] = token
            token_rows.append(ApiToken(user=user, name="load test", prefix=token[:12], token_hash=hash_token(token)))
        ApiToken.objects.bulk_create(token_rows)

        service_rows = []
        for team in team_rows:
            for number in range(services_per_team):
                service_rows.append(Service(team=team, name=f"app{number}", created_by=team.created_by, port=8080))
        Service.objects.bulk_create(service_rows)
        service_rows = list(Service.objects.select_related("team").order_by("team__name", "name"))

        build_rows = []
        for service in service_rows:
            for number in range(1, builds_per_service + 1):
                created = now - timedelta(hours=(builds_per_service - number) * 2 + rng.random())
                status = BuildStatus.FAILED if rng.random() < 0.15 and number != builds_per_service else BuildStatus.LIVE
                build_rows.append(Build(
                    service=service, number=number, status=status, source_kind="archive", source_filename="app.tar.gz",
                    trigger="upload", source_digest=f"{rng.getrandbits(128):032x}", created_by=service.created_by,
                    detection_reason="requirements.txt found", image=f"hakobune/{service.team.name}/{service.name}:b{number}",
                    failure_reason="The app exited while starting (exit code 1)." if status == BuildStatus.FAILED else "",
                    started_at=created, finished_at=created + timedelta(seconds=5 + rng.random() * 30),
                ))
        Build.objects.bulk_create(build_rows, batch_size=500)
        # auto_now_add set created_at to now: spread them over the past, as real deploys are.
        builds = list(Build.objects.select_related("service").order_by("service_id", "number"))
        for build in builds:
            build.created_at = build.started_at
            build.status_changed_at = build.finished_at
        Build.objects.bulk_update(builds, ["created_at", "status_changed_at"], batch_size=500)

        line_rows = []
        for build in builds:
            for index in range(log_lines):
                template = LOG_TEMPLATE[index % len(LOG_TEMPLATE)]
                line_rows.append(BuildLogLine(build=build, text=template.format(kind="archive upload", number=build.number)))
            if len(line_rows) >= 20000:
                BuildLogLine.objects.bulk_create(line_rows, batch_size=2000)
                line_rows = []
        BuildLogLine.objects.bulk_create(line_rows, batch_size=2000)

        release_rows = []
        for build in builds:
            if build.status == BuildStatus.LIVE:
                release_rows.append(Release(
                    service=build.service, build=build, number=build.number, description=f"Deploy #{build.number}",
                    image=build.image, config={"port": 8080, "cpu": 0.5, "memory_mb": 256, "instances": 1},
                    status=Release.Status.SUPERSEDED, live_at=build.finished_at,
                ))
        Release.objects.bulk_create(release_rows, batch_size=500)
        latest = {}
        for release in Release.objects.order_by("service_id", "number"):
            latest[release.service_id] = release
        for release in latest.values():
            release.status = Release.Status.LIVE
        Release.objects.bulk_update(list(latest.values()), ["status"], batch_size=500)
        for service in service_rows:
            service.live_release = latest.get(service.pk)
        Service.objects.bulk_update(service_rows, ["live_release"], batch_size=500)

        # Readings as the collector and the roll-up leave them: every METRICS_SECONDS
        # for the last METRICS_RAW_HOURS, averages over METRICS_ROLLUP_SECONDS before.
        raw_from = now - timedelta(hours=settings.METRICS_RAW_HOURS)
        oldest = now - timedelta(hours=settings.METRICS_RETENTION_HOURS)
        points = []
        for service in service_rows:
            base_cpu, base_memory = rng.uniform(0.5, 20), rng.uniform(40, 120) * 2**20
            moments = []
            moment = oldest
            while moment < raw_from:
                moments.append((moment, settings.METRICS_ROLLUP_SECONDS))
                moment += timedelta(seconds=settings.METRICS_ROLLUP_SECONDS)
            while moment < now:
                moments.append((moment, 0))
                moment += timedelta(seconds=settings.METRICS_SECONDS)
            instance = f"{service.team.name}-{service.name}-1"
            for moment, period in moments:
                for name, value in (
                    ("cpu_percent", base_cpu * rng.uniform(0.5, 1.5)),
                    ("memory_bytes", base_memory * rng.uniform(0.9, 1.1)),
                    ("memory_limit_bytes", 256 * 2**20),
                ):
                    points.append(MetricPoint(
                        service=service, timestamp=moment, epoch=int(moment.timestamp()), name=name, value=value,
                        instance=instance, period=period,
                    ))
            if len(points) >= 30000:
                MetricPoint.objects.bulk_create(points, batch_size=3000)
                points = []
        MetricPoint.objects.bulk_create(points, batch_size=3000)

    plan = {
        "password": PASSWORD,
        "people": [
            {"username": user.username, "token": tokens[user.username], "teams": [
                {"team": team, "role": role} for team, role in member_of[user.username]
            ]}
            for user in users
        ],
        "services": {
            team.name: [
                {
                    "name": service.name,
                    "builds": [
                        {"id": build.pk, "number": build.number}
                        for build in builds if build.service_id == service.pk
                    ],
                }
                for service in service_rows if service.team_id == team.pk
            ]
            for team in team_rows
        },
    }
    counts = {
        "teams": Team.objects.count(), "people": User.objects.count(), "services": Service.objects.count(),
        "builds": Build.objects.count(), "log_lines": BuildLogLine.objects.count(),
        "releases": Release.objects.count(), "metric_points": MetricPoint.objects.count(),
        "memberships": Membership.objects.count(),
    }
    plan["counts"] = counts
    out.write_text(json.dumps(plan))
    return counts


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--services-per-team", type=int, default=5)
    parser.add_argument("--builds-per-service", type=int, default=20)
    parser.add_argument("--log-lines", type=int, default=120)
    args = parser.parse_args()
    print(json.dumps(seed(
        teams=args.teams, people=args.people, services_per_team=args.services_per_team,
        builds_per_service=args.builds_per_service, log_lines=args.log_lines, out=args.out,
    )))
