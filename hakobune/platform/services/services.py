"""Actions that change services. Views read models directly but write only
through these functions."""

from __future__ import annotations

import logging
import secrets

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext

from hakobune.platform.accounts.models import Team
from hakobune.platform.addons.models import AddOn
from hakobune.platform.builds.models import STOPPABLE, Build, BuildStatus
from hakobune.platform.builds.stopping import stop_build, supersede_earlier
from hakobune.platform.crypto import encrypt
from hakobune.platform.governance.quotas import QuotaExceeded, check_quota
from hakobune.platform.observability.events import record_event
from hakobune.platform.queue import enqueue_on_commit
from hakobune.runtime.base import RuntimeBackendError, ServiceRef
from hakobune.runtime.release_config import (
    RELEASE,
    WEB,
    ReleaseConfig,
    SettingError,
    all_settings,
    get_setting,
    is_setting,
    problems,
)

from .backends import backend_for, can
from .declared_settings import split_by_storage, values_of
from .models import DesiredState, Domain, EnvVar, Service, SourceKind, validate_env_key
from .domains import LookupFailed, txt_values
from .releases import new_release
from .scaling import wake
from .sources import check_git_source
from hakobune.platform.volumes.rules import VolumeError, check_single_instance, stays_with

logger = logging.getLogger(__name__)


class ServiceActionError(Exception):
    pass


def _require_capability(service: Service, capability: str, what: str):
    """The service's backend, or an error saying that it cannot do `what`."""


    try:
        backend = backend_for(service)
    except RuntimeBackendError as exc:
        raise ServiceActionError(exc.message)
    if capability not in backend.capabilities:
        raise ServiceActionError(f"{service.name} runs on {service.target}, which cannot {what}.")
    return backend


def quota_fields() -> tuple[str, ...]:
    """The settings a team's quota counts (what the runtime reserves)."""
    return tuple(setting.name for setting in all_settings() if setting.quota)


def _within_quota(service: Service, *, creating: bool = False, **changes) -> None:

    try:
        check_quota(service, creating=creating, **changes)
    except QuotaExceeded as exc:
        raise ServiceActionError(str(exc))
    # A volume not marked shared: one instance of each process type.
    try:
        check_single_instance(service, instances=changes.get("instances"), processes=changes.get("processes"))
    except VolumeError as exc:
        raise ServiceActionError(str(exc))


def create_service(
    *, team, name: str, created_by, git_url: str = "", git_ref: str = "", git_token: str = "", **settings_fields
) -> Service:
    if team.deleting_since is not None:
        raise ServiceActionError(gettext("Team %(team)s is being deleted by an administrator.") % {"team": team.name})
    if Service.objects.filter(team=team, name=name).exists():
        raise ServiceActionError(f"Your team already has a service called {name}.")
    if AddOn.objects.filter(team=team, name=name).exists():
        raise ServiceActionError(f"Your team has an add-on called {name}; a service needs another name, since both "
                                 "are reached by name on the team network.")
    columns, extra = split_by_storage(settings_fields)
    service = Service(team=team, name=name, created_by=created_by, extra_settings=extra, **columns)
    _within_quota(service, creating=True)
    if git_url:
        try:
            checked = check_git_source(git_url, git_ref, git_token)
        except ValueError as exc:
            raise ServiceActionError(str(exc))
        service.source_kind = SourceKind.GIT
        service.git_url = checked.url
        service.git_ref = checked.ref
        service.git_token_encrypted = encrypt(checked.token)
    service.full_clean()
    try:
        with transaction.atomic():
            service.save()
            # The address is taken in the same transaction: the table's unique
            # hostname is what keeps two services from one address.
            Domain.objects.create(service=service, hostname=service.hostname, kind=Domain.Kind.PLATFORM)
            record_event("service.created", service=service, actor=created_by, target=service.target)
    except IntegrityError:
        if Service.objects.filter(team=team, name=name).exists():
            raise ServiceActionError(f"Your team already has a service called {name}.")
        raise ServiceActionError(f"The address {service.hostname} is already taken; choose another name.")
    return service


