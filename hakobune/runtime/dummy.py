"""A backend that runs nothing and records every call, for unit tests. Its
behaviour is set through OPTIONS: `fail_deploy` makes deploys fail;
`observed_state` makes `observe` report every instance it runs in that state
("restarting": a crash loop); and `fail_next_deploys(*errors)` makes the next
deploys raise those errors, one each, as a runtime that hiccups would."""

from .hood import (
    CapabilityView,
    CgroupView,
    ContainerView,
    HoodUnavailable,
    HostNumbers,
    Layer,
    NamespacePair,
    all_capabilities,
)
from .base import (
    DeployResult,
    DeploySpec,
    Instance,
    LiveRoute,
    LogLine,
    MetricSample,
    ObservedInstance,
    OneOffResult,
    RuntimeBackend,
    RuntimeBackendError,
    ServiceRef,
    ServiceStatus,
)


class DummyBackend(RuntimeBackend):
    capabilities = frozenset({"logs", "metrics", "routing", "processes", "one_off", "under_the_hood", "volumes"})

    def __init__(self, alias, **options):
        super().__init__(alias, **options)
        self.calls: list[tuple[str, object]] = []
        self.running: dict[ServiceRef, DeploySpec] = {}
        self.next_deploy_errors: list[Exception] = []
        # {hostname: why}: routes the router would leave out (sync_routes).
        self.refused_routes: dict[str, str] = {}

    def fail_next_deploys(self, *errors: Exception) -> None:
        self.next_deploy_errors.extend(errors)

    def deploy(self, spec: DeploySpec) -> DeployResult:
        self.calls.append(("deploy", spec))
        if self.next_deploy_errors:
            raise self.next_deploy_errors.pop(0)
        if self.options.get("fail_deploy"):
            raise RuntimeBackendError(
                "the app did not answer on $PORT", permanent=True, log_tail=["Traceback …", "SyntaxError"]
            )
        self.running[spec.ref] = spec
        instance = Instance(id=f"dummy-{spec.release_id}", name=f"{spec.service}-{spec.release_number}", state="running")
        return DeployResult(url=f"http://{spec.hostname}/", instances=[instance], state={"release_id": spec.release_id})

    def run_once(self, spec: DeploySpec, command: str, *, purpose: str, timeout: float, on_line=None) -> OneOffResult:
        """Records the command; prints OPTIONS["one_off_output"] (lines) and
        exits with OPTIONS["one_off_exit"] (0)."""
        self.calls.append(("run_once", (spec, command, purpose)))
        lines = list(self.options.get("one_off_output", []))
        for line in lines:
            if on_line is not None:
                on_line(line)
        return OneOffResult(exit_code=int(self.options.get("one_off_exit", 0)), tail=lines)

    def under_the_hood(self, ref: ServiceRef, *, config, state: dict) -> ContainerView:
        """A made-up instance of a running service, sized as its release
        (`config`); a service it does not run has no instance to read."""
        self.calls.append(("under_the_hood", ref))
        if ref not in self.running:
            raise HoodUnavailable("not_running", "No instance of this service is running now.")
        memory = int(config.memory_mb) * 1024 * 1024
        pairs = tuple(NamespacePair(kind, str(4026532100 + i), str(4026531830 + i)) for i, kind in enumerate(
            ("pid", "net", "mnt", "uts", "ipc")))
        pairs += (NamespacePair("cgroup", "4026531835", "4026531835"), NamespacePair("user", "4026531837", "4026531837"))
        return ContainerView(
            instance=f"{ref.service}-dummy", hostname=ref.service, address="10.213.0.2", network=f"hakobune-team-{ref.team}",
            namespaces=pairs, userns_remapped=False,
            cgroups=CgroupView(version=2, memory_limit_bytes=memory, memory_bytes=memory // 4, cpu_quota_us=int(
                float(config.cpu) * 100_000), cpu_period_us=100_000, cpu_percent=1.5, pids_limit=256, pids=3,
                files={"memory_limit": "memory.max", "memory": "memory.current", "cpu_limit": "cpu.max",
                       "cpu": "cpu.stat", "pids_limit": "pids.max", "pids": "pids.current"}),
            capabilities=CapabilityView(effective=(), bounding=(), host_root=all_capabilities(40),
                                        no_new_privileges=True, uid="10001"),
            layers=(Layer("stack", 150_000_000, int(self.options.get("shared_stack", 2)), ""),
                    Layer("dependencies", 12_000_000, 0, "RUN pip install -r requirements.txt"),
                    Layer("code", 4_096, 0, "COPY dir:0123456789ab… in .")),
            host=HostNumbers(kernel="6.1.0-dummy", cpus=2, memory_bytes=8 << 30), image_bytes=162_004_096,
            start_seconds=0.2, running_instances=1, read_only_root=True,
        )

    def stop(self, ref: ServiceRef) -> None:
        self.calls.append(("stop", ref))

    def start(self, ref: ServiceRef) -> None:
        self.calls.append(("start", ref))

    def destroy(self, ref: ServiceRef) -> None:
        self.calls.append(("destroy", ref))
        self.running.pop(ref, None)

    def status(self, ref: ServiceRef) -> ServiceStatus:
        spec = self.running.get(ref)
        return ServiceStatus(state="running" if spec else "missing")

    def logs(self, ref: ServiceRef, *, tail: int = 200) -> list[LogLine]:
        return [LogLine(timestamp=None, instance="dummy", text=f"{ref.service} is running")]

    def metrics(self, ref: ServiceRef) -> list[MetricSample]:
        """What it was told to report (OPTIONS["metrics"]: {name: value}, read
        at OPTIONS["metrics_at"] or now) for a running service; nothing for one
        it does not run."""
        from datetime import datetime, timezone

        spec = self.running.get(ref)
        if spec is None:
            return []
        now = self.options.get("metrics_at") or datetime.now(timezone.utc)
        labels = {"instance": f"{spec.service}-{spec.release_number}"}
        return [MetricSample(now, name, float(value), labels) for name, value in self.options.get("metrics", {}).items()]

    def observe(self) -> dict[ServiceRef, list[ObservedInstance]] | None:
        """With OPTIONS["observed_state"]: each instance of what it runs, in
        that state; without it, None (it cannot look at everything at once)."""
        state = self.options.get("observed_state")
        if state is None:
            return None
        return {
            ref: [ObservedInstance(str(spec.release_id), state, process)
                  for process, count in spec.process_counts().items() for _ in range(count)]
            for ref, spec in self.running.items()
        }

    def sync_routes(self, live: list[LiveRoute]) -> dict[str, str]:
        self.calls.append(("sync_routes", list(live)))
        return {entry.hostname: self.refused_routes[entry.hostname] for entry in live
                if entry.hostname in self.refused_routes}
