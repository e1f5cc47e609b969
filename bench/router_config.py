#!/usr/bin/env python
"""The router's whole configuration: what checking and loading it costs with
many services, and how one bad route is kept from the others.

    .venv/bin/python bench/router_config.py [--routes 200] [--runs 5] [--record]

With a Caddy of the benchmark's own (free loopback ports), medians of --runs:
- screen: Hakobune's checks of every route (runtime/router.screen);
- load: CaddyRouter.load of every route, one POST /load, plus keeping it as
  the last good config;
- one bad route: the same with one route that fails the checks (left out);
- refused by Caddy: one route that passes the checks but Caddy refuses
  (a host named twice), so two loads;
- restore: a Caddy killed and started empty, then CaddyRouter.restore() from
  the last good config, until a routed host answers again.
A routed host answers 502 (its upstream, 127.0.0.1:9, is closed) and an
unknown one 404, so no container is needed."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench._local import append_results, own_caddy  # noqa: E402
from hakobune.runtime import router as router_module  # noqa: E402
from hakobune.runtime.router import CaddyRouter, Route, screen  # noqa: E402
from tests.support.ports import free_port  # noqa: E402


def routes_of(count: int, upstream: str = "127.0.0.1:9") -> list[Route]:
    return [Route(f"svc{n}.team{n % 40}.localhost", (upstream,),
                  aliases=(f"www.shop{n}.example",) if n % 5 == 0 else ()) for n in range(count)]


def alternating(*configs):
    """Each call loads the next of `configs`: Caddy skips a config equal to the one it runs."""
    turn = [0]

    def pick():
        turn[0] += 1
        return configs[turn[0] % len(configs)]
    return pick


def timed(action, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def status(port: int, host: str) -> int | None:
    session = requests.Session()
    session.trust_env = False
    try:
        return session.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=2).status_code
    except requests.RequestException:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()
    routes, others = routes_of(args.routes), routes_of(args.routes, "127.0.0.1:19")

    def with_last(given, route):
        return [*given[:-1], route]

    bad = [with_last(given, Route(given[-1].hostname, given[-1].upstreams, aliases=("not a domain!",)))
           for given in (routes, others)]
    refused = [with_last(given, Route(given[-1].hostname, given[-1].upstreams, aliases=("dup.example",),
                                      redirects=("dup.example",))) for given in (routes, others)]
    next_routes, next_bad, next_refused = alternating(routes, others), alternating(*bad), alternating(*refused)
    admin_port, port = free_port(), free_port()
    state = Path(tempfile.mkdtemp(prefix="hakobune-bench-router."))
    results = {"screen": timed(lambda: screen(routes), args.runs)}
    with own_caddy(admin_port, port) as (admin, _log):
        router = CaddyRouter(admin, port, state_dir=state)
        results["load"] = timed(lambda: router.load(next_routes()), args.runs)
        results["one bad route"] = timed(lambda: router.load(next_bad()), args.runs)
        assert status(port, routes[0].hostname) == 502 and status(port, routes[-1].hostname) == 404
        original = router_module.screen
        router_module.screen = lambda given: (list(given), {})
        try:
            left_out = router.load(refused[0])
            results["refused by Caddy (2 loads)"] = timed(lambda: router.load(next_refused()), args.runs)
        finally:
            router_module.screen = original
        assert list(left_out) == [routes[-1].hostname], left_out
        assert status(port, routes[0].hostname) == 502
        router.load(routes)
    # Caddy gone; a new one, empty, then the last good config.
    with own_caddy(admin_port, port) as (admin, _log):
        router = CaddyRouter(admin, port, state_dir=state)
        start = time.perf_counter()
        assert router.restore()
        while status(port, routes[0].hostname) != 502:
            time.sleep(0.01)
        results["restore after a restart"] = (time.perf_counter() - start) * 1000
    lines = [f"| {name} | {value:.1f} ms |" for name, value in results.items()]
    body = (f"`--routes {args.routes} --runs {args.runs}`: a Caddy of the benchmark's own; every 5th route has a "
            "custom domain. Medians.\n\n| step | time |\n|---|---|\n" + "\n".join(lines) + "\n")
    print(body)
    if args.record:
        append_results(f"The router's whole configuration (bench/router_config.py)", body)


if __name__ == "__main__":
    main()
