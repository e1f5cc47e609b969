"""Where a build's steps run on this host's Docker Engine, and what stops them.

A RUN step (of a person's Dockerfile, or their `build_command`) is a
container the engine starts for the step. Left alone, the engine puts it on
its default bridge, which has none of Hakobune's rules: it can open
connections to the host's own services, the LAN and a cloud's metadata
server, and it has no process or disk limit. Here:

- **The build network.** Every step runs on one Docker bridge of Hakobune's
  (`hakobune-builds` by default), labelled like the team networks, made
  without IPv6 and with inter-container traffic off (two teams' builds at
  once cannot reach each other), and isolated by `runtime/firewall.py` with
  exactly the rules of a team network: the host, other bridges, link-local
  (cloud metadata) and private ranges dropped; the host's DNS resolvers and
  the internet through NAT allowed, so package installs still work. The rules
  are checked before every build (a reboot empties iptables), and the
  runtime's reconciler keeps them too.
- **A cgroup per build.** Steps run under `<cgroup parent>/<team>-<id>`, a
  cgroup made here with the build's pids and memory limits, which hold for
  all of the build's processes together (the build API itself offers memory
  and CPU per step, but no pids limit). Needs the engine's cgroupfs driver
  and a worker that may write the host's /sys/fs/cgroup (cgroup v1 or v2).
- **A watch** that, every few seconds, stops the build's running step (kills
  its container, found in the build's cgroup) when the build outlives its
  time (and when the build is left early: its task's time limit), when a step met the pids limit (a fork bomb), or when what the
  build's steps wrote to their layers passes its disk allowance (overlay2 on
  ext4 has no per-container quota, so the writable layers are measured: the
  engine's `SizeRw`). The build then fails with a sentence saying which.

Nothing here knows Django."""

from __future__ import annotations

import errno
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker.api.build
from docker.errors import APIError, DockerException, NotFound

from hakobune.runtime.firewall import Firewall, FirewallError, bridge_of, host_lock

from .base import BuildError

log = logging.getLogger(__name__)

MANAGED_LABEL = "org.hakobune.managed"
ROLE_LABEL = "org.hakobune.role"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
CGROUP_FS = "/sys/fs/cgroup"
_CGROUP_PATH = re.compile(r"^(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$")
_CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")


# -- the build network ------------------------------------------------------------------


def ensure_build_network(client, name: str, *, instance: str, firewall: Firewall | None) -> str:
    """The network build steps run on, made when missing and isolated; returns
    the name to give the build API. "none" gives steps no network at all."""
    if name == "none":
        return name
    try:
        network = _build_network(client, name, instance)
    except (APIError, DockerException) as exc:
        raise BuildError(f"Hakobune could not make its build network {name}: {exc}", user_error=False,
                         transient=True) from exc
    problem = _not_a_build_network(network)
    if problem:
        raise BuildError(
            f"The Docker network {name} is not one Hakobune made for builds ({problem}), so no build runs on it. "
            f"Remove it (`docker network rm {name}`) and Hakobune makes its own, or set BUILD_NETWORK to another name.",
            user_error=False,
        )
    if firewall is not None:
        try:
            firewall.apply(bridge_of(network))
        except FirewallError as exc:
            raise BuildError(
                f"Hakobune could not isolate its build network, so the build was not started: {exc}",
                user_error=False, transient=True,
            ) from exc
    return name


def _build_network(client, name: str, instance: str):
    def named():
        found = [network for network in client.networks.list(names=[name]) if network.name == name]
        return sorted(found, key=lambda network: (network.attrs.get("Created", ""), network.id))

    existing = named()
    if existing:
        return existing[0]
    # Two workers making it at once would make two networks of one name.
    with host_lock("build-network"):
        existing = named()
        if existing:
            return existing[0]
        client.networks.create(
            name, driver="bridge", check_duplicate=True, enable_ipv6=False,
            labels={MANAGED_LABEL: instance, ROLE_LABEL: "builds"},
            options={ICC_OPTION: "false"},
        )
        return named()[0]


def _not_a_build_network(network) -> str:
    attrs = network.attrs
    if attrs.get("Driver") != "bridge":
        return f"its driver is {attrs.get('Driver')}, not bridge"
    if attrs.get("EnableIPv6"):
        return "it has IPv6, which the firewall does not filter"
    if (attrs.get("Options") or {}).get(ICC_OPTION) != "false":
        return "its containers can reach each other"
    return ""


# -- the build's cgroup ------------------------------------------------------------------


