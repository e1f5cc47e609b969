"""Events: what happened to each service and team, and who did it. One model
(`Event`) is both the service's timeline, which every member of its team
reads, and the team's audit log, which its owners and the administrators
read (docs/architecture.md, "Events and the audit log").

`record_event(kind, service=…, actor=…, **params)` is called where the thing
happens (an action in services.py, a build's change of status, the
reconciler, the scheduler, the log collector seeing an instance exit). It
never raises: an event that cannot be stored is logged, and the action it
tells of goes on. Inside the action's transaction it is stored with it (and
rolled back with it), in a savepoint of its own.

Each kind has a sentence (or a few, picked by its params) marked for
translation, and is put into words when read, in the reader's language;
params hold numbers, names and keys, never a secret value."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext, gettext_noop

from .models import Event

logger = logging.getLogger(__name__)

# Who the platform itself is, in the "who" of an event.
HAKOBUNE = "Hakobune"

INFO, SUCCESS, WARNING, ERROR = (s.value for s in Event.Severity)


@dataclass(frozen=True)
class Kind:
    name: str
    severity: str
    # Sentences with %(param)s placeholders; `pick` chooses one by the params.
    sentences: tuple[str, ...]
    pick: Callable[[dict], int] | None = None
    # Params in the reader's words (lists joined, labels translated), over the stored ones.
    words: Callable[[dict], dict] | None = None

    def sentence(self, params: dict) -> str:
        index = self.pick(params) if self.pick else 0
        shown = {**params, **(self.words(params) if self.words else {})}
        return gettext(self.sentences[index]) % _Lenient(shown)


class _Lenient(dict):
    """A param an older event does not have shows as "?" rather than failing."""

    def __missing__(self, key):
        return "?"


KINDS: dict[str, Kind] = {}


def kind(name, severity, *sentences, pick=None, words=None) -> None:
    KINDS[name] = Kind(name, severity, sentences, pick, words)


def _with_release(params) -> int:
    """The first sentence when the change made a release, else the second."""
    return 0 if params.get("release") else 1


def _listed(values) -> str:
    return gettext(", ").join(str(value) for value in values or [])


def _counts(params) -> dict:
    return {"counts": _listed(f"{name}={count}" for name, count in (params.get("counts") or {}).items())}


# -- the kinds: a service's ------------------------------------------------------------

kind("service.created", INFO, gettext_noop("Created the service."))
kind("service.deleted", WARNING, gettext_noop("Deleted the service: its instances, address and images are removed."))
kind("deploy.started", INFO,
     gettext_noop("Deploy #%(number)s started from %(source)s."),
     gettext_noop("Deploy #%(number)s started by a push to %(source)s."),
     gettext_noop("Deploy #%(number)s started: a redeploy of the same source (%(source)s)."),
     pick=lambda p: {"webhook": 1, "rebuild": 2, "stack": 2}.get(p.get("trigger"), 0))
kind("deploy.waiting_review", INFO,
     gettext_noop("Deploy #%(number)s is built and waits for an administrator's review."))
kind("deploy.live", SUCCESS, gettext_noop("Deploy #%(number)s is live as v%(release)s."))
kind("deploy.failed", ERROR, gettext_noop("Deploy #%(number)s failed: %(reason)s"),
     words=lambda p: {"reason": _diagnosis(p)})
kind("deploy.cancelled", WARNING, gettext_noop("Deploy #%(number)s was cancelled."))
kind("deploy.superseded", INFO,
     gettext_noop("Deploy #%(number)s was superseded by a newer deploy; nothing of it went live."))
kind("release.failed", ERROR, gettext_noop("v%(release)s did not start; the live release serves on: %(reason)s"),
     words=lambda p: {"reason": _diagnosis(p)})
kind("release.rollback", INFO, gettext_noop("Rolled back to v%(target)s, as v%(release)s."))
kind("release.scaled", INFO,
     gettext_noop("Scaled %(counts)s; v%(release)s runs them."),
     gettext_noop("Scaled %(counts)s; the next deploy runs them."),
     pick=_with_release, words=_counts)
kind("release.restarted", INFO, gettext_noop("Restarted: v%(release)s starts fresh instances."))
kind("settings.changed", INFO,
     gettext_noop("Changed the settings: %(changes)s; v%(release)s runs with them."),
     gettext_noop("Changed the settings: %(changes)s."),
     pick=_with_release, words=lambda p: {"changes": _setting_changes(p.get("changes"))})
kind("env.changed", INFO,
     gettext_noop("Changed the environment variables: %(what)s; v%(release)s runs with them."),
     gettext_noop("Changed the environment variables: %(what)s."),
     pick=_with_release, words=lambda p: {"what": _env_changes(p)})
kind("source.changed", INFO, gettext_noop("Changed where the source comes from: %(what)s."),
     words=lambda p: {"what": _listed(f"{gettext(SOURCE_WORDS[name])} {value or '—'}"
                                      for name, value in (p.get("source") or {}).items() if name in SOURCE_WORDS)})
kind("domain.added", INFO, gettext_noop("Added the domain %(hostname)s; it is routed once verified."))
kind("domain.verified", SUCCESS, gettext_noop("Verified the domain %(hostname)s; it is routed now."))
kind("domain.removed", INFO, gettext_noop("Removed the domain %(hostname)s."))
kind("service.stopped", WARNING, gettext_noop("Stopped the service."))
kind("service.started", INFO, gettext_noop("Started the service again."))
kind("scale_to_zero.changed", INFO,
     gettext_noop("Turned scale to zero on: the service sleeps after %(minutes)s idle minutes."),
     gettext_noop("Turned scale to zero off."),
     pick=lambda p: 0 if p.get("enabled") else 1)
kind("service.slept", INFO, gettext_noop("Put to sleep after %(minutes)s minutes without a request."))
kind("service.woke", INFO, gettext_noop("Woken by a request."))
kind("traffic.split", INFO, gettext_noop("Split the requests: %(shares)s."),
     words=lambda p: {"shares": _listed(gettext("%(percent)s%% to v%(number)s") % {"percent": percent, "number": number}
                                        for number, percent in (p.get("percents") or {}).items())})
kind("instance.crashed", ERROR,
     gettext_noop("The %(process)s process exited with code %(code)s (instance %(instance)s)."),
     gettext_noop("The %(process)s process exited with code %(code)s, %(times)s times, the last at %(last)s "
                  "(instance %(instance)s); it is started again each time, with a growing pause."),
     # What a runtime reports in its own words (Cloud Run: a revision's failed condition).
     gettext_noop("The %(process)s process crashed (revision %(instance)s): %(message)s"),
     gettext_noop("The %(process)s process crashed %(times)s times, the last at %(last)s (revision %(instance)s): "
                  "%(message)s"),
     pick=lambda p: (2 if p.get("message") else 0) + (0 if (p.get("times") or 1) == 1 else 1),
     words=lambda p: {"last": _clock(p.get("last_at"))})
kind("instance.oom_killed", ERROR,
     gettext_noop("The %(process)s process ran out of its %(memory_mb)s MiB of memory and was killed "
                  "(exit code %(code)s, instance %(instance)s). Give it more memory, or make it use less."),
     gettext_noop("The %(process)s process ran out of its %(memory_mb)s MiB of memory and was killed, %(times)s "
                  "times, the last at %(last)s (exit code %(code)s, instance %(instance)s). Give it more memory, "
                  "or make it use less."),
     gettext_noop("The %(process)s process ran out of memory (revision %(instance)s): %(message)s Give it more "
                  "memory, or make it use less."),
     gettext_noop("The %(process)s process ran out of memory %(times)s times, the last at %(last)s (revision "
                  "%(instance)s): %(message)s Give it more memory, or make it use less."),
     pick=lambda p: (2 if p.get("message") else 0) + (0 if (p.get("times") or 1) == 1 else 1),
     words=lambda p: {"last": _clock(p.get("last_at"))})
kind("service.repaired", WARNING,
     gettext_noop("Hakobune found the service not running as it should and repaired it: %(actions)s."),
     gettext_noop("Hakobune found the service not running as it should and repaired it, %(times)s times, the last "
                  "at %(last)s: %(actions)s."),
     pick=lambda p: 0 if (p.get("times") or 1) == 1 else 1,
     words=lambda p: {"actions": "; ".join(p.get("actions") or []), "last": _clock(p.get("last_at"))})
kind("review.approved", SUCCESS, gettext_noop("An administrator approved the service."),
     gettext_noop("An administrator approved the service: %(note)s"), pick=lambda p: 1 if p.get("note") else 0)
kind("review.rejected", WARNING, gettext_noop("An administrator did not approve the service: %(note)s"))

kind("run.started", INFO, gettext_noop("Ran a one-off command in v%(release)s: %(command)s"))
kind("addon.attached", INFO, gettext_noop("Attached the add-on %(addon)s (%(variable)s)."))
kind("addon.detached", INFO, gettext_noop("Detached the add-on %(addon)s (%(variable)s)."))
kind("volume.attached", INFO, gettext_noop("Mounted the volume %(volume)s at %(path)s."))
kind("volume.detached", INFO, gettext_noop("Unmounted the volume %(volume)s; its data stays."))

# -- a team's (recorded with the team and no service) ------------------------------------

# An add-on's kind as its product is called (a name: the same in every language).
ADDON_KIND_NAMES = {"postgres": "PostgreSQL", "redis": "Redis"}


def _addon_kind(params) -> dict:
    return {"addon_kind": ADDON_KIND_NAMES.get(params.get("addon_kind"), params.get("addon_kind", "?"))}


kind("addon.created", INFO, gettext_noop("Created the add-on %(addon)s (%(addon_kind)s)."), words=_addon_kind)
kind("addon.deleted", WARNING, gettext_noop("Deleted the add-on %(addon)s and its data."))
kind("addon.backup_requested", INFO, gettext_noop("Asked for a backup of the add-on %(addon)s."))
kind("addon.backup_verified", SUCCESS,
     gettext_noop("A backup of the add-on %(addon)s was made and verified by a restore (%(size)s bytes): %(summary)s"))
kind("addon.backup_failed", ERROR, gettext_noop("A backup of the add-on %(addon)s failed: %(reason)s"))
kind("addon.backup_schedule_changed", INFO,
     gettext_noop("Set the backups of the add-on %(addon)s to the schedule %(schedule)s, keeping %(retention)s."))
kind("addon.restore_requested", WARNING,
     gettext_noop("Asked to restore backup %(backup)s of the add-on %(addon)s into %(target)s."))
kind("addon.restored", SUCCESS,
     gettext_noop("Restored backup %(backup)s of the add-on %(addon)s into %(target)s: %(summary)s"))
kind("addon.restore_failed", ERROR,
     gettext_noop("Restoring backup %(backup)s of the add-on %(addon)s into %(target)s failed: %(reason)s"))
kind("addon.external_added", INFO,
     gettext_noop("An administrator entered the external database %(addon)s (%(addon_kind)s) for the team."),
     words=_addon_kind)
kind("addon.external_removed", WARNING,
     gettext_noop("Removed the external database %(addon)s: its URL is forgotten, the database itself untouched."))
kind("addon.repaired", WARNING,
     gettext_noop("Hakobune found the add-on %(addon)s stopped and started it again, on its data."),
     gettext_noop("Hakobune found the add-on %(addon)s without its container and made it again, on its data."),
     pick=lambda p: 1 if p.get("how") == "recreated" else 0)
kind("volume.created", INFO, gettext_noop("Created the volume %(volume)s."))
kind("volume.shared", WARNING, gettext_noop("Marked the volume %(volume)s safe to share between instances."))
kind("volume.unshared", INFO, gettext_noop("The volume %(volume)s is used by one instance at a time again."))
kind("volume.deleted", WARNING, gettext_noop("Deleted the volume %(volume)s and its data."))

kind("team.created", INFO, gettext_noop("Created the team."))
kind("team.deleted", WARNING,
     gettext_noop("Deleted the team: its %(services)s services are stopped and removed, then the team."))
kind("team.policy_changed", INFO, gettext_noop("Changed the team's quota and policy: %(fields)s."),
     words=lambda p: {"fields": _listed(gettext(POLICY_WORDS.get(name, name)) for name in p.get("fields") or [])})
kind("team.network_moved", WARNING,
     gettext_noop("Moved the team's network from %(old)s to %(new)s (room for %(holds)s instances): its services "
                  "and add-ons stopped for a few seconds and started again; their data stayed."))
kind("team.network_move_failed", ERROR,
     gettext_noop("Could not move the team's network to a larger block: %(reason)s"))
kind("member.added", INFO, gettext_noop("Added %(user)s to the team as %(role)s."),
     words=lambda p: {"role": _role(p.get("role"))})
kind("member.role_changed", INFO, gettext_noop("Made %(user)s %(role)s (was %(was)s)."),
     words=lambda p: {"role": _role(p.get("role")), "was": _role(p.get("was"))})
kind("member.removed", WARNING, gettext_noop("Removed %(user)s from the team."), gettext_noop("Left the team."),
     pick=lambda p: 1 if p.get("left") else 0)

ROLE_WORDS = {"owner": gettext_noop("an owner"), "developer": gettext_noop("a developer"),
              "viewer": gettext_noop("a viewer")}
SOURCE_WORDS = {"git_url": gettext_noop("repository"), "git_ref": gettext_noop("branch or tag"),
                "subdir": gettext_noop("folder")}
POLICY_WORDS = {"max_services": gettext_noop("services"), "max_cpu": gettext_noop("CPU"),
                "max_memory_mb": gettext_noop("memory"), "max_disk_mb": gettext_noop("disk"),
                "review": gettext_noop("review of new services"),
                "allowed_networks": gettext_noop("private networks it may reach")}


def _role(role) -> str:
    return gettext(ROLE_WORDS[role]) if role in ROLE_WORDS else str(role)


def _diagnosis(params) -> str:
    from hakobune.platform.diagnoses import render

    return render(params.get("rule") or "", params.get("rule_params") or {})


def _clock(stamp) -> str:
    moment = parse_datetime(stamp) if isinstance(stamp, str) else stamp
    if moment is None:
        return "?"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def _setting_changes(changes) -> str:
    from hakobune.runtime.release_config import get_setting, is_setting

    said = []
    for change in changes or []:
        name = change.get("name", "")
        label = gettext(get_setting(name).label) if is_setting(name) else name
        if "to" in change:
            said.append(f"{label} {_setting_value(change.get('from'))} → {_setting_value(change.get('to'))}")
        else:
            said.append(label)
    return _listed(said)


def _setting_value(value) -> str:
    if value is None or value == "":
        return gettext("default")
    if isinstance(value, bool):
        return gettext("on") if value else gettext("off")
    return str(value)


def _env_changes(params) -> str:
    parts = []
    if params.get("set"):
        parts.append(gettext("set %(keys)s") % {"keys": _listed(params["set"])})
    if params.get("secrets"):
        parts.append(gettext("%(keys)s from Secret Manager") % {"keys": _listed(params["secrets"])})
    if params.get("unset"):
        parts.append(gettext("unset %(keys)s") % {"keys": _listed(params["unset"])})
    return gettext("; ").join(parts)


# -- recording -----------------------------------------------------------------------------


def never_fails(record: Callable) -> Callable:
    """Whatever goes wrong recording an event is logged; the action it tells
    of goes on."""

    @functools.wraps(record)
    def guarded(*args, **kwargs):
        try:
            return record(*args, **kwargs)
        except Exception:  # noqa: BLE001 - an event is never worth failing the action it records
            logger.exception("could not record the event %s", args[0] if args else record.__name__)
            return None

    return guarded


def _actor_fields(actor) -> dict:
    """Who, as stored: a person (and the API token they used, which the API's
    authentication notes on them), or Hakobune for the platform itself."""
    if actor is None or getattr(actor, "pk", None) is None:
        return {"actor": None, "actor_label": HAKOBUNE, "actor_token": ""}
    token = getattr(actor, "via_api_token", None)
    return {"actor": actor, "actor_label": actor.get_username()[:150],
            "actor_token": (getattr(token, "name", "") or "")[:100]}


@never_fails
def record_event(kind: str, *, service=None, team=None, actor=None, dedup_key: str = "", at: datetime | None = None,
                 **params) -> Event | None:
    """Records that `kind` happened to `service` (or to `team`, for what
    concerns the whole team), done by `actor` (a person; None: Hakobune).
    Returns the event, or None when it was not stored (seen before under its
    `dedup_key`, or a failure, which is logged)."""
    found = KINDS.get(kind)
    if found is None:
        raise ValueError(f"{kind!r} is not a kind of event")
    team = team if team is not None else service.team
    fields = {
        "team": team, "team_name": team.name, "service": service,
        "service_name": service.name if service is not None else "", "kind": kind, "severity": found.severity,
        "params": params, "created_at": at or timezone.now(), "dedup_key": dedup_key[:100], **_actor_fields(actor),
    }
    try:
        with transaction.atomic():
            return Event.objects.create(**fields)
    except IntegrityError:
        if dedup_key and Event.objects.filter(dedup_key=dedup_key[:100]).exists():
            return None
        raise


def sentence_of(event: Event) -> str:
    """The event in words, in the reader's language."""
    found = KINDS.get(event.kind)
    if found is None:
        return event.kind
    try:
        return found.sentence(dict(event.params or {}))
    except (TypeError, ValueError, KeyError):
        logger.warning("event %s (%s) could not be put into words with %r", event.id, event.kind, event.params)
        return gettext(found.sentences[0]).replace("%%", "%")


