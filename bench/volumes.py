"""What volumes cost on this host's Docker Engine (hakobune/runtime/volumes.py):
making one (the engine's volume, then the helper container that gives it to
the apps' user) and measuring a team's volumes for its disk quota (one
helper container running `du` over all of them), with 100 MB in 1,000 files.

    .venv/bin/python bench/volumes.py [--runs 5] [--volumes 10] [--record]

Runs the runtime library straight against the engine: no portal, no worker.
Everything it makes carries its own platform label and is removed at the end."""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import docker
from docker.types import Mount

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from bench._local import append_results  # noqa: E402
from hakobune.runtime.volumes import LABEL_VOLUME, LocalVolumes  # noqa: E402

IMAGE = os.environ.get("BENCH_HELPER_IMAGE", "hakobune/stack-python:bookworm")


class Backend:
    def __init__(self, client, instance):
        self.client, self.instance, self.options = client, instance, {}


def said(values):
    values = sorted(values)
    return (f"{statistics.median(values) * 1000:.0f} ms (min {values[0] * 1000:.0f} ms, "
            f"max {values[-1] * 1000:.0f} ms, n={len(values)})")


def fill(client, volume, megabytes=100, files=1000):
    """Writes `megabytes` in `files` files into the volume, as the apps' user."""
    size = megabytes * 1024 * 1024 // files
    script = (f"import os\nfor i in range({files}):\n"
              f"    open(f'/v/f{{i}}', 'wb').write(os.urandom({size}))\n")
    client.containers.run(IMAGE, ["python3", "-c", script], user="10001:10001", network_mode="none", remove=True,
                          mounts=[Mount(target="/v", source=volume, type="volume", no_copy=True)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args()
    client = docker.from_env()
    instance = f"hakobune-bench-{secrets.token_hex(3)}"
    runtime = LocalVolumes(Backend(client, instance))
    team = "bench"
    load_before = os.getloadavg()[0]
    made, creating, one, many = [], [], [], []
    try:
        for index in range(max(args.runs, args.volumes)):
            started = time.monotonic()
            made.append(runtime.create(team, f"v{index}", helper_image=IMAGE))
            creating.append(time.monotonic() - started)
        fill(client, made[0])
        for index in range(1, args.volumes):
            fill(client, made[index], megabytes=10, files=100)
        for _ in range(args.runs):
            started = time.monotonic()
            sizes = runtime.measure(team, made[:1], helper_image=IMAGE)
            one.append(time.monotonic() - started)
        for _ in range(args.runs):
            started = time.monotonic()
            runtime.measure(team, made[:args.volumes], helper_image=IMAGE)
            many.append(time.monotonic() - started)
    finally:
        for volume in client.volumes.list(filters={"label": f"{LABEL_VOLUME}={instance}"}):
            volume.remove(force=True)
    load_after = os.getloadavg()[0]
    lines = [
        f"Docker Engine {client.version()['Version']}, helper image {IMAGE}; 2 CPUs shared with other people's "
        f"tests: load average (1 min) {load_before:.1f} at the start and {load_after:.1f} at the end.",
        "",
        "| what | time |",
        "|---|---|",
        f"| make a volume (engine volume + helper container: chown to 10001, mode 0700) | {said(creating)} |",
        f"| measure one volume of 100 MB in 1,000 files (one `du` helper container) | {said(one)} |",
        f"| measure a team's {args.volumes} volumes at once (100 MB + {args.volumes - 1} × 10 MB) | {said(many)} |",
        "",
        f"The measured size of the 100 MB volume: {sizes[made[0]] / 1048576:.1f} MiB (blocks on disk, `du -B1`).",
        "The housekeeping measures every team this way every VOLUME_MEASURE_SECONDS (600 s): one container per "
        "team, whatever its number of volumes.",
        "",
    ]
    print("\n".join(lines))
    if args.record:
        append_results("Volumes: making and measuring (bench/volumes.py)", "\n".join(lines))


if __name__ == "__main__":
    main()
