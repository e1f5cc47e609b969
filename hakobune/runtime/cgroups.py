"""A container's CPU time, memory and processes, read from its cgroup files
on this host: a few small reads per container instead of the Docker API's
`stats` call (one to two seconds each, since the engine samples the CPU
over a second).

Both layouts the Docker Engine makes are read:

- cgroup v2 (one tree, /sys/fs/cgroup/cgroup.controllers exists):
  `system.slice/docker-<id>.scope` (systemd driver) or `docker/<id>`
  (cgroupfs driver), with cpu.stat, memory.current, memory.stat, memory.max
  and pids.current;
- cgroup v1 (one tree per controller): `<controller>/docker/<id>` or
  `<controller>/system.slice/docker-<id>.scope`, with cpuacct.usage,
  memory.usage_in_bytes, memory.stat, memory.limit_in_bytes and pids.current.

Memory is counted as `docker stats` counts it: usage less the page cache the
kernel can take back at once (inactive_file). CPU is a cumulative count of
nanoseconds; a percentage needs two readings, which `CpuRates` keeps."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

# A v1 memory limit at or above this is "no limit" (the kernel writes a page-rounded 2^63 - 1).
UNLIMITED = 1 << 62


@dataclass(frozen=True)
class Reading:
    """One reading of one container; None where its cgroup does not say."""

    cpu_ns: int | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    pids: int | None
    at: float  # time.monotonic() when read


def _read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except (OSError, ValueError):
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_keyed(path: str, *keys: str) -> dict[str, int]:
    """These keys' values in a flat-keyed cgroup file (memory.stat, cpu.stat)."""
    values = {}
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return values
    for line in lines:
        key, _, value = line.partition(" ")
        if key in keys:
            try:
                values[key] = int(value)
            except ValueError:
                continue
    return values


class CgroupReader:
    """Reads containers' cgroups under `root` (the host's /sys/fs/cgroup).
    Paths are plain strings: the metrics collection reads some thousand
    files each time, and pathlib's objects would cost more than the reads."""

    def __init__(self, root: str | Path = "/sys/fs/cgroup"):
        self.root = str(root)
        self.version = 2 if os.path.exists(f"{self.root}/cgroup.controllers") else 1

    def available(self) -> bool:
        return os.path.isdir(self.root)

    def read(self, container_id: str) -> Reading | None:
        """The container's reading, or None when this host shows no cgroup
        of it (stopped, another host's, or a layout not known here)."""
        if self.version == 2:
            return self._read_v2(container_id)
        return self._read_v1(container_id)

    # -- cgroup v2 -------------------------------------------------------------------

    def _dir_v2(self, container_id: str) -> str | None:
        for folder in (f"{self.root}/system.slice/docker-{container_id}.scope", f"{self.root}/docker/{container_id}"):
            if os.path.isdir(folder):
                return folder
        return None

    def _read_v2(self, container_id: str) -> Reading | None:
        folder = self._dir_v2(container_id)
        if folder is None:
            return None
        at = time.monotonic()
        usage_usec = _read_keyed(f"{folder}/cpu.stat", "usage_usec").get("usage_usec")
        current = _read_int(f"{folder}/memory.current")
        memory = None
        if current is not None:
            memory = max(current - _read_keyed(f"{folder}/memory.stat", "inactive_file").get("inactive_file", 0), 0)
        return Reading(
            cpu_ns=usage_usec * 1000 if usage_usec is not None else None,
            memory_bytes=memory,
            memory_limit_bytes=_read_int(f"{folder}/memory.max"),
            pids=_read_int(f"{folder}/pids.current"),
            at=at,
        )

    # -- cgroup v1 -------------------------------------------------------------------

    def _dir_v1(self, controllers: tuple[str, ...], container_id: str) -> str | None:
        for controller in controllers:
            base = f"{self.root}/{controller}"
            for folder in (f"{base}/docker/{container_id}", f"{base}/system.slice/docker-{container_id}.scope"):
                if os.path.isdir(folder):
                    return folder
        return None

    def _read_v1(self, container_id: str) -> Reading | None:
        memory_dir = self._dir_v1(("memory",), container_id)
        cpu_dir = self._dir_v1(("cpuacct", "cpu,cpuacct", "cpuacct,cpu"), container_id)
        pids_dir = self._dir_v1(("pids",), container_id)
        if memory_dir is None and cpu_dir is None:
            return None
        at = time.monotonic()
        memory = limit = None
        if memory_dir is not None:
            usage = _read_int(f"{memory_dir}/memory.usage_in_bytes")
            if usage is not None:
                stat = _read_keyed(f"{memory_dir}/memory.stat", "total_inactive_file", "inactive_file")
                memory = max(usage - stat.get("total_inactive_file", stat.get("inactive_file", 0)), 0)
            limit = _read_int(f"{memory_dir}/memory.limit_in_bytes")
            if limit is not None and limit >= UNLIMITED:
                limit = None
        return Reading(
            cpu_ns=_read_int(f"{cpu_dir}/cpuacct.usage") if cpu_dir is not None else None,
            memory_bytes=memory,
            memory_limit_bytes=limit,
            pids=_read_int(f"{pids_dir}/pids.current") if pids_dir is not None else None,
            at=at,
        )


class CpuRates:
    """The CPU percentage of each container (100 = one core busy) from its
    cumulative CPU time now and at the reading before, kept here (in the
    collecting process's memory). A container's first reading gives none."""

    def __init__(self):
        self._previous: dict[str, tuple[int, float]] = {}

    def percent(self, container_id: str, cpu_ns: int | None, at: float) -> float | None:
        if cpu_ns is None:
            return None
        previous = self._previous.get(container_id)
        self._previous[container_id] = (cpu_ns, at)
        if previous is None:
            return None
        used, elapsed = cpu_ns - previous[0], at - previous[1]
        if used < 0 or elapsed <= 0:
            return None  # a restarted container's count began again
        return round(used / (elapsed * 1e9) * 100.0, 2)

    def keep_only(self, container_ids) -> None:
        """Forgets the containers that are gone."""
        keep = set(container_ids)
        for container_id in [c for c in self._previous if c not in keep]:
            del self._previous[container_id]