# -- where the platform records (one call at each place) -----------------------------------

BUILD_KINDS = {
    "reviewing": "deploy.waiting_review", "live": "deploy.live", "failed": "deploy.failed",
    "cancelled": "deploy.cancelled", "superseded": "deploy.superseded",
}


@never_fails
def record_build_change(build_id: int, status: str, *, by=None) -> Event | None:
    """A build reached `status` (builds/state.advance, once per change): its
    deploy waits for review, went live, failed, or was cancelled or
    superseded. `by`: the person who made it so (a cancel, a review); else Hakobune."""
    kind = BUILD_KINDS.get(str(status))
    if kind is None:
        return None
    from hakobune.platform.builds.models import Build
    from hakobune.platform.services.models import Release

    build = Build.objects.select_related("service__team").get(id=build_id)
    params = {"number": build.number}
    if kind == "deploy.live":
        params["release"] = (Release.objects.filter(build=build, status=Release.Status.LIVE)
                             .order_by("-number").values_list("number", flat=True).first())
    elif kind == "deploy.failed":
        params.update(_failure_params(build), step=build.failed_step)
    return record_event(kind, service=build.service, actor=by, **params)


def _failure_params(row) -> dict:
    """A build's or a release's failure, as a diagnosis to put into words
    when read (its app's last lines cut short)."""
    rule_params = dict(row.failure_params or {})
    if "tail" in rule_params:
        rule_params["tail"] = str(rule_params["tail"])[-800:]
    return {"rule": row.failure_rule or "", "rule_params": rule_params or {"detail": row.failure_reason[:800]}}


