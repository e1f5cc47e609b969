"""Add-ons: the time to provision a PostgreSQL and a Redis add-on once their
stack image is on this host, from asking the runtime to the database
answering inside its container (pg_isready / redis-cli ping): the volume, the
container on the team network, PostgreSQL's initdb on the fresh volume.

    .venv/bin/python bench/addons.py [--runs 5] [--check]

Runs on the Docker Engine alone (no portal, no worker): a team network of the
benchmark's own (`bench-addons`), isolated by the firewall as a team's is, and
removed at the end with every container and volume. Needs the stacks built
(`python manage.py stack ensure postgres`, `... redis`); their build times,
kept by the stack build beside the root filesystem, are reported too.
Target: under 10 s each."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from bench._local import append_results, remove_team  # noqa: E402
from hakobune.runtime.addons import AddOnSpec, LocalAddOns  # noqa: E402
from hakobune.runtime.docker_local import DockerLocalBackend  # noqa: E402
from hakobune.worker.stacks import local_stack_ref  # noqa: E402

TARGET_S = 10.0
TEAM = "bench-addons"
KINDS = ("postgres", "redis")


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def stack_build_seconds(kind: str) -> str:
    cache = Path(os.environ.get("HAKOBUNE_STACK_CACHE", PROJECT_DIR / "var" / "stacks"))
    try:
        meta = json.loads((cache / f"stack-{kind}-bookworm.json").read_text())
    except (OSError, ValueError):
        return "not recorded"
    return f"{meta.get('seconds', '?')} s (debootstrap and packages; {meta.get('version', '?')})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="exit 1 when a median misses the target")
    args = parser.parse_args()

    backend = DockerLocalBackend("bench", instance="hakobune-bench-addons")
    runtime = LocalAddOns(backend)
    for kind in KINDS:
        backend.client.images.get(local_stack_ref(kind))  # raises when the stack is not built
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    loads = [load()]
    try:
        for run in range(args.runs):
            for kind in KINDS:
                name = f"{kind}{run}"
                spec = AddOnSpec(team=TEAM, name=name, kind=kind, image=local_stack_ref(kind),
                                 password=secrets.token_urlsafe(24), database=name)
                started = time.monotonic()
                runtime.provision(spec, ready_timeout=120)
                times[kind].append(time.monotonic() - started)
                runtime.remove(TEAM, name, delete_volume=True)
            loads.append(load())
            print(f"run {run + 1}: " + ", ".join(f"{kind} {times[kind][-1]:.2f} s" for kind in KINDS), flush=True)
    finally:
        for kind in KINDS:
            for run in range(args.runs):
                runtime.remove(TEAM, f"{kind}{run}", delete_volume=True)
        remove_team(backend.client, TEAM)  # its network and isolation rules (the add-ons are gone)

    rows = ["| add-on | median | min | max | target |", "|---|---|---|---|---|"]
    missed = False
    for kind in KINDS:
        median = statistics.median(times[kind])
        missed |= median >= TARGET_S
        rows.append(f"| {kind} ({local_stack_ref(kind)}) | {median:.2f} s | {min(times[kind]):.2f} s | "
                    f"{max(times[kind]):.2f} s | < {TARGET_S:g} s: {'met' if median < TARGET_S else 'MISSED'} |")
    body = "\n".join([
        f"Provisioning an add-on with its stack on this host ({args.runs} runs each, a fresh volume each run: "
        "volume, container on the team network, PostgreSQL's initdb, until the database answers inside).",
        "",
        *rows,
        "",
        *(f"- building the {kind} stack from Debian: {stack_build_seconds(kind)}" for kind in KINDS),
        f"- host load average (1, 5, 15 min) before and after each run: {'; '.join(loads)}",
    ])
    append_results("Add-ons: provisioning PostgreSQL and Redis (bench/addons.py)", body)
    print(body)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
