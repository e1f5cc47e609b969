"""The local runtime: each instance of a release is a locked-down container on
this host's Docker Engine, on its team's own bridge network, published on
127.0.0.1 only and reached through the Caddy router.

A deploy starts the new release's instances, health-checks them, switches the
route, and only then stops the previous release, so a release that does not
come up never replaces one that works."""

from __future__ import annotations

import functools
import http.client
import ipaddress
import logging
import re
import secrets
import socket
import threading
import time
from collections import deque
from datetime import datetime

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import IPAMConfig, IPAMPool, LogConfig

from .base import (
    AttachedOneOff,
    DesiredService,
    ObservedInstance,
    DeployResult,
    DeploySpec,
    Instance,
    LiveRoute,
    LogLine,
    MetricSample,
    OneOffResult,
    RuntimeBackend,
    RuntimeBackendError,
    ServiceRef,
    ServiceStatus,
    TeamNetworkFull,
)
from .addons import LABEL_ADDON, LABEL_ADDON_TEAM
from .release_config import WEB
from . import doctor
from .cgroups import CgroupReader, CpuRates
from .hood import ContainerView, HoodUnavailable, HoodUnreadable, HostNumbers, ProcReader, image_layers, read_cgroup_limits
from .firewall import Firewall, FirewallError, bridge_of, host_lock
from .router import CaddyRouter, Route, RouterError
from .subnets import room_of
from .volumes import LocalVolumes, mounts_of

log = logging.getLogger(__name__)

LABEL_PREFIX = "org.hakobune"
LABEL_MANAGED = f"{LABEL_PREFIX}.managed"
LABEL_TEAM = f"{LABEL_PREFIX}.team"
LABEL_SERVICE = f"{LABEL_PREFIX}.service"
LABEL_RELEASE = f"{LABEL_PREFIX}.release"
LABEL_HOSTNAME = f"{LABEL_PREFIX}.hostname"
# The process type an instance runs (web, worker…); none on older instances: web.
LABEL_PROCESS = f"{LABEL_PREFIX}.process"
# A one-off container (the release phase, a scheduled job): not an instance.
LABEL_ONEOFF = f"{LABEL_PREFIX}.oneoff"
# A process type (not web) is taken as started once it has run this long.
WORKER_SETTLE_SECONDS = 1.0

CPU_PERIOD = 100_000  # microseconds; the CPU limit is a quota of this period


def _cpu_quota(cores: float) -> int:
    return max(int(cores * CPU_PERIOD), 1000)


# The uid:gid every service runs as; stacks create this user.
SERVICE_USER = "10001:10001"
LOG_TAIL_LINES = 40


def _gone_already(action, *args, **kwargs) -> bool:
    """Runs a Docker call on a container; True when the container was gone
    already (removed meanwhile), which the caller takes as done."""
    try:
        action(*args, **kwargs)
    except NotFound:
        return True
    return False


def team_network_name(team: str) -> str:
    return f"hakobune-team-{team}"


def network_is_full(exc: APIError) -> bool:
    """The engine's answer when a network's subnet has no address left
    ("no available IPv4 addresses on this network's address pools")."""
    return "no available ipv4 addresses" in str(exc).lower()