class BuildCgroup:
    """One build's cgroup, `<parent>/<name>`: made with its pids and memory
    limits before the build, given to the build API as its cgroup parent (each
    step's container is made inside it), read while the build runs, removed
    after. Works on cgroup v1 (a hierarchy per controller) and v2 (one)."""

    def __init__(self, parent: str, name: str, *, fs_root: str | Path = CGROUP_FS):
        parent = parent.rstrip("/")
        if not _CGROUP_PATH.match(parent) or ".." in parent.split("/"):
            raise BuildError(
                f"BUILD_CGROUP_PARENT must be an absolute cgroup path like /hakobune-builds, not {parent!r}",
                user_error=False,
            )
        self.parent = parent
        self.path = f"{parent}/{name}"  # what the build API is given
        self.fs_root = Path(fs_root)
        self.unified = not (self.fs_root / "pids").is_dir() and (self.fs_root / "cgroup.controllers").exists()
        self.pids_max = 0

    @classmethod
    def for_build(cls, parent: str, team: str, *, build_id: int = 0, fs_root: str | Path = CGROUP_FS) -> BuildCgroup:
        """A new cgroup for one attempt of a build, named `<team>-b<build id>-<random>`
        so that `of_build` finds it from another process."""
        return cls(parent, f"{_build_prefix(team, build_id)}{secrets.token_hex(4)}", fs_root=fs_root)

    @classmethod
    def of_build(cls, parent: str, team: str, build_id: int, *, fs_root: str | Path = CGROUP_FS) -> list[BuildCgroup]:
        """The cgroups of the build `build_id` that exist now (one per attempt
        still running or not yet removed)."""
        probe = cls(parent, "probe", fs_root=fs_root)
        prefix = _build_prefix(team, build_id)
        try:
            names = sorted(entry.name for entry in probe.dir("pids", probe.parent).iterdir()
                           if entry.is_dir() and entry.name.startswith(prefix))
        except OSError:
            return []
        return [cls(parent, name, fs_root=fs_root) for name in names]

    def dir(self, controller: str, path: str | None = None) -> Path:
        relative = (path or self.path).lstrip("/")
        return self.fs_root / relative if self.unified else self.fs_root / controller / relative

    # -- making it -----------------------------------------------------------------------

    def create(self, *, pids_max: int, memory_bytes: int) -> None:
        self.pids_max = int(pids_max)
        try:
            if self.unified:
                self._create_unified(memory_bytes)
            else:
                self._create_v1(memory_bytes)
        except OSError as exc:
            self.remove()
            raise BuildError(
                f"Hakobune could not make the build's cgroup {self.path} to limit its processes ({exc}). The worker "
                "must run as root on the host, with the Docker Engine's cgroupfs driver and /sys/fs/cgroup writable; "
                "or set BUILD_CGROUP_PARENT to nothing to build without the limit (never on a shared host).",
                user_error=False,
            ) from exc

    def _create_v1(self, memory_bytes: int) -> None:
        if not (self.fs_root / "pids").is_dir():
            raise OSError(errno.ENOENT, "no pids controller", str(self.fs_root / "pids"))
        pids = self.dir("pids")
        pids.mkdir(parents=True)
        _write(pids / "pids.max", str(self.pids_max))
        if memory_bytes and (self.fs_root / "memory").is_dir():
            memory = self.dir("memory")
            memory.mkdir(parents=True)
            _write(memory / "memory.limit_in_bytes", str(memory_bytes))
            if (memory / "memory.memsw.limit_in_bytes").exists():
                try:
                    _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
                except OSError:
                    pass  # no swap accounting: the memory limit alone

    def _create_unified(self, memory_bytes: int) -> None:
        # Each level must hand the controllers down to the next.
        level = self.fs_root
        for part in self.parent.strip("/").split("/"):
            _enable_controllers(level)
            level = level / part
            level.mkdir(exist_ok=True)
        _enable_controllers(level)
        own = self.dir("")
        own.mkdir()
        _write(own / "pids.max", str(self.pids_max))
        if memory_bytes:
            _write(own / "memory.max", str(memory_bytes))
            if (own / "memory.swap.max").exists():
                _write(own / "memory.swap.max", "0")

    # -- reading it ----------------------------------------------------------------------

    def container_ids(self) -> list[str]:
        """The build's step containers that exist now."""
        try:
            return sorted(entry.name for entry in self.dir("pids").iterdir()
                          if entry.is_dir() and _CONTAINER_ID.match(entry.name))
        except OSError:
            return []

    def pids_limit_met(self) -> bool:
        """Whether a process of the build could not start because of the limit
        (a fork refused), or the build held as many processes as it may."""
        here = self.dir("pids")
        counted = [here / "pids.events"] + [here / cid / "pids.events" for cid in self.container_ids()]
        if any(_key_value(path, "max") > 0 for path in counted):
            return True
        peak = _read_int(here / "pids.peak")
        return bool(self.pids_max) and peak >= self.pids_max

    def oom_kills(self) -> int:
        if self.unified:
            return _key_value(self.dir("") / "memory.events", "oom_kill")
        return _key_value(self.dir("memory") / "memory.oom_control", "oom_kill")

    # -- removing it ---------------------------------------------------------------------

    def remove(self, path: str | None = None) -> None:
        """Removes the cgroup (and step cgroups left inside) from every
        hierarchy the engine made it in. A cgroup still holding a process
        stays; the next build's prune_stale takes it later."""
        relative = (path or self.path).lstrip("/")
        if self.unified:
            targets = [self.fs_root / relative]
        else:
            try:
                targets = [d / relative for d in self.fs_root.iterdir() if d.is_dir() and not d.is_symlink()]
            except OSError:
                targets = []
        for target in targets:
            if not target.is_dir():
                continue
            for child in sorted((c for c in target.iterdir() if c.is_dir()), reverse=True):
                _rmdir(child)
            _rmdir(target)

    def prune_stale(self, max_age: float) -> None:
        """Removes the cgroups of builds that ended without removing theirs
        (a worker killed mid-build), once they are older than `max_age` s."""
        root = self.dir("pids", self.parent)
        try:
            entries = [entry for entry in root.iterdir() if entry.is_dir()]
        except OSError:
            return
        now = time.time()
        for entry in entries:
            try:
                old = now - entry.stat().st_mtime > max_age
            except OSError:
                continue
            if old and entry.name != self.path.rsplit("/", 1)[-1]:
                self.remove(f"{self.parent}/{entry.name}")


