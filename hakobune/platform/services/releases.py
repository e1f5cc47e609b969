"""Releases: making one (from a build, or from the live one with a change),
starting it on the service's runtime, and the DeploySpec the runtime gets.
The pipeline's deploy step and every change of a live service (scale,
settings, env, rollback, restart) end here."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from hakobune.platform.accounts import networks
from hakobune.platform.addons.models import AddOn, attached_env_of
from hakobune.platform.builds.lease import Lease
from hakobune.platform.builds.state import failure_fields
from hakobune.platform.crypto import decrypt
from hakobune.platform.diagnoses import Diagnosis, diagnose
from hakobune.platform.failures import MAX_ATTEMPTS, FailureKind, RetryStep, backoff, classify
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.governance.quotas import QuotaExceeded, check_quota
from hakobune.platform.locks import deploy_lock
from hakobune.platform.observability.events import record_release_failure
from hakobune.platform.queue import enqueue_on_commit
from hakobune.platform.volumes.rules import mounts_of as volume_mounts_of
from hakobune.runtime.base import DeploySpec, RuntimeBackendError, ServiceRef
from hakobune.runtime.release_config import RELEASE, WEB, ReleaseConfig, release_settings

from .backends import backend_for, can
from .declared_settings import values_of
from .models import DesiredState, Release, Service

logger = logging.getLogger(__name__)


def release_config(service: Service, plan: dict | None = None) -> dict:
    """A release's configuration, stored: the service's release settings, and
    those the build's plan sets (port, health-check path: where the service's
    settings and the app's hakobune.toml already met); the plan's process
    types with their commands and the sizes the service gives them
    (`process_types_of`), and whether it has a web process."""
    plan = plan or {}
    values = values_of(service, stage=RELEASE)
    for setting in release_settings():
        if setting.from_plan and plan.get(setting.name):
            values[setting.name] = plan[setting.name]
    commands = dict(plan.get("processes") or {})
    sizes = process_types_of(service, commands)
    if sizes:
        values["processes"] = sizes
    config = ReleaseConfig.from_dict(values).to_dict()
    config["web"] = bool(plan.get("web", True))
    if commands:
        config["process_commands"] = commands
    return config


def process_types_of(service: Service, commands: dict) -> dict[str, dict]:
    """The sizes of the plan's process types: the service's where it has
    them, one instance (of web's CPU and memory) for a new one."""
    known = service.processes or {}
    return {name: dict(known.get(name) or {"instances": 1}) for name in commands}


def deploy_spec(
    service: Service, release: Release, *, egress_allow: tuple[str, ...] | None = None, network_subnet: str | None = None
) -> DeploySpec:
    """What the runtime starts. `egress_allow`: the team's allow-list, and
    `network_subnet`: its network's block, when the caller has read every
    team's at once (the reconciler). A team without a block claims one here
    (accounts/networks.py), or raises NoRoomForTeamNetwork."""
    # A setting a release was made without (an older release) is the service's.
    config = ReleaseConfig.from_dict(release.config, defaults=values_of(service, stage=RELEASE))
    return DeploySpec(
        team=service.team.name,
        service=service.name,
        release_id=release.id,
        release_number=release.number,
        image=release.image,
        hostname=service.hostname,
        config=config,
        aliases=service.aliases,
        redirects=service.redirects,
        env=env_of(service),
        secret_env=secret_env_of(service),
        restart=release.config.get("restart", ""),
        web=bool(release.config.get("web", True)),
        processes=dict(release.config.get("process_commands") or {}),
        egress_allow=egress_allow_of(service.team) if egress_allow is None else egress_allow,
        network_subnet=network_subnet or network_subnet_of(service),
        volumes=volume_mounts_of(service),
    )


def network_subnet_of(service: Service) -> str:
    """The block of the service's team network, where its runtime makes team networks."""
    if not can(service, networks.CAPABILITY):
        return ""
    return networks.subnet_of(service.team) or ""


def egress_allow_of(team) -> tuple[str, ...]:
    """The private networks an administrator lets the team's services reach."""
    policy = TeamPolicy.objects.filter(team=team).only("allowed_networks").first()
    return policy.egress_allow if policy else ()


def egress_allow_by_team() -> dict[str, tuple[str, ...]]:
    return {
        policy.team.name: policy.egress_allow
        for policy in TeamPolicy.objects.exclude(allowed_networks="").select_related("team")
    }


def env_of(service: Service) -> dict[str, str]:
    """The service's environment variables with values, decrypted, for the
    runtime, and the URLs of the add-ons attached to it."""
    own = {var.key: decrypt(var.value_encrypted) for var in service.env_vars.all() if not var.secret_ref}
    return {**own, **attached_env_of(service)}


def secret_env_of(service: Service) -> dict[str, str]:
    """The service's variables that come from the runtime's secret store: key: reference."""
    return {var.key: var.secret_ref for var in service.env_vars.all() if var.secret_ref}


def _next_number(service: Service) -> int:
    return (service.releases.aggregate(last=Max("number"))["last"] or 0) + 1


class ReleaseRefused(Exception):
    """A release that is not started, for a reason in the app or its team's
    limits (a diagnosis rule and its parameters): a user error."""

    user_error = True

    def __init__(self, rule: str, params: dict):
        super().__init__(params.get("detail") or rule)
        self.rule, self.params = rule, params


def wait_for_addons(service: Service, log: Callable[[str], None], *, poll: float = 1.0) -> None:
    """Before a deploy's release phase and instances: the add-ons attached to
    the service that are still starting (created a moment before the deploy;
    their stack built from Debian the first time) are waited for, at most
    ADDON_WAIT_SECONDS, so that `migrate` finds its database. One that failed
    or did not start in time is said in the log, and the deploy goes on: the
    app's own error then says what it could not reach."""
    deadline = time.monotonic() + settings.ADDON_WAIT_SECONDS
    waited = set()
    while True:
        attached = list(AddOn.objects.filter(services=service).exclude(status=AddOn.Status.DELETING))
        starting = [addon for addon in attached if addon.status == AddOn.Status.PROVISIONING]
        for addon in starting:
            if addon.id not in waited:
                waited.add(addon.id)
                log(f"Waiting for the add-on {addon.name} ({addon.get_kind_display()}) to start…")
        if starting and time.monotonic() > deadline:
            log(f"! {', '.join(addon.name for addon in starting)} still starting after "
                f"{settings.ADDON_WAIT_SECONDS} s; deploying all the same.")
            return
        if not starting:
            for addon in attached:
                if addon.status == AddOn.Status.FAILED:
                    log(f"! The add-on {addon.name} failed to start ({addon.status_detail or 'no reason given'}); "
                        f"{addon.env_key} points to it all the same.")
                elif addon.id in waited:
                    log(f"✓ The add-on {addon.name} is ready")
            return
        time.sleep(poll)


def run_release_phase(release: Release, log: Callable[[str], None]) -> None:
    """The build's release command (the Procfile's `release:`, hakobune.toml's
    release_command), run once in a one-off container of this release (its
    image, environment and team network) before any of its instances start;
    its output goes to `log`. A failure (an exit code other than 0, or
    RELEASE_COMMAND_TIMEOUT passed) raises ReleaseRefused with its last lines,
    and the release is marked failed: the live release goes on serving. A
    release made without a build (rollback, scale, settings) never runs it."""
    command = ((release.build.plan or {}) if release.build_id else {}).get("release_command", "")
    if not command:
        return
    if (release.runtime_state or {}).get("release_phase") == "succeeded":
        log(f"Release phase of v{release.number}: it ran already")
        return
    service = release.service
    backend = backend_for(service)
    if "one_off" not in backend.capabilities:
        error = ReleaseRefused("release.no_one_off", {"target": service.target, "command": command})
        mark_failed(release, error)
        raise error
    spec = deploy_spec(service, release)
    timeout = settings.RELEASE_COMMAND_TIMEOUT
    log(f"Release phase: `{command}` in a one-off container of v{release.number} (at most {timeout} s)")
    try:
        result = backend.run_once(spec, command, purpose="release", timeout=timeout, on_line=lambda line: log(f"  {line}"))
    except RuntimeBackendError as exc:
        if classify(exc) != FailureKind.TRANSIENT:
            mark_failed(release, exc)
        raise
    tail = "\n".join(result.tail[-15:])
    if result.timed_out:
        error = ReleaseRefused("release.command_timeout", {"command": command, "seconds": timeout, "tail": tail})
    elif result.exit_code != 0:
        error = ReleaseRefused("release.command_failed", {"command": command, "code": result.exit_code, "tail": tail})
    else:
        Release.objects.filter(id=release.id).update(runtime_state={**(release.runtime_state or {}),
                                                                     "release_phase": "succeeded"})
        log(f"✓ Release phase done (`{command}` exited with 0)")
        return
    mark_failed(release, error)
    raise error


def release_for_build(build) -> Release:
    """The release a build deploys as: made once; a retried deploy step finds
    the one it made before. The service's process types become the plan's
    (a new one runs one instance; one the plan no longer has is dropped),
    within the team's quota (else QuotaExceeded)."""
    service = build.service
    with transaction.atomic():
        Service.objects.select_for_update().filter(id=service.id).first()
        existing = Release.objects.filter(build=build, status=Release.Status.DEPLOYING).first()
        if existing is not None:
            return existing
        commands = dict((build.plan or {}).get("processes") or {})
        types, web = process_types_of(service, commands), bool((build.plan or {}).get("web", True))
        if types != (service.processes or {}) or web != service.serves_web:
            try:
                check_quota(service, processes=types, serves_web=web)
            except QuotaExceeded as exc:
                raise ReleaseRefused("release.quota", {"detail": str(exc)}) from None
            Service.objects.filter(id=service.id).update(processes=types, serves_web=web)
            service.processes, service.serves_web = types, web
        return Release.objects.create(
            service=service,
            build=build,
            number=_next_number(service),
            image=build.image,
            config=release_config(service, build.plan),
            status=Release.Status.DEPLOYING,
            description=f"Deploy #{build.number}",
        )


def new_release(service: Service, *, build, image: str, config: dict, description: str) -> Release:
    """A release made without a build (rollback, scale, settings, env,
    restart), started by a worker once it is committed."""
    with transaction.atomic():
        Service.objects.select_for_update().filter(id=service.id).first()
        release = Release.objects.create(
            service=service, build=build, number=_next_number(service), image=image, config=config,
            status=Release.Status.PENDING, description=description,
        )
        enqueue_on_commit("start_release", release.id)
    return release


def claim_pending(release_id: int) -> bool:
    """A worker takes a pending release to start it: a lease it renews
    (renew_start) while it starts it, as a build's step is claimed."""
    now = timezone.now()
    return Release.objects.filter(id=release_id, status=Release.Status.PENDING).update(
        status=Release.Status.DEPLOYING, claimed_at=now, heartbeat_at=now
    ) == 1


def renew_start(release_id: int) -> bool:
    """Renews the lease of a release being started: its worker is alive.
    False once it is no longer being started (live, failed, or taken back by
    the sweeper)."""
    return Release.objects.filter(
        id=release_id, status=Release.Status.DEPLOYING, claimed_at__isnull=False
    ).update(heartbeat_at=timezone.now()) == 1


def unclaim(release_id: int) -> None:
    """Puts a release whose start met a passing fault back, for a retry."""
    Release.objects.filter(id=release_id, status=Release.Status.DEPLOYING).update(
        status=Release.Status.PENDING, claimed_at=None, heartbeat_at=timezone.now()
    )


def start(release: Release, log: Callable[[str], None], *, may_retry: bool = False,
          on_step: Callable[[str], None] | None = None) -> None:
    """Starts the release on its service's backend and makes it the live one.
    Raises when it does not come up; the previous release then keeps
    serving. A passing fault leaves the release deploying when it `may_retry`;
    anything else marks it failed. The releases it replaced still run: the
    caller retires them (retire_replaced) once it has let go of the
    service's deploy lock."""
    service = release.service
    try:
        spec = replace(deploy_spec(service, release), on_step=on_step)
    except RuntimeBackendError as exc:  # no network block left for a new team
        mark_failed(release, exc)
        raise
    log(f"Starting v{release.number}: {describe_processes(spec)} on {service.target}")
    try:
        backend = backend_for(service)
        if spec.secret_env and "secret_env" not in backend.capabilities:
            raise RuntimeBackendError(
                f"{', '.join(sorted(spec.secret_env))} should come from Secret Manager, which {service.target} "
                "cannot read: give them values in the service's environment variables."
            )
        try:
            result = backend.deploy(spec)
        except RuntimeBackendError as exc:
            if not getattr(exc, "subnet_taken", ""):
                raise
            log("The team network's address block is in use on this host; taking another")
            networks.claim_another(service.team, exc.subnet_taken, getattr(exc, "engine_subnets", ()))
            spec = replace(deploy_spec(service, release), on_step=on_step)
            try:
                result = backend.deploy(spec)
            except RuntimeBackendError as again:
                if not getattr(again, "subnet_taken", ""):
                    raise
                # A block clear of everything the engine listed was refused too:
                # not something a person's next deploy would change.
                raise networks.NoRoomForTeamNetwork(
                    "network.overlap", {"subnet": again.subnet_taken, "detail": str(again)}
                ) from again
    except Exception as exc:
        _name_the_sqlite_file(exc, release)
        if not (may_retry and classify(exc) == FailureKind.TRANSIENT):
            mark_failed(release, exc, gave_up=classify(exc) == FailureKind.TRANSIENT)
        raise
    with transaction.atomic():
        Release.objects.filter(service=service, status=Release.Status.LIVE).exclude(id=release.id).update(
            status=Release.Status.SUPERSEDED
        )
        Release.objects.filter(id=release.id).update(
            status=Release.Status.LIVE, live_at=timezone.now(), runtime_state=result.state
        )
        Service.objects.filter(id=service.id).update(live_release=release, desired_state=DesiredState.RUNNING)


def describe_processes(spec: DeploySpec) -> str:
    """ "web 2 × (0.5 CPU, 256 MiB), worker 1 × (…)" """
    parts = []
    for name, count in spec.process_counts().items():
        if name == WEB and not spec.web:
            continue
        sizes = spec.config.sizes(name)
        parts.append(f"{count} × ({float(sizes['cpu']):g} CPU, {sizes['memory_mb']} MiB)")
        if spec.processes:
            parts[-1] = f"{name} {parts[-1]}"
    return ", ".join(parts) or "no process"


def _name_the_sqlite_file(exc: BaseException, release: Release) -> None:
    """A release that could not write its SQLite database: the runtime saw
    the error, the build's plan knows which file (Django's default db.sqlite3)."""
    if getattr(exc, "rule", "") != "runtime.sqlite_unwritable_unnamed" or not release.build_id:
        return
    files = (release.build.plan or {}).get("sqlite_files") or []
    if files:
        exc.rule = "runtime.sqlite_unwritable"
        exc.params = {**exc.params, "file": ", ".join(files)}


def mark_failed(release: Release, exc: BaseException, *, gave_up: bool = False) -> None:
    """Records why the release did not start, as a diagnosis with the app's
    last lines."""
    reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if gave_up:
        diagnosis = Diagnosis("pipeline.gave_up", {"what": "The runtime", "attempts": MAX_ATTEMPTS, "error": reason[:300]})
    elif isinstance(exc, (RuntimeBackendError, ReleaseRefused)):
        diagnosis = diagnose(exc)
    else:
        diagnosis = Diagnosis("release.internal", {"error": f"{type(exc).__name__}: {exc}"[:500]})
    tail = "\n".join(getattr(exc, "log_tail", None) or [])[-4000:]
    if tail:
        diagnosis = Diagnosis(diagnosis.rule, {**diagnosis.params, "tail": "\n".join(tail.splitlines()[-10:])})
    fields = failure_fields(diagnosis)
    if diagnosis.params.get("tail"):
        fields["failure_reason"] += "\n" + diagnosis.params["tail"]
    Release.objects.filter(id=release.id).update(status=Release.Status.FAILED, **fields)


def retire_replaced(release: Release) -> None:
    """Drains the releases `release` replaced (older ones only: a newer
    deploy that went live meanwhile is left alone). Called after the deploy
    let go of the service's lock and recorded the build live, so the portal
    says "live" as soon as the router serves it, and a next deploy of the
    service does not wait behind the old instances' grace period."""
    service = release.service
    try:
        backend_for(service).retire_previous(ServiceRef(service.team.name, service.name), keep_release_id=release.id)
    except RuntimeBackendError as exc:
        logger.warning("could not stop the releases %s replaced: %s", release, exc.message)


def start_pending(release_id: int, *, attempt: int = 1) -> None:
    """Starts a release made without a build (a rollback, a new configuration
    of the same image). A failure leaves the live release serving; a passing
    fault is tried again with backoff."""
    if not claim_pending(release_id):
        return
    release = Release.objects.select_related("service__team").get(id=release_id)
    # The lease is renewed while this worker waits for the deploy lock and
    # starts the release; a worker that dies stops renewing it, and the
    # sweeper starts the release again (builds/sweeper.py).
    with Lease(f"the start of release {release_id}", lambda: renew_start(release_id)), \
            deploy_lock(release.service_id):
        try:
            start(release, lambda line: logger.info("%s: %s", release, line), may_retry=attempt < MAX_ATTEMPTS)
            started = True
        except Exception as exc:
            started = False
            kind = classify(exc)
            reason = getattr(exc, "message", None) or str(exc)
            if kind == FailureKind.TRANSIENT and attempt < MAX_ATTEMPTS:
                logger.warning("%s: attempt %s met a passing fault: %s", release, attempt, reason)
                unclaim(release.id)
                raise RetryStep(backoff(attempt), reason) from exc
            if kind == FailureKind.PLATFORM:
                logger.error("platform fault starting %s: %s", release, reason, exc_info=exc)
            else:
                logger.warning("%s did not start: %s", release, reason)
            record_release_failure(release)
    if started:
        retire_replaced(release)
