"""Cloud Run serving: deploys (a revision per image and configuration, the
earlier one reused on a rollback), traffic between revisions, who may call a
service, stop and start (no outside requests), destroy (the service and its
images), status and the revisions the portal lists.

Each team's revisions run as the team's own runtime service account and may
read only the team's secrets (tenants.py); a reference that does not fit, or
a revision made as another identity, is refused before anything is sent.

`Serving` is a part of CloudRunBackend (hakobune.runtime.cloud_run): it stands
on its GoogleCloud (clients, names, accounts, `_in_words`) and its Cloud Run
settings (min_instances, concurrency, request_timeout, ingress,
deploy_timeout)."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from ..base import DeployResult, DeploySpec, Instance, RuntimeBackendError, RuntimeCrash, ServiceRef, ServiceStatus
from ..hood import HoodUnavailable, SandboxView
from .client import _in_words, _secret_problem
from .tenants import parse_secret_ref, stored_secret_problem, team_secret

LABEL_TEAM = "hakobune-team"
LABEL_SERVICE = "hakobune-service"
LABEL_RELEASE = "hakobune-release"
LABEL_CONFIG = "hakobune-config"
LABEL_STOPPED = "hakobune-stopped"
INVOKER = "roles/run.invoker"
PUBLIC = "allUsers"
INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
_SERVICE_ID = re.compile(r"[^a-z0-9-]")


class Serving:
    """Deploy, traffic, power, destroy, status and revisions of Cloud Run services."""

    # -- names ------------------------------------------------------------------

    @staticmethod
    def service_id(ref: ServiceRef) -> str:
        """The Cloud Run service's id: at most 49 of [a-z0-9-], starting with a
        letter; long names keep a hash of the whole so they stay distinct."""
        raw = _SERVICE_ID.sub("-", f"{ref.team}-{ref.service}".lower())
        name = raw if raw[:1].isalpha() else f"s-{raw}"
        if len(name) > 49:
            digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
            name = f"{name[:40].rstrip('-')}-{digest}"
        return name

    def service_name(self, ref: ServiceRef) -> str:
        return f"{self.location}/services/{self.service_id(ref)}"

    def image_base(self, ref: ServiceRef) -> str:
        return self.image_path(f"{ref.team}/{ref.service}")

    def secret_reference(self, reference: str, *, team: str) -> str:
        """What a member of `team` wrote as the Secret Manager reference stored
        ("name:version" of one of the team's secrets in the project in effect;
        a short name means the team's); ValueError in words."""
        return team_secret(reference, team=team, project=self.project)

    def _refuse_foreign_secrets(self, spec: DeploySpec) -> None:
        """Stored references are checked again before a deploy: one stored
        before these rules, or before the team moved to another project."""
        problems = [
            stored_secret_problem(key, reference, team=spec.team, project=self.project)
            for key, reference in sorted(spec.secret_env.items())
        ]
        problems = [problem for problem in problems if problem]
        if problems:
            raise RuntimeBackendError(" ".join(problems), permanent=True)

    def reserved(self, *, cpu, memory_mb, instances, min_instances=None, max_instances=None):
        """Cloud Run gives whole CPUs and at least 512 MiB, up to the most instances."""
        count = max_instances if max_instances is not None else max(instances, min_instances or 0, 1)
        cpus, memory = cloud_run_resources(cpu, memory_mb)
        return float(cpus) * count, int(memory.removesuffix("Mi")) * count

    # -- deploy (Cloud Run) -----------------------------------------------------

    def deploy(self, spec: DeploySpec) -> DeployResult:
        from google.api_core import exceptions as gexc

        self._require_config()
        self._refuse_foreign_secrets(spec)
        ref = spec.ref
        name = self.service_name(ref)
        fingerprint = _fingerprint(spec, self)
        services = self._client("services")
        try:
            try:
                existing = services.get_service(name=name)
            except gexc.NotFound:
                existing = None
            if existing is not None:
                self._check_owner(existing, ref)
                earlier = self._revision_with(name, fingerprint, ref.team)
                if earlier:
                    # A rollback (or a retried deploy): the revision that ran this
                    # image with this configuration still exists; move traffic to it.
                    if LABEL_STOPPED not in dict(existing.labels):
                        existing.ingress = INGRESS.get(spec.ingress or self.ingress, INGRESS["all"])
                    service = self._set_traffic(existing, {earlier: 100})
                    self._set_public(name, spec.public)
                    return self._result(service, earlier, reused=True)
            service = self._service_message(spec, name, fingerprint, existing)
            if existing is None:
                operation = services.create_service(parent=self.location, service=service, service_id=self.service_id(ref))
            else:
                operation = services.update_service(service=service)
            service = self._wait(operation, self.deploy_timeout, "run")
            revision = service.latest_ready_revision.rsplit("/", 1)[-1]
            created = service.latest_created_revision.rsplit("/", 1)[-1]
            if not revision or (created and created != revision):
                raise RuntimeBackendError(_not_ready(service, self), log_tail=self._revision_tail(ref, created))
            self._set_public(name, spec.public)
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self, image=spec.image, team=spec.team)
        return self._result(service, revision)

    def _result(self, service, revision: str, *, reused: bool = False) -> DeployResult:
        state = {"revision": revision, "service": service.name, "url": service.uri}
        if reused:
            state["reused"] = True
        return DeployResult(url=service.uri, instances=[Instance(id=revision, name=revision, state="serving")], state=state)

    def under_the_hood(self, ref: ServiceRef, *, config, state: dict) -> SandboxView:
        """What Cloud Run runs the service in, with its own values: the
        revision its live release deployed, the sizes and the scaling the
        revision was made with (as `_service_message` sets them). Asks Google
        nothing: it is what this backend stored and sent."""
        if not state.get("revision"):
            raise HoodUnavailable("no_revision", "This service has no Cloud Run revision yet; deploy it first.")
        cpu, memory = cloud_run_resources(config.cpu, config.memory_mb)
        minimum = config.min_instances if config.min_instances is not None else self.min_instances
        maximum = config.max_instances if config.max_instances is not None else max(config.instances, minimum, 1)
        return SandboxView(
            revision=str(state["revision"]),
            url=str(state.get("url", "")),
            region=self.region,
            # Hakobune sets none: Cloud Run chooses (first generation unless a feature needs the second).
            execution_environment="",
            cpu=cpu,
            memory=memory,
            min_instances=int(minimum),
            max_instances=int(maximum),
            concurrency=int(config.concurrency or self.concurrency),
            request_timeout=int(config.request_timeout or self.request_timeout),
            cpu_only_during_requests=True,
        )

    def _check_owner(self, service, ref: ServiceRef) -> None:
        labels = dict(service.labels)
        if labels.get(LABEL_TEAM, ref.team) != ref.team or labels.get(LABEL_SERVICE, ref.service) != ref.service:
            raise RuntimeBackendError(
                f"the Cloud Run service {self.service_id(ref)} belongs to {labels.get(LABEL_TEAM)}/"
                f"{labels.get(LABEL_SERVICE)}; rename this service."
            )

    def _service_message(self, spec: DeploySpec, name: str, fingerprint: str, existing):
        from google.cloud import run_v2

        cpu, memory = cloud_run_resources(spec.cpu, spec.memory_mb)
        labels = {LABEL_TEAM: spec.team, LABEL_SERVICE: spec.service}
        env = [run_v2.EnvVar(name=key, value=value) for key, value in sorted(spec.env.items()) if key != "PORT"]
        for key, reference in sorted(spec.secret_env.items()):
            _, secret, version = parse_secret_ref(reference)  # the team's project: the name alone
            selector = run_v2.SecretKeySelector(secret=secret, version=version)
            env.append(run_v2.EnvVar(name=key, value_source=run_v2.EnvVarSource(secret_key_ref=selector)))
        container = run_v2.Container(
            image=spec.image,
            env=env,
            resources=run_v2.ResourceRequirements(limits={"cpu": cpu, "memory": memory}, cpu_idle=True),
            ports=[run_v2.ContainerPort(name="http1", container_port=spec.port)],
            startup_probe=run_v2.Probe(
                http_get=run_v2.HTTPGetAction(path=spec.health_check_path or "/", port=spec.port),
                period_seconds=3,
                failure_threshold=20,
            )
            if spec.health_check_path not in ("", "/")
            else None,
        )
        minimum = spec.min_instances if spec.min_instances is not None else self.min_instances
        maximum = spec.max_instances if spec.max_instances is not None else max(spec.instances, minimum, 1)
        template = run_v2.RevisionTemplate(
            labels={**labels, LABEL_RELEASE: str(spec.release_id), LABEL_CONFIG: fingerprint},
            containers=[container],
            scaling=run_v2.RevisionScaling(min_instance_count=minimum, max_instance_count=maximum),
            max_instance_request_concurrency=spec.concurrency or self.concurrency,
            timeout=timedelta(seconds=spec.request_timeout or self.request_timeout),
            service_account=self.runtime_account(spec.team),
        )
        latest = run_v2.TrafficTarget(type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100)
        return run_v2.Service(
            name=name if existing is not None else None,
            labels=labels,
            template=template,
            ingress=INGRESS.get(spec.ingress or self.ingress, INGRESS["all"]),
            traffic=[latest],
            etag=existing.etag if existing is not None else None,
        )

    def _wait(self, operation, timeout: float, api: str):
        """Polls a long-running operation to its end; returns its result."""
        deadline = time.monotonic() + timeout
        while not operation.done():
            if time.monotonic() > deadline:
                raise RuntimeBackendError(f"Google Cloud did not finish {operation.operation.name} within {timeout:.0f} s", permanent=False)
            time.sleep(self.poll_interval)
        return operation.result()

    def _revision_with(self, service_name: str, fingerprint: str, team: str) -> str | None:
        """A ready revision of this image and configuration (the fingerprint
        holds the runtime account and the secrets) that runs as the team's
        account and reads only its secrets, to roll back to."""
        from google.api_core import exceptions as gexc

        try:
            revisions = list(self._client("revisions").list_revisions(parent=service_name))
        except gexc.NotFound:
            return None
        for revision in revisions:
            if (dict(revision.labels).get(LABEL_CONFIG) == fingerprint and _is_ready(revision)
                    and not self._revision_problem(revision, team)):
                return revision.name.rsplit("/", 1)[-1]
        return None

    def _revision_tail(self, ref: ServiceRef, revision: str) -> list[str]:
        try:
            return [line.text for line in self._logs(ref, tail=20, revision=revision)]
        except Exception:  # the reason above matters more than the log
            return []

    # -- traffic ----------------------------------------------------------------

    def route_traffic(self, ref: ServiceRef, splits: dict[str, int]) -> None:
        """Sends `splits` (revision name: percent, adding up to 100) of the
        requests to each revision."""
        from google.api_core import exceptions as gexc

        if sum(splits.values()) != 100 or any(p < 0 or p > 100 for p in splits.values()):
            raise RuntimeBackendError("the percentages must be between 0 and 100 and add up to 100")
        name = self.service_name(ref)
        try:
            service = self._client("services").get_service(name=name)
            known = {r.name.rsplit("/", 1)[-1]: r for r in self._client("revisions").list_revisions(parent=name)}
            unknown = sorted(set(splits) - set(known))
            if unknown:
                raise RuntimeBackendError(f"Cloud Run has no revision {', '.join(unknown)} of this service (any more)")
            for revision in sorted(revision for revision, percent in splits.items() if percent):
                problem = self._revision_problem(known[revision], ref.team)
                if problem:
                    raise RuntimeBackendError(problem, permanent=True)
            self._set_traffic(service, splits)
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)

    def _revision_problem(self, revision, team: str) -> str:
        """Why requests may not go to an existing revision: one made before
        each team ran as its own account, or reading secrets not the team's."""
        name = revision.name.rsplit("/", 1)[-1]
        runs_as = revision.service_account or "the project's default service account"
        if runs_as != self.runtime_account(team):
            return (
                f"the revision {name} runs as {runs_as}, not as team {team}'s own account "
                f"{self.runtime_account(team)}; deploy again, and split traffic between the releases made since."
            )
        for container in revision.containers:
            for var in container.env:
                selector = var.value_source.secret_key_ref if var.value_source else None
                if selector and selector.secret:
                    reference = f"{selector.secret}:{selector.version or 'latest'}"
                    if "/" in selector.secret:  # projects/P/secrets/NAME
                        reference = f"{selector.secret}/versions/{selector.version or 'latest'}"
                    problem = stored_secret_problem(var.name, reference, team=team, project=self.project)
                    if problem:
                        return f"the revision {name} reads a secret that is not team {team}'s: {problem}"
        return ""

    def traffic(self, ref: ServiceRef) -> dict[str, int]:
        """The revisions that get requests now and their percentages."""
        from google.api_core import exceptions as gexc

        try:
            service = self._client("services").get_service(name=self.service_name(ref))
        except gexc.NotFound:
            return {}
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)
        return {s.revision: s.percent for s in service.traffic_statuses if s.percent}

    def _set_traffic(self, service, splits: dict[str, int]):
        from google.cloud import run_v2

        kind = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
        service.traffic = [run_v2.TrafficTarget(type_=kind, revision=r, percent=p) for r, p in splits.items() if p]
        operation = self._client("services").update_service(service=service)
        return self._wait(operation, self.deploy_timeout, "run")

    def _set_public(self, name: str, public: bool) -> None:
        """allUsers may invoke a public service, and nobody else is added;
        a private one has no allUsers binding."""
        from google.iam.v1 import iam_policy_pb2

        services = self._client("services")
        policy = services.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=name))
        binding = next((b for b in policy.bindings if b.role == INVOKER), None)
        has_public = binding is not None and PUBLIC in binding.members
        if public == has_public:
            return
        if public:
            if binding is None:
                binding = policy.bindings.add(role=INVOKER)
            binding.members.append(PUBLIC)
        else:
            members = [m for m in binding.members if m != PUBLIC]
            del binding.members[:]
            binding.members.extend(members)
            if not members:
                policy.bindings.remove(binding)
        services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy))

    # -- stop, start, destroy, status -------------------------------------------

    def stop(self, ref: ServiceRef) -> None:
        """Cloud Run has no stop: the service takes no outside requests
        (internal ingress, no public invoker) and scales to zero."""
        self._power(ref, stopped=True)

    def start(self, ref: ServiceRef) -> None:
        self._power(ref, stopped=False)

    def _power(self, ref: ServiceRef, *, stopped: bool) -> None:
        from google.api_core import exceptions as gexc

        name = self.service_name(ref)
        services = self._client("services")
        try:
            service = services.get_service(name=name)
            labels = dict(service.labels)
            was_public = labels.get(LABEL_STOPPED) == "public"
            if stopped:
                if LABEL_STOPPED in labels:
                    return
                policy = services.get_iam_policy(request={"resource": name})
                labels[LABEL_STOPPED] = "public" if any(
                    b.role == INVOKER and PUBLIC in b.members for b in policy.bindings
                ) else "private"
                service.ingress = INGRESS["internal"]
            else:
                if LABEL_STOPPED not in labels:
                    return
                labels.pop(LABEL_STOPPED)
                service.ingress = INGRESS.get(self.ingress, INGRESS["all"])
            service.labels = labels
            self._wait(services.update_service(service=service), self.deploy_timeout, "run")
            self._set_public(name, False if stopped else was_public)
        except gexc.NotFound:
            raise RuntimeBackendError("Cloud Run has no such service; deploy it first.")
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)

    def destroy(self, ref: ServiceRef) -> None:
        """Deletes the Cloud Run service and the service's images in Artifact Registry."""
        from google.api_core import exceptions as gexc

        try:
            operation = self._client("services").delete_service(name=self.service_name(ref))
            self._wait(operation, self.deploy_timeout, "run")
        except gexc.NotFound:
            pass
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)
        package = quote(f"{ref.team}/{ref.service}", safe="")
        url = (
            f"{self._endpoint('artifactregistry')}/v1/{self.location}/repositories/{self.repository}/packages/{package}"
        )
        response = self._client("session").delete(url, timeout=60)
        if response.status_code == 404:
            return
        body = self._json_or_raise(response, "artifactregistry")
        deadline = time.monotonic() + self.deploy_timeout
        while not body.get("done"):
            if time.monotonic() > deadline:
                raise RuntimeBackendError("Artifact Registry did not finish deleting the images in time", permanent=False)
            time.sleep(self.poll_interval)
            body = self._json_or_raise(
                self._client("session").get(f"{self._endpoint('artifactregistry')}/v1/{body['name']}", timeout=60),
                "artifactregistry",
            )
        if body.get("error"):
            raise RuntimeBackendError(f"Artifact Registry could not delete the images: {body['error'].get('message')}", permanent=False)

    def status(self, ref: ServiceRef) -> ServiceStatus:
        from google.api_core import exceptions as gexc

        try:
            service = self._client("services").get_service(name=self.service_name(ref))
        except gexc.NotFound:
            return ServiceStatus(state="missing")
        except gexc.GoogleAPICallError as exc:
            return ServiceStatus(state="unknown", detail=_in_words(exc, "run", self).message)
        except RuntimeBackendError as exc:
            return ServiceStatus(state="unknown", detail=exc.message)
        instances = [
            Instance(id=s.revision, name=s.revision, state=f"{s.percent}% of requests", address=s.uri)
            for s in service.traffic_statuses
            if s.percent
        ]
        if LABEL_STOPPED in dict(service.labels):
            return ServiceStatus(state="stopped", instances=instances, detail="no outside requests reach it")
        condition = service.terminal_condition
        if condition.state.name == "CONDITION_FAILED":
            return ServiceStatus(state="crashed", instances=instances, detail=condition.message)
        return ServiceStatus(state="running", instances=instances, detail=service.uri)

    # -- crashes (for the reconciler) --------------------------------------------

    def crashes(self, ref: ServiceRef) -> list[RuntimeCrash]:
        """The service's revisions that Cloud Run says failed (one call: the
        revisions' list, with their conditions)."""
        from google.api_core import exceptions as gexc

        try:
            revisions = list(self._client("revisions").list_revisions(parent=self.service_name(ref)))
        except gexc.NotFound:
            return []
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)
        return [crash for crash in map(_crash_of, revisions) if crash is not None]

    # -- revisions (for the portal) ---------------------------------------------

    def revisions(self, ref: ServiceRef) -> list[dict]:
        from google.api_core import exceptions as gexc

        try:
            revisions = list(self._client("revisions").list_revisions(parent=self.service_name(ref)))
        except gexc.NotFound:
            return []
        except gexc.GoogleAPICallError as exc:
            raise _in_words(exc, "run", self)
        return [
            {
                "name": r.name.rsplit("/", 1)[-1],
                "release_id": dict(r.labels).get(LABEL_RELEASE, ""),
                "image": r.containers[0].image if r.containers else "",
                "ready": _is_ready(r),
            }
            for r in revisions
        ]


