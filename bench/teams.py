#!/usr/bin/env python
"""Room for many teams: 1,000 team networks on one host, made the way the
local runtime makes them (DockerLocalBackend: a bridge network in the team's
own /26 of the pool, isolated by runtime/firewall.py), then the first service
of one more team deployed with the 1,000 present.

    .venv/bin/python bench/teams.py [--teams 1000] [--pool 10.214.0.0/16]

Measured: the time to make a team's network (Docker's network create and the
firewall's rules) as the count grows; the first deploy of a new team (its
network, a static site's container, health check, route) on an empty host
and with all the networks present; the reconciler's firewall pass over every
bridge; and the firewall's size (`iptables -S | wc -l`, per chain, and the NAT
table). Blocks come from --pool, skipping what the host already routes, as
the platform's claim does (accounts/networks.py; the database's part is not
what is measured here). Every network, container and rule made carries this
run's instance label or comment and is removed at the end, also after a
failure or Ctrl-C. Caddy is the benchmark's own (admin 127.0.0.1:2997,
port 18097)."""

from __future__ import annotations

import argparse
import dataclasses
import io
import secrets
import statistics
import subprocess
import sys
import tarfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402
import requests  # noqa: E402

from bench._local import append_results, own_caddy  # noqa: E402
from hakobune.runtime.base import DeploySpec, RuntimeBackendError  # noqa: E402
from hakobune.runtime.docker_local import LABEL_MANAGED, DockerLocalBackend  # noqa: E402
from hakobune.runtime.firewall import Firewall, bridge_of  # noqa: E402
from hakobune.runtime.release_config import ReleaseConfig  # noqa: E402
from hakobune.runtime.subnets import free_blocks, host_networks, parse_pool  # noqa: E402

SITE_IMAGE = "hakobune/bench-teams/site:bench"
STATIC_STACK = "hakobune/stack-static:bookworm"


