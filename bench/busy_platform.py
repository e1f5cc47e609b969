#!/usr/bin/env python
"""A busy platform: the warm-redeploy latency of one service with 0, 50 and
200 other live services, while the scheduler runs metrics collection (every
15 s), the reconciler (every 30 s) and the rest of the housekeeping, as under
`make run`.

    .venv/bin/python bench/busy_platform.py [--counts 0,50,200] [--runs 5] [--filler static-site]
        [--per-team 10] [--ports 19120] [--deploy-latency "--runs-cold 2 --runs-warm 9"]

The platform is started by scripts/start.sh itself (router, portal, the three
workers, the scheduler), isolated from any other Hakobune on the host: a data
directory, SQLite database, Celery queue prefix, instance label and Redis
database of its own, and Caddy and the portal on free loopback ports. A
probe service (tests/fixtures/apps/flask-hello) is deployed, then for each
count the filler services (a small app, `--filler`, default the static site:
lighttpd) are deployed through the pipeline up to that count, two collection
periods pass, and the probe is redeployed `--runs` times with a one-line
change: the time from the deploy (services.deploy_service, as the portal
calls it) to the first HTTP 200 through the router showing the new text.

The fillers are spread over teams of `--per-team` services each (as a class
or a company would have them; one team of 200 would need a network block for
200 instances and a quota to match). Other work on the host moves the
numbers, so the counts are visited up and back down (0, 50, 200, 50, 0: the
way down stops fillers through the platform, as a person's Stop does), each
visit timing `--runs` redeploys, and every visit's load average is kept.

`--deploy-latency ARGS` also runs bench/deploy_latency.py (with ARGS) against
this platform once, at the highest count: the platform's warm redeploy
against the same change built and run by hand, on a busy platform, with its
step-by-step profile (printed, and written to --latency-output when given).

Target (issue 16): with 200 live services, within 1.2x of the latency with none.
Everything it started is stopped and removed at the end (scripts/stop.sh,
its containers, network, firewall rules, images and queues)."""

from __future__ import annotations

import argparse
import io
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from decimal import Decimal
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

import docker  # noqa: E402
import requests  # noqa: E402

from bench._local import append_results, remove_team  # noqa: E402
from bench.deploy_latency import dependency_layer_cached  # noqa: E402

