"""What people and workers do with add-ons: create one (its container is
provisioned by a worker), attach it to a service and detach it (a new release
with or without its URL), delete it (its data volume only when confirmed by
name), and the variables the runtime gives an attached service."""

from __future__ import annotations

import logging
import secrets
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from hakobune.platform.accounts import networks
from hakobune.platform.accounts.models import dns_label_validator
from hakobune.platform.crypto import decrypt, encrypt
from hakobune.platform.governance.quotas import QuotaExceeded, limits_of, usage_of
from hakobune.platform.observability.events import record_event
from hakobune.platform.queue import enqueue_on_commit
from hakobune.platform.services.backends import get_backend
from hakobune.platform.services.models import DesiredState, EnvVar, Service
from hakobune.platform.services.releases import egress_allow_by_team, egress_allow_of, new_release
from hakobune.runtime.addons import AddOnSpec, LocalAddOns, volume_name
from hakobune.runtime.base import RuntimeBackendError

from .backup_store import delete_files_of
from .models import AddOn, Kind, Restore

logger = logging.getLogger(__name__)

# The runtime add-ons run on: this host's Docker Engine.
ADDON_BACKEND = "local"


class AddOnError(Exception):
    """A request about an add-on that cannot be done; the message says why."""


def kind_of(value) -> str:
    if value not in Kind.values:
        raise AddOnError(f"An add-on is one of: {', '.join(Kind.values)} (not {value!r}).")
    return value


def _checked_name(team, kind: str, name: str) -> str:
    name = (name or kind).strip()
    try:
        dns_label_validator(name)
    except ValidationError:
        raise AddOnError(f"{name!r} cannot name an add-on: use lower-case letters, digits and hyphens "
                         "(at most 30), starting with a letter.")
    if len(name) > 30:
        raise AddOnError(f"{name!r} is longer than 30 characters.")
    if team.services.exclude(desired_state=DesiredState.DELETED).filter(name=name).exists():
        raise AddOnError(f"Team {team.name} has a service called {name}; its add-on needs another name, "
                         "since both are reached by name on the team network.")
    if AddOn.objects.filter(team=team, name=name).exists():
        raise AddOnError(f"Team {team.name} already has an add-on called {name}.")
    return name


def create_addon(*, team, kind: str, name: str = "", created_by=None) -> AddOn:
    """Records the add-on and has a worker start it; refused, in a sentence,
    when the name is taken or the team's quota has no room for it."""
    kind = kind_of(kind)
    name = _checked_name(team, kind, name)
    cpu, memory = Decimal(str(settings.ADDON_CPU)), settings.ADDON_MEMORY_MB
    taken = AddOnError(f"Team {team.name} already has an add-on called {name}.")
    check_addon_quota(team, float(cpu), memory)
    try:
        with transaction.atomic():
            addon = AddOn.objects.create(
                team=team, name=name, kind=kind, cpu=cpu, memory_mb=memory, volume=volume_name(team.name, name),
                password_encrypted=encrypt(secrets.token_urlsafe(24)),
                database=name.replace("-", "_") if kind == Kind.POSTGRES else "",
                created_by=created_by,
            )
    except IntegrityError:  # created by another request meanwhile
        raise taken from None
    enqueue_on_commit("provision_addon", addon.id)
    record_event("addon.created", team=team, actor=created_by, addon=name, addon_kind=kind)
    return addon


# The schemes an external database's URL may have, by kind.
EXTERNAL_SCHEMES = {Kind.POSTGRES: ("postgres", "postgresql"), Kind.REDIS: ("redis", "rediss")}


def add_external(*, team, kind: str, name: str, url: str, created_by=None) -> AddOn:
    """An administrator's: an external database for the team (a Cloud SQL
    instance, a managed Redis: Hakobune provisions neither), by its URL, so
    that the team's services on Cloud Run, which cannot reach the host's team
    networks, get DATABASE_URL or REDIS_URL like the others. Hakobune runs
    nothing for it and holds none of the team's quota; the URL is stored
    encrypted and shown with its password masked."""
    kind = kind_of(kind)
    name = _checked_name(team, kind, name)
    url = (url or "").strip()
    parts = urlsplit(url)
    schemes = EXTERNAL_SCHEMES[kind]
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        host = None
    if parts.scheme not in schemes or not host or any(c.isspace() for c in url):
        raise AddOnError(gettext("An external %(kind)s is given by its URL, %(example)s (scheme %(schemes)s).") % {
            "kind": Kind(kind).label, "schemes": " | ".join(schemes),
            "example": f"{schemes[0]}://user:password@host:port/{'database' if kind == Kind.POSTGRES else '0'}"})
    try:
        with transaction.atomic():
            addon = AddOn.objects.create(
                team=team, name=name, kind=kind, status=AddOn.Status.READY, cpu=Decimal(0), memory_mb=0, volume="",
                password_encrypted="", external_url_encrypted=encrypt(url),
                database=parts.path.lstrip("/")[:63] if kind == Kind.POSTGRES else "", created_by=created_by,
            )
    except IntegrityError:
        raise AddOnError(f"Team {team.name} already has an add-on called {name}.") from None
    record_event("addon.external_added", team=team, actor=created_by, addon=name, addon_kind=kind)
    return addon