def _build_prefix(team: str, build_id: int) -> str:
    label = re.sub(r"[^a-z0-9-]", "", team.lower())[:40] or "build"
    return f"{label}-b{int(build_id)}-" if build_id else f"{label}-"


# Where a build's workspace notes the cgroup its build runs in.
CGROUP_NOTE = ".build-cgroup"


def end_earlier_attempt(client, cgroup: BuildCgroup, workspace: Path) -> None:
    """A build step run again in the same workspace (its worker died, and the
    step was resumed) first ends what the earlier attempt left: the step
    containers still in that attempt's cgroup, and the cgroup. Then it notes
    its own cgroup there."""
    note = Path(workspace) / CGROUP_NOTE
    try:
        earlier = note.read_text().strip()
    except OSError:
        earlier = ""
    if earlier and earlier != cgroup.path and earlier.startswith(f"{cgroup.parent}/") and _CGROUP_PATH.match(earlier) \
            and ".." not in earlier.split("/"):
        dead = BuildCgroup(cgroup.parent, earlier[len(cgroup.parent) + 1:], fs_root=cgroup.fs_root)
        for container in dead.container_ids():
            try:
                client.api.kill(container)
            except (NotFound, APIError, DockerException):
                pass
        dead.remove()
        log.info("removed %s, the cgroup of an earlier attempt of this build", earlier)
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(cgroup.path)
    except OSError as exc:
        log.warning("could not note the build's cgroup in %s: %s", note, exc)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _enable_controllers(level: Path) -> None:
    control = level / "cgroup.subtree_control"
    if not control.exists():
        return
    enabled = control.read_text().split()
    for controller in ("pids", "memory"):
        if controller not in enabled:
            _write(control, f"+{controller}")


def _rmdir(path: Path) -> None:
    for _ in range(20):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return
            time.sleep(0.1)  # the step's last process is still being reaped


