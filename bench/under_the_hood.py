#!/usr/bin/env python
"""What reading "under the hood" costs the portal: the wall time of one
DockerLocalBackend.under_the_hood call (a request of the service page's
panel), with few and with many other services on the host, since the layer
sharing is counted over every container of the platform.

    .venv/bin/python bench/under_the_hood.py [--others 0,100] [--rounds 10]

Starts one flask-hello instance (the image the platform built for
tests/fixtures/apps/flask-hello: deploy it once first) with the local
runtime's labels and limits, and `--others` sleeping containers of other
services (the python stack's image; a third of them run the flask-hello
image too, so its layers are shared), all under an instance label of the
benchmark's own, so the platform and test runs never see them. The panel's
CPU reading waits a quarter of a second between its two readings: the time
is given with and without that wait. Every container it started is removed
at the end (also on ^C)."""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._local import append_results, hello_image  # noqa: E402
from hakobune.runtime.base import ServiceRef  # noqa: E402
from hakobune.runtime.docker_local import (  # noqa: E402
    LABEL_MANAGED,
    LABEL_PROCESS,
    LABEL_RELEASE,
    LABEL_SERVICE,
    LABEL_TEAM,
    DockerLocalBackend,
)

STACK = "hakobune/stack-python:bookworm"
CPU_WAIT = 0.25


def start(client, image: str, instance: str, team: str, service: str, command=None):
    return client.containers.run(
        image, command=command, detach=True, name=f"{instance}-{team}-{service}",
        labels={LABEL_MANAGED: instance, LABEL_TEAM: team, LABEL_SERVICE: service, LABEL_RELEASE: "1",
                LABEL_PROCESS: "web"},
        user="10001:10001", cap_drop=["ALL"], security_opt=["no-new-privileges"], read_only=True,
        mem_limit="128m", memswap_limit="128m", cpu_period=100_000, cpu_quota=10_000, pids_limit=64,
        environment={"PORT": "8080"}, tmpfs={"/tmp": "rw,nosuid,nodev,size=16m"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--others", default="0,100")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--image", default=None)
    args = parser.parse_args()
    client = docker.from_env()
    image = hello_image(client, args.image)
    instance = f"bench-hood-{secrets.token_hex(3)}"
    backend = DockerLocalBackend("local", instance=instance, firewall="off")
    started = []
    rows = []
    try:
        started.append(start(client, image, instance, "home", "hello"))
        time.sleep(2)
        made = 0
        for others in (int(n) for n in args.others.split(",")):
            while made < others:
                shared = made % 3 == 0
                started.append(start(client, image if shared else STACK, instance, f"t{made % 7}", f"s{made}",
                                     command=["sleep", "3600"]))
                made += 1
            times = []
            for _ in range(args.rounds + 1):
                began = time.perf_counter()
                view = backend.under_the_hood(ServiceRef("home", "hello"))
                times.append(time.perf_counter() - began)
            times = times[1:]  # the first fills the per-image cache of layer ids
            load = os.getloadavg()[0]
            median = statistics.median(times)
            rows.append((others, median, median - CPU_WAIT, max(times), view.layers[0].shared_with,
                         view.saved_bytes, load))
            print(f"{others} others: median {median:.3f} s, without the CPU wait {median - CPU_WAIT:.3f} s, "
                  f"max {max(times):.3f} s; stack layer shared with {view.layers[0].shared_with}; load {load:.1f}")
    finally:
        for container in started:
            try:
                container.remove(force=True)
            except docker.errors.DockerException:
                pass
    body = [
        f"One flask-hello instance read by DockerLocalBackend.under_the_hood, {args.rounds} rounds each after a "
        "first (which fills the cache of layer ids); the other services are sleeping containers, a third of them "
        "of the same image. The CPU reading waits 0.25 s between its two readings.",
        "",
        "| other services | median | without the CPU wait | slowest | stack layer shared with | disk saved | load average |",
        "|---|---|---|---|---|---|---|",
    ]
    for others, median, bare, slowest, shared, saved, load in rows:
        body.append(f"| {others} | {median * 1000:.0f} ms | {bare * 1000:.0f} ms | {slowest * 1000:.0f} ms | {shared} | "
                    f"{saved / 2**20:.0f} MiB | {load:.1f} |")
    append_results("Under the hood: one reading (bench/under_the_hood.py)", "\n".join(body))


if __name__ == "__main__":
    main()