@never_fails
def record_release_failure(release) -> Event | None:
    """A release made without a build (rollback, scale, settings, env,
    restart) did not start; a deploy's own is told by its build."""
    release.refresh_from_db()
    return record_event("release.failed", service=release.service, release=release.number,
                        description=release.description, **_failure_params(release))


@never_fails
def record_instance_exit(exit) -> Event | None:
    """An instance of a live release exited without Hakobune asking
    (runtime/exits.py: a crash, or the kernel's OOM killer), as the log
    collector saw it in the engine's events: recorded once per exit. An
    instance that exits again with the same code within
    EVENT_CRASH_REPEAT_MINUTES of its last exit (a crash loop: the engine
    starts it again each time) adds one to that event's count instead."""
    from hakobune.platform.services.declared_settings import values_of
    from hakobune.platform.services.models import DesiredState, Service
    from hakobune.runtime.release_config import RELEASE, ReleaseConfig

    service = (Service.objects.select_related("team", "live_release").exclude(desired_state=DesiredState.DELETED)
               .filter(team__name=exit.team, name=exit.service).first())
    # An instance of a release that is not live is a deploy's: a start that
    # failed is told by its deploy, an old release's by nothing.
    if service is None or service.live_release is None or str(service.live_release_id) != str(exit.release_id):
        return None
    release = service.live_release
    kind = "instance.oom_killed" if exit.oom_killed else "instance.crashed"
    at = exit.at
    same = {"instance": exit.instance, "code": exit.exit_code}
    if _count_again(kind, service, same, at, exit.at_ns):
        return None
    params = {**same, "process": exit.process, "release": release.number, "times": 1,
              "last_at": at.isoformat(), "last_ns": exit.at_ns}
    if exit.oom_killed:
        config = ReleaseConfig.from_dict(release.config, defaults=values_of(service, stage=RELEASE))
        params["memory_mb"] = config.sizes(exit.process).get("memory_mb")
    return record_event(kind, service=service, at=at, dedup_key=f"exit:{exit.container_id[:32]}:{exit.at_ns}",
                        **params)


