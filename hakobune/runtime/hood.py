"""What a running service is made of, read live for its team: "under the
hood" on the service page (capability "under_the_hood").

For the local runtime a service is a container, and a container is a few
kernel features put together; each is read here from where the kernel keeps
it, for one running instance:

- namespaces: /proc/<pid>/ns/<kind> of the instance's main process against
  the host's (/proc/1/ns/<kind>; where the portal may not read those, its own,
  which are the host's when it runs on the host);
- cgroups: the limits and the use in the instance's cgroup files (v2:
  memory.max, cpu.max, pids.max…; v1: memory.limit_in_bytes, cpu.cfs_quota_us…);
- capabilities: the CapEff, CapBnd and NoNewPrivs lines of /proc/<pid>/status,
  the sets decoded from their bit masks;
- the image's layers: the engine's history of the image, each layer with its
  size and the number of other services whose images hold the same layer.

For Cloud Run, `SandboxView` says what runs the service there instead, with
the service's own values as the backend stored them. Nothing here knows of
Django; the platform decides who may see it (docs/security.md)."""

from __future__ import annotations

import os
import re
# The result types are the interface's (runtime/base.py); they are named here too.
from .base import (  # noqa: F401
    CapabilityView,
    CgroupView,
    ContainerView,
    HoodUnavailable,
    HostNumbers,
    Layer,
    NamespacePair,
    SandboxView,
)

# The kernel's capability numbers (include/uapi/linux/capability.h), lower case
# without the CAP_ prefix, as capsh and `docker run --cap-add` name them.
CAPABILITY_NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
    "checkpoint_restore",
)

# The namespaces shown, in the order of the panel. `time` is left out: Docker
# does not give containers one of their own.
NAMESPACE_KINDS = ("pid", "net", "mnt", "uts", "ipc", "cgroup", "user")

STACK, DEPENDENCIES, CODE = "stack", "dependencies", "code"


class HoodUnreadable(Exception):
    """Something the panel needs could not be read (the process is gone, the
    portal cannot see this host's /proc); the message says what, in words."""


# -- decoding ---------------------------------------------------------------------------------


def decode_capabilities(mask: str | int) -> tuple[str, ...]:
    """The names of the capabilities set in a mask as /proc/<pid>/status
    writes it (hexadecimal, "000001ffffffffff"); bits beyond the kernel's
    known ones are named by number ("cap_45")."""
    value = int(mask, 16) if isinstance(mask, str) else int(mask)
    if value < 0:
        raise ValueError("a capability mask is not negative")
    names = []
    bit = 0
    while value:
        if value & 1:
            names.append(CAPABILITY_NAMES[bit] if bit < len(CAPABILITY_NAMES) else f"cap_{bit}")
        value >>= 1
        bit += 1
    return tuple(names)


def all_capabilities(last_cap: int) -> tuple[str, ...]:
    """Every capability this kernel knows (its /proc/sys/kernel/cap_last_cap)."""
    return decode_capabilities((1 << (last_cap + 1)) - 1)


def parse_status(text: str) -> dict[str, str]:
    """The `Key:\tvalue` lines of /proc/<pid>/status."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            found[key.strip()] = value.strip()
    return found


def namespace_id(link: str) -> str:
    """The number of a namespace link's target ("net:[4026532184]" -> "4026532184")."""
    kind, sep, rest = link.partition(":[")
    if not sep or not rest.endswith("]") or not rest[:-1].isdigit():
        raise ValueError(f"not a namespace link: {link!r}")
    return rest[:-1]


def parse_cpu_max(text: str) -> tuple[int | None, int]:
    """cgroup v2's cpu.max ("50000 100000", or "max 100000" for no limit):
    (quota in microseconds or None, period in microseconds)."""
    parts = text.split()
    if not parts:
        raise ValueError("cpu.max is empty")
    period = int(parts[1]) if len(parts) > 1 else 100_000
    return (None if parts[0] == "max" else int(parts[0])), period


def limit_value(text: str, *, unlimited_from: int | None = None) -> int | None:
    """A cgroup limit file's value: None for "max" (v2), or at or above
    `unlimited_from` (v1 writes a huge number for no limit)."""
    text = text.strip()
    if text == "max":
        return None
    value = int(text)
    if unlimited_from is not None and value >= unlimited_from:
        return None
    return value


# -- reading a process ----------------------------------------------------------------------------