def _crash_of(revision) -> RuntimeCrash | None:
    """A revision Cloud Run says failed (a condition CONDITION_FAILED: its
    container crashed, ran out of memory or did not start), in its words;
    the newest such condition."""
    failed = [condition for condition in revision.conditions
              if condition.state.name == "CONDITION_FAILED" and condition.message]
    # The newest failure, when several conditions say one.
    for condition in sorted(failed, key=lambda c: c.last_transition_time.timestamp() if c.last_transition_time else 0,
                            reverse=True)[:1]:
        message = condition.message
        code = re.search(r"exit(?:ed)?(?: with)?(?: code|\()\s*(-?\d+)", message)
        at = condition.last_transition_time
        return RuntimeCrash(
            release_id=dict(revision.labels).get(LABEL_RELEASE, ""), instance=revision.name.rsplit("/", 1)[-1],
            message=message[:1000], at=at if at and at.year > 1970 else datetime.now(timezone.utc),
            exit_code=int(code.group(1)) if code else None,
            oom_killed=bool(re.search(r"[Mm]emory limit .*exceeded|out of memory|OOM", message)),
        )
    return None


def cloud_run_resources(cpu: float, memory_mb: int) -> tuple[str, str]:
    """Cloud Run's limits for a service's CPU and memory: whole CPUs (1, 2, 4,
    6, 8; less than one would force one request at a time), at least 512 MiB
    and at least what that many CPUs need."""
    cpus = next((n for n in (1, 2, 4, 6, 8) if cpu <= n), 8)
    minimum = {1: 512, 2: 512, 4: 2048, 6: 4096, 8: 4096}[cpus]
    return str(cpus), f"{max(int(memory_mb), minimum)}Mi"