@never_fails
def record_runtime_crash(service, crash) -> Event | None:
    """A crash of the service's live release that its runtime reported
    (RuntimeBackend.crashes: a Cloud Run revision's failed condition), as an
    instance.crashed or instance.oom_killed event like the local ones: once
    per report (the reconciler sees the same condition at every pass), and a
    new report within EVENT_CRASH_REPEAT_MINUTES of the last adds to its count."""
    release = service.live_release
    if release is None or str(release.id) != str(crash.release_id):
        return None
    kind = "instance.oom_killed" if crash.oom_killed else "instance.crashed"
    at_ns = int(crash.at.timestamp() * 1_000_000) * 1000
    same = {"instance": crash.instance, "code": crash.exit_code}
    if _count_again(kind, service, same, crash.at, at_ns):
        return None
    # The runtime's message says the limit it applied (Cloud Run's may be above the release's).
    params = {**same, "process": crash.process, "release": release.number, "times": 1, "message": crash.message,
              "last_at": crash.at.isoformat(), "last_ns": at_ns}
    return record_event(kind, service=service, at=crash.at,
                        dedup_key=f"crash:{service.id}:{crash.instance[:40]}:{at_ns}", **params)


@never_fails
def record_repair(service, actions: list[str]) -> Event | None:
    """The reconciler found the service not as its database wants it (an
    instance gone or stopped, a stray) and repaired it; the same repair again
    within EVENT_CRASH_REPEAT_MINUTES counts on the last event. Nothing
    repaired: nothing recorded."""
    if not actions:
        return None
    now = timezone.now()
    if _count_again("service.repaired", service, {"actions": list(actions)}, now, None):
        return None
    return record_event("service.repaired", service=service, actions=list(actions), times=1, last_at=now.isoformat())


