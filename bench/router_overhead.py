#!/usr/bin/env python
"""Router overhead: one hello service (tests/fixtures/apps/flask-hello, gunicorn)
measured directly on its published port (127.0.0.1:<port>) and through Caddy
(the router's port with the service's Host header), in one run, with wrk on
loopback.

    .venv/bin/python bench/router_overhead.py [--rounds 3] [--seconds 8] [--connections 16] [--check]

Two loads, each run direct then routed, alternating, for --rounds rounds
(medians reported):
- latency: 1 connection, 1 thread: p50/p99 of a request alone, so the added
  p50 is Caddy's own cost and not queueing;
- throughput: --connections connections on 2 threads: requests/s (and p50/p99
  under load).

The service runs through the local backend (DockerLocalBackend.deploy, the same
locked-down container as any service, on a team network with its firewall) with
WEB_CONCURRENCY gunicorn workers; Caddy is the benchmark's own (admin
127.0.0.1:2997, port 18097) with the JSON access log on, as the platform runs
it. Everything is removed at the end. Targets: routed throughput >= 80 % of
direct, p50 added < 1 ms. Needs wrk (Debian package `wrk`)."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from bench._local import append_results, backend, hello_image, own_caddy, remove_team  # noqa: E402
from hakobune.runtime.base import DeploySpec, ServiceRef  # noqa: E402
from hakobune.runtime.release_config import ReleaseConfig  # noqa: E402

MIN_THROUGHPUT_RATIO = 0.80
MAX_ADDED_P50_MS = 1.0
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, *, host: str | None, connections: int, threads: int, seconds: int) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if host:
        command += ["-H", f"Host: {host}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for percent in ("50", "99"):
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
        result[f"p{percent}"] = float(value) * UNITS[unit]
    requests_line = re.search(r"(\d+) requests in", output)
    result["requests"] = int(requests_line.group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    result["errors"] = (int(errors.group(1)) if errors else 0, socket_errors.group(1) if socket_errors else "")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers in the service (WEB_CONCURRENCY)")
    parser.add_argument("--cpu", type=float, default=float(os.cpu_count() or 1), help="the service's CPU limit")
    parser.add_argument("--image", help="a flask-hello image (default: one the platform built)")
    parser.add_argument("--admin-port", type=int, default=2997)
    parser.add_argument("--port", type=int, default=18097)
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (scripts/install-deps.sh installs it)")

    client = docker.from_env()
    image = hello_image(client, args.image)
    team = f"benchrouter{secrets.token_hex(2)}"
    hostname = f"hello-{team}.localhost"
    runs = {"direct": {"latency": [], "load": []}, "routed": {"latency": [], "load": []}}
    with own_caddy(args.admin_port, args.port) as (admin, access_log):
        local = backend(admin, args.port, access_log)
        try:
            result = local.deploy(DeploySpec(
                team=team, service="hello", release_id=1, release_number=1, image=image, hostname=hostname,
                config=ReleaseConfig.from_dict({"port": 8000, "cpu": args.cpu, "memory_mb": 256}), env={"WEB_CONCURRENCY": str(args.workers)},
            ))
            upstream = result.state["upstreams"][0]
            direct, routed = f"http://{upstream}/", f"http://127.0.0.1:{args.port}/"
            print(f"service {hostname}: direct {direct}, routed {routed} (Host: {hostname})")
            for url, host in ((direct, None), (routed, hostname)):  # warm both paths
                wrk(url, host=host, connections=4, threads=1, seconds=2)
            for round_number in range(1, args.rounds + 1):
                for kind, (url, host) in (("direct", (direct, None)), ("routed", (routed, hostname))):
                    latency = wrk(url, host=host, connections=1, threads=1, seconds=args.seconds)
                    load = wrk(url, host=host, connections=args.connections, threads=2, seconds=args.seconds)
                    runs[kind]["latency"].append(latency)
                    runs[kind]["load"].append(load)
                    print(f"round {round_number} {kind:6}: 1 conn p50 {latency['p50']:.3f} ms p99 {latency['p99']:.3f} ms"
                          f" | {args.connections} conns {load['rps']:.0f} req/s p50 {load['p50']:.2f} ms p99 {load['p99']:.2f} ms"
                          f" errors {load['errors']}")
        finally:
            try:
                local.destroy(ServiceRef(team=team, service="hello"))
            finally:
                remove_team(client, team)

    def median(kind, load, key):
        return statistics.median(run[key] for run in runs[kind][load])

    ratio = median("routed", "load", "rps") / median("direct", "load", "rps")
    added_p50 = median("routed", "latency", "p50") - median("direct", "latency", "p50")
    added_p99 = median("routed", "latency", "p99") - median("direct", "latency", "p99")
    added_load_p50 = median("routed", "load", "p50") - median("direct", "load", "p50")
    ok_ratio, ok_p50 = ratio >= MIN_THROUGHPUT_RATIO, added_p50 < MAX_ADDED_P50_MS
    lines = [
        f"flask-hello (gunicorn, {args.workers} sync workers, CPU limit {args.cpu:g}) in the local runtime; "
        f"wrk on loopback, {args.rounds} rounds of {args.seconds} s per load and path, direct and routed alternating; "
        "medians. Caddy with the JSON access log on.",
        "",
        "| path | 1 conn p50 | 1 conn p99 | req/s at %d conns | p50 / p99 at %d conns |" % (args.connections, args.connections),
        "|---|---|---|---|---|",
    ]
    for kind in ("direct", "routed"):
        lines.append(
            f"| {kind} | {median(kind, 'latency', 'p50'):.3f} ms | {median(kind, 'latency', 'p99'):.3f} ms | "
            f"{median(kind, 'load', 'rps'):.0f} | {median(kind, 'load', 'p50'):.2f} / {median(kind, 'load', 'p99'):.2f} ms |"
        )
    lines += [
        "",
        f"- routed / direct throughput: **{ratio:.1%}** (target ≥ {MIN_THROUGHPUT_RATIO:.0%}: {'met' if ok_ratio else 'MISSED'})",
        f"- added latency at p50, one connection: **{added_p50:.3f} ms** (target < {MAX_ADDED_P50_MS} ms: "
        f"{'met' if ok_p50 else 'MISSED'}); at p99: {added_p99:.3f} ms; at p50 under load: {added_load_p50:.2f} ms",
    ]
    report = "\n".join(lines)
    print("\n" + report)
    if not args.no_record:
        append_results("Router overhead (bench/router_overhead.py)", report)
    return 0 if (ok_ratio and ok_p50) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
