"""The runtime backend interface. A backend runs releases somewhere (this host's
Docker Engine, Cloud Run, …) and answers questions about them. It takes and
returns plain values and knows nothing of Django."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from hakobune.worker.builders.base import ImageBuilder

from .release_config import WEB, ReleaseConfig


class RuntimeBackendError(Exception):
    """A deploy or an action failed. `permanent` says whether trying again
    unchanged can help; `log_tail` holds what the app printed, if anything."""

    def __init__(self, message: str, *, permanent: bool = True, log_tail: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.log_tail = log_tail or []



class TeamNetworkFull(RuntimeBackendError):
    """The team's network has no address left for another instance. Not the
    person's app and not passing: it stays full until something of the team
    stops (or an administrator acts), so trying again unchanged cannot help.
    Names its diagnosis (`rule`, `params`; platform/diagnoses.py)."""

    platform_fault = True
    rule = "network.full"

    def __init__(self, team: str, subnet: str, room: int | str):
        self.params = {"team": team, "subnet": subnet or "?", "room": room}
        super().__init__(
            f"the network of team {team} is full: its block {subnet or '?'} has room for {room} containers, "
            "all in use",
            permanent=True,
        )

@dataclass(frozen=True)
class ServiceRef:
    team: str
    service: str


@dataclass(frozen=True)
class VolumeMount:
    """A team's named volume mounted into every container of a release (its
    instances of every process type and its one-off containers) at `path`.
    `volume` is the engine's name of it (runtime/volumes.py). A volume not
    `shared` is held by one container of a process type at a time: the
    service runs one instance of each, and a deploy stops the old release
    before it starts the new one."""

    volume: str
    path: str
    shared: bool = False


@dataclass(frozen=True)
class DeploySpec:
    """What a backend starts: one release of a service. Its settings are in
    `config` and read as attributes of the spec (`spec.port`, `spec.cpu`,
    `spec.concurrency`, …: the declared settings of release_config.py)."""

    team: str
    service: str
    release_id: int
    release_number: int
    image: str
    hostname: str
    config: ReleaseConfig = field(default_factory=lambda: ReleaseConfig.from_dict({}))
    env: dict[str, str] = field(default_factory=dict)
    # Variables whose values the runtime reads from a secret store itself (Cloud
    # Run: Secret Manager), by reference ("name:version"); capability "secret_env".
    secret_env: dict[str, str] = field(default_factory=dict)
    # Custom domains the router serves beside `hostname`.
    aliases: tuple[str, ...] = ()
    # Old addresses the router redirects to `hostname`.
    redirects: tuple[str, ...] = ()
    # Private networks the team may reach (an administrator's allow-list);
    # everything else private is out of reach (runtime/firewall.py).
    egress_allow: tuple[str, ...] = ()
    # The address block of the team's network ("10.213.0.64/26"), used when
    # the backend creates that network (capability "team_networks"); empty:
    # the runtime's own choice (Docker's default pools).
    network_subnet: str = ""
    # Set by a restart (a new value each time): backends that reuse an
    # identical revision (Cloud Run) make a fresh one for it.
    restart: str = ""
    # Whether a web process serves requests (routed, health-checked); a
    # release of workers only has none.
    web: bool = True
    # The other process types of the release (the Procfile's `worker:`…):
    # name: command. Each runs the same image with its own sizes
    # (`config.sizes(name)`), not routed (capability "processes").
    processes: dict[str, str] = field(default_factory=dict)
    # Told the name of each part of the deploy as it ends ("started": the
    # instances run, "healthy": they answer their health check, "routed": the
    # router sends them requests); a backend that does not tell them apart
    # calls nothing. Not part of what the release is.
    on_step: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def step_done(self, name: str) -> None:
        if self.on_step is not None:
            self.on_step(name)

    # The team's volumes the service mounts (capability "volumes").
    volumes: tuple[VolumeMount, ...] = ()

    @property
    def stop_then_start(self) -> bool:
        """Whether a deploy stops the old release before it starts this one:
        it mounts a volume its owner has not marked safe to share."""
        return any(not mount.shared for mount in self.volumes)

    def process_counts(self) -> dict[str, int]:
        """How many instances of each process type the release runs."""
        counts = {WEB: self.config.sizes(WEB)["instances"] if self.web else 0}
        for name in self.processes:
            counts[name] = int(self.config.sizes(name).get("instances", 0))
        return counts

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            config = object.__getattribute__(self, "config")
        except AttributeError:
            raise AttributeError(name) from None
        return getattr(config, name)

    @property
    def ref(self) -> ServiceRef:
        return ServiceRef(self.team, self.service)


@dataclass
class Instance:
    id: str
    name: str
    state: str
    address: str = ""


@dataclass
class DeployResult:
    url: str
    instances: list[Instance]
    # Whatever the backend needs to find this release again; kept on the Release.
    state: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LiveRoute:
    """A service that should be reachable, as the database sees it."""

    hostname: str
    team: str
    service: str
    release_id: int
    asleep: bool = False
    aliases: tuple[str, ...] = ()
    redirects: tuple[str, ...] = ()
    # Being deployed right now: the router keeps the route it has.
    keep_current: bool = False


@dataclass(frozen=True)
class DesiredService:
    """What the database wants of a service: its live release, and whether it
    should be running, stopped by its owner, or asleep (scaled to zero)."""

    spec: DeploySpec
    state: str = "running"


@dataclass(frozen=True)
class ObservedInstance:
    """One instance as one look at the whole backend saw it."""

    release_id: str
    state: str  # the runtime's word: running, restarting, exited, created…
    process: str = WEB


@dataclass(frozen=True)
class RuntimeCrash:
    """A crash the runtime itself reports, for runtimes whose instances the
    platform cannot watch exit (Cloud Run: a revision whose container crashed
    or would not start, from the revision's conditions). Local instances'
    exits come from the engine's events instead (runtime/exits.py)."""

    release_id: str
    instance: str  # the runtime's name for what crashed (a revision)
    message: str  # the runtime's own words (English)
    at: datetime  # when the runtime saw it
    process: str = WEB
    exit_code: int | None = None
    oom_killed: bool = False


def looks_as_desired(desired: DesiredService, observed: list[ObservedInstance]) -> bool:
    """Whether a service's instances, as observed, are what the database
    wants: only its live release's, as many as it asks for and all running
    (or none running, when it is stopped or asleep). The reconciler leaves
    such a service alone without asking the backend about it again."""
    release = str(desired.spec.release_id)
    if any(instance.release_id != release for instance in observed):
        return False
    running = [instance for instance in observed if instance.state == "running"]
    if desired.state == "running":
        if len(running) != len(observed):
            return False
        counts = desired.spec.process_counts()
        if any(instance.process not in counts for instance in observed):
            return False
        return all(sum(1 for i in observed if i.process == name) == count for name, count in counts.items())
    return not running


@dataclass(frozen=True)
class OneOffResult:
    """How a one-off container (a release command, a scheduled job) ended."""

    exit_code: int | None
    # Its last lines of output.
    tail: list[str] = field(default_factory=list)
    timed_out: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # It was gone before it could be read (removed, the engine restarted).
    lost: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class AttachedOneOff:
    """A one-off container started for a person at a terminal (`hakobune
    run`): its stdin and output through `socket` (raw bytes when it has a
    TTY, else the engine's multiplexed frames: `multiplexed`). Made by
    `attach_one_off`; whoever holds it calls `remove` at the end."""

    container_id: str = ""
    multiplexed: bool = False

    @property
    def socket(self):
        raise NotImplementedError

    def resize(self, rows: int, cols: int) -> None:
        raise NotImplementedError

    def close_stdin(self) -> None:
        """Sends end-of-file to the command's stdin."""
        raise NotImplementedError

    def exit_code(self, timeout: float = 30) -> int | None:
        """Its exit code once it has ended (None: it did not end in time)."""
        raise NotImplementedError

    def remove(self) -> None:
        """Kills it if it still runs, and removes it."""
        raise NotImplementedError


@dataclass
class ServiceStatus:
    state: str  # running, stopped, crashed, missing
    instances: list[Instance] = field(default_factory=list)
    detail: str = ""
    # A diagnosis of what the instances went through (platform/diagnoses.py), like
    # running out of memory: its rule id and parameters; "" when there is none.
    rule: str = ""
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LogLine:
    timestamp: datetime | None
    instance: str
    text: str
    # The process type the instance runs (web, worker…).
    process: str = WEB


@dataclass(frozen=True)
class MetricSample:
    """One measurement of one instance: `name` is cpu_percent, memory_bytes,
    memory_limit_bytes or pids (what a backend adds besides); `labels` say
    which instance it is."""

    timestamp: datetime
    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


# -- under the hood: what runs a service, read live (capability "under_the_hood";
# the readers are in runtime/hood.py) ---------------------------------------------------


class HoodUnavailable(RuntimeBackendError):
    """There is nothing to read now, for a reason the portal puts in the
    reader's words (`why`): not_running (no instance runs), gone (it stopped
    while being read), unreadable (the portal cannot see this host's /proc or
    cgroups: `detail` says what), no_revision (Cloud Run: not deployed)."""

    def __init__(self, why: str, message: str, detail: str = ""):
        super().__init__(message, permanent=False)
        self.why = why
        self.detail = detail


@dataclass(frozen=True)
class NamespacePair:
    kind: str
    container: str  # the namespace's number
    host: str

    @property
    def shared(self) -> bool:
        return self.container == self.host


@dataclass(frozen=True)
class CgroupView:
    version: int  # 1 or 2
    memory_limit_bytes: int | None
    memory_bytes: int | None
    cpu_quota_us: int | None
    cpu_period_us: int
    # Of one core, over a short look (None: not measured).
    cpu_percent: float | None
    pids_limit: int | None
    pids: int | None
    # The file each value came from, relative to the instance's cgroup.
    files: dict[str, str] = field(default_factory=dict)

    @property
    def cpu_limit_cores(self) -> float | None:
        if self.cpu_quota_us is None or not self.cpu_period_us:
            return None
        return self.cpu_quota_us / self.cpu_period_us

    @property
    def memory_percent(self) -> float | None:
        if not self.memory_limit_bytes or self.memory_bytes is None:
            return None
        return round(self.memory_bytes / self.memory_limit_bytes * 100, 1)

    @property
    def cpu_percent_of_limit(self) -> float | None:
        cores = self.cpu_limit_cores
        if cores is None or self.cpu_percent is None:
            return None
        return round(self.cpu_percent / cores, 1)


@dataclass(frozen=True)
class CapabilityView:
    effective: tuple[str, ...]
    bounding: tuple[str, ...]
    # What root on the host holds (its effective set).
    host_root: tuple[str, ...]
    no_new_privileges: bool
    uid: str = ""


@dataclass(frozen=True)
class Layer:
    part: str  # stack, dependencies or code
    size_bytes: int | None
    # How many other services' images hold this same layer (a count, no names).
    shared_with: int
    # The image step that made it (this service's own image's history).
    step: str = ""
    digest: str = ""

    @property
    def saves_bytes(self) -> int:
        return (self.size_bytes or 0) * self.shared_with


@dataclass(frozen=True)
class HostNumbers:
    kernel: str
    cpus: int
    memory_bytes: int


@dataclass(frozen=True)
class ContainerView:
    """One running instance of a service on this host, as the kernel sees it."""

    instance: str
    hostname: str
    address: str
    network: str
    namespaces: tuple[NamespacePair, ...]
    # Whether the engine maps users to others on the host (userns-remap).
    userns_remapped: bool
    cgroups: CgroupView
    capabilities: CapabilityView
    layers: tuple[Layer, ...]
    host: HostNumbers
    image_bytes: int
    # From the engine's creation of the container to its process running.
    start_seconds: float | None
    running_instances: int
    read_only_root: bool
    kind: str = "container"

    @property
    def saved_bytes(self) -> int:
        return sum(layer.saves_bytes for layer in self.layers)


@dataclass(frozen=True)
class SandboxView:
    """A Cloud Run service: what runs it instead of a container on this host,
    with its own values."""

    revision: str
    url: str
    region: str
    # "gen1" (gVisor), "gen2" (a microVM), or "" (Cloud Run's choice).
    execution_environment: str
    cpu: str
    memory: str
    min_instances: int
    max_instances: int
    concurrency: int
    request_timeout: int
    # CPU only while a request is handled (cpu_idle).
    cpu_only_during_requests: bool
    kind: str = "sandbox"


class RuntimeBackend:
    """Base class. Subclasses implement what their runtime supports and say so in
    `capabilities`, so views and tasks never ask which backend they hold."""

    # The flags in use: logs, collected_logs (the platform stores what the
    # instances print: readers ask its store, not `logs`), metrics, stop_start, routing,
    # under_the_hood (what runs a service, read live for its team: all runtimes),
    # scale_to_zero, processes (process types besides web), volumes (named
    # volumes: DeploySpec.volumes), one_off
    # (run_once: release phase, scheduled jobs), addons (runs add-on containers:
    # runtime/addons.py) (the local runtime); remote_build (builds images itself:
    # image_builder() gives its builder),
    # traffic_split, revisions, secret_env (reads Secret Manager) and
    # autoscaling (scales on requests; the settings that need it say so in
    # release_config.py).
    capabilities: frozenset[str] = frozenset()

    def __init__(self, alias: str, **options):
        self.alias = alias
        self.options = options

    def deploy(self, spec: DeploySpec) -> DeployResult:
        raise NotImplementedError

    def run_once(
        self, spec: DeploySpec, command: str, *, purpose: str, timeout: float,
        on_line: Callable[[str], None] | None = None,
    ) -> OneOffResult:
        """Runs `command` once in a one-off container of this release (its
        image, environment and network, the web process's sizes), not routed,
        and waits for it to end, or kills it after `timeout` seconds; each
        line it prints goes to `on_line`. `purpose` names it ("release", a
        job's name). Capability "one_off"."""
        raise NotImplementedError

    def start_one_off(self, spec: DeploySpec, command: str, *, purpose: str) -> str:
        """Starts `command` in a one-off container of this release, as
        `run_once` does, without waiting; returns what `one_off_result` takes
        to find it again (capability "one_off")."""
        raise NotImplementedError

    def one_off_result(self, ref: ServiceRef, handle: str, *, stop: bool = False) -> OneOffResult | None:
        """How a one-off started by `start_one_off` ended (then it is
        removed), or None while it runs; with `stop`, it is killed first (its
        time is up), and the result says it timed out."""
        raise NotImplementedError

    def attach_one_off(
        self, spec: DeploySpec, command: str, *, tty: bool, rows: int = 24, cols: int = 80, purpose: str = "run"
    ) -> AttachedOneOff:
        """Starts `command` in a one-off container of this release, as
        `run_once` does, with its stdin open (and a TTY of rows × cols when
        `tty`), attached: the caller relays a terminal to it (capability
        "attach")."""
        raise NotImplementedError

    def image_builder(self) -> ImageBuilder | None:
        """The builder of the images this backend runs, when it needs its own
        (Cloud Run: Cloud Build, pushing to Artifact Registry); None: the
        platform's builder (this host's Docker Engine) makes them."""
        return None

    def reserved(
        self, *, cpu: float, memory_mb: int, instances: int, min_instances: int | None = None,
        max_instances: int | None = None,
    ) -> tuple[float, int]:
        """The most CPU (cores) and memory (MiB) a service with these settings
        may hold at once here, which team quotas count."""
        return cpu * instances, memory_mb * instances

    def retire_previous(self, ref: ServiceRef, *, keep_release_id: int) -> None:
        """After a new release went live: stops the instances of the releases it
        replaced. Backends whose platform does this itself do nothing."""

    def stop(self, ref: ServiceRef) -> None:
        raise NotImplementedError

    def start(self, ref: ServiceRef) -> None:
        raise NotImplementedError

    def destroy(self, ref: ServiceRef) -> None:
        raise NotImplementedError

    def status(self, ref: ServiceRef) -> ServiceStatus:
        raise NotImplementedError

    def logs(self, ref: ServiceRef, *, tail: int = 200) -> list[LogLine]:
        raise NotImplementedError

    def metrics(self, ref: ServiceRef) -> list[MetricSample]:
        """The current sample of each running instance (no history: that is
        kept by the metric collectors, not by the backend)."""
        raise NotImplementedError

    def under_the_hood(self, ref: ServiceRef, *, config: ReleaseConfig, state: dict) -> ContainerView | SandboxView:
        """What runs the service, read live for its team's "under the hood"
        panel (capability "under_the_hood"): one running instance's
        namespaces, cgroup limits, capabilities and image layers on this host
        (`ContainerView`), or what a hosted runtime does instead, with the
        service's own values (`SandboxView`). `config` is its live release's
        settings and `state` what `deploy` returned for it (`DeployResult.state`).
        Raises RuntimeBackendError, in words, when there is nothing to read
        (no instance running)."""
        raise NotImplementedError

    def sync_routes(self, live: list[LiveRoute]) -> dict[str, str]:
        """Makes the backend's routing serve exactly these services; returns
        {hostname: why} of those whose route was left out (it failed the
        router's checks), while the others are served. Backends whose
        platform routes by itself do nothing."""
        return {}

    def metrics_all(self, refs: list[ServiceRef] | None = None) -> dict[ServiceRef, list[MetricSample]]:
        """One reading of every running service of this backend (of `refs`
        only, when given), at once: {ref: samples}. Backends that can only
        be asked per service (Cloud Run) do not implement it; the collector
        then asks `metrics` for each."""
        raise NotImplementedError

    def observe(self) -> dict[ServiceRef, list[ObservedInstance]] | None:
        """Every instance of this backend in one look, by service, so the
        reconciler asks `reconcile_service` only about services that do not
        look as desired (`looks_as_desired`); None when the backend cannot
        look at everything at once (then every service is asked)."""
        return None

    def crashes(self, ref: ServiceRef) -> list[RuntimeCrash]:
        """What of the service the runtime reports crashed, now (the
        reconciler records each once and feeds the crash-loop alert with
        them). Runtimes whose crashes the platform sees otherwise (the local
        one: the engine's events) report none here."""
        return []

    def reconcile_service(self, desired: DesiredService) -> list[str]:
        """Repairs one service so that it runs as desired; returns what was
        done, in words. Backends whose platform heals itself do nothing."""
        return []

    def sleep(
        self, ref: ServiceRef, hostname: str, aliases: tuple[str, ...] = (), redirects: tuple[str, ...] = ()
    ) -> None:
        """Scales the service to zero: its instances stop, and its next request
        wakes it (capability "scale_to_zero")."""
        raise NotImplementedError

    def wake(self, spec: DeploySpec) -> list[str]:
        """Starts a sleeping service's instances, waits until they answer and
        routes to them again; returns the addresses that answer."""
        raise NotImplementedError

    def remove_strays(self, known: set[ServiceRef]) -> list[str]:
        """Removes what the backend runs for services the database does not
        know; returns what was removed."""
        return []

    def remove_team_networks(self, known_teams: set[str]) -> list[str]:
        """Removes what the backend keeps per team for teams that are gone
        (the local runtime: their networks). Returns what it did."""
        return []

    def take_down_team_network(self, team: str) -> list[str]:
        """For moving a team to another address block (the local runtime):
        removes its instances, stops its add-ons and takes them off its
        network, then removes the network and its isolation rules. Data
        volumes stay. Returns what it did."""
        return []

    def make_team_network(self, team: str, subnet: str, *, allow: tuple[str, ...] = ()) -> list[str]:
        """The team's network made again in the block `subnet`, isolated, its
        add-ons (stopped) on it again under their names. Returns what it did."""
        return []

    def repair_platform(self, egress: dict[str, tuple[str, ...]] | None = None) -> list[str]:
        """Restores what the backend itself relies on (for the local backend,
        the network isolation rules that a reboot empties, with `egress`: the
        private networks each team may reach, by team name)."""
        return []


