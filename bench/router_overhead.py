#!/usr/bin/env python
"""Router overhead: one hello service (tests/fixtures/apps/flask-hello, gunicorn)
measured directly on its published port (127.0.0.1:<port>) and through Caddy
(the router's port with the service's Host header), in one run, with wrk on
loopback.

    .venv/bin/python bench/router_overhead.py [--rounds 3] [--seconds 8] [--connections 16] [--check]
    .venv/bin/python bench/router_overhead.py --cpu 2 --workers 4   # the set-up before 2026-11-29

Two loads, each run direct then routed, alternating, for --rounds rounds
(medians reported):
- latency: 1 connection, 1 thread: p50/p99 of a request alone, so the added
  p50 is Caddy's own cost and not queueing;
- throughput: --connections connections on 2 threads: requests/s (and p50/p99
  under load).

The service runs as the platform runs a deployed flask-hello: through the
local backend (DockerLocalBackend.deploy, the same locked-down container as any
service, on a team network with its firewall), with the platform's default
CPU limit (DEFAULT_SERVICE_CPU, 0.5) and the python buildpack's gunicorn (2
sync workers, WEB_CONCURRENCY unset). Caddy is the benchmark's own (admin
127.0.0.1:2997, port 18097), started as scripts/start.sh starts the platform's
(its output to a log file) and configured by hakobune/runtime/router.py with
the JSON access log on; the run checks that Caddy holds exactly the
configuration router.py writes. Everything is removed at the end. Targets:
routed throughput >= 80 % of direct, p50 added < 1 ms. Needs wrk (Debian
package `wrk`).

Before, the service ran with a CPU limit of every core of the host (2 here)
and 4 gunicorn workers: on a 2-core host the app alone could then take all
the CPU, and Caddy, docker-proxy and wrk took theirs from it, so the routed
path measured the host's CPU shared four ways rather than the router
(bench/RESULTS.md, "Router overhead: why the benchmark disagreed with wrk").
`--cpu 2 --workers 4` runs that set-up again."""

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
from hakobune.runtime.router import Route  # noqa: E402
from hakobune.runtime.release_config import ReleaseConfig  # noqa: E402

MIN_THROUGHPUT_RATIO = 0.80
MAX_ADDED_P50_MS = 1.0
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
# The platform's default CPU limit of a service (settings.DEFAULT_SERVICE_CPU).
PLATFORM_CPU = float(os.environ.get("DEFAULT_SERVICE_CPU", "0.5"))


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