def _count_again(kind: str, service, same: dict, at: datetime, at_ns: int | None) -> bool:
    """Adds this occurrence to the service's latest event of `kind` whose
    params hold `same`, when its last occurrence was at most
    EVENT_CRASH_REPEAT_MINUTES before `at`. True when it did (or when that
    event counted this very occurrence already: `at_ns` not after its last)."""
    window = timedelta(minutes=settings.EVENT_CRASH_REPEAT_MINUTES)
    with transaction.atomic():
        candidates = Event.objects.select_for_update().filter(
            service=service, kind=kind, created_at__gte=at - timedelta(days=1),
        ).order_by("-id")
        for event in candidates[:20]:
            params = dict(event.params or {})
            if any(params.get(key) != value for key, value in same.items()):
                continue
            if at_ns is not None and at_ns <= int(params.get("last_ns") or 0):
                return True
            last = parse_datetime(params.get("last_at") or "") or event.created_at
            if at - last > window:
                return False
            params.update(times=int(params.get("times") or 1) + 1, last_at=at.isoformat())
            if at_ns is not None:
                params["last_ns"] = at_ns
            Event.objects.filter(id=event.id).update(params=params)
            return True
    return False


# -- reading ---------------------------------------------------------------------------------

PAGE_SIZE = 50
PAGE_MAX = 200