class ProcReader:
    """Reads processes' namespaces and capabilities under `root` (the host's
    /proc, where the instances' main processes are seen by their host pid)."""

    def __init__(self, root: str = "/proc"):
        self.root = root.rstrip("/")

    def _read(self, *parts: str) -> str:
        with open("/".join((self.root, *parts))) as handle:
            return handle.read()

    def namespace(self, pid: int | str, kind: str) -> str:
        return namespace_id(os.readlink(f"{self.root}/{pid}/ns/{kind}"))

    def host_namespace(self, kind: str) -> str:
        """The host's namespace of this kind: init's, or where this process
        may not read init's (a hardened /proc), its own."""
        try:
            return self.namespace(1, kind)
        except PermissionError:
            return self.namespace("self", kind)

    def namespaces(self, pid: int) -> tuple[NamespacePair, ...]:
        if not os.path.isdir(f"{self.root}/{pid}/ns"):
            raise HoodUnreadable(f"the namespaces of process {pid} cannot be read here (no {self.root}/{pid}/ns)")
        pairs = []
        for kind in NAMESPACE_KINDS:
            try:
                pairs.append(NamespacePair(kind, self.namespace(pid, kind), self.host_namespace(kind)))
            except FileNotFoundError:
                continue  # a kernel without this kind
            except (OSError, ValueError) as exc:
                raise HoodUnreadable(f"the namespaces of process {pid} cannot be read here ({exc.strerror or exc})")
        return tuple(pairs)

    def capabilities(self, pid: int) -> CapabilityView:
        try:
            status = parse_status(self._read(str(pid), "status"))
        except OSError as exc:
            raise HoodUnreadable(f"the status of process {pid} cannot be read here ({exc.strerror})")
        return CapabilityView(
            effective=decode_capabilities(status.get("CapEff", "0")),
            bounding=decode_capabilities(status.get("CapBnd", "0")),
            host_root=self.host_root_capabilities(),
            no_new_privileges=status.get("NoNewPrivs", "0") == "1",
            uid=(status.get("Uid", "").split() or [""])[0],
        )

    def host_root_capabilities(self) -> tuple[str, ...]:
        """What root holds on this host: init's effective set, or every
        capability the kernel knows where init's status is not readable."""
        try:
            return decode_capabilities(parse_status(self._read("1", "status"))["CapEff"])
        except (OSError, KeyError, ValueError):
            pass
        try:
            return all_capabilities(int(self._read("sys", "kernel", "cap_last_cap").strip()))
        except (OSError, ValueError):
            return CAPABILITY_NAMES


# -- reading a cgroup --------------------------------------------------------------------------------


def _first_number(path: str) -> int | None:
    try:
        with open(path) as handle:
            return limit_value(handle.read())
    except (OSError, ValueError):
        return None


def _keyed(path: str, key: str) -> int | None:
    try:
        with open(path) as handle:
            for line in handle:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


# A v1 limit at or above this means none (the kernel writes a page-rounded 2^63 - 1).
V1_UNLIMITED = 1 << 62


def read_cgroup_limits(reader, container_id: str, *, cpu_sample_seconds: float = 0.25, sleep=None) -> CgroupView:
    """The instance's limits and its use against them, from its cgroup files
    (`reader`: a cgroups.CgroupReader, which knows both layouts). The CPU in
    use is two readings of its cumulative time `cpu_sample_seconds` apart."""
    import time

    sleep = sleep or time.sleep
    first = reader.read(container_id)
    if first is None:
        raise HoodUnreadable("this instance's cgroup is not on this host (is it running here?)")
    if cpu_sample_seconds > 0:
        sleep(cpu_sample_seconds)
    second = reader.read(container_id) or first
    cpu_percent = None
    if first.cpu_ns is not None and second.cpu_ns is not None and second.at > first.at:
        cpu_percent = round(max(second.cpu_ns - first.cpu_ns, 0) / ((second.at - first.at) * 1e9) * 100, 1)
    if reader.version == 2:
        folder = reader._dir_v2(container_id)
        quota, period = None, 100_000
        try:
            with open(f"{folder}/cpu.max") as handle:
                quota, period = parse_cpu_max(handle.read())
        except (OSError, ValueError):
            pass
        return CgroupView(
            version=2, memory_limit_bytes=second.memory_limit_bytes, memory_bytes=second.memory_bytes,
            cpu_quota_us=quota, cpu_period_us=period, cpu_percent=cpu_percent,
            pids_limit=_first_number(f"{folder}/pids.max"), pids=second.pids,
            files={"memory_limit": "memory.max", "memory": "memory.current", "cpu_limit": "cpu.max",
                   "cpu": "cpu.stat", "pids_limit": "pids.max", "pids": "pids.current"},
        )
    cpu_dir = reader._dir_v1(("cpu", "cpu,cpuacct", "cpuacct,cpu"), container_id)
    pids_dir = reader._dir_v1(("pids",), container_id)
    quota = _first_number(f"{cpu_dir}/cpu.cfs_quota_us") if cpu_dir else None
    period = (_first_number(f"{cpu_dir}/cpu.cfs_period_us") if cpu_dir else None) or 100_000
    return CgroupView(
        version=1, memory_limit_bytes=second.memory_limit_bytes, memory_bytes=second.memory_bytes,
        cpu_quota_us=quota if quota and quota > 0 else None, cpu_period_us=period, cpu_percent=cpu_percent,
        pids_limit=_first_number(f"{pids_dir}/pids.max") if pids_dir else None, pids=second.pids,
        files={"memory_limit": "memory.limit_in_bytes", "memory": "memory.usage_in_bytes",
               "cpu_limit": "cpu.cfs_quota_us", "cpu": "cpuacct.usage", "pids_limit": "pids.max",
               "pids": "pids.current"},
    )