def check_addon_quota(team, cpu: float, memory_mb: int) -> None:
    limits, now = limits_of(team), usage_of(team)
    problems = []
    if now.cpu + cpu > limits.cpu + 1e-9:
        problems.append(f"{limits.cpu:g} CPU cores at once (it holds {now.cpu:g}; the add-on needs {cpu:g})")
    if now.memory_mb + memory_mb > limits.memory_mb:
        problems.append(f"{limits.memory_mb} MiB of memory at once (it holds {now.memory_mb}; "
                        f"the add-on needs {memory_mb})")
    if problems:
        raise QuotaExceeded(
            f"Team {team.name} may have {' and '.join(problems)}. Use fewer instances, less CPU or memory, or "
            "delete what you no longer need; an administrator can raise the team's quota."
        )


def _runtime():
    return LocalAddOns(get_backend(ADDON_BACKEND))


def provision(addon_id: int) -> None:
    """The worker's part of creating an add-on: its image (the configured one
    if this host has it or can pull it, else the stack built from Debian),
    its volume and container, and waiting until it answers."""
    from hakobune.platform.builds.images import local_builder

    addon = AddOn.objects.select_related("team").filter(id=addon_id).first()
    if addon is None or addon.status != AddOn.Status.PROVISIONING:
        return
    try:
        stack = local_builder().ensure_stack(addon.kind, lambda line: logger.info("add-on %s: %s", addon, line))

        try:
            state = _runtime().provision(_spec_of(addon, image=stack.ref), ready_timeout=settings.ADDON_READY_TIMEOUT)
        except RuntimeBackendError as exc:
            # The add-on made the team's network first, and its block is held by
            # another network on this engine: another block, as a release takes.
            if not getattr(exc, "subnet_taken", ""):
                raise
            networks.claim_another(addon.team, exc.subnet_taken, getattr(exc, "engine_subnets", ()))
            state = _runtime().provision(_spec_of(addon, image=stack.ref), ready_timeout=settings.ADDON_READY_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure is the add-on's status, in words
        message = getattr(exc, "message", None) or str(exc)
        logger.warning("add-on %s failed to start: %s", addon, message)
        AddOn.objects.filter(id=addon.id, status=AddOn.Status.PROVISIONING).update(
            status=AddOn.Status.FAILED, status_detail=message[:2000])
        return
    AddOn.objects.filter(id=addon.id, status=AddOn.Status.PROVISIONING).update(
        status=AddOn.Status.READY, status_detail="", image=stack.ref, version=stack.version,
        container_id=state.container_id,
    )
    # A new add-on made to restore a backup into: its restore can start.
    for restore_id in Restore.objects.filter(addon=addon, status=Restore.Status.QUEUED).values_list("id", flat=True):
        enqueue_on_commit("restore_backup", restore_id)


def _spec_of(addon: AddOn, *, image: str = "", subnet: str | None = None, egress=None) -> AddOnSpec:
    return AddOnSpec(
        team=addon.team.name, name=addon.name, kind=addon.kind, image=image or addon.image,
        password=decrypt(addon.password_encrypted), database=addon.database,
        memory_mb=addon.memory_mb, cpu=float(addon.cpu),
        network_subnet=(networks.subnet_of(addon.team) if subnet is None else subnet) or "",
        egress_allow=tuple(egress_allow_of(addon.team) if egress is None else egress),
    )


def reconcile() -> list[str]:
    """The reconciler's part for add-ons (every pass, and when the workers
    start): a ready add-on whose container was stopped or killed is started
    again, one whose container is gone is made again on its data volume. A
    crash inside a running container is the engine's restart policy's, and
    the engine brings the running ones back after it restarts; a `docker
    kill`, a `docker stop` or a removal it leaves alone, so this does it.
    One container listing per pass; nothing else when all run."""
    if ADDON_BACKEND not in settings.RUNTIME_BACKENDS:
        return []
    backend = get_backend(ADDON_BACKEND)
    addons = list(AddOn.objects.filter(status=AddOn.Status.READY, external_url_encrypted="").select_related("team"))
    if not addons or "addons" not in backend.capabilities:
        return []
    runtime = LocalAddOns(backend)
    observed = runtime.observe()
    subnets, egress = networks.subnets_by_team(), egress_allow_by_team()
    done = []
    for addon in addons:
        status = observed.get((addon.team.name, addon.name))
        if status in ("running", "restarting"):
            continue
        spec = _spec_of(addon, subnet=subnets.get(addon.team.name), egress=egress.get(addon.team.name, ()))
        try:
            how = runtime.repair(spec, status)
        except RuntimeBackendError as exc:
            logger.warning("reconcile could not bring back the add-on %s: %s", addon, exc.message)
            continue
        if not how:
            continue
        state = runtime.state(addon.team.name, addon.name)
        if state is not None and state.container_id != addon.container_id:
            AddOn.objects.filter(id=addon.id).update(container_id=state.container_id)
        record_event("addon.repaired", team=addon.team, addon=addon.name, how=how)
        done.append(f"{how} the add-on {addon}")
    return done


def attach(*, addon: AddOn, service: Service, created_by=None):
    """Gives the service the add-on's URL; a live service gets a new release
    with it (returned, else None)."""
    if service.team_id != addon.team_id:
        raise AddOnError(f"{addon.name} is an add-on of another team.")
    if service.target != ADDON_BACKEND and not addon.external:
        raise AddOnError(gettext(
            "%(addon)s runs on this host only, and %(service)s runs on %(target)s, which cannot reach it. For a "
            "service on Cloud Run, an administrator enters an external database's URL for the team (its Quotas "
            "page; Hakobune does not create Cloud SQL instances): attach that one instead.")
            % {"addon": addon.name, "service": service.name, "target": service.target})
    if addon.status in (AddOn.Status.DELETING, AddOn.Status.FAILED):
        raise AddOnError(f"{addon.name} is {addon.status}; attach an add-on that is ready or starting.")
    if addon.services.filter(id=service.id).exists():
        raise AddOnError(f"{addon.name} is attached to {service.name} already.")
    other = service.addons.filter(kind=addon.kind).first()
    if other is not None:
        raise AddOnError(f"{service.name} has {other.name} for its {addon.env_key} already; detach it first.")
    if EnvVar.objects.filter(service=service, key=addon.env_key).exists():
        raise AddOnError(f"{service.name} sets {addon.env_key} itself; unset that variable first, so that the "
                         f"add-on's URL is the one it gets.")
    addon.services.add(service)
    record_event("addon.attached", service=service, actor=created_by, addon=addon.name, variable=addon.env_key)
    return _new_release(service, f"Attach {addon.name} ({addon.env_key})")


def detach(*, addon: AddOn, service: Service, created_by=None):
    if not addon.services.filter(id=service.id).exists():
        raise AddOnError(f"{addon.name} is not attached to {service.name}.")
    addon.services.remove(service)
    record_event("addon.detached", service=service, actor=created_by, addon=addon.name, variable=addon.env_key)
    return _new_release(service, f"Detach {addon.name} ({addon.env_key})")


def _new_release(service: Service, description: str):
    live = service.live_release
    if live is None:
        return None
    return new_release(service, build=live.build, image=live.image, config=dict(live.config), description=description)


def delete(*, addon: AddOn, confirm: str = "", deleted_by=None) -> None:
    """Has a worker remove the add-on's container and its data volume: only
    when no service uses it and `confirm` is its name, never silently."""
    attached = sorted(addon.services.exclude(desired_state=DesiredState.DELETED).values_list("name", flat=True))
    if attached:
        raise AddOnError(f"{addon.name} is attached to {', '.join(attached)}; detach it first.")
    if confirm != addon.name:
        if addon.external:
            raise AddOnError(gettext("Removing %(name)s forgets its URL (the database itself is not touched); "
                                     "confirm with its name (%(confirm)s).")
                             % {"name": addon.name, "confirm": f'{{"confirm": "{addon.name}"}}'})
        raise AddOnError(f"Deleting {addon.name} deletes its data for good; confirm with its name "
                         f"({{\"confirm\": \"{addon.name}\"}}).")
    if addon.external:  # nothing of it runs here: its record is all there is
        addon.delete()
        record_event("addon.external_removed", team=addon.team, actor=deleted_by, addon=addon.name)
        return
    AddOn.objects.filter(id=addon.id).update(status=AddOn.Status.DELETING)
    enqueue_on_commit("remove_addon", addon.id)
    record_event("addon.deleted", team=addon.team, actor=deleted_by, addon=addon.name)


def remove(addon_id: int) -> None:
    """The worker's part of deleting an add-on: its container and volume, then the record."""
    addon = AddOn.objects.select_related("team").filter(id=addon_id, status=AddOn.Status.DELETING).first()
    if addon is None:
        return
    _runtime().remove(addon.team.name, addon.name, delete_volume=True)
    for line in delete_files_of(addon):
        logger.info("add-on %s: %s", addon, line)
    addon.delete()


def remove_all_of_team(team_name: str) -> list[str]:
    """For a team being deleted: every add-on container and volume it has."""
    done = []
    for addon in AddOn.objects.filter(team__name=team_name, external_url_encrypted=""):
        try:
            done += _runtime().remove(team_name, addon.name, delete_volume=True)
            done += delete_files_of(addon)
        except RuntimeBackendError as exc:
            done.append(f"could not remove the add-on {addon.name}: {exc}")
    return done



def start_all_of_team(team) -> list[str]:
    """For a team whose network was made again (moved to a larger block):
    each of its ready add-ons started and answering. Raises
    RuntimeBackendError for one that does not come back."""
    done = []
    for addon in AddOn.objects.filter(team=team, status=AddOn.Status.READY).order_by("name"):
        _runtime().start(team.name, addon.name, addon.kind, decrypt(addon.password_encrypted),
                         timeout=settings.ADDON_READY_TIMEOUT)
        done.append(f"started the add-on {addon.name}")
    return done