class DockerLocalBackend(RuntimeBackend):
    # collected_logs: the platform's log collector stores what the instances
    # print (platform/observability/logcollector.py); readers ask the store.
    capabilities = frozenset({"logs", "collected_logs", "stop_start", "routing", "under_the_hood", "scale_to_zero",
                              "team_networks", "processes", "one_off", "attach", "addons", "volumes"})

    def __init__(self, alias, **options):
        super().__init__(alias, **options)
        self.docker_url = options.get("docker_url", "unix:///var/run/docker.sock")
        # Which Hakobune this is: its containers carry it, and it never touches
        # another's (a test run beside a live platform, two platforms on a host).
        self.instance = options.get("instance", "hakobune")
        self.boot_timeout = float(options.get("boot_timeout", 60))
        self.stop_grace = int(options.get("stop_grace", 10))
        self.pids_limit = int(options.get("pids_limit", 256))
        # CPU while booting, as a multiple of the service's limit (1: no boost).
        self.startup_boost = float(options.get("startup_cpu_boost", 2.0))
        self.tmpfs_mb = int(options.get("tmpfs_mb", 64))
        self.worker_settle = float(options.get("worker_settle_seconds", WORKER_SETTLE_SECONDS))
        # Where the router sends requests for a sleeping service: the portal.
        self.waker = options.get("waker_upstream", "127.0.0.1:8000")
        self.router = CaddyRouter(
            options.get("router_admin_url", "http://127.0.0.1:2019"),
            int(options.get("router_port", 8080)),
            access_log=options.get("access_log"),
            https=bool(options.get("https", False)),
            https_port=int(options.get("https_port", 443)),
            waker_secret=options.get("waker_secret", ""),
            state_dir=options.get("router_state_dir"),
        )
        # "iptables" isolates each team bridge (runtime/firewall.py); "off" only
        # where something else does (never on a shared host).
        self.firewall = Firewall() if options.get("firewall", "iptables") != "off" else None
        # Metrics come from the containers' cgroup files, read on this host.
        self.cgroups = CgroupReader(options.get("cgroup_root", "/sys/fs/cgroup"))
        self.cpu_rates = CpuRates()
        # Where the instances' processes are seen by their host pid ("under the hood").
        self.proc = ProcReader(options.get("proc_root", "/proc"))
        # Image id -> its layers' ids: an image never changes.
        self._image_layers: dict[str, tuple[str, ...]] = {}
        self._client = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.DockerClient(base_url=self.docker_url, timeout=60)
            except DockerException as exc:
                raise RuntimeBackendError(
                    f"the Docker Engine does not answer at {self.docker_url}: {exc}", permanent=False
                )
        return self._client

    # -- deploy ---------------------------------------------------------------

    def _image_and_network(self, spec: DeploySpec):
        """Checks the release's image is on this host; the team's network, made if missing."""
        try:
            self.client.images.get(spec.image)
        except ImageNotFound:
            raise RuntimeBackendError(f"the image {spec.image} is not on this host; build the service again")
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        return self._ensure_team_network(spec.team, allow=spec.egress_allow, subnet=spec.network_subnet)

    def deploy(self, spec: DeploySpec) -> DeployResult:
        network = self._image_and_network(spec)
        self._check_volumes(spec)
        started = []
        # A volume not marked shared is held by one container at a time: the
        # old release stops first (a short gap), and starts again if the new
        # one does not come up.
        held = self._stop_for_switch(spec) if spec.stop_then_start else []
        try:
            web_count = spec.process_counts()[WEB]
            for index in range(web_count):
                started.append(self._run_instance(spec, index, network))
            spec.step_done("started")
            upstreams = [self._wait_until_healthy(container, spec) for container in started]
            workers = self._start_processes(spec, network, started)
            spec.step_done("healthy")
            if spec.public and spec.web:
                self.router.set_route(
                    Route(spec.hostname, tuple(upstreams), aliases=tuple(spec.aliases), redirects=tuple(spec.redirects))
                )
                spec.step_done("routed")
            else:
                # Private (or no web process): no address in the router; the
                # team reaches a private one by name.
                self.router.remove_route(spec.hostname)
            self._settle([c for c in started if c not in workers], spec)
        except RouterError as exc:
            self._remove(started)
            self._resume(held, spec)
            raise RuntimeBackendError(str(exc), permanent=exc.permanent)
        except RuntimeBackendError:
            self._remove(started)
            self._resume(held, spec)
            raise
        except DockerException as exc:
            self._remove(started)
            self._resume(held, spec)
            raise RuntimeBackendError(f"the Docker Engine failed while starting the app: {exc}", permanent=False)
        except BaseException:
            # Interrupted (the deploy step's time limit): nothing half-started stays.
            self._remove(started)
            self._resume(held, spec)
            raise
        self._remove_earlier_attempts(spec, keep=started)

        instances = [Instance(id=c.id, name=c.name, state="running", address=a) for c, a in zip(started, upstreams)]
        instances += [Instance(id=c.id, name=c.name, state="running") for c in workers]
        return DeployResult(
            url=f"http://{spec.hostname}:{self.router.listen_port}/",
            instances=instances,
            state={"containers": [c.id for c in started], "upstreams": upstreams},
        )

    def _check_volumes(self, spec: DeploySpec) -> None:
        """Each volume the release mounts exists and is its team's: the engine
        would make a missing one (empty, root's) and mount another team's."""
        volumes = LocalVolumes(self)
        for mount in spec.volumes:
            volumes.owned(spec.team, mount.volume)

    def _stop_for_switch(self, spec: DeploySpec) -> list:
        """Stops the running instances of the service's other releases (kept,
        not removed, until the new release serves); returns them."""
        held = []
        for container in self._containers(spec.ref, all_states=False):
            if container.labels.get(LABEL_RELEASE) == str(spec.release_id):
                continue
            try:
                container.stop(timeout=self.stop_grace)
                held.append(container)
            except NotFound:
                pass
        return held

    def _resume(self, held: list, spec: DeploySpec) -> None:
        """The new release did not come up: the old one, stopped for the
        switch, starts again and is routed as before."""
        if not held:
            return
        upstreams = []
        for container in held:
            try:
                self._start_again(container, spec.team)
                container.reload()
                if container.labels.get(LABEL_PROCESS, WEB) == WEB:
                    env = dict(item.split("=", 1) for item in container.attrs["Config"].get("Env") or [] if "=" in item)
                    address = self._published_address(container, int(env.get("PORT", spec.port)))
                    if address:
                        upstreams.append(address)
            except (DockerException, RuntimeBackendError):
                log.exception("could not start %s again after a failed switch", container.name)
        # Routed once it answers again (any HTTP answer: its own health check
        # path is its release's, not this spec's).
        deadline = time.monotonic() + self.boot_timeout
        waiting = list(upstreams)
        while waiting and time.monotonic() < deadline:
            waiting = [address for address in waiting if _http_status(address, "/") is None]
            if waiting:
                time.sleep(0.05)
        if upstreams and spec.public and spec.web:
            try:
                self.router.set_route(
                    Route(spec.hostname, tuple(upstreams), aliases=tuple(spec.aliases), redirects=tuple(spec.redirects))
                )
            except RouterError:
                log.exception("could not route %s back to its old release", spec.hostname)

    def _remove_earlier_attempts(self, spec: DeploySpec, *, keep) -> None:
        """Instances of this release that an earlier attempt of its deploy
        started (a worker that died mid-deploy; the step was resumed) go once
        the new ones serve: a release has exactly its instances."""
        kept = {container.id for container in keep}
        try:
            others = [c for c in self._containers(spec.ref) if c.labels.get(LABEL_RELEASE) == str(spec.release_id)]
        except DockerException:
            log.exception("could not list the instances of %s", spec.hostname)
            return
        self._remove([c for c in others if c.id not in kept])

    def _ensure_team_network(self, team: str, *, allow: tuple[str, ...] = (), subnet: str = ""):
        network = self._team_network(team, subnet=subnet)
        self.isolate(network, allow=allow)
        return network

    def _team_network(self, team: str, *, subnet: str = ""):
        """The team's network, made with the address block `subnet` when it
        does not exist yet (empty: from Docker's default pools, which hold
        about 31 networks). A network that exists is used as it is, whatever
        its subnet: one made before the team had a block keeps working."""
        name = team_network_name(team)
        existing = self._networks_named(name)
        if existing:
            return existing[0]
        # The engine's duplicate check is best effort: two first deploys of a
        # team at once would make two networks of one name, and containers
        # then cannot start ("network ... is ambiguous"). One creation at a
        # time on this host (across worker processes: a file lock).
        with host_lock("team-networks"):
            existing = self._networks_named(name)
            if existing:
                return existing[0]
            ipam = None
            if subnet:
                block = ipaddress.ip_network(subnet)
                ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(block), gateway=str(block.network_address + 1))])
            try:
                # IPv4 only: the isolation rules are iptables rules (docs/security.md).
                return self.client.networks.create(
                    name, driver="bridge", labels={LABEL_MANAGED: self.instance, LABEL_TEAM: team},
                    check_duplicate=True, enable_ipv6=False, ipam=ipam,
                )
            except APIError as exc:
                if "overlaps" in str(exc) or "available" in str(exc):
                    error = RuntimeBackendError(
                        f"the Docker Engine could not make the team network {name}"
                        f"{f' with the block {subnet}' if subnet else ''}: {exc.explanation or exc}",
                        permanent=False,
                    )
                    # Another network on this engine (another Hakobune sharing
                    # the range, or one left by a team deleted by hand) holds
                    # the block: the platform claims another, avoiding every
                    # block the engine holds.
                    error.subnet_taken = subnet if subnet and "overlaps" in str(exc) else ""
                    error.engine_subnets = self._engine_subnets() if error.subnet_taken else []
                    raise error from exc
                raise

    def _engine_subnets(self) -> list[ipaddress.IPv4Network]:
        """The IPv4 blocks of every network the engine has (any owner)."""
        found = []
        try:
            listed = self.client.networks.list()
        except DockerException:
            return found
        for network in listed:
            for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
                try:
                    block = ipaddress.ip_network(pool.get("Subnet") or "", strict=False)
                except ValueError:
                    continue
                if block.version == 4:
                    found.append(block)
        return found

    def remove_team_networks(self, known_teams: set[str]) -> list[str]:
        """Removes this platform's networks of teams that are gone (and their
        isolation rules), once no container uses them."""
        done = []
        try:
            listed = self.client.networks.list(filters={"label": f"{LABEL_MANAGED}={self.instance}"})
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        for network in listed:
            team = (network.attrs.get("Labels") or {}).get(LABEL_TEAM, "")
            if not team or team in known_teams:
                continue
            try:
                network.reload()
                if network.attrs.get("Containers"):
                    continue  # its containers go first (remove_strays); next time
                bridge = bridge_of(network)
                network.remove()
            except NotFound:
                continue
            except DockerException as exc:
                log.warning("could not remove the network %s: %s", network.name, exc)
                continue
            if self.firewall is not None:
                try:
                    self.firewall.remove(bridge)
                except FirewallError as exc:
                    log.warning("could not remove the rules of %s: %s", bridge, exc)
            done.append(f"removed the network {network.name}: no team {team} exists")
        return done

    def take_down_team_network(self, team: str) -> list[str]:
        """Moving the team to another block: its instances (and one-off
        containers) removed, its add-ons stopped and taken off the network
        (their containers and volumes stay), then the network and its
        isolation rules removed. The caller holds the team's deploy locks."""
        done = []
        try:
            mine = self.client.containers.list(
                all=True, filters={"label": [f"{LABEL_MANAGED}={self.instance}", f"{LABEL_TEAM}={team}"]})
            # A container gone meanwhile (an instance retired, a one-off that
            # ended and removed itself) is what this wanted: it is left out.
            for container in mine:
                if _gone_already(container.remove, force=True, v=True):
                    continue
                done.append(f"removed {container.name}")
            addons = self._addon_containers(team)
            for container in addons:
                if container.status in ("running", "restarting") and not _gone_already(container.stop, timeout=30):
                    done.append(f"stopped the add-on {container.name}")
            for network in self._networks_named(team_network_name(team)):
                network.reload()
                for container_id in (network.attrs.get("Containers") or {}):
                    _gone_already(network.disconnect, container_id, force=True)
                for container in addons:
                    # A stopped container is no endpoint the network lists, but still names it.
                    if network.name in (container.attrs.get("NetworkSettings", {}).get("Networks") or {}):
                        _gone_already(network.disconnect, container, force=True)
                bridge = bridge_of(network)
                network.remove()
                done.append(f"removed the network {network.name}")
                if self.firewall is not None:
                    self.firewall.remove(bridge)
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed while taking down the network of team {team}: {exc}",
                                      permanent=False)
        except FirewallError as exc:
            raise RuntimeBackendError(f"could not remove the isolation rules of team {team}'s network: {exc}",
                                      permanent=False)
        return done

    def make_team_network(self, team: str, subnet: str, *, allow: tuple[str, ...] = ()) -> list[str]:
        network = self._ensure_team_network(team, allow=allow, subnet=subnet)
        done = [f"made the network {network.name} in {subnet}"]
        try:
            for container in self._addon_containers(team):
                if network.name in (container.attrs.get("NetworkSettings", {}).get("Networks") or {}):
                    continue
                name = container.labels.get(f"{LABEL_ADDON}.name", "")
                network.connect(container, aliases=[name] if name else None)
                done.append(f"put the add-on {container.name} on it")
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed while putting team {team}'s add-ons on its network: "
                                      f"{exc}", permanent=False)
        return done

    def _addon_containers(self, team: str) -> list:
        return self.client.containers.list(
            all=True, filters={"label": [f"{LABEL_ADDON}={self.instance}", f"{LABEL_ADDON_TEAM}={team}"]})

    def _networks_named(self, name: str) -> list:
        """The networks of exactly this name, oldest first."""
        found = [network for network in self.client.networks.list(names=[name]) if network.name == name]
        return sorted(found, key=lambda network: (network.attrs.get("Created", ""), network.id))

    def isolate(self, network, *, allow: tuple[str, ...] = ()) -> None:
        """The team bridge cut off from the host, other teams and private
        ranges but the `allow`ed networks (checked on every deploy, so rules
        lost with a reboot come back)."""
        if self.firewall is None:
            return
        try:
            self.firewall.apply(bridge_of(network), allow=allow)
        except FirewallError as exc:
            raise RuntimeBackendError(
                f"Hakobune could not isolate the team's network, so the service was not started: {exc}",
                permanent=False,
            )

    def repair_platform(self, egress: dict[str, tuple[str, ...]] | None = None) -> list[str]:
        bridges = self.isolate_all(egress)
        return [f"isolation rules in place for {len(bridges)} team network(s)"] if bridges else []

    def isolate_all(self, egress: dict[str, tuple[str, ...]] | None = None) -> dict[str, tuple[str, ...]]:
        """For the reconciler: every team network isolated, with the networks
        its team may reach (`egress`: team name: allow-list), and the rules of
        removed networks pruned. Returns the bridges."""
        if self.firewall is None:
            return {}
        egress = egress or {}
        networks = self.client.networks.list(filters={"label": f"{LABEL_MANAGED}={self.instance}"})
        bridges = {
            bridge_of(network): tuple(egress.get((network.attrs.get("Labels") or {}).get(LABEL_TEAM, ""), ()))
            for network in networks
        }
        try:
            self.firewall.sync(bridges, lambda: {bridge_of(network) for network in self.client.networks.list()})
        except FirewallError as exc:
            raise RuntimeBackendError(f"could not apply the network isolation: {exc}", permanent=False)
        return bridges

    def _start_processes(self, spec: DeploySpec, network, started: list) -> list:
        """Starts the release's other process types (not routed, no port);
        each is taken as started once it has run `worker_settle` seconds, so a
        worker that exits at once fails the deploy with its own output, as a
        web process that stops while starting does."""
        workers = []
        for name, count in spec.process_counts().items():
            if name == WEB:
                continue
            for index in range(count):
                container = self._run_instance(spec, index, network, process=name)
                started.append(container)
                workers.append(container)
        if not workers:
            return workers
        time.sleep(self.worker_settle)
        for container in workers:
            container.reload()
            state = container.attrs["State"]
            process = container.labels.get(LABEL_PROCESS, WEB)
            if state.get("Status") in ("exited", "dead"):
                raise doctor.stopped_at_start(
                    process=process, exit_code=state.get("ExitCode"), oom_killed=bool(state.get("OOMKilled")),
                    memory_mb=int(spec.config.sizes(process).get("memory_mb") or 0), tail=self._tail(container),
                )
            container.update(restart_policy={"Name": "unless-stopped"})
        return workers

    def _run_instance(self, spec: DeploySpec, index: int, network, *, process: str = WEB):
        label = "" if process == WEB else f"{process}-"
        name = f"hakobune-{spec.team}-{spec.service}-v{spec.release_number}-{label}{index}-{secrets.token_hex(3)}"
        try:
            return self._create_and_start(spec, name, network, process)
        except APIError as exc:
            if not network_is_full(exc):
                raise
            # Created but never started: it goes, so the name and nothing else stay.
            try:
                self.client.containers.get(name).remove(force=True, v=True)
            except DockerException:
                log.warning("could not remove %s, which found no address", name)
            raise self._full(network, spec.team) from exc

    def _full(self, network, team: str) -> TeamNetworkFull:
        """The error saying the team's network is full, with its block as the engine has it."""
        subnet = ""
        try:
            if network is None:
                raise NotFound("no team network")
            network.reload()
            configs = (network.attrs.get("IPAM") or {}).get("Config") or []
            subnet = next((c.get("Subnet", "") for c in configs if ":" not in c.get("Subnet", ":")), "")
        except DockerException:
            pass
        return TeamNetworkFull(team, subnet, room_of(subnet) if subnet else "?")

    def _start_again(self, container, team: str) -> None:
        """Starts a stopped instance; a full network says so (its address went
        to another instance while it was stopped)."""
        try:
            container.start()
        except APIError as exc:
            if not network_is_full(exc):
                raise
            found = self._networks_named(team_network_name(team))
            raise self._full(found[0] if found else None, team) from exc

    def _create_and_start(self, spec: DeploySpec, name: str, network, process: str = WEB):
        sizes = spec.config.sizes(process)
        web = process == WEB
        memory = f"{sizes['memory_mb']}m"
        extra = {}
        if web:
            extra = dict(
                ports={f"{spec.port}/tcp": ("127.0.0.1", None)},
                # Teammates reach it at http://<service>:<port> on the team network.
                networking_config={network.name: self.client.api.create_endpoint_config(aliases=[spec.service])},
            )
        else:
            extra = dict(command=["/bin/sh", "-c", _exec(spec.processes[process])])
        return self.client.containers.run(
            spec.image,
            detach=True,
            name=name,
            # Another process's own name would shadow the web alias inside it.
            hostname=spec.service if web else f"{spec.service}-{process}"[:63].rstrip("-"),
            labels={
                LABEL_MANAGED: self.instance,
                LABEL_TEAM: spec.team,
                LABEL_SERVICE: spec.service,
                LABEL_RELEASE: str(spec.release_id),
                LABEL_HOSTNAME: spec.hostname,
                LABEL_PROCESS: process,
            },
            environment={**spec.env, "PORT": str(spec.port)},
            user=SERVICE_USER,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_mb}m"},
            mem_limit=memory,
            memswap_limit=memory,
            # Start-up CPU boost, like Cloud Run's: the instance boots with
            # more CPU than its limit, which it gets once it answers.
            cpu_period=CPU_PERIOD,
            cpu_quota=self._boot_quota(spec) if web else _cpu_quota(float(sizes["cpu"])),
            pids_limit=self.pids_limit,
            log_config=LogConfig(type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "3"}),
            network=network.name,
            mounts=mounts_of(spec.volumes),
            # No restarts while booting, so a crash shows as a crash with its
            # own output; a healthy instance gets its restart policy after.
            restart_policy={"Name": "no"},
            privileged=False,
            **extra,
        )

    # -- one-off containers ---------------------------------------------------

    def _one_off(self, spec: DeploySpec, command: str, purpose: str, **terminal):
        """Starts a one-off container of the release; `terminal`: the
        options of an attached one (created, not started: see attach_one_off)."""
        network = self._image_and_network(spec)
        self._check_volumes(spec)
        memory = f"{spec.memory_mb}m"
        name = f"hakobune-{spec.team}-{spec.service}-v{spec.release_number}-{purpose}-{secrets.token_hex(3)}"
        make = self.client.containers.create if terminal else functools.partial(self.client.containers.run, detach=True)
        try:
            return make(
                # Not the service's name, which its teammates' `http://<service>`
                # must find on the team network, not this container.
                spec.image, command=["/bin/sh", "-c", _exec(command)], name=name,
                hostname=f"{spec.service}-{purpose}"[:63].rstrip("-"), **terminal,
                labels={
                    LABEL_MANAGED: self.instance, LABEL_TEAM: spec.team, LABEL_SERVICE: spec.service,
                    LABEL_RELEASE: str(spec.release_id), LABEL_HOSTNAME: spec.hostname, LABEL_ONEOFF: purpose,
                },
                environment={**spec.env, "PORT": str(spec.port)}, user=SERVICE_USER, cap_drop=["ALL"],
                security_opt=["no-new-privileges"], read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_mb}m"}, mem_limit=memory, memswap_limit=memory,
                cpu_period=CPU_PERIOD, cpu_quota=_cpu_quota(spec.cpu), pids_limit=self.pids_limit,
                log_config=LogConfig(type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "3"}),
                network=network.name, restart_policy={"Name": "no"}, privileged=False,
                mounts=mounts_of(spec.volumes),
            )
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed while starting {purpose}: {exc}", permanent=False)

    def start_one_off(self, spec: DeploySpec, command: str, *, purpose: str) -> str:
        return self._one_off(spec, command, purpose).id

    def attach_one_off(
        self, spec: DeploySpec, command: str, *, tty: bool, rows: int = 24, cols: int = 80, purpose: str = "run"
    ) -> AttachedOneOff:
        # Created attached (docker-py then sets StdinOnce: the command's stdin
        # closes when the terminal's does).
        container = self._one_off(spec, command, purpose, stdin_open=True, tty=tty)
        try:
            # Attached before it starts, so not a byte of its output is missed.
            attached = self.client.api.attach_socket(
                container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            container.start()
            session = _AttachedContainer(self.client, container, attached, tty=tty)
            if tty:
                session.resize(rows, cols)
            return session
        except DockerException as exc:
            self._remove([container])
            raise RuntimeBackendError(f"the Docker Engine failed while starting {purpose}: {exc}", permanent=False)

    def one_off_result(self, ref: ServiceRef, handle: str, *, stop: bool = False) -> OneOffResult | None:
        try:
            container = self.client.containers.get(handle)
        except NotFound:
            return OneOffResult(exit_code=None, lost=True)
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        labels = container.labels
        if labels.get(LABEL_TEAM) != ref.team or labels.get(LABEL_SERVICE) != ref.service or LABEL_ONEOFF not in labels:
            return OneOffResult(exit_code=None, lost=True)
        try:
            if container.status in ("running", "created", "restarting"):
                if not stop:
                    return None
                container.kill()
                container.reload()
            state = container.attrs["State"]
            result = OneOffResult(
                exit_code=None if stop else state.get("ExitCode"), tail=self._tail(container, 200), timed_out=stop,
                started_at=_parse_docker_time(state.get("StartedAt", "")),
                finished_at=_parse_docker_time(state.get("FinishedAt", "")),
            )
        except NotFound:
            return OneOffResult(exit_code=None, lost=True)
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        self._remove([container])
        return result

    def run_once(self, spec: DeploySpec, command: str, *, purpose: str, timeout: float, on_line=None) -> OneOffResult:
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        container = None
        try:
            container = self._one_off(spec, command, purpose)
            # Its output is read here (on_line runs in the caller's thread);
            # a timer kills it at its time limit, which ends the output.
            timed_out = threading.Event()

            def kill():
                timed_out.set()
                try:
                    container.kill()
                except DockerException:
                    pass

            timer = threading.Timer(timeout, kill)
            timer.daemon = True
            timer.start()
            try:
                since = None
                while True:
                    # The engine's stream breaks after the client's timeout
                    # without output; it is opened again from that moment.
                    _read_lines(container, tail, on_line, since=since)
                    since = int(time.time())
                    container.reload()
                    if container.status not in ("running", "created"):
                        break
                exit_code = container.wait(timeout=60).get("StatusCode")
            finally:
                timer.cancel()
            if timed_out.is_set():
                return OneOffResult(exit_code=None, tail=list(tail), timed_out=True)
            return OneOffResult(exit_code=exit_code, tail=list(tail))
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed while running {purpose}: {exc}", permanent=False)
        finally:
            # Interrupted too (a step's time limit): nothing is left running.
            if container is not None:
                self._remove([container])

    def _boot_quota(self, spec: DeploySpec) -> int:
        boosted = max(spec.cpu * self.startup_boost, 1.0) if self.startup_boost > 1 else spec.cpu
        return _cpu_quota(max(boosted, spec.cpu))

    def _wait_until_healthy(self, container, spec: DeploySpec) -> str:
        """Waits until the instance answers HTTP on its port (below 500) and
        returns the host:port the router should send requests to. Its HTTP
        port is tried every 15 ms; whether it has died, every 100 ms (a call
        to the engine). `_settle` gives it its steady limits afterwards."""
        deadline = time.monotonic() + self.boot_timeout
        address, last_status, next_look, looked_for_host = None, None, 0.0, False
        while time.monotonic() < deadline:
            if address:
                # With the Host the router sends, so an app that checks it (Django's ALLOWED_HOSTS) answers as it will.
                last_status = _http_status(address, spec.health_check_path, spec.hostname) or last_status
                if last_status == 400 and not looked_for_host:
                    # The app logs why a moment after it answers: one look now and one a little later.
                    looked_for_host = True
                    for pause in (0.0, 0.3):
                        time.sleep(pause)
                        refused = doctor.host_refused(host=spec.hostname, tail=self._tail(container))
                        if refused is not None:
                            raise refused
                if last_status is not None and last_status < 500:
                    return address
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + 0.1
                container.reload()
                state = container.attrs["State"]
                if state.get("Status") in ("exited", "dead"):
                    raise doctor.stopped_at_start(
                        process=WEB, exit_code=state.get("ExitCode"), oom_killed=bool(state.get("OOMKilled")),
                        memory_mb=int(spec.config.sizes(WEB).get("memory_mb") or 0), tail=self._tail(container),
                    )
                if address is None:
                    address = self._published_address(container, spec.port)
            time.sleep(0.015)
        tail = self._tail(container)
        if last_status is not None:
            # It listens, but its health check fails: the app's own error, not its port.
            raise doctor.unhealthy(status=last_status, path=spec.health_check_path, port=spec.port,
                                   seconds=self.boot_timeout, tail=tail)
        raise doctor.no_answer(port=spec.port, seconds=self.boot_timeout, sockets=self._listening(container),
                               tail=tail)

    def _listening(self, container) -> list[doctor.Socket] | None:
        """The TCP sockets the instance listens on, from its own network
        namespace's /proc/net/tcp{,6}: read from the host through its first
        process when this host's /proc shows it, else inside it through the
        engine. None when neither can be read."""
        container.reload()
        pid = (container.attrs.get("State") or {}).get("Pid") or 0
        if pid:
            try:
                # The pid is the host's: this /proc is that process only if it is in the container's cgroup.
                with open(f"/proc/{pid}/cgroup") as handle:
                    ours = container.id in handle.read()
                if ours:
                    text = "".join(open(f"/proc/{pid}/net/{name}").read() for name in ("tcp", "tcp6"))
                    return doctor.listening_sockets(text)
            except OSError:
                pass
        try:
            _, output = container.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"], stderr=False)
        except DockerException:
            return None
        text = (output or b"").decode("ascii", "replace")
        if "local_address" not in text:
            # No `cat` in the image, or the engine's own error: not a listing of no sockets.
            return None
        return doctor.listening_sockets(text)

    def _settle(self, containers, spec: DeploySpec) -> None:
        """Healthy and routed instances get their steady CPU limit (the boot
        boost ends) and their restart policy. Done after the route is
        switched, off the path to the first request; an instance that cannot
        be updated is left to the reconciler."""
        for container in containers:
            try:
                container.update(
                    restart_policy={"Name": "unless-stopped"}, cpu_period=CPU_PERIOD, cpu_quota=_cpu_quota(spec.cpu)
                )
            except DockerException as exc:
                log.warning("could not settle %s: %s", container.name, exc)

    @staticmethod
    def _published_address(container, port: int) -> str | None:
        return _upstream_of(container.attrs, container.labels.get(LABEL_TEAM, ""), f"{port}/tcp")

    def _tail(self, container, lines: int = LOG_TAIL_LINES) -> list[str]:
        try:
            raw = container.logs(tail=lines, stdout=True, stderr=True)
        except DockerException:
            return []
        return raw.decode("utf-8", "replace").splitlines()

    def _remove(self, containers) -> None:
        for container in containers:
            try:
                container.remove(force=True, v=True)
            except NotFound:
                pass
            except DockerException:
                log.exception("could not remove container %s", container.name)

    def _containers(self, ref: ServiceRef, *, all_states: bool = True, one_offs: bool = False):
        """The service's instances (with `one_offs`: its one-off containers too)."""
        listed = self.client.containers.list(
            all=all_states,
            filters={"label": [f"{LABEL_MANAGED}={self.instance}", f"{LABEL_TEAM}={ref.team}", f"{LABEL_SERVICE}={ref.service}"]},
        )
        return listed if one_offs else [c for c in listed if LABEL_ONEOFF not in c.labels]

    def retire_previous(self, ref: ServiceRef, *, keep_release_id: int) -> None:
        """Drains the releases the new one replaced: SIGTERM, a grace period,
        then SIGKILL, and removal."""
        self._stop_other_releases(ref, keep_release_id=keep_release_id)

    def _stop_other_releases(self, ref: ServiceRef, *, keep_release_id: int) -> None:
        """Stops the instances of releases older than the kept one (a newer
        one, started by a later deploy meanwhile, stays)."""
        for container in self._containers(ref):
            release = container.labels.get(LABEL_RELEASE, "")
            if not release.isdigit() or int(release) < keep_release_id:
                try:
                    container.stop(timeout=self.stop_grace)
                    container.remove(v=True)
                except NotFound:
                    pass
                except DockerException:
                    log.exception("could not stop the old instance %s", container.name)

    # -- other actions --------------------------------------------------------

    def stop(self, ref: ServiceRef) -> None:
        for container in self._containers(ref, all_states=False):
            container.stop(timeout=self.stop_grace)

    def start(self, ref: ServiceRef) -> None:
        for container in self._containers(ref):
            if container.status != "running":
                self._start_again(container, ref.team)

    def destroy(self, ref: ServiceRef) -> None:
        hostnames = set()
        for container in self._containers(ref, one_offs=True):
            hostnames.add(container.labels.get(LABEL_HOSTNAME))
            container.remove(force=True, v=True)
        hostnames.discard(None)
        try:
            for hostname in hostnames:
                self.router.remove_route(hostname)
        except RouterError as exc:
            raise RuntimeBackendError(str(exc), permanent=False)

    def status(self, ref: ServiceRef) -> ServiceStatus:
        try:
            containers = self._containers(ref)
        except DockerException as exc:
            return ServiceStatus(state="unknown", detail=f"the Docker Engine does not answer: {exc}")
        instances = [Instance(id=c.id, name=c.name, state=c.status) for c in containers]
        if not instances:
            return ServiceStatus(state="missing", instances=instances)
        restarts = sum(c.attrs.get("RestartCount", 0) for c in containers)
        oom_kills = sum(1 for c in containers if c.attrs["State"].get("OOMKilled"))
        oom = doctor.out_of_memory_running(
            [(c.labels.get(LABEL_PROCESS, WEB), (c.attrs.get("HostConfig") or {}).get("Memory") or 0)
             for c in containers if c.attrs["State"].get("OOMKilled")])
        crashing = [c for c in containers if c.status == "restarting" or (c.status == "exited" and c.attrs.get("RestartCount", 0))]
        if crashing:
            state = crashing[0].attrs["State"]
            process = crashing[0].labels.get(LABEL_PROCESS, WEB)
            who = "the app" if process == WEB else f"its {process} process"
            detail = f"crash loop: {who} exits with code {state.get('ExitCode')} and is restarted with a growing pause ({restarts} restarts)"
            if oom_kills or state.get("OOMKilled"):
                detail += f"; it ran out of memory ({oom_kills or 1} OOM kill{'s' if oom_kills > 1 else ''}) — give it more memory or use less"
            return ServiceStatus(state="crashed", instances=instances, detail=detail, **oom)
        running = [c for c in containers if c.status == "running"]
        if running:
            detail = f"{len(running)} of {len(containers)} instance(s) running"
            if restarts:
                detail += f"; {restarts} restart(s) so far"
            if oom_kills:
                detail += f"; {oom_kills} OOM kill(s)"
            return ServiceStatus(state="running", instances=instances, detail=detail, **oom)
        return ServiceStatus(state="stopped", instances=instances, detail="no instance is running")

    def logs(self, ref: ServiceRef, *, tail: int = 200) -> list[LogLine]:
        lines = []
        for container in self._containers(ref):
            raw = container.logs(tail=tail, timestamps=True, stdout=True, stderr=True)
            for entry in raw.decode("utf-8", "replace").splitlines():
                stamp, _, text = entry.partition(" ")
                lines.append(LogLine(timestamp=_parse_docker_time(stamp), instance=container.name, text=text,
                                     process=container.labels.get(LABEL_PROCESS, WEB)))
        lines.sort(key=lambda line: line.timestamp or datetime.min)
        return lines[-tail:]

    def metrics(self, ref: ServiceRef) -> list[MetricSample]:
        """CPU, memory and processes of each running instance of one service
        (see metrics_all)."""
        return self.metrics_all([ref]).get(ref, [])

    def metrics_all(self, refs=None) -> dict[ServiceRef, list[MetricSample]]:
        """One reading of every running instance of this Hakobune (of `refs`
        only, when given), per service: one listing call to the engine, then
        each container's cgroup files on this host (hakobune/runtime/cgroups.py).
        A container whose cgroup this host does not show is read with the
        engine's `stats` call instead (slow: a second or two each)."""
        wanted = set(refs) if refs is not None else None
        try:
            listed = self.client.api.containers(
                filters={"label": f"{LABEL_MANAGED}={self.instance}", "status": "running"}
            )
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        samples: dict[ServiceRef, list[MetricSample]] = {}
        stamp = datetime.now().astimezone()
        for entry in listed:
            labels = entry.get("Labels") or {}
            ref = ServiceRef(labels.get(LABEL_TEAM, ""), labels.get(LABEL_SERVICE, ""))
            if wanted is not None and ref not in wanted:
                continue
            names = entry.get("Names") or [entry["Id"][:12]]
            series = {"instance": names[0].lstrip("/"), "release": labels.get(LABEL_RELEASE, "")}
            reading = self.cgroups.read(entry["Id"]) if self.cgroups.available() else None
            if reading is None:
                found = self._stats_samples(entry["Id"], series)
            else:
                found = self._cgroup_samples(entry["Id"], reading, stamp, series)
            samples.setdefault(ref, []).extend(found)
        if wanted is None:
            self.cpu_rates.keep_only(entry["Id"] for entry in listed)
        return samples

    def _cgroup_samples(self, container_id, reading, stamp, labels) -> list[MetricSample]:
        found = []
        cpu = self.cpu_rates.percent(container_id, reading.cpu_ns, reading.at)
        if cpu is not None:
            found.append(MetricSample(stamp, "cpu_percent", cpu, labels))
        if reading.memory_bytes is not None:
            found.append(MetricSample(stamp, "memory_bytes", float(reading.memory_bytes), labels))
        if reading.memory_limit_bytes is not None:
            found.append(MetricSample(stamp, "memory_limit_bytes", float(reading.memory_limit_bytes), labels))
        if reading.pids is not None:
            found.append(MetricSample(stamp, "pids", float(reading.pids), labels))
        return found

    def _stats_samples(self, container_id, labels) -> list[MetricSample]:
        """The engine's own reading (no streaming): the CPU percent is over
        the interval between its last two readings, as `docker stats` shows it."""
        try:
            stats = self.client.api.stats(container_id, stream=False)
        except DockerException:
            return []
        stamp = _parse_docker_time(stats.get("read", "")) or datetime.now().astimezone()
        found = [MetricSample(stamp, "cpu_percent", _cpu_percent(stats), labels)]
        memory = stats.get("memory_stats") or {}
        if "usage" in memory:
            # Like `docker stats`: the page cache the kernel can reclaim is not counted.
            memory_stat = memory.get("stats") or {}
            inactive = memory_stat.get("total_inactive_file", memory_stat.get("inactive_file", 0))
            found.append(MetricSample(stamp, "memory_bytes", float(max(memory["usage"] - inactive, 0)), labels))
        if memory.get("limit"):
            found.append(MetricSample(stamp, "memory_limit_bytes", float(memory["limit"]), labels))
        if (stats.get("pids_stats") or {}).get("current") is not None:
            found.append(MetricSample(stamp, "pids", float(stats["pids_stats"]["current"]), labels))
        return found

    def observe(self) -> dict[ServiceRef, list[ObservedInstance]]:
        # One sparse listing: labels and state come with it, without the
        # inspect per container that a full listing makes.
        found: dict[ServiceRef, list[ObservedInstance]] = {}
        try:
            containers = self.client.containers.list(
                all=True, sparse=True, filters={"label": f"{LABEL_MANAGED}={self.instance}"}
            )
        except DockerException as exc:
            raise RuntimeBackendError(f"could not list the instances: {exc}", permanent=False)
        for container in containers:
            labels = container.attrs.get("Labels") or {}
            if LABEL_ONEOFF in labels:
                continue
            ref = ServiceRef(labels.get(LABEL_TEAM, ""), labels.get(LABEL_SERVICE, ""))
            found.setdefault(ref, []).append(
                ObservedInstance(release_id=labels.get(LABEL_RELEASE, ""), state=str(container.attrs.get("State", "")),
                                 process=labels.get(LABEL_PROCESS, WEB))
            )
        return found

    def reconcile_service(self, desired: DesiredService) -> list[str]:
        spec = desired.spec
        done = []
        containers = self._containers(spec.ref)
        current = [c for c in containers if c.labels.get(LABEL_RELEASE) == str(spec.release_id)]
        for stray in (c for c in containers if c not in current):
            stray.remove(force=True, v=True)
            done.append(f"removed {stray.name}, an instance of a release that is no longer live")
        if desired.state == "sleeping":
            for container in current:
                if container.status == "running":
                    container.stop(timeout=self.stop_grace)
            return done
        if desired.state != "running":
            for container in current:
                if container.status in ("running", "restarting"):
                    container.stop(timeout=self.stop_grace)
                    done.append(f"stopped {container.name}")
            return done
        counts = spec.process_counts()
        for stray in (c for c in current if c.labels.get(LABEL_PROCESS, WEB) not in counts):
            stray.remove(force=True, v=True)
            done.append(f"removed {stray.name}, a process type the release does not have")
        missing = []
        for process, count in counts.items():
            mine = [c for c in current if c.labels.get(LABEL_PROCESS, WEB) == process]
            alive = [c for c in mine if c.status in ("running", "restarting")]
            if len(alive) == count:
                continue
            if len(mine) == count:
                for container in mine:
                    if container not in alive:
                        self._start_again(container, spec.team)
                        done.append(f"started {container.name} again")
                continue
            if process != WEB:
                # Another process type's instances are replaced on their own:
                # web (and its route) is left as it is.
                done += self._refill(spec, process, mine, alive, count)
                continue
            missing.append(f"{process}: {len(alive)} of {count} running")
        if missing:
            self.deploy(spec)
            done.append(f"started v{spec.release_number} again ({'; '.join(missing)})")
        return done

    def _refill(self, spec: DeploySpec, process: str, mine: list, alive: list, count: int) -> list[str]:
        done = []
        for container in [c for c in mine if c not in alive] + alive[count:]:
            container.remove(force=True, v=True)
            done.append(f"removed {container.name}")
        alive = alive[:count]
        network = self._ensure_team_network(spec.team, allow=spec.egress_allow, subnet=spec.network_subnet)
        self._check_volumes(spec)
        started = []
        try:
            for _ in range(count - len(alive)):
                started.append(self._run_instance(spec, len(alive) + len(started), network, process=process))
            for container in started:
                container.update(restart_policy={"Name": "unless-stopped"})
        except DockerException as exc:
            self._remove(started)
            raise RuntimeBackendError(f"could not start the {process} process again: {exc}", permanent=False)
        if started:
            done.append(f"started {len(started)} {process} instance(s) of v{spec.release_number} again")
        return done

    def sleep(
        self, ref: ServiceRef, hostname: str, aliases: tuple[str, ...] = (), redirects: tuple[str, ...] = ()
    ) -> None:
        try:
            self.router.set_route(
                Route(hostname, (self.waker,), asleep=True, aliases=tuple(aliases), redirects=tuple(redirects))
            )
        except RouterError as exc:
            raise RuntimeBackendError(str(exc), permanent=False)
        for container in self._containers(ref, all_states=False):
            container.stop(timeout=self.stop_grace)

    def wake(self, spec: DeploySpec) -> list[str]:
        current = [c for c in self._containers(spec.ref) if c.labels.get(LABEL_RELEASE) == str(spec.release_id)]
        if len(current) != sum(spec.process_counts().values()):
            return [instance.address for instance in self.deploy(spec).instances if instance.address]
        web = [c for c in current if c.labels.get(LABEL_PROCESS, WEB) == WEB]
        for container in current:
            if container.status != "running":
                if container in web:
                    # The same start-up boost as a new instance gets.
                    container.update(cpu_period=CPU_PERIOD, cpu_quota=self._boot_quota(spec))
                self._start_again(container, spec.team)
        upstreams = [self._wait_until_healthy(container, spec) for container in web]
        if spec.public:
            try:
                self.router.set_route(
                    Route(spec.hostname, tuple(upstreams), aliases=tuple(spec.aliases), redirects=tuple(spec.redirects))
                )
            except RouterError as exc:
                raise RuntimeBackendError(str(exc), permanent=False)
        self._settle(web, spec)
        return upstreams

    def remove_strays(self, known: set[ServiceRef]) -> list[str]:
        done = []
        listed = self.client.containers.list(all=True, sparse=True, filters={"label": f"{LABEL_MANAGED}={self.instance}"})
        for container in listed:
            labels = container.attrs.get("Labels") or {}
            ref = ServiceRef(labels.get(LABEL_TEAM, ""), labels.get(LABEL_SERVICE, ""))
            if ref not in known:
                container.remove(force=True, v=True)
                name = (container.attrs.get("Names") or [container.short_id])[0].lstrip("/")
                done.append(f"removed {name}: no service {ref.team}/{ref.service} exists")
        return done

    # -- under the hood ----------------------------------------------------------

    def under_the_hood(self, ref: ServiceRef, *, config=None, state=None) -> ContainerView:
        """One running instance of the service, read live: its namespaces
        against the host's, its cgroup limits and use, its capabilities, and
        its image's layers with how many other services share each (a count:
        never which). The web process's first instance, else any running one."""
        try:
            running = [c for c in self._containers(ref, all_states=False) if c.status == "running"]
            if not running:
                raise HoodUnavailable("not_running", "No instance of this service is running now; start it (or open "
                                      "its URL to wake it) and look again.")
            running.sort(key=lambda c: (c.labels.get(LABEL_PROCESS, WEB) != WEB, c.name))
            container = running[0]
            attrs = container.attrs
            pid = int(attrs["State"].get("Pid") or 0)
            if not pid:
                raise HoodUnavailable("gone", "The instance stopped while it was being read; look again.")
            image = self.client.images.get(attrs["Image"])
            layers = self._layers_of(image.id, image.attrs)
            shared = self._layer_sharing(ref, layers)
            info = self.client.info()
        except NotFound:
            raise HoodUnavailable("gone", "The instance stopped while it was being read; look again.")
        except DockerException as exc:
            raise RuntimeBackendError(f"the Docker Engine failed: {exc}", permanent=False)
        try:
            namespaces = self.proc.namespaces(pid)
            capabilities = self.proc.capabilities(pid)
            cgroups = read_cgroup_limits(self.cgroups, container.id)
        except HoodUnreadable as exc:
            raise HoodUnavailable("unreadable", f"This instance cannot be read from where the portal runs: {exc}.",
                                  detail=str(exc))
        network = team_network_name(ref.team)
        address = ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(network, {}).get("IPAddress", "")
        security = " ".join(str(option) for option in info.get("SecurityOptions") or [])
        return ContainerView(
            instance=container.name,
            hostname=(attrs.get("Config") or {}).get("Hostname", ""),
            address=address,
            network=network,
            namespaces=namespaces,
            userns_remapped="name=userns" in security,
            cgroups=cgroups,
            capabilities=capabilities,
            layers=image_layers(image.history(), list(layers), label=LABEL_MANAGED, shared=shared),
            host=HostNumbers(kernel=str(info.get("KernelVersion", "")), cpus=int(info.get("NCPU") or 0),
                             memory_bytes=int(info.get("MemTotal") or 0)),
            image_bytes=int(image.attrs.get("Size") or 0),
            start_seconds=_seconds_between(attrs.get("Created", ""), attrs["State"].get("StartedAt", "")),
            running_instances=len(running),
            read_only_root=bool((attrs.get("HostConfig") or {}).get("ReadonlyRootfs")),
        )

    def _layers_of(self, image_id: str, attrs: dict | None = None) -> tuple[str, ...]:
        if image_id not in self._image_layers:
            if attrs is None:
                attrs = self.client.api.inspect_image(image_id)
            self._image_layers[image_id] = tuple((attrs.get("RootFS") or {}).get("Layers") or ())
        return self._image_layers[image_id]

    def _layer_sharing(self, ref: ServiceRef, layers: tuple[str, ...]) -> dict[str, int]:
        """{layer id: how many other services of this platform have an
        instance whose image holds that layer}. Counts only: the other
        services are never named."""
        others: dict[ServiceRef, set[str]] = {}
        listed = self.client.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}={self.instance}"})
        for entry in listed:
            labels = entry.get("Labels") or {}
            other = ServiceRef(labels.get(LABEL_TEAM, ""), labels.get(LABEL_SERVICE, ""))
            if other != ref and entry.get("ImageID"):
                others.setdefault(other, set()).add(entry["ImageID"])
        wanted = set(layers)
        counts = dict.fromkeys(layers, 0)
        for image_ids in others.values():
            held = set()
            for image_id in image_ids:
                try:
                    held.update(self._layers_of(image_id))
                except NotFound:
                    continue
            for layer in held & wanted:
                counts[layer] += 1
        # Forget the images no container uses any more (a copy of the keys: the portal reads in threads).
        in_use = {entry.get("ImageID") for entry in listed}
        for image_id in [i for i in list(self._image_layers) if i not in in_use]:
            self._image_layers.pop(image_id, None)
        return counts

    def sync_routes(self, live: list[LiveRoute]) -> dict[str, str]:
        # One listing of this platform's running instances, grouped by release.
        upstreams_of: dict[str, list[str]] = {}
        for container in self.client.containers.list(filters={"label": f"{LABEL_MANAGED}={self.instance}"}):
            port_bindings = container.attrs.get("NetworkSettings", {}).get("Ports") or {}
            for port, bindings in port_bindings.items():
                if bindings:
                    upstreams_of.setdefault(container.labels.get(LABEL_RELEASE, ""), []).append(
                        _upstream_of(container.attrs, container.labels.get(LABEL_TEAM, ""), port)
                    )
        try:
            current = self.router.routes() if any(entry.keep_current for entry in live) else {}
        except RouterError as exc:
            raise RuntimeBackendError(str(exc), permanent=False)
        routes = []
        for entry in live:
            if entry.keep_current and entry.hostname in current:
                kept = current[entry.hostname]
                routes.append(Route(entry.hostname, kept, asleep=kept == (self.waker,),
                                    aliases=tuple(entry.aliases), redirects=tuple(entry.redirects)))
                continue
            upstreams = upstreams_of.get(str(entry.release_id), [])
            if entry.asleep:
                routes.append(Route(entry.hostname, (self.waker,), asleep=True, aliases=tuple(entry.aliases),
                                    redirects=tuple(entry.redirects)))
            elif upstreams:
                routes.append(Route(entry.hostname, tuple(sorted(upstreams)), aliases=tuple(entry.aliases),
                                    redirects=tuple(entry.redirects)))
        try:
            return self.router.load(routes)
        except RouterError as exc:
            raise RuntimeBackendError(str(exc), permanent=False)