APPS = PROJECT_DIR / "tests" / "fixtures" / "apps"
TARGET_RATIO = 1.2
PERIOD = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def archive(app: str, extra: dict[str, str] | None = None) -> bytes:
    root = APPS / app
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        files.update({name: text.encode() for name, text in (extra or {}).items()})
        for name, data in files.items():
            info = tarfile.TarInfo(f"{app}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Platform:
    """A Hakobune of the benchmark's own, started and stopped by the scripts
    `make run` and `make stop` use."""

    def __init__(self, redis_db: int, ports: int | None = None):
        suffix = secrets.token_hex(3)
        self.data_dir = Path(tempfile.mkdtemp(prefix="hakobune-bench-busy."))
        self.prefix = f"hakobune-bench-busy-{suffix}"
        # The router, its admin API and the portal: three given ports, or free ones.
        router, admin, portal = (ports, ports + 1, ports + 2) if ports else (free_port(), free_port(), free_port())
        self.router_port = router
        self.env = {
            "HAKOBUNE_DATA_DIR": str(self.data_dir),
            "DATABASE_URL": f"sqlite:///{self.data_dir}/hakobune.sqlite3",
            "CELERY_QUEUE": self.prefix,
            "HAKOBUNE_INSTANCE": self.prefix,
            "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "ROUTER_ADMIN_URL": f"http://127.0.0.1:{admin}",
            "ROUTER_PORT": str(self.router_port),
            "PORTAL_PORT": str(portal),
            "SECRET_KEY": f"bench-{secrets.token_hex(16)}",
            "HAKOBUNE_STACK_CACHE": os.environ.get("HAKOBUNE_STACK_CACHE", str(PROJECT_DIR / "var" / "stacks")),
            "METRICS_SECONDS": str(PERIOD),
            "RECONCILE_SECONDS": "30",
            "DJANGO_SETTINGS_MODULE": "hakobune.platform.settings",
        }
        os.environ.update(self.env)

    def start(self) -> None:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        subprocess.run(["bash", "scripts/start.sh"], cwd=PROJECT_DIR, env={**os.environ, **self.env}, check=True,
                       stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        subprocess.run(["bash", "scripts/stop.sh"], cwd=PROJECT_DIR, env={**os.environ, **self.env},
                       stdout=subprocess.DEVNULL)

    def get(self, hostname: str) -> requests.Response:
        session = requests.Session()
        session.trust_env = False
        return session.get(f"http://127.0.0.1:{self.router_port}/", headers={"Host": f"{hostname}:{self.router_port}"},
                           timeout=5)


def deploy(service, owner, app: str, extra=None):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from hakobune.platform.services.services import deploy_service

    return deploy_service(service=service, source_file=SimpleUploadedFile(f"{app}.tar.gz", archive(app, extra)),
                          created_by=owner)


def wait_until_ended(builds, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    pending = list(builds)
    while pending and time.monotonic() < deadline:
        for build in list(pending):
            build.refresh_from_db()
            if not build.in_progress:
                pending.remove(build)
        time.sleep(0.5)
    if pending:
        raise SystemExit(f"{len(pending)} builds did not end within {timeout:.0f} s")
    return builds


def redeploy_latency(platform, probe, owner, text: str, timeout: float = 300):
    """Seconds to the first 200 with `text`, and the build."""
    app_py = (APPS / "flask-hello" / "app.py").read_text().replace("Hello from Hakobune", text)
    started = time.perf_counter()
    build = deploy(probe, owner, "flask-hello", {"app.py": app_py})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = platform.get(probe.hostname)
            if response.status_code == 200 and response.text.startswith(text):
                return time.perf_counter() - started, build
        except requests.RequestException:
            pass
        build.refresh_from_db()
        if build.status == "failed":
            raise SystemExit(f"the probe's redeploy failed: {build.failure_reason}")
        time.sleep(0.05)
    raise SystemExit(f"the probe's redeploy did not answer within {timeout:.0f} s")


nan = float("nan")


def median_of(values) -> float:
    return statistics.median(values) if values else nan


def run_deploy_latency(platform, extra: str, output: str | None) -> str:
    """bench/deploy_latency.py against this platform as it is now (its
    portal, router and data directory), its output printed and kept."""
    import shlex

    team = f"lat{secrets.token_hex(2)}"
    command = [
        sys.executable, str(PROJECT_DIR / "bench" / "deploy_latency.py"),
        "--portal", f"http://127.0.0.1:{platform.env['PORTAL_PORT']}",
        "--router", f"127.0.0.1:{platform.router_port}",
        "--data-dir", str(platform.data_dir), "--team", team, "--user", "latency",
        *shlex.split(extra),
    ]
    print("running", " ".join(command), flush=True)
    load = os.getloadavg()
    result = subprocess.run(command, cwd=PROJECT_DIR, env={**os.environ, **platform.env}, capture_output=True,
                            text=True)
    text = result.stdout + (f"\n(stderr)\n{result.stderr[-3000:]}" if result.returncode else "")
    text += f"\n(load average when it started: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})\n"
    print(text, flush=True)
    if output:
        Path(output).write_text(text)
    return team


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="0,50,200")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--filler", default="static-site", help="the fixture app of the other services")
    parser.add_argument("--per-team", type=int, default=10, help="filler services per team")
    parser.add_argument("--ports", type=int, default=None, help="the router's port; its admin API and the portal "
                        "take the next two (default: free ports)")
    parser.add_argument("--deploy-latency", metavar="ARGS", default=None,
                        help="run bench/deploy_latency.py with these arguments at the highest count")
    parser.add_argument("--latency-output", default=None, help="where deploy_latency.py's output goes")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    # Up, then back down: a drift in the host's load shows as a difference
    # between the two visits of a count, and is averaged out by them.
    visits = counts + counts[-2::-1]

    platform = Platform(args.redis_db, args.ports)
    client = docker.from_env(timeout=120)
    team_name = f"busy{secrets.token_hex(2)}"
    filler_teams: list[str] = []
    rows, load = [], []
    latency_done = False
    try:
        platform.start()
        from django.contrib.auth import get_user_model

        from hakobune.platform.accounts.services import create_team
        from hakobune.platform.governance.models import TeamPolicy
        from hakobune.platform.observability.collectors import collection_health
        from hakobune.platform.services.services import create_service, start_service, stop_service

        owner = get_user_model().objects.create(username="bench-owner")
        team = create_team(name=team_name, owner=owner)
        TeamPolicy.objects.create(team=team, review=TeamPolicy.Review.TRUSTED)
        probe = create_service(team=team, name="probe", created_by=owner)
        first = wait_until_ended([deploy(probe, owner, "flask-hello")], 600)[0]
        if first.status != "live":
            raise SystemExit(f"the probe did not go live: {first.failure_reason}")
        probe.refresh_from_db()
        fillers: list = []  # every filler service made, in order
        live = 0
        filler_team = None
        for count in visits:
            started = time.perf_counter()
            builds, failed = [], []
            while len(fillers) < count:
                if len(fillers) % args.per_team == 0:
                    # A new team of the default quota, as a class's teams are.
                    # Each team its own owner (one person may create only a few teams).
                    number = len(fillers) // args.per_team
                    member = get_user_model().objects.create(username=f"bench-owner-{number}")
                    filler_team = create_team(name=f"{team_name}t{number}", owner=member)
                    filler_teams.append(filler_team.name)
                    TeamPolicy.objects.create(team=filler_team, review=TeamPolicy.Review.TRUSTED)
                service = create_service(team=filler_team, name=f"f{len(fillers)}", created_by=member, memory_mb=64,
                                         cpu=Decimal("0.1"))
                builds.append(deploy(service, member, args.filler))
                fillers.append(service)
            if builds:
                failed = [b for b in wait_until_ended(builds, 3600) if b.status != "live"]
                for build in failed:
                    print(f"filler {build.service.team.name}/{build.service.name} failed: {build.failure_reason}",
                          flush=True)
                live = count
            # Up to this count again (the way back up never happens; kept for other orders).
            for service in fillers[live:count]:
                start_service(service=service, created_by=service.created_by)
            # Down to this count: the fillers past it stop, as a person's Stop does.
            for service in fillers[count:live]:
                stop_service(service=service, created_by=service.created_by)
            live = count
            fill_s = time.perf_counter() - started
            time.sleep(2 * PERIOD)  # collections and reconciles run meanwhile
            load_before = os.getloadavg()
            before = collection_health()
            latencies, rebuilt = [], []
            for run in range(args.runs):
                seconds, build = redeploy_latency(platform, probe, owner, f"Busy {count} visit {len(rows)} run {run}")
                # A redeploy whose dependency layer was not in the cache (something
                # on the host removed it) reinstalled the packages: not a warm
                # redeploy, so it is counted apart.
                lines = build.log_lines.order_by("id").values_list("text", flat=True)
                (rebuilt if dependency_layer_cached(lines) is False else latencies).append(seconds)
            after = collection_health()
            load.append((load_before[0], os.getloadavg()[0]))
            rows.append({"count": count, "latencies": latencies, "rebuilt": rebuilt, "failed": len(failed),
                         "fill_s": fill_s,
                         "skipped": after["skipped"] - before["skipped"], "last": after["last"]})
            if args.deploy_latency is not None and count == max(counts) and not latency_done:
                latency_done = True
                # Its team goes with the others at the end, whatever it left.
                filler_teams.append(run_deploy_latency(platform, args.deploy_latency, args.latency_output))
            print(f"{count} live (visit {len(rows)}): median {median_of(latencies):.2f} s "
                  f"{['%.2f' % v for v in latencies]} left out {['%.1f' % v for v in rebuilt]} load {load[-1][0]:.1f}-{load[-1][1]:.1f}", flush=True)
    finally:
        platform.stop()
        # Every instance this platform made first (by its own label), then
        # each team's network; one that fails is said and the others still go.
        for container in client.containers.list(all=True, filters={"label": f"org.hakobune.managed={platform.prefix}"}):
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
        for name in [team_name, *filler_teams]:
            for attempt in range(3):
                try:
                    remove_team(client, name)
                    break
                except docker.errors.APIError as exc:
                    if attempt == 2:
                        print(f"could not remove team {name}'s network: {exc}")
                    time.sleep(5)
            for image in client.images.list(name=f"hakobune/{name}/*"):
                for tag in image.tags:
                    try:
                        client.images.remove(tag)
                    except docker.errors.APIError:
                        pass
        try:
            import redis

            connection = redis.Redis.from_url(platform.env["REDIS_URL"])
            # Its queues, Celery's bindings and markers, and the offsets of its logs.
            for pattern in (f"{platform.prefix}*", f"hakobune:{platform.prefix}:*", f"*{platform.prefix}*",
                            f"*{platform.data_dir}*"):
                for key in connection.scan_iter(pattern):
                    connection.delete(key)
        except Exception as exc:  # noqa: BLE001
            print(f"could not clear the benchmark's Redis keys: {exc}")
        subprocess.run(["rm", "-rf", str(platform.data_dir)])

    if not rows:
        return
    by_count: dict[int, list[float]] = {}
    for row in rows:
        by_count.setdefault(row["count"], []).extend(row["latencies"])
    base = statistics.median(by_count[counts[0]])
    lines = [
        f"`bench/busy_platform.py --counts {args.counts} --runs {args.runs} --filler {args.filler} "
        f"--per-team {args.per_team}`: a platform started by scripts/start.sh (its workers per queue and the "
        f"scheduler with collection every {PERIOD} s and the reconciler every 30 s), SQLite. The probe is "
        f"flask-hello in a team of its own, redeployed with a one-line change; latency = deploy_service() to the "
        f"first 200 through the router showing the new text. Fillers: {args.filler}, {args.per_team} per team "
        f"(default quota), visited up and back down ({', '.join(str(v) for v in visits)}); the way down stops "
        "fillers with the platform's Stop.",
        "",
        "| visit | live services besides the probe | redeploy median | min | max | left out (packages reinstalled) "
        "| skipped collections | last collection | load avg (1 min) before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for number, (row, avg) in enumerate(zip(rows, load), 1):
        last = row["last"] or {}
        lines.append(
            f"| {number} | {row['count']} | {median_of(row['latencies']):.2f} s | "
            f"{min(row['latencies'], default=nan):.2f} s | {max(row['latencies'], default=nan):.2f} s | "
            f"{', '.join('%.1f s' % v for v in row['rebuilt']) or '–'} | {row['skipped']} | "
            f"{last.get('seconds', '?')} s, {last.get('points', '?')} points | {avg[0]:.1f} → {avg[1]:.1f} |"
        )
    lines += ["", "| live services | runs (all visits) | median | vs 0 |", "|---|---|---|---|"]
    for count, values in by_count.items():
        lines.append(f"| {count} | {len(values)} | {statistics.median(values):.2f} s | "
                     f"{statistics.median(values) / base:.2f}x |")
    biggest = max(by_count)
    ratio = statistics.median(by_count[biggest]) / base
    lines += [
        "",
        f"- target (with {biggest} live services within {TARGET_RATIO}x of none): "
        f"**{'met' if ratio <= TARGET_RATIO else 'not met'}** ({ratio:.2f}x)",
        "- fillers: " + ", ".join(f"to {r['count']} in {r['fill_s']:.0f} s ({r['failed']} failed)"
                                  for r in rows if r["fill_s"] > 1),
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        append_results("Busy platform (bench/busy_platform.py)", body)


if __name__ == "__main__":
    main()
