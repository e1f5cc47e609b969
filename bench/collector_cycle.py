#!/usr/bin/env python
"""One second of the log collector's loop, alone and on no containers: what
reading the containers' files and storing their lines costs in CPU time, per
part, for `--services` json-file logs (as the engine writes them) each given
`--lines` new lines before each cycle.

    .venv/bin/python bench/collector_cycle.py [--services 200] [--lines 10] [--cycles 60] [--profile FILE]

The files and a SQLite log store are in a temporary folder; the collector is
the platform's own (logcollector.Collector: read_files_once, then flush),
given FileFollowers directly instead of finding containers. The CPU time is
this process's (time.process_time), so other work on a shared host counts
little; bench/collector.py --logs measures the real collector at work. Prints
its numbers; records nothing."""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--secrets", type=int, default=3)
    parser.add_argument("--profile", metavar="FILE", help="write cProfile's stats of the cycles to FILE")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="hakobune-bench-cycle.")
    os.environ.update({
        "HAKOBUNE_DATA_DIR": data_dir, "SECRET_KEY": "bench-only", "DJANGO_SETTINGS_MODULE": "hakobune.platform.settings",
        "DATABASE_URL": f"sqlite:///{data_dir}/bench.sqlite3", "ROUTER_ACCESS_LOG": "",
    })
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections
    from django.db.backends.signals import connection_created

    call_command("migrate", database="logs", verbosity=0)
    from hakobune.platform.observability import logstore
    from hakobune.platform.observability.logcollector import Collector, FileFollower, Origin
    from hakobune.runtime.logfollow import LogFile

    connection_created.connect(logstore.tune_writer)
    connections["logs"].close()
    collector = Collector(client=object(), access_log="")
    handles, paths = [], []
    for number in range(args.services):
        path = Path(data_dir) / f"c{number:04d}-json.log"
        path.touch()
        paths.append(path)
        handles.append(open(path, "ab", buffering=0))  # noqa: SIM115
        origin = Origin(number + 1, 1 + number % 20, f"svc{number}-web-1", "web", 3,
                        [f"secret-value-{number}-{k}-{'x' * 12}" for k in range(args.secrets)])
        collector.files[f"c{number:04d}"] = FileFollower(LogFile(str(path)), origin, collector._limiter(origin))

    def write_second(second: int) -> None:
        base = time.time_ns()
        for number, handle in enumerate(handles):
            lines = []
            for k in range(args.lines):
                stamp = datetime.fromtimestamp(base / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
                ns = (base + k * 1000) % 1_000_000_000
                text = f"127.0.0.1 - - GET /items/{second}/{k} HTTP/1.1 200 - request {number}.{second}.{k} served\n"
                lines.append(json.dumps({"log": text, "stream": "stdout", "time": f"{stamp}.{ns:09d}Z"}) + "\n")
            handle.write("".join(lines).encode())

    profile = cProfile.Profile() if args.profile else None
    reads, flushes, stored = [], [], 0
    write_second(-1)  # a first cycle, not counted: connections opened, statements prepared
    collector.read_files_once()
    collector.flush()
    for second in range(args.cycles):
        write_second(second)
        if profile:
            profile.enable()
        started = time.process_time()
        collector.read_files_once()
        read = time.process_time()
        stored += collector.flush()
        done = time.process_time()
        if profile:
            profile.disable()
        reads.append(read - started)
        flushes.append(done - read)
    if profile:
        profile.dump_stats(args.profile)
    lines = args.services * args.lines
    read_ms, flush_ms = statistics.median(reads) * 1000, statistics.median(flushes) * 1000
    print(f"{args.services} files x {args.lines} lines a cycle, {args.cycles} cycles, {stored:,} lines stored; "
          f"CPU per cycle (median): reading {read_ms:.1f} ms, storing {flush_ms:.1f} ms, "
          f"together {read_ms + flush_ms:.1f} ms = {(read_ms + flush_ms) / 10:.2f} % of one core at one cycle a "
          f"second; {(read_ms + flush_ms) * 1000 / lines:.1f} µs a line. Load average {os.getloadavg()[0]:.1f}.")
    for handle in handles:
        handle.close()


if __name__ == "__main__":
    main()