def deploy_service(*, service: Service, source_file=None, created_by, git_ref: str = "", trigger: str = "") -> Build:
    """Records a deploy (a queued build, admitted into the pipeline by
    builds/admission.py once a build slot is free), superseding the service's
    earlier deploys that have not reached their deploy step:
    of an uploaded archive when one is given, else of the service's git
    repository at `git_ref` (default: the service's branch or tag)."""
    if source_file is None and service.source_kind != SourceKind.GIT:
        raise ServiceActionError("Upload an archive of the app to deploy it.")
    if source_file is None and git_ref:
        try:
            git_ref = check_git_source(service.git_url, git_ref).ref
        except ValueError as exc:
            raise ServiceActionError(str(exc))

    def prepare(build):
        build.source_subdir = service.source_subdir
        if source_file is not None:
            build.source_kind = SourceKind.ARCHIVE
            build.trigger = trigger or "upload"
            build.source_filename = getattr(source_file, "name", "") or ""
            build.source_archive.save(
                f"build-{build.number}{_archive_suffix(build.source_filename)}", source_file, save=False
            )
        else:
            build.source_kind = SourceKind.GIT
            build.trigger = trigger or "git"
            build.git_url = service.git_url
            build.git_ref = git_ref or service.git_ref

    return _queue_build(service, created_by, prepare)


def redeploy_build(*, build: Build, created_by, trigger: str = "rebuild") -> Build:
    """Builds and deploys an earlier build's source snapshot again, as it was."""
    if not build.source_archive:
        raise ServiceActionError(f"Deploy #{build.number} has no source snapshot to deploy again.")

    def prepare(new):
        new.source_kind = SourceKind.ARCHIVE
        new.trigger = trigger
        new.source_archive.name = build.source_archive.name
        new.source_filename = build.source_filename or f"snapshot of deploy #{build.number}"
        new.git_url, new.git_ref, new.git_commit = build.git_url, build.git_ref, build.git_commit
        new.source_subdir = build.source_subdir

    return _queue_build(build.service, created_by, prepare)


def _queue_build(service: Service, created_by, prepare) -> Build:
    with transaction.atomic():
        # Lock the service row so two deploys do not take the same number.
        Service.objects.select_for_update().filter(id=service.id).first()
        number = (service.builds.aggregate(last=Max("number"))["last"] or 0) + 1
        build = Build(service=service, number=number, created_by=created_by)
        prepare(build)
        build.save()
        record_event("deploy.started", service=service, actor=created_by, number=number, trigger=build.trigger,
                     source=build.source_label)
        # The later deploy wins: earlier ones not yet deploying end here.
        supersede_earlier(build)
        enqueue_on_commit("admit_builds")
    return build


def cancel_build(*, build: Build, cancelled_by) -> Build:
    """Cancels a deploy that has not reached its deploy step: its running
    step is stopped (containers, git), its workspace removed, and it ends
    cancelled, saying who cancelled it."""
    if build.status not in STOPPABLE:
        if build.status == BuildStatus.DEPLOYING:
            raise ServiceActionError(f"Deploy #{build.number} is already starting its release and cannot be "
                                     "cancelled now; roll back once it is live if you do not want it.")
        raise ServiceActionError(f"Deploy #{build.number} has already ended ({build.get_status_display().lower()}).")
    who = getattr(cancelled_by, "username", "") or "someone"
    if not stop_build(build, BuildStatus.CANCELLED, f"⊘ Cancelled by {who}.",
                      review_note=f"Deploy #{build.number}, which waited for this review, was cancelled by {who}.",
                      by=cancelled_by):
        build.refresh_from_db()
        raise ServiceActionError(f"Deploy #{build.number} moved on meanwhile ({build.get_status_display().lower()}) "
                                 "and was not cancelled.")
    build.refresh_from_db()
    return build