# -- an image's layers ---------------------------------------------------------------------------------


# Steps that never make a layer (the classic builder's "#(nop)" metadata steps).
_METADATA = ("ENV", "LABEL", "EXPOSE", "CMD", "ENTRYPOINT", "USER", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
             "SHELL", "VOLUME", "MAINTAINER")


_DIGEST = re.compile(r"\b(file|dir|multi):([0-9a-f]{32,})")


def step_words(created_by: str) -> str:
    """A history entry's step as a Dockerfile line: "/bin/sh -c #(nop) COPY
    dir:… in ./" -> "COPY dir:… in ./", "/bin/sh -c pip install …" -> "RUN pip
    install …", BuildKit's "RUN /bin/sh -c … # buildkit" -> "RUN …"."""
    text = created_by.strip()
    text = text.removesuffix("# buildkit").strip()
    if text.startswith("/bin/sh -c #(nop)"):
        text = text[len("/bin/sh -c #(nop)"):].strip()
    elif text.startswith("/bin/sh -c "):
        text = "RUN " + text[len("/bin/sh -c "):].strip()
    elif text.startswith("RUN /bin/sh -c "):
        text = "RUN " + text[len("RUN /bin/sh -c "):].strip()
    # The classic builder names what it copied by a long digest: its start is enough.
    return _DIGEST.sub(lambda m: f"{m.group(1)}:{m.group(2)[:12]}…", text)


def _may_be_a_layer(step: str) -> bool:
    word = step.split(" ", 1)[0].upper()
    return bool(step) and word not in _METADATA and word != "WORKDIR"


def layer_steps(history: list[dict], layer_count: int) -> list[tuple[str, int | None]]:
    """(step, size) of each layer of an image, oldest first, from the engine's
    history of it (newest first, as the API gives it; one entry per step,
    layers or not). The engine gives no flag for steps without a layer: the
    entries with a size are the layers; where fewer than the image's layers
    have one (a layer of no bytes), the steps that can make a layer fill in.
    Sizes are None where the history does not match the layers."""
    entries = [(step_words(entry.get("CreatedBy") or ""), int(entry.get("Size") or 0)) for entry in reversed(history)]
    sized = [entry for entry in entries if entry[1] > 0]
    if len(sized) == layer_count:
        return sized
    candidates = [entry for entry in entries if entry[1] > 0 or _may_be_a_layer(entry[0])]
    if len(candidates) == layer_count:
        return candidates
    return [("", None)] * layer_count


def part_of_layers(steps: list[str], stack_layers: int) -> list[str]:
    """Which part each layer is: the first `stack_layers` are the stack's (the
    image it starts FROM); from the copy of the whole source folder on
    ("COPY . ." / "COPY dir:…", the code), code; between, dependencies. With no
    such copy, the last layer is the code."""
    parts = []
    code_from = None
    for index in range(stack_layers, len(steps)):
        step = steps[index]
        if step.startswith(("COPY dir:", "COPY . ", "ADD dir:", "COPY --from=")) or step in ("COPY . .", "ADD . ."):
            code_from = index
            break
    if code_from is None:
        code_from = len(steps) - 1 if len(steps) > stack_layers else len(steps)
    for index in range(len(steps)):
        if index < stack_layers:
            parts.append(STACK)
        elif index < code_from:
            parts.append(DEPENDENCIES)
        else:
            parts.append(CODE)
    return parts


def stack_layer_count(history: list[dict], label: str, layer_count: int) -> int:
    """How many of the image's layers come from the image it starts FROM: the
    layers before the platform's label step, which the builder puts right
    after the last FROM (builder._with_managed_label). With no such step
    (an image built elsewhere), the first layer."""
    entries = list(reversed(history))
    for index, entry in enumerate(entries):
        if label in (entry.get("CreatedBy") or ""):
            before = entries[:index]
            sized = sum(1 for e in before if int(e.get("Size") or 0) > 0)
            return min(max(sized, 1 if before else 0), layer_count)
    return min(layer_count, 1)


def image_layers(
    history: list[dict], diff_ids: list[str], *, label: str, shared: dict[str, int]
) -> tuple[Layer, ...]:
    """The layers of an image, each with its part, size, step and the number
    of other services sharing it (`shared`: {diff id: count})."""
    steps = layer_steps(history, len(diff_ids))
    parts = part_of_layers([step for step, _ in steps], stack_layer_count(history, label, len(diff_ids)))
    return tuple(
        Layer(part=part, size_bytes=size, shared_with=shared.get(diff_id, 0), step=step[:200],
              digest=diff_id.split(":")[-1][:12])
        for (step, size), part, diff_id in zip(steps, parts, diff_ids)
    )