def site_image(client: docker.DockerClient) -> str:
    """A static site on the static stack, as the static buildpack makes it."""
    files = {
        "Dockerfile": f"FROM {STATIC_STACK}\nCOPY index.html /app/index.html\nENV SITE_ROOT=/app\n"
                      'CMD ["lighttpd", "-D", "-f", "/etc/lighttpd/hakobune.conf"]\n',
        "index.html": "<!doctype html><title>bench</title><h1>hello from a team</h1>\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    client.images.build(fileobj=buffer, custom_context=True, tag=SITE_IMAGE, rm=True, network_mode="none")
    return SITE_IMAGE


def iptables_counts() -> dict[str, int]:
    lines = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True).stdout.splitlines()
    per_chain = Counter(line.split()[1] for line in lines if line.startswith("-A "))
    nat = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    return {"total": len(lines), "nat": len(nat.splitlines()), **per_chain}


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def answers(port: int, hostname: str) -> bool:
    session = requests.Session()
    session.trust_env = False
    response = session.get(f"http://127.0.0.1:{port}/", headers={"Host": f"{hostname}:{port}"}, timeout=10)
    return response.status_code == 200 and "hello from a team" in response.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teams", type=int, default=1000)
    parser.add_argument("--pool", default="10.214.0.0/16", help="the range to cut /26 blocks from")
    parser.add_argument("--admin-port", type=int, default=2997)
    parser.add_argument("--port", type=int, default=18097)
    parser.add_argument("--no-record", action="store_true", help="print, do not append to bench/RESULTS.md")
    args = parser.parse_args()

    client = docker.from_env(timeout=300)
    instance = f"bench-teams-{secrets.token_hex(3)}"
    pool = parse_pool(args.pool)
    blocks = free_blocks(pool, [], host_networks())
    image = site_image(client)
    firewall = Firewall()
    before = iptables_counts()
    memory_before = mem_available_mib()
    made: list[tuple[int, float, float]] = []  # (count present, network s, firewall s)
    report = []
    failure = ""

    with own_caddy(args.admin_port, args.port) as (admin, access_log):
        local = DockerLocalBackend("bench", instance=instance, router_admin_url=admin, router_port=args.port,
                                   access_log=access_log, boot_timeout=120)

        def first_deploy(team: str) -> float:
            spec = DeploySpec(
                team=team, service="site", release_id=1, release_number=1, image=image,
                hostname=f"site.{team}.localhost", config=ReleaseConfig.of(port=8080, cpu=0.5, memory_mb=64),
                network_subnet=str(next(blocks)),
            )
            began = time.monotonic()
            try:
                local.deploy(spec)
            except RuntimeBackendError as exc:
                if not getattr(exc, "subnet_taken", ""):
                    raise
                # Someone else on the host made a network there first: the next block, as the platform does.
                spec = dataclasses.replace(spec, network_subnet=str(next(blocks)))
                local.deploy(spec)
            took = time.monotonic() - began
            assert answers(args.port, spec.hostname), f"{team} does not answer"
            return took

        try:
            empty_deploy = first_deploy(f"{instance}-first")
            for number in range(args.teams):
                team = f"{instance}-{number:04d}"
                began = time.monotonic()
                network = make_network(local, team, blocks)
                created = time.monotonic()
                local.isolate(network)
                made.append((number + 1, created - began, time.monotonic() - created))
                if (number + 1) % 100 == 0:
                    print(f"{number + 1} networks; last: network {made[-1][1]:.2f} s, rules {made[-1][2]:.3f} s",
                          flush=True)
            full_deploy = first_deploy(f"{instance}-last")
            everyone = {bridge_of(n): () for n in client.networks.list(filters={"label": f"{LABEL_MANAGED}={instance}"})}
            began = time.monotonic()
            changed = firewall.apply_many(everyone)
            sync_idle = time.monotonic() - began
            # As after a reboot or a flush: every bridge's rules gone, the reconciler puts them back.
            firewall.remove_many(set(everyone))
            began = time.monotonic()
            firewall.apply_many(everyone)
            sync_all = time.monotonic() - began
            after = iptables_counts()
            memory_after = mem_available_mib()
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
            failure = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            after, memory_after = iptables_counts(), mem_available_mib()
        finally:
            began = time.monotonic()
            removed = cleanup(client, instance, firewall)
            cleanup_s = time.monotonic() - began

    def window(first: int, last: int, column: int) -> str:
        values = [row[column] for row in made if first <= row[0] <= last]
        return f"{statistics.median(values) * 1000:.0f} ms" if values else "–"

    count = len(made)
    report.append(f"`--teams {args.teams} --pool {args.pool}`: {count} team networks made"
                  + (f"; stopped: {failure}" if failure else "") + ".\n")
    report.append("| networks present | Docker's network create (median) | the firewall's rules for it (median) |")
    report.append("|---|---|---|")
    for first, last in ((1, 10), (91, 100), (291, 300), (491, 500), (741, 750), (991, 1000)):
        if first <= count:
            report.append(f"| {first}–{min(last, count)} | {window(first, last, 1)} | {window(first, last, 2)} |")
    if not failure:
        report.append("")
        report.append(f"- first deploy of a team (network, container, health check, route): {empty_deploy:.2f} s on an "
                      f"empty host, {full_deploy:.2f} s with {count} team networks present.")
        report.append(f"- the reconciler's firewall pass over all {len(everyone)} bridges: {sync_idle:.2f} s with "
                      f"nothing to change ({len(changed)} changed), {sync_all:.2f} s putting back every bridge's rules.")
    rows = ", ".join(f"{chain} {after.get(chain, 0) - before.get(chain, 0):+d}"
                     for chain in sorted(set(after) | set(before))
                     if after.get(chain, 0) != before.get(chain, 0) and chain not in ("total", "nat"))
    report.append(f"- `iptables -S | wc -l`: {before['total']} before, {after['total']} with the networks "
                  f"({after['total'] - before['total']:+d}); NAT table {before['nat']} → {after['nat']}. "
                  f"By chain: {rows}.")
    report.append(f"- MemAvailable dropped by {memory_before - memory_after:.0f} MiB with the networks present.")
    report.append(f"- clean-up: {removed} networks removed with their rules in {cleanup_s:.0f} s.")
    text = "\n".join(report)
    print(text)
    if not args.no_record:
        append_results("Room for many teams (bench/teams.py)", text)


def make_network(local: DockerLocalBackend, team: str, blocks):
    """The team's network in the next free block; a block someone else on
    the host made a network in meanwhile is skipped, as the platform does."""
    for _ in range(20):
        try:
            return local._team_network(team, subnet=str(next(blocks)))
        except RuntimeBackendError as exc:
            if not getattr(exc, "subnet_taken", ""):
                raise
    raise RuntimeError("20 blocks in a row were taken meanwhile")


def cleanup(client: docker.DockerClient, instance: str, firewall: Firewall) -> int:
    """Every container and network of this run (its instance label), and their rules."""
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}={instance}"}):
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
    networks = client.networks.list(filters={"label": f"{LABEL_MANAGED}={instance}"})
    bridges = {bridge_of(network) for network in networks}
    removed = 0
    for network in networks:
        try:
            network.remove()
            removed += 1
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            print(f"could not remove {network.name}: {exc}", file=sys.stderr)
    firewall.remove_many(bridges & firewall.bridges())
    return removed


if __name__ == "__main__":
    main()
