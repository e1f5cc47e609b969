#!/usr/bin/env python
"""The portal under load: 50 simulated people browsing and deploying, with
locust on loopback, against the portal served as `make run` serves it
(scripts/portal.sh: gunicorn with its ASGI worker, PORTAL_WORKERS processes),
on SQLite and on PostgreSQL.

    .venv/bin/python bench/portal_load.py [--db sqlite,postgres,postgres-nopool] [--users 50] [--run-time 180]
                                          [--port 8106] [--redis-port 16406] [--pg-database hakobune_load]
                                          [--check] [--no-record]

For each database: a data directory of its own (and, for PostgreSQL, a
database of its own, dropped at the end), migrated and seeded by
bench/portal_seed.py (20 teams, 50 people, 100 services, 2,000 builds with
their logs, 48 h of metric readings), a Redis of the benchmark's own (no
Celery worker: deploys are accepted, recorded and queued, and stay queued),
the portal on --port, then locust headless with bench/locustfile_portal.py.
Reports p50/p95/p99 per page and overall, failures, requests/s, the load
average; appends them to bench/RESULTS.md. Target: p95 of every page under
300 ms."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = PROJECT / ".venv" / "bin" / "python"
TARGET_P95_MS = 300
PG_DATABASE = "hakobune_load"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wait_for(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    session = requests.Session()
    session.trust_env = False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the portal exited ({process.returncode}) before answering at {url}")
        try:
            if session.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the portal did not answer at {url}")


def portal_cpu_seconds(portal: subprocess.Popen) -> float:
    """User and system CPU seconds of the portal's processes (gunicorn's master and workers)."""
    import psutil  # comes with locust

    total = 0.0
    root = psutil.Process(portal.pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_one(db: str, args, folder: Path) -> dict:
    data = folder / db
    data.mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "HAKOBUNE_DATA_DIR": str(data),
        "DJANGO_SETTINGS_MODULE": "hakobune.platform.settings",
        "REDIS_URL": f"redis://127.0.0.1:{args.redis_port}/0",
        "CELERY_QUEUE": "hakobune-load",
        "HAKOBUNE_INSTANCE": "hakobune-load",
        "PORTAL_PORT": str(args.port),
        "PORTAL_BIND": "127.0.0.1",
        "DEBUG": "0",
        # Every person logs in from 127.0.0.1: no lockout of the whole run by a slow start.
        "LOGIN_FAILURE_LIMIT": "1000",
    }
    if args.portal_workers:
        env["PORTAL_WORKERS"] = str(args.portal_workers)
    if db.startswith("postgres"):
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", args.pg_database], check=True)
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", args.pg_database], check=True)
        env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{args.pg_database}"
        # "postgres": with the connection pool the settings give PostgreSQL;
        # "postgres-nopool": a connection per request, as before the pool.
        env["DB_POOL_MAX_SIZE"] = "0" if db == "postgres-nopool" else os.environ.get("DB_POOL_MAX_SIZE", "20")
    portal = None
    try:
        log(f"{db}: migrating")
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=PROJECT, env=env, check=True)
        subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=PROJECT, env=env, check=True)
        log(f"{db}: seeding")
        plan = data / "plan.json"
        started = time.monotonic()
        subprocess.run([PYTHON, PROJECT / "bench" / "portal_seed.py", "--out", plan], cwd=PROJECT, env=env, check=True)
        counts = json.loads(plan.read_text())["counts"]
        log(f"{db}: seeded in {time.monotonic() - started:.0f} s: {counts}")
        portal = subprocess.Popen(
            ["bash", "scripts/portal.sh"], cwd=PROJECT, env=env,
            stdout=open(data / "portal.out", "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(f"http://127.0.0.1:{args.port}/login/", portal)
        load_before = loadavg()
        log(f"{db}: locust, {args.users} people for {args.run_time} s (load average {load_before})")
        prefix = data / "locust"
        locust = subprocess.Popen(
            [PROJECT / ".venv" / "bin" / "locust", "-f", PROJECT / "bench" / "locustfile_portal.py", "--headless",
             "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.run_time}s",
             "-H", f"http://127.0.0.1:{args.port}", "--csv", str(prefix), "--only-summary", "--reset-stats", "--stop-timeout", "10",
             "--loglevel", "WARNING"],
            cwd=PROJECT, env={**env, "LOAD_PLAN": str(plan), "LOAD_LOGINS": str(data / "logins.json"), "LOAD_DEPLOYS": "0" if args.no_deploys else "1"},
        )
        # The portal's own CPU time over the measured part (from the end of
        # the ramp, when the statistics are reset): a figure that the other
        # work on a shared host does not inflate as it does the latencies.
        time.sleep(args.users / args.spawn_rate + 1)
        cpu_before, cpu_clock = portal_cpu_seconds(portal), time.monotonic()
        locust.wait()
        cpu_used, measured_s = portal_cpu_seconds(portal) - cpu_before, time.monotonic() - cpu_clock
        load_after = loadavg()
        rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
        failures = list(csv.DictReader(open(f"{prefix}_failures.csv")))
        queued = None
        try:
            import redis

            queued = redis.Redis(port=args.redis_port).llen("hakobune-load")
        except Exception:  # noqa: BLE001
            pass
        logins = sorted(json.loads((data / "logins.json").read_text())) if (data / "logins.json").exists() else []
        return {"db": db, "counts": counts, "rows": rows, "failures": failures, "load_before": load_before,
                "load_after": load_after, "queued": queued, "logins": logins, "cpu_used": cpu_used,
                "measured_s": measured_s}
    finally:
        stop(portal)
        if portal is not None:
            try:
                os.killpg(portal.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if db.startswith("postgres") and not args.keep:
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", args.pg_database], check=False)


def ms(value: str) -> str:
    return f"{float(value):.0f}" if value not in ("", "N/A") else "–"


def report(results: list[dict], args) -> tuple[str, bool]:
    lines = []
    ok = True
    for result in results:
        counts = result["counts"]
        heading = {"postgres": f"postgres (connection pool: {os.environ.get('DB_POOL_MAX_SIZE', '20')} per process)",
                   "postgres-nopool": "postgres (no pool: a connection per request)"}.get(result["db"], result["db"])
        lines += [
            f"### {heading}",
            "",
            f"Seeded: {counts['teams']} teams, {counts['people']} people ({counts['memberships']} memberships), "
            f"{counts['services']} services, {counts['builds']} builds with {counts['log_lines']:,} log lines, "
            f"{counts['releases']} releases, {counts['metric_points']:,} metric points. "
            f"Load average (1, 5, 15 min) before: {result['load_before']}; after: {result['load_after']}.",
            "",
            "| page | requests | failures | p50 ms | p95 ms | p99 ms | max ms | req/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in result["rows"]:
            name = row["Name"] if row["Name"] != "Aggregated" else "**all**"
            lines.append(
                f"| {name} | {row['Request Count']} | {row['Failure Count']} | {ms(row['50%'])} | {ms(row['95%'])} | "
                f"{ms(row['99%'])} | {ms(row['Max Response Time'])} | {float(row['Requests/s']):.1f} |"
            )
            if row["Name"] not in ("Aggregated", "login (POST)", "login page") and row["95%"] not in ("", "N/A"):
                if float(row["95%"]) >= TARGET_P95_MS:
                    ok = False
        total = next((row for row in result["rows"] if row["Name"] == "Aggregated"), None)
        if total and int(total["Request Count"]):
            # Requests in the CPU window: the measured rate over the window's length.
            requests_in_window = float(total["Requests/s"]) * result["measured_s"]
            lines.append("")
            lines.append(
                f"The portal's processes used {result['cpu_used']:.0f} CPU-seconds in the last {result['measured_s']:.0f} s "
                f"({result['cpu_used'] / result['measured_s']:.2f} cores), "
                f"**{result['cpu_used'] * 1000 / max(requests_in_window, 1):.1f} ms of CPU per request** on average."
            )
        failed = sum(int(row["Occurrences"]) for row in result["failures"])
        lines.append("")
        if failed:
            lines.append(f"Failures ({failed}):")
            for row in result["failures"]:
                lines.append(f"- {row['Name']}: {row['Occurrences']} × {row['Error'][:200]}")
        else:
            lines.append("No failures.")
        if result["logins"]:
            logins = result["logins"]
            lines.append(
                f"Logins during the ramp (not in the table): {len(logins)}, median {logins[len(logins) // 2] * 1000:.0f} ms, "
                f"slowest {logins[-1] * 1000:.0f} ms."
            )
        if result["queued"] is not None:
            lines.append(f"Deploys accepted and left in the queue (no worker): {result['queued']}.")
        lines.append("")
    return "\n".join(lines), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgres",
                        help="sqlite, postgres (with its connection pool), postgres-nopool (a connection per request); "
                             "comma-separated")
    parser.add_argument("--pg-database", default=PG_DATABASE,
                        help="the PostgreSQL database the run makes and drops (one of its own beside another run)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=1, help="people started per second (each logs in)")
    parser.add_argument("--run-time", type=int, default=240, help="seconds of load per database, the ramp included")
    parser.add_argument("--port", type=int, default=8106)
    parser.add_argument("--redis-port", type=int, default=16406)
    parser.add_argument("--portal-workers", type=int, default=0, help="PORTAL_WORKERS (default: as make run, 2)")
    parser.add_argument("--no-deploys", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the data directories and the PostgreSQL database")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when a page's p95 is over the target")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="hakobune-portal-load."))
    redis_server = subprocess.Popen(
        ["redis-server", "--port", str(args.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    results = []
    try:
        for db in [d.strip() for d in args.db.split(",") if d.strip()]:
            results.append(run_one(db, args, folder))
    finally:
        stop(redis_server)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            log(f"kept {folder}")
    body, ok = report(results, args)
    wait = f"{os.environ.get('LOAD_WAIT_MIN', '1')}–{os.environ.get('LOAD_WAIT_MAX', '3')} s"
    header = (
        f"{args.users} simulated people (locust {_locust_version()}, bench/locustfile_portal.py), each a seeded "
        f"person logged in to the portal, waiting {wait} between actions, for {args.run_time} s per database after "
        f"a ramp of {args.spawn_rate:g} people/s (statistics reset once all have started); the portal as `make run` serves it (scripts/portal.sh: gunicorn, "
        f"ASGI worker, {args.portal_workers or 2} processes) on 127.0.0.1:{args.port}; "
        + ("deploys through the API (a flask-hello archive) accepted and queued, no worker running. "
           if not args.no_deploys else "no deploys. ")
        + f"Target: every page's p95 under {TARGET_P95_MS} ms (login excluded: one password hash per person).\n\n"
    )
    verdict = f"\n- target p95 < {TARGET_P95_MS} ms on every page: **{'met' if ok else 'MISSED'}**\n"
    print("\n" + header + body + verdict)
    if not args.no_record:
        sys.path.insert(0, str(PROJECT))
        from bench._local import append_results

        append_results("Portal under load (bench/portal_load.py)", header + body + verdict)
    return 0 if ok or not args.check else 1


def _locust_version() -> str:
    try:
        from importlib.metadata import version

        return version("locust")
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    sys.exit(main())