def _read_int(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def _key_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == key and words[1].isdigit():
                return int(words[1])
    except OSError:
        pass
    return 0


# -- the watch --------------------------------------------------------------------------


def pids_message(limit: int) -> str:
    return (
        f"A step of your build started more processes than a build may have at once ({limit}), so Hakobune stopped "
        "it. That is what a fork bomb does, or a tool told to run very many jobs in parallel. Look at the step "
        "above in the log; run fewer jobs at a time (for example `make -j2`)."
    )


def disk_message(limit_mb: int) -> str:
    return (
        f"Your build wrote more than {limit_mb} MiB to disk, what a build may write, so Hakobune stopped it. Look "
        "at what the step above in the log downloads or makes; remove caches in the same RUN step (for example "
        "`pip install --no-cache-dir`, `npm ci && npm cache clean --force`), or build in two stages and copy only "
        "what the app needs."
    )


def stopped_message() -> str:
    return "The build was cancelled or superseded by a newer deploy, so Hakobune stopped its running step."


def timeout_message(seconds: int) -> str:
    return (
        f"The build took longer than {seconds} s, the time a build may take, and was stopped. Look at the last "
        "step in the log: a step that waits for input, or for a server that never answers, runs until it is stopped."
    )


class BuildWatch:
    """Watches one build while it runs (a thread, every `poll` seconds, see
    check) and stops its running step when a limit is passed. `why_stopped()`
    then gives the sentence for the build's failure."""

    def __init__(self, client, cgroup: BuildCgroup | None, *, timeout: int, disk_mb: int = 0, poll: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, should_stop: Callable[[], bool] | None = None):
        self.client = client
        # True once the build was cancelled or superseded: its running step is stopped.
        self.should_stop = should_stop
        self.cgroup = cgroup
        self.timeout = int(timeout)
        self.disk_mb = int(disk_mb)
        self.poll = float(poll)
        self.clock = clock
        self.deadline = clock() + self.timeout
        self.reason: str | None = None
        self.written: dict[str, int] = {}  # step container -> bytes in its writable layer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BuildWatch:
        self._thread = threading.Thread(target=self._run, name="hakobune-build-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if exc_type is not None and self.reason is None:
            # The build was left early (its task's time limit, a failure, the
            # worker shutting down): its running step must not outlive it.
            self.stop("the build was interrupted")

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a failed look must not end the build; the next one may see
                log.exception("could not check a running build")
            if self.reason:
                return

    def check(self) -> None:
        """One look: whether the build was stopped, the time, the pids limit,
        the bytes written."""
        if self.reason:
            return
        if self.should_stop is not None and self.should_stop():
            self.stop(stopped_message())
            return
        if self.clock() > self.deadline:
            self.stop(timeout_message(self.timeout))
            return
        if self.cgroup is None:
            return
        if self.cgroup.pids_max and self.cgroup.pids_limit_met():
            self.stop(pids_message(self.cgroup.pids_max))
            return
        if self.disk_mb:
            ids = self.cgroup.container_ids()
            if ids:
                for container in self.client.api.containers(all=True, size=True, filters={"id": ids}):
                    self.written[container["Id"]] = max(int(container.get("SizeRw") or 0),
                                                        self.written.get(container["Id"], 0))
            if sum(self.written.values()) > self.disk_mb * 1024 * 1024:
                self.stop(disk_message(self.disk_mb))

    def stop(self, reason: str) -> None:
        """Stops the build's running step, for `reason`."""
        self.reason = self.reason or reason
        for container in self.cgroup.container_ids() if self.cgroup else []:
            try:
                self.client.api.kill(container)
            except (NotFound, APIError, DockerException):
                pass  # it ended by itself meanwhile
        log.info("stopped a build: %s", reason)

    def why_stopped(self) -> str | None:
        """After a failed build: the limit that ended it, if one did."""
        if self.reason:
            return self.reason
        if self.cgroup is not None and self.cgroup.pids_max and self.cgroup.pids_limit_met():
            return pids_message(self.cgroup.pids_max)
        return None


# -- the build API ------------------------------------------------------------------------


class _WithCgroupParent:
    """The Docker SDK's APIClient, but its build request carries a cgroup
    parent (the engine's build API takes `cgroupparent`; the SDK does not
    pass one)."""

    def __init__(self, api, cgroup_parent: str):
        self._api = api
        self._cgroup_parent = cgroup_parent

    def __getattr__(self, name):
        return getattr(self._api, name)

    def _post(self, url, **kwargs):
        kwargs["params"] = {**(kwargs.get("params") or {}), "cgroupparent": self._cgroup_parent}
        return self._api._post(url, **kwargs)


def build_stream(api, *, cgroup_parent: str = "", **kwargs):
    """`api.build(**kwargs)`, with its steps in `cgroup_parent` when one is given."""
    if not cgroup_parent:
        return api.build(**kwargs)
    return docker.api.build.BuildApiMixin.build(_WithCgroupParent(api, cgroup_parent), **kwargs)