def page(events, *, before: int | None = None, kinds: list[str] | None = None, since: datetime | None = None,
         size: int = PAGE_SIZE) -> tuple[list[Event], int | None]:
    """A page of `events`, newest first: those before the event id `before`,
    of `kinds` (a kind, or a family like "deploy"), since `since`. Returns the
    page and the id to ask the next (older) page before, or None at the end."""
    from django.db.models import Q

    if before is not None:
        events = events.filter(id__lt=before)
    if kinds:
        wanted = Q()
        for name in kinds:
            wanted |= Q(kind=name) | Q(kind__startswith=f"{name}.")
        events = events.filter(wanted)
    if since is not None:
        events = events.filter(created_at__gte=since)
    found = list(events.select_related("service").order_by("-id")[: size + 1])
    more = len(found) > size
    found = found[:size]
    return found, (found[-1].id if more and found else None)


# The kinds' families, which the filters offer, in words.
FAMILIES = {
    "deploy": gettext_noop("Deploys"),
    "release": gettext_noop("Rollbacks, scaling and restarts"),
    "instance": gettext_noop("Crashes and OOM kills"),
    "service": gettext_noop("The service: created, stopped, asleep, repaired"),
    "settings": gettext_noop("Settings"),
    "env": gettext_noop("Environment variables"),
    "source": gettext_noop("Source"),
    "domain": gettext_noop("Domains"),
    "scale_to_zero": gettext_noop("Scale to zero"),
    "traffic": gettext_noop("Traffic split"),
    "review": gettext_noop("Reviews"),
    "team": gettext_noop("The team: created, quota, deleted"),
    "member": gettext_noop("Members"),
    "run": gettext_noop("One-off commands"),
    "addon": gettext_noop("Add-ons"),
    "volume": gettext_noop("Volumes"),
}


def families() -> list[str]:
    """The kinds' families (deploy, release, instance…), for filters."""
    return list(FAMILIES)


def family_choices() -> list[tuple[str, str]]:
    """The families as (value, words in the reader's language)."""
    return [(name, gettext(words)) for name, words in FAMILIES.items()]


def prune() -> int:
    """Deletes the events older than EVENT_RETENTION_DAYS; returns how many went."""
    cutoff = timezone.now() - timedelta(days=settings.EVENT_RETENTION_DAYS)
    deleted, _ = Event.objects.filter(created_at__lt=cutoff).delete()
    return deleted