def _exec(command: str) -> str:
    """`exec` a simple command so it is PID 1 and gets the stop signal; a
    command list (`a && b`) is left to the shell."""
    command = command.strip()
    if re.search(r"[;&|\n]", command) or command.startswith("exec "):
        return command
    return "exec " + command


class _AttachedContainer(AttachedOneOff):
    def __init__(self, client, container, attached, *, tty: bool):
        self.client = client
        self.container = container
        self.container_id = container.id
        # docker-py's attach socket: a SocketIO over the engine's socket.
        self._socket = getattr(attached, "_sock", attached)
        self.multiplexed = not tty

    @property
    def socket(self):
        return self._socket

    def resize(self, rows: int, cols: int) -> None:
        try:
            self.client.api.resize(self.container_id, height=max(int(rows), 1), width=max(int(cols), 1))
        except DockerException:
            pass  # it has ended: nothing to resize

    def close_stdin(self) -> None:
        try:
            self._socket.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def exit_code(self, timeout: float = 30) -> int | None:
        try:
            return self.container.wait(timeout=timeout).get("StatusCode")
        except (DockerException, requests.exceptions.RequestException):
            return None

    def remove(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass
        try:
            self.container.remove(force=True, v=True)
        except NotFound:
            pass
        except DockerException as exc:
            log.warning("could not remove the one-off %s: %s", self.container_id[:12], exc)


def _read_lines(container, tail: deque, on_line, *, since: int | None = None) -> None:
    """A one-off container's output, line by line, until it ends."""
    pending = b""
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True, since=since):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                tail.append(line)
                if on_line is not None:
                    on_line(line)
    except (DockerException, requests.exceptions.RequestException):
        pass
    if pending:
        line = pending.decode("utf-8", "replace")
        tail.append(line)
        if on_line is not None:
            on_line(line)