def _archive_suffix(filename: str) -> str:
    lowered = filename.lower()
    for suffix in (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar", ".zip"):
        if lowered.endswith(suffix):
            return suffix
    return ".archive"


# -- releases and the running service -------------------------------------------------


def rollback(*, service: Service, to_release, created_by=None):
    """A new release with an earlier release's image and configuration, like
    Heroku's rollback: nothing is rebuilt, and history only grows."""
    if to_release.service_id != service.id:
        raise ServiceActionError("That release belongs to another service.")
    if not to_release.went_live:
        raise ServiceActionError(f"v{to_release.number} never ran; only releases that went live can be rolled back to.")
    if service.live_release_id == to_release.id:
        raise ServiceActionError(f"v{to_release.number} is already live.")

    kept = service.releases.order_by("-number").values_list("id", flat=True)[: settings.KEEP_RELEASES]
    if to_release.id not in set(kept):
        raise ServiceActionError(
            f"v{to_release.number} is older than the last {settings.KEEP_RELEASES} releases, whose images are kept. "
            f"Redeploy its source instead (deploy #{to_release.build.number})."
        )
    config = dict(to_release.config)
    config.pop("restart", None)  # back to the release's revision itself, where the runtime keeps it
    _within_quota(service, **{name: config[name] for name in quota_fields() if name in config})
    release = new_release(
        service, build=to_release.build, image=to_release.image, config=config,
        description=f"Rollback to v{to_release.number}",
    )
    record_event("release.rollback", service=service, actor=created_by, target=to_release.number, release=release.number)
    return release


def scale(*, service: Service, instances: int, created_by=None):
    """Changes the number of instances; a live service gets a new release of
    the same image with the new count."""
    try:
        instances = get_setting("instances").validate(instances)
    except SettingError as exc:
        raise ServiceActionError(exc.message)
    _within_quota(service, instances=instances)
    Service.objects.filter(id=service.id).update(instances=instances)
    service.instances = instances
    live = service.live_release
    release = None if live is None else new_release(
        service, build=live.build, image=live.image, config=_changed_config(service, live, instances=instances),
        description=f"Scaled to {instances} instance{'s' if instances != 1 else ''}",
    )
    record_event("release.scaled", service=service, actor=created_by, counts={WEB: instances}, release=_number(release))
    return release


def process_counts(service: Service) -> dict[str, int]:
    """How many instances of each process type the service asks for: web
    (when it has one) first, then the others, by name."""
    counts = {WEB: int(service.instances)} if service.serves_web else {}
    for name in sorted(service.processes or {}):
        counts[name] = int((service.processes[name] or {}).get("instances", 1))
    return counts


def process_table(service: Service) -> list[dict]:
    """Each process type with its instances, sizes and command, for the
    service page and the API: web first (when the app has one)."""
    live = service.live_release
    config = (live.config if live else {}) or {}
    commands = config.get("process_commands") or {}
    start = ((live.build.plan or {}).get("start_command", "") if live else "") or ""
    sized = config.get("processes") or {}
    rows = []
    for name, count in process_counts(service).items():
        sizes = {**config, **(sized.get(name) or {})} if name != WEB else config
        rows.append({
            "name": name, "instances": count,
            "cpu": float(sizes.get("cpu", service.cpu)), "memory_mb": int(sizes.get("memory_mb", service.memory_mb)),
            "command": start if name == WEB else commands.get(name, ""), "routed": name == WEB,
        })
    return rows


def scale_processes(*, service: Service, counts: dict, created_by=None):
    """Sets the number of instances of process types (`{"worker": 2}`; web
    too), like `hakobune scale worker=2`. Other process types may be scaled
    to 0 (stopped); web takes what the Instances setting takes. A live
    service gets one new release of the same image with the new counts."""
    if not counts:
        raise ServiceActionError(gettext("Say which process types to scale, like worker=2."))
    known = process_counts(service)
    unknown = sorted(set(counts) - set(known))
    if unknown:
        have = ", ".join(known) or gettext("none yet (deploy it first)")
        raise ServiceActionError(
            gettext("%(service)s has no process type %(unknown)s; its process types: %(have)s. "
                    "Process types come from the Procfile (or [processes] in hakobune.toml).")
            % {"service": service.name, "unknown": ", ".join(unknown), "have": have}
        )
    setting = get_setting("instances")
    wanted = {}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
            raise ServiceActionError(gettext("%(name)s: the number of instances is a whole number, like %(name)s=2.") % {"name": name})
        value = int(value)
        low = setting.min if name == WEB else 0
        if not low <= value <= setting.max:
            raise ServiceActionError(gettext("%(name)s: the number of instances is from %(low)s to %(high)s.") % {
                "name": name, "low": f"{low:g}", "high": f"{setting.max:g}"})
        wanted[name] = value
    if any(name != WEB and not can(service, "processes") for name in wanted):
        raise ServiceActionError(gettext("%(service)s runs on %(target)s, which runs only the web process.") % {
            "service": service.name, "target": service.target})
    processes = {name: dict(sizes) for name, sizes in (service.processes or {}).items()}
    for name, value in wanted.items():
        if name != WEB:
            processes[name]["instances"] = value
    instances = wanted.get(WEB, int(service.instances))
    _within_quota(service, instances=instances, processes=processes)
    Service.objects.filter(id=service.id).update(instances=instances, processes=processes)
    service.instances, service.processes = instances, processes
    live = service.live_release
    if live is None:
        record_event("release.scaled", service=service, actor=created_by, counts=wanted, release=None)
        return None
    config = _changed_config(service, live, instances=instances)
    stored = dict(config.get("processes") or {})
    for name, value in wanted.items():
        if name != WEB and name in stored:
            stored[name] = {**stored[name], "instances": value}
    if stored:
        config["processes"] = stored
    said = ", ".join(f"{name}={value}" for name, value in wanted.items())
    release = new_release(service, build=live.build, image=live.image, config=config, description=f"Scaled {said}")
    record_event("release.scaled", service=service, actor=created_by, counts=wanted, release=release.number)
    return release


def _changed_config(service: Service, live, **changes) -> dict:
    """The live release's stored configuration with these release settings
    changed; what else it holds (a restart's mark) stays."""
    config = ReleaseConfig.from_dict(live.config, defaults=values_of(service, stage=RELEASE)).replace(**changes)
    kept = {key: value for key, value in live.config.items() if not is_setting(key) and key != "processes"}
    return {**kept, **config.to_dict()}


def restart_service(*, service: Service, created_by=None):
    """Fresh instances of the live release, started before the old ones stop."""
    live = service.live_release
    if live is None:
        raise ServiceActionError("The service has no live release to restart.")

    config = {**live.config, "restart": timezone.now().isoformat()}
    release = new_release(service, build=live.build, image=live.image, config=config, description="Restart")
    record_event("release.restarted", service=service, actor=created_by, release=release.number)
    return release


def stop_service(*, service: Service, created_by=None) -> None:
    Service.objects.filter(id=service.id).update(desired_state=DesiredState.STOPPED)
    record_event("service.stopped", service=service, actor=created_by)
    backend_for(service).stop(ServiceRef(service.team.name, service.name))


def start_service(*, service: Service, created_by=None) -> None:
    Service.objects.filter(id=service.id).update(desired_state=DesiredState.RUNNING)
    record_event("service.started", service=service, actor=created_by)
    backend_for(service).start(ServiceRef(service.team.name, service.name))


def delete_team(*, team, deleted_by) -> int:
    """An administrator deletes a team: its services are marked deleted at
    once (no longer routed or reconciled), and a worker stops and removes
    them (instances, routes, images, releases, builds, logs, metrics), then
    deletes the team and removes its network, whose address block is free
    again. Returns how many services go with it."""
    if not getattr(deleted_by, "is_staff", False):
        raise ServiceActionError(gettext("Only administrators delete teams."))
    with transaction.atomic():
        Team.objects.filter(id=team.id, deleting_since__isnull=True).update(deleting_since=timezone.now())
        count = Service.objects.filter(team=team).update(desired_state=DesiredState.DELETED)
        record_event("team.deleted", team=team, actor=deleted_by, services=count)
        enqueue_on_commit("destroy_team", team.id)
    logger.info("team %s deleted by %s: %s service(s) to remove", team.name, deleted_by, count)
    return count


def delete_service(*, service: Service, confirm: str = "", created_by=None) -> None:
    """Removes the service's instances, route and images, then the service,
    once `confirm` is its name. Its volumes and add-ons stay (detached), with
    their data: they are deleted on their own, by name."""
    if (confirm or "").strip() != service.name:
        kept = stays_with(service)
        stays = ""
        if kept["volumes"] or kept["addons"]:
            stays = " " + gettext("Its volumes (%(volumes)s) and add-ons (%(addons)s) stay, with their data; delete "
                                  "them on their own pages.") % {
                "volumes": ", ".join(kept["volumes"]) or "—", "addons": ", ".join(kept["addons"]) or "—"}
        raise ServiceActionError(
            gettext("Type the service's name, %(name)s, to delete it (confirm: %(name)s).") % {"name": service.name}
            + stays)
    Service.objects.filter(id=service.id).update(desired_state=DesiredState.DELETED)
    record_event("service.deleted", service=service, actor=created_by)
    enqueue_on_commit("destroy_service", service.id)


# -- settings, source and environment (the API's PATCH, deploys from a git URL, env) ---

def settings_fields() -> tuple[str, ...]:
    """The settings `update_settings` changes: every declared one."""
    return tuple(setting.name for setting in all_settings())


def update_settings(*, service: Service, created_by=None, **fields):
    """Changes any of the service's declared settings at once, each judged
    against its bounds. A live service gets one new release of the same image
    when a release setting changed, as `scale` does; build settings apply
    from the next deploy. Returns the new release, if any."""
    unknown = set(fields) - set(settings_fields())
    if unknown:
        raise ServiceActionError(f"These cannot be changed here: {', '.join(sorted(unknown))}.")
    try:
        fields = {name: get_setting(name).validate(value) for name, value in fields.items()}
    except SettingError as exc:
        raise ServiceActionError(exc.message)
    before = values_of(service)
    changed = {name: value for name, value in fields.items() if get_setting(name).coerce(before[name]) != value}
    if not changed:
        return None
    for problem in problems({**before, **changed}):
        raise ServiceActionError(problem.message)
    _within_quota(service, **{name: value for name, value in changed.items() if name in quota_fields()})
    columns, extra = split_by_storage(changed)
    for name, value in columns.items():
        if get_setting(name).digits and value is not None:  # a decimal column
            columns[name] = Decimal(str(value))
    if extra:
        columns["extra_settings"] = {**(service.extra_settings or {}), **extra}
    Service.objects.filter(id=service.id).update(**columns)
    for name, value in columns.items():
        setattr(service, name, value)
    release_changes = {name: value for name, value in changed.items() if get_setting(name).stage == RELEASE}
    live = service.live_release
    release = None if live is None or not release_changes else new_release(
        service, build=live.build, image=live.image, config=_changed_config(service, live, **release_changes),
        description="Changed " + ", ".join(sorted(release_changes)),
    )
    record_event("settings.changed", service=service, actor=created_by, changes=setting_changes(before, changed),
                 release=_number(release))
    return release


def setting_changes(before: dict, changed: dict) -> list[dict]:
    """What changed, for the service's events: each setting's value before
    and after, but only the name of one of free text (a command may hold a
    password)."""
    said = []
    for name in sorted(changed):
        setting = get_setting(name)
        if setting.type is str and not setting.choices:
            said.append({"name": name})
        else:
            said.append({"name": name, "from": _plain(before.get(name)), "to": _plain(changed[name])})
    return said


def _plain(value):
    return float(value) if isinstance(value, Decimal) else value


def _number(release) -> int | None:
    return release.number if release is not None else None


def set_source(
    *, service: Service, git_url: str = "", git_ref: str = "", subdir: str | None = None, created_by=None
) -> Service:
    """Points the service at a git repository (and branch), and/or at the
    app's folder inside the source, for the deploys that follow."""
    update = {}
    if subdir is not None:
        cleaned = (subdir or "").strip().strip("/")
        if ".." in cleaned.split("/") or "\\" in cleaned:
            raise ServiceActionError(f"{subdir!r} must be a folder inside the source, like services/api.")
        update["source_subdir"] = cleaned
    if git_url:
        same_repo = service.source_kind == SourceKind.GIT and service.git_url == git_url
        try:
            checked = check_git_source(git_url, git_ref or (service.git_ref if same_repo else "") or "main")
        except ValueError as exc:
            raise ServiceActionError(str(exc))
        update.update(source_kind=SourceKind.GIT, git_url=checked.url, git_ref=checked.ref)
        if not same_repo:
            # A token given for another repository is not sent to this one.
            update["git_token_encrypted"] = ""
    said = {name: update[field] for name, field in SOURCE_FIELDS.items()
            if field in update and getattr(service, field) != update[field]}
    for name, value in update.items():
        setattr(service, name, value)
    if update:
        Service.objects.filter(id=service.id).update(**update)
    if said:
        record_event("source.changed", service=service, actor=created_by, source=said)
    return service


# What set_source changes, as its event names them.
SOURCE_FIELDS = {"git_url": "git_url", "git_ref": "git_ref", "subdir": "source_subdir"}


MAX_ENV_VALUE_BYTES = 32 * 1024


def set_env(*, service: Service, values: dict, unset: list, secrets: dict | None = None, created_by=None):
    """Sets and unsets a service's environment variables; `secrets` sets
    variables whose values the runtime reads from its secret store (Secret
    Manager), by reference. A live service gets a new release of its image so
    that they take effect, as on Heroku; returns it (None when the service is
    not live or nothing changed)."""
    secrets = dict(secrets or {})
    for first, second in ((values, unset), (secrets, unset), (values, secrets)):
        both = set(first) & set(second)
        if both:
            raise ServiceActionError(f"Give {', '.join(sorted(both))} once: a value, a secret or unset.")
    if secrets:
        secrets = _secret_references(service, secrets)
    for key in [*values, *secrets, *unset]:
        try:
            validate_env_key(key)
        except ValidationError as exc:
            raise ServiceActionError(f"{key!r}: {' '.join(exc.messages)}")
    for key, value in values.items():
        if not isinstance(value, str):
            raise ServiceActionError(f"The value of {key} must be a string.")
        if len(value.encode()) > MAX_ENV_VALUE_BYTES:
            raise ServiceActionError(f"The value of {key} is over {MAX_ENV_VALUE_BYTES // 1024} KiB; keep large data out of the environment.")
    with transaction.atomic():
        for key, value in values.items():
            EnvVar.objects.update_or_create(
                service=service, key=key, defaults={"value_encrypted": encrypt(value), "secret_ref": ""}
            )
        for key, reference in secrets.items():
            EnvVar.objects.update_or_create(
                service=service, key=key, defaults={"value_encrypted": "", "secret_ref": reference}
            )
        gone = EnvVar.objects.filter(service=service, key__in=list(unset))
        unset_keys = sorted(gone.values_list("key", flat=True))
        removed, _ = gone.delete()
    if not values and not secrets and not removed:
        return None
    live = service.live_release
    release = None
    if live is not None:
        parts = []
        if values or secrets:
            parts.append("Set " + ", ".join(sorted([*values, *secrets])))
        if removed:
            parts.append("unset " + ", ".join(sorted(unset)))
        release = new_release(
            service, build=live.build, image=live.image, config=dict(live.config), description="; ".join(parts)[:200]
        )
    # The keys only: a value is never in an event.
    record_event("env.changed", service=service, actor=created_by, set=sorted(values), secrets=sorted(secrets),
                 unset=unset_keys, release=_number(release))
    return release


def _secret_references(service: Service, secrets: dict) -> dict[str, str]:
    """The references in the one spelling the runtime stores, or an error
    saying why the service cannot have them: a team's services read only the
    team's own secrets (Cloud Run: those of the team's project whose names
    start with the team's prefix; a short name means the team's)."""
    backend = _require_capability(
        service, "secret_env",
        "read Secret Manager; give the variable a value instead. Services on Cloud Run can use secrets",
    )
    normalized = {}
    for key, reference in secrets.items():
        if not isinstance(reference, str):
            raise ServiceActionError(f"The secret of {key} must be a string, like db-password or db-password:3.")
        try:
            normalized[key] = backend.secret_reference(reference, team=service.team.name)
        except ValueError as exc:
            raise ServiceActionError(f"{key}: {exc}")
    return normalized


# -- traffic split (backends with the "traffic_split" capability) ---------------------


def split_traffic(*, service: Service, percents: dict[int, int], created_by=None) -> dict[str, int]:
    """Sends each release's share of the requests (release number: percent,
    adding up to 100) to the runtime revision that release runs as; returns
    what was sent to the backend (revision: percent)."""
    backend = backend_for(service)
    if "traffic_split" not in backend.capabilities:
        raise ServiceActionError(f"{service.target} cannot split traffic between releases.")
    percents = {number: percent for number, percent in percents.items() if percent}
    if any(not 0 <= p <= 100 for p in percents.values()) or sum(percents.values()) != 100:
        raise ServiceActionError("Give each release a percentage from 0 to 100; together they must make 100.")
    splits = {}
    for number, percent in sorted(percents.items()):
        release = service.releases.filter(number=number).first()
        revision = (release.runtime_state or {}).get("revision") if release else None
        if release is None or not release.went_live or not revision:
            raise ServiceActionError(f"v{number} never ran on {service.target}, so it cannot take requests.")
        splits[revision] = splits.get(revision, 0) + percent
    try:
        backend.route_traffic(ServiceRef(service.team.name, service.name), splits)
    except RuntimeBackendError as exc:
        raise ServiceActionError(exc.message)
    record_event("traffic.split", service=service, actor=created_by, percents={str(n): p for n, p in sorted(percents.items())})
    return splits


def traffic_of(service: Service, releases) -> dict[int, int]:
    """Each release's share of the requests now (release number: percent),
    where the runtime splits traffic between revisions; the newest release of
    a revision carries its share. Raises RuntimeBackendError when the runtime
    cannot be asked, ServiceActionError when it cannot split."""
    backend = backend_for(service)
    if "traffic_split" not in backend.capabilities:
        raise ServiceActionError(f"{service.target} cannot split traffic between releases.")
    shares = backend.traffic(ServiceRef(service.team.name, service.name)) if service.live_release_id else {}
    found, seen = {}, set()
    for release in sorted(releases, key=lambda r: -r.number):
        revision = (release.runtime_state or {}).get("revision")
        if revision and revision not in seen:
            seen.add(revision)
            found[release.number] = shares.get(revision, 0)
    return found


def set_scale_to_zero(*, service: Service, enabled: bool, idle_minutes: int, created_by=None) -> None:
    """Turns scale to zero on or off. Turning it off wakes a sleeping service."""
    if not 1 <= idle_minutes <= 1440:
        raise ServiceActionError("Idle minutes go from 1 to 1440 (a day).")
    if enabled:
        _require_capability(service, "scale_to_zero", "scale to zero on its own schedule (it may do so by itself)")
    if (service.scale_to_zero, service.idle_minutes) != (enabled, idle_minutes):
        record_event("scale_to_zero.changed", service=service, actor=created_by, enabled=enabled, minutes=idle_minutes)
    Service.objects.filter(id=service.id).update(scale_to_zero=enabled, idle_minutes=idle_minutes)
    if not enabled and service.is_asleep and service.live_release is not None:
        wake(service)


def services_on_stack(language: str):
    """Live services whose image was built on the stack (as its run or build stage)."""
    services = Service.objects.exclude(desired_state=DesiredState.DELETED).filter(live_release__isnull=False)
    for service in services.select_related("team", "live_release__build"):
        plan = service.live_release.build.plan or {}
        if language in (plan.get("stack"), plan.get("build_stack")):
            yield service


def redeploy_services_on_stack(*, language: str, created_by=None) -> list[Build]:
    """Rebuilds each live service on the stack from its live source snapshot;
    the new images are on the stack as it is now."""
    return [
        redeploy_build(build=service.live_release.build, created_by=created_by, trigger="stack")
        for service in services_on_stack(language)
        if service.live_release.build.source_archive
    ]


def add_domain(*, service: Service, hostname: str, created_by=None):
    """Adds a domain of the team's; it is routed once verified (a TXT record
    `_hakobune.<domain>` with its token: see verify_domain), and its DNS must
    point at this host (a CNAME to the service's own address, or an A record)."""
    _require_capability(service, "routing", "serve custom domains through Hakobune's router")
    hostname = (hostname or "").strip().lower().rstrip(".")
    base = settings.BASE_DOMAIN
    if hostname == base or hostname.endswith(f".{base}") or hostname.endswith(".localhost") or hostname == "localhost":
        raise ServiceActionError(f"{hostname} is one of Hakobune's own addresses; give a domain of yours.")
    if hostname in portal_hostnames():
        raise ServiceActionError(f"{hostname} is the address of Hakobune's portal; give a domain of yours.")
    if Domain.objects.filter(hostname=hostname).exists():
        raise ServiceActionError(f"{hostname} is already used by a service.")
    domain = Domain(service=service, hostname=hostname, kind=Domain.Kind.CUSTOM,
                    verification_token=secrets.token_urlsafe(24))
    try:
        domain.full_clean()
    except ValidationError as exc:
        raise ServiceActionError(" ".join(exc.message_dict.get("hostname", exc.messages)))
    try:
        with transaction.atomic():
            domain.save()
    except IntegrityError:
        raise ServiceActionError(f"{hostname} is already used by a service.")
    record_event("domain.added", service=service, actor=created_by, hostname=hostname)
    return domain


def verify_domain(*, service: Service, hostname: str, created_by=None):
    """Routes a custom domain once its TXT record holds the domain's token."""
    domain = service.domains.filter(hostname=hostname, kind=Domain.Kind.CUSTOM).first()
    if domain is None:
        raise ServiceActionError(f"{hostname} is not a domain of this service.")
    if domain.verified_at is not None:
        return domain
    try:
        found = txt_values(domain.txt_name)
    except LookupFailed as exc:
        raise ServiceActionError(f"{hostname} is not verified yet: {exc}.")
    if domain.txt_value not in found:
        said = f"it has {', '.join(repr(value) for value in found)}" if found else "there is none yet"
        raise ServiceActionError(
            f"{hostname} is not verified yet: add a TXT record named {domain.txt_name} with the value "
            f"{domain.txt_value} ({said}; a new record can take a few minutes to show), then verify again."
        )
    Domain.objects.filter(id=domain.id).update(verified_at=timezone.now())
    record_event("domain.verified", service=service, actor=created_by, hostname=hostname)
    _sync_routes_after_commit()
    return domain


def portal_hostnames() -> set[str]:
    """The names the portal itself answers at, which no service may take."""
    return {host.lower() for host in settings.ALLOWED_HOSTS if host and not host.startswith(".") and host != "*"}


def remove_domain(*, service: Service, hostname: str, created_by=None) -> None:
    deleted, _ = service.domains.filter(hostname=hostname, kind=Domain.Kind.CUSTOM).delete()
    if not deleted:
        raise ServiceActionError(f"{hostname} is not a domain of this service.")
    record_event("domain.removed", service=service, actor=created_by, hostname=hostname)
    _sync_routes_after_commit()


def dismiss_notice(*, service: Service, created_by=None) -> None:
    Service.objects.filter(id=service.id).update(notice="")


def _sync_routes_after_commit():
    enqueue_on_commit("sync_router")
