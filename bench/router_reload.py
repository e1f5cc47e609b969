#!/usr/bin/env python
"""Router reloads under traffic: Hakobune switches a service's route the way a
deploy does (hakobune.runtime.router.CaddyRouter.set_route: Caddy reloads its
config), `--switches` times, while `--clients` threads each open a new
connection per request to the service through Caddy. Counts the requests that
fail. Runs a Caddy of its own on free loopback ports, with two upstreams of its
own; touches nothing of a running Hakobune.

    .venv/bin/python bench/router_reload.py [--switches 150] [--clients 8] [--both]

With --both (root only) it runs once with net.ipv4.tcp_migrate_req = 0 and once
with 1, and puts the setting back as it was. Target: no failed request.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from tests.support.reload_race import MIGRATE, run_reload_race  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=150)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--both", action="store_true", help="measure with tcp_migrate_req 0 and 1 (root)")
    args = parser.parse_args()

    original = MIGRATE.read_text().strip() if MIGRATE.exists() else None
    settings = ["0", "1"] if args.both else [original]
    try:
        for value in settings:
            if value is not None and value != MIGRATE.read_text().strip():
                MIGRATE.write_text(value)
            result = run_reload_race(switches=args.switches, clients=args.clients)
            print(f"tcp_migrate_req={value}: {result.switches} route switches, {result.ok} requests answered, "
                  f"{len(result.failures)} failed {sorted(set(result.failures))}")
    finally:
        if original is not None and MIGRATE.read_text().strip() != original:
            MIGRATE.write_text(original)


if __name__ == "__main__":
    main()
