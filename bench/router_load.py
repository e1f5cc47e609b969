#!/usr/bin/env python
"""The router with 200 routed services: throughput and latency through Caddy
of one service alone against the same load spread over all of them.

    .venv/bin/python bench/router_load.py [--services 200] [--rounds 3] [--seconds 10] [--connections 64]
                                         [--admin-port 3106] [--port 18106] [--check] [--no-record]

Each service is a real instance started through the local backend
(DockerLocalBackend.deploy: the locked-down container, its team network and
firewall, published on 127.0.0.1, CPU limit --cpu) from a tiny static site on
Hakobune's static stack (hakobune/stack-static: lighttpd), so that the
services cost little and the router is what is measured. The routes are the
ones the platform writes (hakobune/runtime/router.py through the backend: a
route per deploy, then the whole configuration loaded once as the reconciler
does), in a Caddy of the benchmark's own with the JSON access log on.

Loads, with wrk on loopback, each for --rounds rounds alternating:
- direct: the first service on its published port, no router (what one
  instance gives);
- one service: every request through Caddy to that service;
- one service, scripted: the same, each request made by the spread's Lua
  script with a list of one host (to see what wrk's script itself costs on
  the same 2 CPUs as Caddy);
- last route: every request to the service whose host Caddy looks at last
  (the last entry of the router's host map, which compares the host with its
  entries in turn; before the map, the last of one route per service, whose
  host matchers Caddy tried in turn);
- spread: each request to the next of all services in turn (a wrk Lua script
  setting the Host header);
- spread, one upstream: each request to the next of as many custom domains of
  the first service (the same number of hosts to look up, one container
  behind them), which tells the lookup's cost from that of spreading the
  requests over as many containers.
Target: spread throughput >= 90 % of one service's. Everything is removed at
the end (containers, the team network and its firewall rules, the image).

With --router-cost, instead: the router's own cost of holding many routes,
with everything else the same. One service is measured (web000) and the
other --services - 1 are fillers, deployed the same way and never requested.
The same Caddy is given, in turn, the whole configuration of 1 route (the
measured service's alone) and of all --services routes (the measured one and
the fillers), each loaded as the reconciler loads it (one /load); after each
load, a --settle-second warm-up, then the measured load: the same wrk, the
same connections and threads, the same Lua script (one host: the measured
service's), against the same upstream container. The two configurations
alternate within each round, and their order flips every round (1, N; N, 1;
…), so that a drift of the host's load falls on both alike.

    .venv/bin/python bench/router_load.py --router-cost [--services 200] [--rounds 6] [--seconds 10]"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from bench._local import SPREAD_LUA, append_results, backend, own_caddy, remove_team  # noqa: E402
from hakobune.runtime.base import DeploySpec, LiveRoute, RuntimeBackendError  # noqa: E402
from hakobune.runtime.release_config import ReleaseConfig  # noqa: E402
from hakobune.runtime.router import Route  # noqa: E402

TARGET_RATIO = 0.90
STACK = "hakobune/stack-static:bookworm"
IMAGE = "hakobune/bench-local/static-hello:router-load"
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def build_image(client: docker.DockerClient) -> str:
    """A one-page site on the static stack, as the platform would build one."""
    folder = Path(tempfile.mkdtemp(prefix="hakobune-router-load."))
    try:
        (folder / "index.html").write_text("<!doctype html><title>hello</title><p>hello from a routed service</p>\n")
        (folder / "Dockerfile").write_text(
            f"FROM {STACK}\nENV SITE_ROOT=/site\nCOPY index.html /site/index.html\n"
        )
        client.images.build(path=str(folder), tag=IMAGE, rm=True, pull=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return IMAGE


def wrk(url: str, *, connections: int, threads: int, seconds: int, host: str | None = None,
        script: str | None = None) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if host:
        command += ["-H", f"Host: {host}"]
    if script:
        command += ["-s", script]
    output = subprocess.run(command + [url], capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for percent in ("50", "99"):
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
        result[f"p{percent}"] = float(value) * UNITS[unit]
    result["requests"] = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    result["errors"] = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu", type=float, default=0.5, help="each service's CPU limit (the platform's default: 0.5)")
    parser.add_argument("--parallel", type=int, default=4, help="deploys at a time")
    parser.add_argument("--admin-port", type=int, default=3106)
    parser.add_argument("--port", type=int, default=18106)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--router-cost", action="store_true",
                        help="only the router's own cost: one service through a router of 1 route and of --services "
                             "routes (the others fillers), interleaved")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="--router-cost: seconds of warm-up load after each configuration is loaded")
    args = parser.parse_args()
    if args.services < 2 and args.router_cost:
        parser.error("--router-cost needs --services 2 or more (one measured, the others fillers)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (scripts/install-deps.sh installs it)")

    client = docker.from_env(timeout=300)
    team = f"benchrl{secrets.token_hex(2)}"
    runs: dict[str, list[dict]] = {"direct": [], "one service": [], "one service, scripted": [], "last route": [], "spread": [],
                                   "spread, one upstream": []}
    started = time.monotonic()
    script_folder = Path(tempfile.mkdtemp(prefix="hakobune-router-load-wrk."))
    image = build_image(client)
    deploy_s = reconcile_s = 0.0
    try:
        with own_caddy(args.admin_port, args.port) as (admin, access_log):
            local = backend(admin, args.port, access_log)

            def deploy(number: int):
                name = f"web{number:03d}"
                spec = DeploySpec(
                    team=team, service=name, release_id=200000 + number, release_number=1, image=image,
                    hostname=f"{name}-{team}.localhost",
                    config=ReleaseConfig.of(port=8080, cpu=args.cpu, memory_mb=64),
                )
                return number, spec, local.deploy(spec).state["upstreams"][0]

            began = time.monotonic()
            deployed: dict[int, tuple[DeploySpec, str]] = {}
            with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
                for future in concurrent.futures.as_completed([pool.submit(deploy, n) for n in range(args.services)]):
                    try:
                        number, spec, upstream = future.result()
                    except (RuntimeBackendError, docker.errors.DockerException) as exc:
                        raise SystemExit(f"a deploy failed after {len(deployed)} services: {exc}")
                    deployed[number] = (spec, upstream)
                    if len(deployed) % 25 == 0:
                        print(f"{len(deployed)} services deployed ({time.monotonic() - began:.0f} s)", flush=True)
            deploy_s = time.monotonic() - began
            # As the reconciler leaves it: the whole configuration, every live route, loaded at once.
            began = time.monotonic()
            local.sync_routes([
                LiveRoute(hostname=spec.hostname, team=team, service=spec.service, release_id=spec.release_id)
                for spec, _ in (deployed[n] for n in sorted(deployed))
            ])
            reconcile_s = time.monotonic() - began
            routes = local.router.routes() if hasattr(local, "router") else {}
            print(f"{len(routes) or '?'} routes in Caddy; deploys took {deploy_s:.0f} s, the reconcile {reconcile_s:.2f} s")

            if args.router_cost:
                return router_cost(args, local, team, deployed, script_folder, deploy_s=deploy_s, started=started)

            hosts = [deployed[n][0].hostname for n in sorted(deployed)]
            first_spec, first_upstream = deployed[0]
            # Which host Caddy looks at last: the order of its host map.
            ordered = list(routes)
            last_host = ordered[-1] if ordered else hosts[0]
            spread_script = script_folder / "spread.lua"
            spread_script.write_text(SPREAD_LUA % ", ".join(f'"{host}"' for host in hosts))
            # As many custom domains of the first service, after the routes above were read.
            domains = [f"d{number:03d}.{first_spec.hostname}" for number in range(len(hosts))]
            local.router.set_route(Route(first_spec.hostname, (first_upstream,), aliases=tuple(domains)))
            # The same script with one host: wrk pays for its Lua per request on the
            # same 2 CPUs as Caddy, so the spread is compared with a load that pays it too.
            one_scripted = script_folder / "one-service.lua"
            one_scripted.write_text(SPREAD_LUA % f'"{first_spec.hostname}"')
            one_upstream_script = script_folder / "one-upstream.lua"
            one_upstream_script.write_text(SPREAD_LUA % ", ".join(f'"{host}"' for host in domains))
            routed = f"http://127.0.0.1:{args.port}/"
            loads = {
                "direct": lambda: wrk(f"http://{first_upstream}/", connections=args.connections, threads=args.threads,
                                      seconds=args.seconds),
                "one service": lambda: wrk(routed, host=first_spec.hostname, connections=args.connections,
                                           threads=args.threads, seconds=args.seconds),
                "one service, scripted": lambda: wrk(routed, script=str(one_scripted), connections=args.connections,
                                                     threads=args.threads, seconds=args.seconds),
                "last route": lambda: wrk(routed, host=last_host, connections=args.connections,
                                          threads=args.threads, seconds=args.seconds),
                "spread": lambda: wrk(routed, script=str(spread_script), connections=args.connections,
                                      threads=args.threads, seconds=args.seconds),
                "spread, one upstream": lambda: wrk(routed, script=str(one_upstream_script),
                                                    connections=args.connections, threads=args.threads,
                                                    seconds=args.seconds),
            }
            for check_host in (first_spec.hostname, last_host, hosts[len(hosts) // 2], domains[-1]):  # each answers 200
                result = wrk(routed, host=check_host, connections=2, threads=1, seconds=1)
                if result["errors"]:
                    raise SystemExit(f"{check_host} does not answer 200 through the router: {result}")
            wrk(routed, script=str(spread_script), connections=args.connections, threads=args.threads, seconds=3)
            for round_number in range(1, args.rounds + 1):
                for kind, load in loads.items():
                    result = load()
                    result["load"] = loadavg()
                    runs[kind].append(result)
                    print(f"round {round_number} {kind:12}: {result['rps']:8.0f} req/s p50 {result['p50']:.2f} ms "
                          f"p99 {result['p99']:.2f} ms errors {result['errors']} (load {result['load']})", flush=True)
    finally:
        began = time.monotonic()
        remove_team(client, team)
        removal_s = time.monotonic() - began
        shutil.rmtree(script_folder, ignore_errors=True)
        try:
            client.images.remove(IMAGE)
        except docker.errors.APIError:
            pass

    def median(kind, key):
        return statistics.median(run[key] for run in runs[kind])

    ratio = median("spread", "rps") / median("one service", "rps")
    # For comparison: one service through the same Lua script as the spread.
    scripted_ratio = median("spread", "rps") / median("one service, scripted", "rps")
    ok = ratio >= TARGET_RATIO
    lines = [
        f"{len(deployed)} services (a one-page static site on hakobune/stack-static: lighttpd; CPU limit {args.cpu:g}, "
        f"64 MiB each), started through DockerLocalBackend.deploy {args.parallel} at a time in {deploy_s:.0f} s; "
        f"routes as the platform writes them (a route per deploy, then one whole /load as the reconciler does, "
        f"{reconcile_s:.2f} s); Caddy of the benchmark's own with the JSON access log on. wrk on loopback, "
        f"{args.connections} connections on {args.threads} threads, {args.rounds} rounds of {args.seconds} s per "
        "load, loads alternating; medians (each round's load average in brackets below).",
        "",
        "| load | req/s | p50 | p99 | errors | load average per round |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "direct": "one service, direct (its published port, no router)",
        "one service": "one service through the router",
        "one service, scripted": "one service through the router, requests made by the spread's Lua script",
        "last route": f"the host Caddy looks at last (of {len(deployed)})",
        "spread": f"spread over all {len(deployed)} services",
        "spread, one upstream": f"spread over {len(deployed)} custom domains of one service",
    }
    for kind in runs:
        lines.append(
            f"| {labels[kind]} | {median(kind, 'rps'):.0f} | {median(kind, 'p50'):.2f} ms | {median(kind, 'p99'):.2f} ms | "
            f"{sum(run['errors'] for run in runs[kind])} | {'; '.join(run['load'].split()[0] for run in runs[kind])} |"
        )
    lines += [
        "",
        f"- spread over {len(deployed)} / one service, through the router: **{ratio:.1%}** "
        f"(target ≥ {TARGET_RATIO:.0%}: {'met' if ok else 'MISSED'}); against one service whose requests the "
        f"spread's Lua script makes: {scripted_ratio:.1%}",
        f"- the last of {len(deployed)} hosts / one service: {median('last route', 'rps') / median('one service', 'rps'):.1%}; "
        f"one service through the router / direct: {median('one service', 'rps') / median('direct', 'rps'):.1%}",
        f"- spread over {len(deployed)} hosts of one service / one service (scripted): "
        f"{median('spread, one upstream', 'rps') / median('one service, scripted', 'rps'):.1%} (the lookup alone; "
        f"spread over {len(deployed)} services / over {len(deployed)} hosts of one service: "
        f"{median('spread', 'rps') / median('spread, one upstream', 'rps'):.1%}, the upstreams)",
        f"- removing everything took {removal_s:.0f} s; the whole run {time.monotonic() - started:.0f} s",
    ]
    report = "\n".join(lines)
    print("\n" + report)
    if not args.no_record:
        append_results("Router with 200 services (bench/router_load.py)", report)
    return 0 if ok or not args.check else 1


def router_cost(args, local, team: str, deployed: dict, script_folder: Path, *, deploy_s: float,
                started: float) -> int:
    """The same upstream through the same Caddy holding 1 route, then all of
    them (see the module's docstring); returns the exit status. The caller
    removes everything afterwards."""
    measured, _upstream = deployed[0]
    every = [LiveRoute(hostname=spec.hostname, team=team, service=spec.service, release_id=spec.release_id)
             for spec, _ in (deployed[n] for n in sorted(deployed))]
    configurations = {"1 route": every[:1], f"{len(every)} routes": every}
    script = script_folder / "measured.lua"
    script.write_text(SPREAD_LUA % f'"{measured.hostname}"')
    routed = f"http://127.0.0.1:{args.port}/"
    runs: dict[str, list[dict]] = {name: [] for name in configurations}
    held: dict[str, int] = {}
    loaded_s: dict[str, list[float]] = {name: [] for name in configurations}

    def measure(name: str, round_number: int) -> None:
        began = time.monotonic()
        local.sync_routes(configurations[name])
        loaded_s[name].append(time.monotonic() - began)
        held[name] = len(local.router.routes())
        check = wrk(routed, host=measured.hostname, connections=2, threads=1, seconds=1)
        if check["errors"] or not check["requests"]:
            raise SystemExit(f"{measured.hostname} does not answer 200 through a router of {name}: {check}")
        if args.settle > 0:
            wrk(routed, script=str(script), connections=args.connections, threads=args.threads,
                seconds=max(int(round(args.settle)), 1))
        result = wrk(routed, script=str(script), connections=args.connections, threads=args.threads,
                     seconds=args.seconds)
        result["load"] = loadavg()
        runs[name].append(result)
        print(f"round {round_number} {name:>12}: {result['rps']:8.0f} req/s p50 {result['p50']:.2f} ms "
              f"p99 {result['p99']:.2f} ms errors {result['errors']} (load {result['load']})", flush=True)

    names = list(configurations)
    for round_number in range(1, args.rounds + 1):
        for name in names if round_number % 2 else reversed(names):
            measure(name, round_number)

    def median(name, key):
        return statistics.median(run[key] for run in runs[name])

    one, many = names
    ratio = median(many, "rps") / median(one, "rps")
    lines = [
        f"The router's own cost of holding routes: one service (a one-page static site on hakobune/stack-static: "
        f"lighttpd; CPU limit {args.cpu:g}, 64 MiB), measured through the same Caddy (the benchmark's own, JSON "
        f"access log on) loaded, in turn, with 1 route (its own) and with {len(every)} routes (its own and "
        f"{len(every) - 1} fillers: services deployed the same way, never requested), each configuration loaded "
        f"whole as the reconciler loads it. The same wrk on loopback for both: {args.connections} connections on "
        f"{args.threads} threads, the same Lua script (one host), {args.seconds} s after a {args.settle:g} s warm-up; "
        f"{args.rounds} rounds, the two configurations alternating and their order flipped every round; medians. "
        f"Deploys took {deploy_s:.0f} s.",
        "",
        "| router holds | routes in Caddy | req/s | p50 | p99 | errors | /load took (median) | load average per round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {held.get(name, '?')} | {median(name, 'rps'):.0f} | {median(name, 'p50'):.2f} ms | "
            f"{median(name, 'p99'):.2f} ms | {sum(run['errors'] for run in runs[name])} | "
            f"{statistics.median(loaded_s[name]):.2f} s | {'; '.join(run['load'].split()[0] for run in runs[name])} |"
        )
    per_round = [b["rps"] / a["rps"] for a, b in zip(runs[one], runs[many])]
    lines += [
        "",
        f"- {many} / 1 route, same upstream: **{ratio:.1%}** of the throughput (round by round: "
        f"{', '.join(f'{value:.1%}' for value in per_round)}); p50 {median(many, 'p50') - median(one, 'p50'):+.2f} ms",
        f"- the whole run {time.monotonic() - started:.0f} s (removal not included)",
    ]
    report = "\n".join(lines)
    print("\n" + report)
    if not args.no_record:
        append_results(f"Router's own cost: 1 route against {len(every)} (bench/router_load.py --router-cost)", report)
    return 0 if ratio >= TARGET_RATIO or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
