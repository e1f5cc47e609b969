#!/usr/bin/env python
"""What the router's host lookup costs, apart from everything else: Caddy's
CPU time per request (its process's user + system time over the requests
served), under the same load, for three configurations of N hosts that all
lead to one upstream, so that only the lookup differs:

- minimal: one route, no matcher, straight to the upstream (the floor: no lookup);
- one route per service: each with its host matcher, as runtime/router.py wrote
  them before the host map (Caddy tries them in turn);
- host map: the configuration runtime/router.py writes now.

    .venv/bin/python bench/router_lookup.py [--hosts 200] [--rounds 5] [--seconds 5] [--connections 64]
                                            [--admin-port 3108] [--port 18108] [--upstream-port 18109] [--no-record]

For each, wrk on loopback asks for the first host, the last (the one looked at
last), and every host in turn ("spread", a wrk Lua script setting Host); the
rounds alternate the configurations. CPU per request is less disturbed by
other work on the host than requests per second are (another process's load
slows Caddy's requests down but does not add to their CPU time much), so it
shows the lookup's own cost on a shared machine. Two Caddy processes of the
benchmark's own: the router, with the JSON access log on as the platform
runs it, and the upstream (a static answer)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._local import SPREAD_LUA, append_results  # noqa: E402
from hakobune.runtime.router import NOT_FOUND_BODY, CaddyRouter, Route  # noqa: E402

DELETED = ["X-Hakobune-Waker", "X_Hakobune_Waker", "X-Hakobune-Wake-Host", "X_Hakobune_Wake_Host"]


def proxy(dial: str) -> dict:
    return {"handler": "reverse_proxy", "upstreams": [{"dial": dial}],
            "load_balancing": {"selection_policy": {"policy": "round_robin"}},
            "headers": {"request": {"delete": DELETED}}}


def minimal(router: CaddyRouter, hosts: list[str], dial: str) -> dict:
    config = router.full_config([])
    config["apps"]["http"]["servers"]["hakobune"]["routes"] = [{"handle": [proxy(dial)]}]
    return config


def route_per_service(router: CaddyRouter, hosts: list[str], dial: str) -> dict:
    """The shape runtime/router.py wrote before the host map (its route_config)."""
    config = router.full_config([])
    config["apps"]["http"]["servers"]["hakobune"]["routes"] = [
        {"@id": f"hakobune-route-{host}", "match": [{"host": [host]}], "handle": [proxy(dial)], "terminal": True}
        for host in hosts
    ] + [router.fallback_route()]
    return config


def host_map(router: CaddyRouter, hosts: list[str], dial: str) -> dict:
    return router.full_config([Route(host, (dial,)) for host in hosts])


SHAPES = {"minimal (no lookup)": minimal, "one route per service": route_per_service, "host map": host_map}


def start_caddy(folder: Path, config: dict) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "boot.json").write_text(json.dumps(config))
    env = {**os.environ, "HOME": str(folder), "XDG_DATA_HOME": str(folder), "XDG_CONFIG_HOME": str(folder)}
    return subprocess.Popen(["caddy", "run", "--config", str(folder / "boot.json")],
                            stdout=subprocess.DEVNULL, stderr=open(folder / "caddy.log", "ab"), env=env)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, args, *, host: str | None = None, script: str | None = None) -> dict:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "5s"]
    command += ["-H", f"Host: {host}"] if host else ["-s", script]
    output = subprocess.run(command + [url], capture_output=True, text=True, timeout=args.seconds + 30,
                            check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "requests": int(re.search(r"(\d+) requests in", output).group(1)),
            "errors": int(non_2xx.group(1)) if non_2xx else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--admin-port", type=int, default=3108)
    parser.add_argument("--port", type=int, default=18108)
    parser.add_argument("--upstream-port", type=int, default=18109)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (scripts/install-deps.sh installs it)")

    folder = Path(tempfile.mkdtemp(prefix="hakobune-router-lookup."))
    hosts = [f"web{number:03d}-benchlookup.localhost" for number in range(args.hosts)]
    (folder / "spread.lua").write_text(SPREAD_LUA % ", ".join(f'"{host}"' for host in hosts))
    dial = f"127.0.0.1:{args.upstream_port}"
    upstream = start_caddy(folder / "upstream", {
        "admin": {"disabled": True},
        "apps": {"http": {"servers": {"upstream": {
            "listen": [dial], "automatic_https": {"disable": True},
            "routes": [{"handle": [{"handler": "static_response", "status_code": 200,
                                    "body": "hello from a routed service\n"}]}]}}}},
    })
    router = CaddyRouter(f"http://127.0.0.1:{args.admin_port}", args.port, access_log=str(folder / "access.log"))
    caddy = start_caddy(folder / "router", {"admin": {"listen": f"127.0.0.1:{args.admin_port}"}})
    session = requests.Session()
    session.trust_env = False
    url = f"http://127.0.0.1:{args.port}/"
    runs: dict[tuple[str, str], list[dict]] = {}
    loads = {"first host": {"host": hosts[0]}, "last host": {"host": hosts[-1]},
             "spread": {"script": str(folder / "spread.lua")}}
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if session.get(f"{router.admin_url}/config/", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("caddy did not start")
            time.sleep(0.1)
        for round_number in range(1, args.rounds + 1):
            for shape, build in SHAPES.items():
                response = session.post(f"{router.admin_url}/load", json=build(router, hosts, dial), timeout=30)
                response.raise_for_status()
                time.sleep(0.5)
                for check in (hosts[0], hosts[-1]):
                    answer = session.get(url, headers={"Host": check}, timeout=5)
                    assert answer.status_code == 200 and answer.text.startswith("hello"), (shape, check, answer.text)
                if shape != "minimal (no lookup)":
                    assert session.get(url, headers={"Host": "nobody.localhost"}, timeout=5).text == NOT_FOUND_BODY
                for kind, target in loads.items():
                    before = cpu_seconds(caddy.pid)
                    result = wrk(url, args, **target)
                    result["us"] = (cpu_seconds(caddy.pid) - before) * 1e6 / max(result["requests"], 1)
                    result["load"] = Path("/proc/loadavg").read_text().split()[0]
                    runs.setdefault((shape, kind), []).append(result)
                    print(f"round {round_number} {shape:22} {kind:10}: {result['rps']:7.0f} req/s, "
                          f"{result['us']:6.1f} µs of router CPU per request, errors {result['errors']} "
                          f"(load {result['load']})", flush=True)
    finally:
        for process in (caddy, upstream):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(folder, ignore_errors=True)

    def median(shape, kind, key):
        return statistics.median(run[key] for run in runs[(shape, kind)])

    lines = [
        f"{args.hosts} hosts, all leading to one upstream (a Caddy static answer), so that only the lookup differs; "
        f"the router with the JSON access log on. wrk on loopback, {args.connections} connections on "
        f"{args.threads} threads, {args.rounds} rounds of {args.seconds} s per load, configurations alternating; "
        "medians. Router CPU: the Caddy process's user + system time over the requests it served.",
        "",
        "| configuration | load | req/s | router CPU per request | errors |",
        "|---|---|---|---|---|",
    ]
    for (shape, kind), results in runs.items():
        lines.append(f"| {shape} | {kind} | {median(shape, kind, 'rps'):.0f} | {median(shape, kind, 'us'):.1f} µs | "
                     f"{sum(run['errors'] for run in results)} |")
    loads_seen = sorted(float(run["load"]) for results in runs.values() for run in results)
    lines += ["", f"- load average during the rounds: {loads_seen[0]:.1f}–{loads_seen[-1]:.1f}"]
    for shape in SHAPES:
        lines.append(
            f"- {shape}: spread / first host throughput {median(shape, 'spread', 'rps') / median(shape, 'first host', 'rps'):.1%}; "
            f"CPU per request, last host − first host: "
            f"{median(shape, 'last host', 'us') - median(shape, 'first host', 'us'):+.1f} µs"
        )
    report = "\n".join(lines)
    print("\n" + report)
    if not args.no_record:
        append_results(f"Router host lookup, {args.hosts} hosts (bench/router_lookup.py)", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