class CpuMeter:
    """CPU seconds used so far by each part of a request's path: the app (its
    container's cgroup), docker-proxy (the userland proxy of its published
    port), Caddy, and wrk (this script's waited-for children). Per request,
    this tells where a 2-core host's CPU goes whatever else runs on it."""

    def __init__(self, container_id: str, host_port: str):
        import psutil  # installed with the test dependencies (locust needs it)

        self.psutil = psutil
        self.cgroup = Path("/sys/fs/cgroup/cpuacct/docker") / container_id / "cpuacct.usage"
        me = psutil.Process()
        self.caddy = next((p for p in me.children() if p.name() == "caddy"), None)
        self.proxy = next((
            p for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "docker-proxy" and f"-host-port {host_port} " in " ".join(p.info["cmdline"] or []) + " "
        ), None)

    def _process(self, process) -> float:
        if process is None:
            return float("nan")
        try:
            times = process.cpu_times()
        except self.psutil.Error:
            return float("nan")
        return times.user + times.system

    def snapshot(self) -> dict[str, float]:
        import resource

        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            app = int(self.cgroup.read_text()) / 1e9
        except OSError:
            app = float("nan")
        return {"app": app, "docker-proxy": self._process(self.proxy), "caddy": self._process(self.caddy),
                "wrk": children.ru_utime + children.ru_stime}


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
    parser.add_argument("--workers", type=int, default=0,
                        help="gunicorn workers in the service (WEB_CONCURRENCY); 0: unset, the buildpack's default (2)")
    parser.add_argument("--cpu", type=float, default=PLATFORM_CPU,
                        help=f"the service's CPU limit (default: the platform's, {PLATFORM_CPU:g})")
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
                config=ReleaseConfig.from_dict({"port": 8000, "cpu": args.cpu, "memory_mb": 256}),
                env={"WEB_CONCURRENCY": str(args.workers)} if args.workers else {},
            ))
            upstream = result.state["upstreams"][0]
            # The router as the platform configures it: exactly what router.py writes.
            written = local.router.full_config([Route(hostname, (upstream,))])
            held = local.router.http.get(f"{admin}/config/", timeout=5).json()
            if held != written:
                raise SystemExit(f"Caddy's configuration is not router.py's:\n{held}\n!=\n{written}")
            meter = CpuMeter(result.state["containers"][0], upstream.rsplit(":", 1)[1])
            direct, routed = f"http://{upstream}/", f"http://127.0.0.1:{args.port}/"
            print(f"service {hostname}: direct {direct}, routed {routed} (Host: {hostname})")
            for url, host in ((direct, None), (routed, hostname)):  # warm both paths
                wrk(url, host=host, connections=4, threads=1, seconds=2)
            for round_number in range(1, args.rounds + 1):
                for kind, (url, host) in (("direct", (direct, None)), ("routed", (routed, hostname))):
                    latency = wrk(url, host=host, connections=1, threads=1, seconds=args.seconds)
                    before = meter.snapshot()
                    load = wrk(url, host=host, connections=args.connections, threads=2, seconds=args.seconds)
                    after = meter.snapshot()
                    load["cpu_ms"] = {part: (after[part] - before[part]) * 1000 / max(load["requests"], 1) for part in after}
                    latency["load"] = load["load"] = loadavg()
                    runs[kind]["latency"].append(latency)
                    runs[kind]["load"].append(load)
                    print(f"round {round_number} {kind:6}: 1 conn p50 {latency['p50']:.3f} ms p99 {latency['p99']:.3f} ms"
                          f" | {args.connections} conns {load['rps']:.0f} req/s p50 {load['p50']:.2f} ms p99 {load['p99']:.2f} ms"
                          f" errors {load['errors']} | CPU ms/request "
                          + " ".join(f"{part} {value:.3f}" for part, value in load["cpu_ms"].items())
                          + f" (load {load['load']})", flush=True)
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
    workers = f"{args.workers} sync workers (WEB_CONCURRENCY)" if args.workers else "the buildpack's 2 sync workers"
    loads = [run["load"] for kind in runs for run in runs[kind]["load"]]
    lines = [
        f"flask-hello (gunicorn, {workers}, CPU limit {args.cpu:g}) in the local runtime; "
        f"wrk on loopback, {args.rounds} rounds of {args.seconds} s per load and path, direct and routed alternating; "
        "medians. Caddy configured by router.py (checked), JSON access log on. "
        f"Load average (1 min) during the rounds: {min(loads)}–{max(loads)} on {os.cpu_count()} CPUs.",
        "",
        "| path | 1 conn p50 | 1 conn p99 | req/s at %d conns | p50 / p99 at %d conns |" % (args.connections, args.connections),
        "|---|---|---|---|---|",
    ]
    for kind in ("direct", "routed"):
        lines.append(
            f"| {kind} | {median(kind, 'latency', 'p50'):.3f} ms | {median(kind, 'latency', 'p99'):.3f} ms | "
            f"{median(kind, 'load', 'rps'):.0f} | {median(kind, 'load', 'p50'):.2f} / {median(kind, 'load', 'p99'):.2f} ms |"
        )
    parts = ("app", "docker-proxy", "caddy", "wrk")

    def cpu(kind, part):
        return statistics.median(run["cpu_ms"][part] for run in runs[kind]["load"])

    lines += [
        "",
        f"CPU per request at {args.connections} connections (ms, medians of the rounds):",
        "",
        "| path | " + " | ".join(parts) + " | all |",
        "|---|" + "---|" * (len(parts) + 1),
    ]
    for kind in ("direct", "routed"):
        values = [cpu(kind, part) for part in parts]
        lines.append(f"| {kind} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {sum(v for v in values if v == v):.3f} |")
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
