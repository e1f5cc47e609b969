"""Add-ons: the time to provision a PostgreSQL and a Redis add-on once their
stack image is on this host, from asking the runtime to the database
answering inside its container (pg_isready / redis-cli ping): the volume, the
container on the team network, PostgreSQL's initdb on the fresh volume.

    .venv/bin/python bench/addons.py [--runs 5] [--check]
    .venv/bin/python bench/addons.py --backup-mb 100 [--runs 3] [--check]

With --backup-mb, it measures instead the time to back up a PostgreSQL
add-on whose dump is about that size (rows of random bytes, which no
compression shrinks) and to verify the backup by a restore, as a worker does
it (hakobune/platform/addons/backups.py, without the database rows): the dump
in a container on the team network (pg_dump in its custom format and the row
counts, in one snapshot), the copy into a backup directory (the `local`
store), the copy read back with its SHA-256 checked, and its restore into a
scratch container with no network, whose row counts must match.
Target: under 60 s for 100 MB.

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
from hakobune.runtime.addons import AddOnSpec, LocalAddOns, container_name  # noqa: E402
from hakobune.runtime.backups import BackupSource, LocalBackups, file_digest  # noqa: E402
from hakobune.runtime.docker_local import DockerLocalBackend, team_network_name  # noqa: E402
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


BACKUP_TARGET_S = 60.0


def fill(backend, name: str, password: str, megabytes: int) -> None:
    """Rows of random bytes (1 KiB each) in the add-on's database, through psql
    in a container on the bench network, until the table holds `megabytes`."""
    # The custom format holds bytea as hex, which compression brings back to
    # about 1.2 times the raw bytes: this many rows make a dump of about `megabytes`.
    rows = int(megabytes * 1024 / 1.2)
    sql = ("CREATE TABLE IF NOT EXISTS payload (id bigserial PRIMARY KEY, data bytea NOT NULL); "
           "CREATE TABLE IF NOT EXISTS small (id int PRIMARY KEY, note text); "
           "INSERT INTO small SELECT g, 'note ' || g FROM generate_series(1, 1000) g; "
           f"INSERT INTO payload (data) SELECT decode(string_agg(md5(random()::text || g || s), ''), 'hex') "
           f"FROM generate_series(1, {rows}) g, generate_series(1, 64) s GROUP BY g;")
    container = backend.client.containers.run(
        local_stack_ref("postgres"), ["/bin/sh", "-c", 'exec "$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)/psql" '
                                                       '-X -q -v ON_ERROR_STOP=1 -c "$SQL"'],
        detach=True, network=team_network_name(TEAM), user="postgres", cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        environment={"PGHOST": name, "PGUSER": "app", "PGPASSWORD": password, "PGDATABASE": name, "SQL": sql},
        labels={"org.hakobune.team": TEAM})
    try:
        result = container.wait(timeout=1800)
        if result["StatusCode"] != 0:
            raise SystemExit(f"filling the database failed: {container.logs().decode(errors='replace')[-2000:]}")
    finally:
        container.remove(force=True)


def backup_main(args) -> int:
    import shutil
    import tempfile

    backend = DockerLocalBackend("bench", instance="hakobune-bench-addons")
    runtime, backups = LocalAddOns(backend), LocalBackups(backend)
    image = local_stack_ref("postgres")
    backend.client.images.get(image)
    name, password = "bigdb", secrets.token_urlsafe(24)
    work = Path(tempfile.mkdtemp(prefix="hakobune-bench-backup."))
    runs, loads = [], [load()]
    try:
        runtime.provision(AddOnSpec(team=TEAM, name=name, kind="postgres", image=image, password=password,
                                    database=name, memory_mb=512, cpu=1.0), ready_timeout=120)
        network = backend.client.containers.get(container_name(TEAM, name)).attrs["NetworkSettings"]["Networks"]
        source = BackupSource(team=TEAM, name=name, kind="postgres", image=image, password=password,
                              database=name, network=next(iter(network)))
        started = time.monotonic()
        fill(backend, name, password, args.backup_mb)
        print(f"filled {args.backup_mb} MiB of rows in {time.monotonic() - started:.1f} s", flush=True)
        loads.append(load())
        for run in range(args.runs):
            times = {}
            started = time.monotonic()
            dumped = backups.dump(source, work / "dump")
            times["dump"] = time.monotonic() - started
            mark = time.monotonic()
            (work / "store").mkdir(exist_ok=True)
            shutil.copyfile(dumped.path, work / "store" / "1.dump")
            shutil.copyfile(work / "store" / "1.dump", work / "read-back")
            assert file_digest(work / "read-back") == dumped.sha256
            times["store"] = time.monotonic() - mark
            mark = time.monotonic()
            found = backups.check(source, work / "read-back")
            times["check"] = time.monotonic() - mark
            times["total"] = time.monotonic() - started
            if found != dumped.counts:
                raise SystemExit(f"the restored copy differs: {found} against {dumped.counts}")
            runs.append((dumped.size, times))
            loads.append(load())
            print(f"run {run + 1}: dump {dumped.size / 1e6:.1f} MB; " + ", ".join(
                f"{step} {seconds:.1f} s" for step, seconds in times.items()) + f"; rows {dumped.counts}", flush=True)
            for leftover in work.iterdir():
                if leftover.is_file():
                    leftover.unlink()
    finally:
        runtime.remove(TEAM, name, delete_volume=True)
        backups.remove_leftovers(TEAM)
        remove_team(backend.client, TEAM)
        shutil.rmtree(work, ignore_errors=True)

    totals = [times["total"] for _, times in runs]
    median = statistics.median(totals)
    rows = ["| step | median | min | max |", "|---|---|---|---|"]
    for step in ("dump", "store", "check", "total"):
        values = [times[step] for _, times in runs]
        rows.append(f"| {step} | {statistics.median(values):.1f} s | {min(values):.1f} s | {max(values):.1f} s |")
    body = "\n".join([
        f"Backing up a PostgreSQL add-on and verifying it by a restore ({args.runs} runs): a dump of "
        f"{runs[0][0] / 1e6:.1f} MB (pg_dump custom format, -Z 1, of rows of 1 KiB of random bytes, "
        "and 1000 small rows), as `run_backup` does it without its database rows: the dump and row counts in one "
        "snapshot from a container on the team network, the copy into the backup directory, read back with its "
        "SHA-256 checked, restored into a scratch container with no network (initdb, pg_restore -j 2) and counted.",
        "",
        *rows,
        "",
        f"- target: the total under {BACKUP_TARGET_S:g} s: {'met' if median < BACKUP_TARGET_S else 'MISSED'} "
        f"(median {median:.1f} s)",
        f"- containers limited to {backups.cpu:g} CPU and {backups.memory_mb} MiB (BACKUP_CPU, BACKUP_MEMORY_MB)",
        f"- host load average (1, 5, 15 min) before filling, after filling and after each run: {'; '.join(loads)}",
    ])
    append_results(f"Add-ons: backing up and verifying {args.backup_mb} MB of PostgreSQL (bench/addons.py)", body)
    print(body)
    return 1 if args.check and median >= BACKUP_TARGET_S else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="exit 1 when a median misses the target")
    parser.add_argument("--backup-mb", type=int, default=0,
                        help="measure backing up and verifying a PostgreSQL database of about this many MB instead")
    args = parser.parse_args()
    if args.backup_mb:
        return backup_main(args)

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