def _fingerprint(spec: DeploySpec, backend: Serving) -> str:
    """What makes two releases the same revision: image and configuration."""
    parts = [
        backend.runtime_account(spec.team),
        spec.image, str(spec.port), *cloud_run_resources(spec.cpu, spec.memory_mb), str(spec.instances),
        spec.health_check_path, repr(sorted(spec.env.items())), repr(sorted(spec.secret_env.items())),
        str(spec.min_instances), str(spec.max_instances),
        str(spec.concurrency or backend.concurrency), str(spec.request_timeout or backend.request_timeout),
    ]
    if spec.restart:
        parts.append(spec.restart)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _is_ready(revision) -> bool:
    for condition in revision.conditions:
        if condition.type_ == "Ready":
            return condition.state.name == "CONDITION_SUCCEEDED"
    return False


def _not_ready(service, backend: Serving) -> str:
    condition = service.terminal_condition
    message = condition.message or "the new revision did not become ready"
    secret = _secret_problem(message, backend)
    if secret is not None:
        return secret.message
    if "listen" in message.lower() or "port" in message.lower():
        advice = "Make sure the app listens on 0.0.0.0 and the port given in $PORT; its last lines are in the log."
    else:
        # Not about the port (a crash, a missing module): the app's own error is in its last lines.
        advice = "The app's own error is in its last lines, in the log: fix it and deploy again."
    return f"Cloud Run did not start the new revision: {message}. {advice}"