def _http_status(address: str, path: str, hostname: str = "") -> int | None:
    """The status of a GET of `path` at address (with `hostname` as its Host);
    None when nothing answers HTTP there."""
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=2)
    headers = {"User-Agent": "hakobune-health-check"}
    if hostname:
        headers["Host"] = hostname
    try:
        connection.request("GET", path or "/", headers=headers)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _cpu_percent(stats: dict) -> float:
    cpu, previous = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    used = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (previous.get("cpu_usage") or {}).get("total_usage", 0)
    elapsed = cpu.get("system_cpu_usage", 0) - previous.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if used <= 0 or elapsed <= 0:
        return 0.0
    return round(used / elapsed * cpus * 100.0, 2)


def _seconds_between(created: str, started: str) -> float | None:
    """Seconds from the engine's creation of a container to its start."""
    first, second = _parse_docker_time(created), _parse_docker_time(started)
    if first is None or second is None or second < first:
        return None
    return round((second - first).total_seconds(), 3)


def _parse_docker_time(stamp: str) -> datetime | None:
    try:
        # Docker prints nanoseconds; Python takes microseconds.
        head, _, fraction = stamp.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{fraction[:6] or '0'}+00:00")
    except ValueError:
        return None


def _upstream_of(attrs: dict, team: str, port: str) -> str | None:
    """Where the router sends an instance's requests: its address on its
    team's network and the port inside ("8080/tcp"). The host reaches its
    bridges directly (the firewall drops only what containers start towards
    the host), so requests skip the docker-proxy process that serves the port
    published on 127.0.0.1, a copy of every byte per instance. The published
    port is the fallback when the engine gives no address on that network."""
    settings = attrs.get("NetworkSettings") or {}
    network = (settings.get("Networks") or {}).get(team_network_name(team)) or {}
    address = network.get("IPAddress")
    if address:
        return f"{address}:{port.split('/')[0]}"
    bindings = (settings.get("Ports") or {}).get(port)
    if not bindings:
        return None
    return f"127.0.0.1:{bindings[0]['HostPort']}"
