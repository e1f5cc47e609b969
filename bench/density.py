#!/usr/bin/env python
"""Density: how many idle hello services (tests/fixtures/apps/flask-hello, as
the platform builds and runs it: gunicorn, 2 workers, 256 MiB limit) this host
holds, started as real instances through the local backend
(DockerLocalBackend.deploy with a DeploySpec, one already-built image).

    .venv/bin/python bench/density.py [--counts 50,100,200] [--parallel 4]

Services are added up to each count in turn (50, then 50 more, then 100
more); at each count, after the new ones have settled: the host's
MemAvailable drop since the start (which includes docker-proxy and the
engine's own share) divided by the count, each container's memory as
`docker stats` counts it (cgroup usage less inactive file pages), and the time
to reconcile them all: listing the instances by label plus
`backend.sync_routes` of every live service (one Caddy config load). Every
service must still answer on its port. Stops at the first count it cannot
reach and records why. Caddy is the benchmark's own (admin 127.0.0.1:2998,
port 18098). Everything is removed at the end."""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from bench._local import append_results, backend, hello_image, own_caddy, remove_team  # noqa: E402
from hakobune.runtime.base import DeploySpec, LiveRoute, RuntimeBackendError  # noqa: E402
from hakobune.runtime.release_config import ReleaseConfig  # noqa: E402
from hakobune.runtime.docker_local import LABEL_MANAGED, LABEL_TEAM  # noqa: E402

TARGET = 200
SETTLE_S = 15


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable")


def container_memory_mib(client, container) -> float:
    """As `docker stats` shows it: usage less inactive file pages (cgroup v1
    files when there, else the stats API)."""
    folder = Path("/sys/fs/cgroup/memory/docker") / container.id
    try:
        usage = int((folder / "memory.usage_in_bytes").read_text())
        stats = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
        return (usage - int(stats.get("total_inactive_file", 0))) / 2**20
    except OSError:
        memory = container.stats(stream=False)["memory_stats"]
        return (memory["usage"] - memory.get("stats", {}).get("inactive_file", 0)) / 2**20


def answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="50,100,200")
    parser.add_argument("--parallel", type=int, default=4, help="deploys at a time")
    parser.add_argument("--image", help="a flask-hello image (default: one the platform built)")
    parser.add_argument("--admin-port", type=int, default=2998)
    parser.add_argument("--port", type=int, default=18098)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    counts = sorted(int(count) for count in args.counts.split(","))

    client = docker.from_env(timeout=300)
    image = hello_image(client, args.image)
    team = f"benchdens{secrets.token_hex(2)}"
    rows, stopped_because = [], ""
    live: list[LiveRoute] = []
    upstreams: dict[str, str] = {}
    start_mib = mem_available_mib()
    started = time.monotonic()
    with own_caddy(args.admin_port, args.port) as (admin, access_log):
        local = backend(admin, args.port, access_log)

        def deploy(number: int):
            name = f"hello{number:03d}"
            spec = DeploySpec(
                team=team, service=name, release_id=100000 + number, release_number=1, image=image,
                hostname=f"{name}.{team}.localhost", config=ReleaseConfig.of(port=8000, cpu=0.5, memory_mb=256),
            )
            began = time.monotonic()
            result = local.deploy(spec)
            return name, spec, result.state["upstreams"][0], time.monotonic() - began

        try:
            for count in counts:
                numbers = range(len(live), count)
                began = time.monotonic()
                deploy_times = []
                with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
                    futures = [pool.submit(deploy, number) for number in numbers]
                    for future in concurrent.futures.as_completed(futures):
                        try:
                            name, spec, upstream, took = future.result()
                        except (RuntimeBackendError, docker.errors.DockerException) as exc:
                            stopped_because = stopped_because or f"at {len(live)} services: {exc}"
                            continue
                        live.append(LiveRoute(hostname=spec.hostname, team=team, service=name, release_id=spec.release_id))
                        upstreams[name] = upstream
                        deploy_times.append(took)
                start_s = time.monotonic() - began
                if stopped_because:
                    print(f"stopped: {stopped_because}")
                    break
                time.sleep(SETTLE_S)

                reconcile_began = time.monotonic()
                listed = client.containers.list(filters={"label": [f"{LABEL_MANAGED}={getattr(local, 'instance', 'true')}", f"{LABEL_TEAM}={team}"]})
                local.sync_routes(live)
                reconcile_s = time.monotonic() - reconcile_began
                assert len(listed) == count, (len(listed), count)

                with concurrent.futures.ThreadPoolExecutor(16) as pool:
                    memories = list(pool.map(lambda c: container_memory_mib(client, c), listed))
                    answering = sum(pool.map(answers, upstreams.values()))
                host_drop = start_mib - mem_available_mib()
                row = {
                    "count": count,
                    "start_s": start_s,
                    "deploy_p50_s": statistics.median(deploy_times) if deploy_times else 0.0,
                    "host_mib_per_service": host_drop / count,
                    "host_drop_gib": host_drop / 1024,
                    "container_mib_median": statistics.median(memories),
                    "container_mib_total_gib": sum(memories) / 1024,
                    "reconcile_s": reconcile_s,
                    "answering": answering,
                    "mem_available_gib": mem_available_mib() / 1024,
                    "load": Path("/proc/loadavg").read_text().split()[0],
                }
                rows.append(row)
                print(row)
        finally:
            removal_began = time.monotonic()
            remove_team(client, team)
            removal_s = time.monotonic() - removal_began
    total_s = time.monotonic() - started

    lines = [
        f"Idle flask-hello services (gunicorn, 2 workers, 256 MiB and 0.5 CPU limits each), one team, "
        f"started through DockerLocalBackend.deploy {args.parallel} at a time; measured {SETTLE_S} s after the last start. "
        "Host memory per service = drop of MemAvailable since the start / services (includes docker-proxy and "
        "dockerd's share); container memory as `docker stats` counts it. Reconcile = list by label + "
        "sync_routes of all (one Caddy /load).",
        "",
        "| services | started in | deploy p50 | host MiB / service | container MiB (median) | all containers | "
        "MemAvailable left | reconcile | answering | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['count']} | {row['start_s']:.0f} s | {row['deploy_p50_s']:.1f} s | {row['host_mib_per_service']:.0f} | "
            f"{row['container_mib_median']:.0f} | {row['container_mib_total_gib']:.1f} GiB | "
            f"{row['mem_available_gib']:.1f} GiB | {row['reconcile_s']:.2f} s | {row['answering']}/{row['count']} | {row['load']} |"
        )
    reached = max((row["count"] for row in rows), default=0)
    lines += [
        "",
        f"- target {TARGET} idle services: **{'met' if reached >= TARGET else 'MISSED'}** (reached {reached})"
        + (f"; stopped {stopped_because}" if stopped_because else ""),
        f"- removing them all took {removal_s:.0f} s; the whole run {total_s:.0f} s",
    ]
    report = "\n".join(lines)
    print("\n" + report)
    if not args.no_record:
        append_results("Density (bench/density.py)", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
