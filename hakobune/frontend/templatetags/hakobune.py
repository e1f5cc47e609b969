import re

from django import template
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from django.utils.translation import gettext, ngettext

from hakobune.platform.builds.models import BuildStatus

register = template.Library()

# The status words the portal shows (services, builds, releases, instances,
# webhook deliveries), in the reader's language; the stored words stay English.
STATUS_LABELS = {
    "new": pgettext_lazy("status", "new"),
    "queued": pgettext_lazy("status", "queued"),
    "fetching": pgettext_lazy("status", "fetching"),
    "detecting": pgettext_lazy("status", "detecting"),
    "building": pgettext_lazy("status", "building"),
    "reviewing": pgettext_lazy("status", "in review"),
    "in review": pgettext_lazy("status", "in review"),
    "deploying": pgettext_lazy("status", "deploying"),
    "live": pgettext_lazy("status", "live"),
    "failed": pgettext_lazy("status", "failed"),
    "cancelled": pgettext_lazy("status", "cancelled"),
    "superseded": pgettext_lazy("status", "superseded"),
    "pending": pgettext_lazy("status", "pending"),
    "stopped": pgettext_lazy("status", "stopped"),
    "asleep": pgettext_lazy("status", "asleep"),
    "running": pgettext_lazy("status", "running"),
    "starting": pgettext_lazy("status", "starting"),
    "crashed": pgettext_lazy("status", "crashed"),
    "missing": pgettext_lazy("status", "missing"),
    "unknown": pgettext_lazy("status", "unknown"),
    "deployed": pgettext_lazy("status", "deploy started"),
    "ignored": pgettext_lazy("status", "ignored"),
    "refused": pgettext_lazy("status", "refused"),
    "approved": pgettext_lazy("status", "approved"),
    "rejected": pgettext_lazy("status", "not approved"),
    "succeeded": pgettext_lazy("status", "succeeded"),
    "skipped": pgettext_lazy("status", "skipped"),
    "closed": pgettext_lazy("status", "Closed: nothing waits"),
    # A one-off command's (services/one_off.py).
    "exited": pgettext_lazy("status", "exited"),
    "disconnected": pgettext_lazy("status", "disconnected"),
    "timed_out": pgettext_lazy("status", "timed out"),
    "sent": pgettext_lazy("status", "sent"),
}

# The pipeline's steps as the progress bar names them.
STEP_LABELS = {
    BuildStatus.FETCHING: _("Fetching source"),
    BuildStatus.DETECTING: _("Detecting stack"),
    BuildStatus.BUILDING: _("Building image"),
    BuildStatus.REVIEWING: _("Waiting for review"),
    BuildStatus.DEPLOYING: _("Deploying"),
    BuildStatus.LIVE: _("Live"),
}

PIPELINE = [
    BuildStatus.QUEUED,
    BuildStatus.FETCHING,
    BuildStatus.DETECTING,
    BuildStatus.BUILDING,
    BuildStatus.DEPLOYING,
    BuildStatus.LIVE,
]


@register.simple_tag
def pipeline_steps(build):
    """The pipeline's steps, each marked done, current, failed or waiting."""
    steps = []
    # Waiting for review is the deploy step, not yet begun.
    status = BuildStatus.DEPLOYING if build.status == BuildStatus.REVIEWING else build.status
    reached = PIPELINE.index(status) if status in PIPELINE else None
    failed_at = None
    if reached is None:
        # A failed or cancelled build stopped at the step it was claimed for.
        failed_step = BuildStatus.DEPLOYING if build.failed_step == BuildStatus.REVIEWING else build.failed_step
        failed_at = max(PIPELINE.index(failed_step), 1) if failed_step in PIPELINE else 1
    for index, status in enumerate(PIPELINE[1:], start=1):
        if reached is not None:
            state = "done" if index < reached or status == BuildStatus.LIVE == build.status else (
                "current" if index == reached else "waiting"
            )
        else:
            state = "done" if index < failed_at else ("failed" if index == failed_at else "waiting")
        label = STEP_LABELS[BuildStatus.REVIEWING] if build.status == BuildStatus.REVIEWING and state == "current" else STEP_LABELS[status]
        steps.append({"label": label, "state": state})
    return steps


@register.filter
def status_tone(status):
    return {
        "live": "good",
        "running": "good",
        "failed": "bad",
        "crashed": "bad",
        "cancelled": "muted",
        "superseded": "muted",
        "stopped": "muted",
        "new": "muted",
        "asleep": "muted",
        "deployed": "good",
        "ignored": "muted",
        "refused": "bad",
        "sent": "good",
        "ready": "good",
        "deleting": "muted",
        "verified": "good",
        "succeeded": "good",
    }.get(str(status), "busy")


@register.filter
def status_label(status):
    """A status word in the reader's language (the word itself when unknown)."""
    return STATUS_LABELS.get(str(status), status)


# Words stored in English (a release's description) or said by a runtime
# library (an instance count), matched whole and put in the reader's language;
# anything else is shown as it is.
STORED_WORDS = [
    (re.compile(r"Deploy #(?P<number>\d+)"), lambda m: gettext("Deploy #%(number)s") % m.groupdict()),
    (re.compile(r"Rollback to v(?P<number>\d+)"), lambda m: gettext("Rollback to v%(number)s") % m.groupdict()),
    (re.compile(r"Scaled to (?P<count>\d+) instances?"),
     lambda m: ngettext("Scaled to %(count)s instance", "Scaled to %(count)s instances", int(m["count"])) % m.groupdict()),
    (re.compile(r"Scaled (?P<counts>[a-z][a-z0-9-]*=\d+(, [a-z][a-z0-9-]*=\d+)*)"),
     lambda m: gettext("Scaled %(counts)s") % {"counts": m["counts"]}),
    (re.compile(r"Restart"), lambda m: gettext("Restart")),
    (re.compile(r"Mount (?P<volume>[a-z][a-z0-9-]*) at (?P<path>/[A-Za-z0-9._/-]*)"),
     lambda m: gettext("Mount %(volume)s at %(path)s") % m.groupdict()),
    (re.compile(r"Unmount (?P<volume>[a-z][a-z0-9-]*)"), lambda m: gettext("Unmount %(volume)s") % m.groupdict()),
    (re.compile(r"Share (?P<volume>[a-z][a-z0-9-]*)"), lambda m: gettext("Share %(volume)s") % m.groupdict()),
    (re.compile(r"Stop sharing (?P<volume>[a-z][a-z0-9-]*)"),
     lambda m: gettext("Stop sharing %(volume)s") % m.groupdict()),
    (re.compile(r"Changed (?P<what>[\w, ]+)"), lambda m: gettext("Changed %(what)s") % m.groupdict()),
    (re.compile(r"Set (?P<keys>[\w, ]+)"), lambda m: gettext("Set %(keys)s") % m.groupdict()),
    (re.compile(r"Unset (?P<keys>[\w, ]+)"), lambda m: gettext("Unset %(keys)s") % m.groupdict()),
    (re.compile(r"(?P<running>\d+) of (?P<total>\d+) instance\(s\) running"),
     lambda m: gettext("%(running)s of %(total)s instances running") % m.groupdict()),
    (re.compile(r"(?P<count>\d+) restart\(s\) so far"), lambda m: gettext("%(count)s restarts so far") % m.groupdict()),
    (re.compile(r"(?P<count>\d+) OOM kill\(s\)"), lambda m: gettext("%(count)s OOM kills") % m.groupdict()),
    (re.compile(r"no instance is running"), lambda m: gettext("no instance is running")),
    # A scheduled job's run (services/jobs.py).
    (re.compile(r"it never started"), lambda m: gettext("it never started")),
    (re.compile(r"its container was gone before it could be read"),
     lambda m: gettext("its container was gone before it could be read")),
    (re.compile(r"it ran longer than (?P<seconds>\d+) s and was stopped"),
     lambda m: gettext("it ran longer than %(seconds)s s and was stopped") % m.groupdict()),
    (re.compile(r"it exited with code (?P<code>-?\d+)"), lambda m: gettext("it exited with code %(code)s") % m.groupdict()),
    (re.compile(r"its previous run was still running"), lambda m: gettext("its previous run was still running")),
    (re.compile(r"the terminal went away; the command was stopped"),
     lambda m: gettext("the terminal went away; the command was stopped")),
    (re.compile(r"its terminal went away and the portal did not end it"),
     lambda m: gettext("its terminal went away and the portal did not end it")),
    (re.compile(r"it could not start: (?P<error>.*)", re.S),
     lambda m: gettext("it could not start: %(error)s") % m.groupdict()),
]


@register.filter
def in_readers_words(text):
    """A stored or library sentence in the reader's language, part by part
    ("; " between parts); parts it does not know stay as they are."""
    parts = []
    for part in str(text or "").split("; "):
        for pattern, words in STORED_WORDS:
            match = pattern.fullmatch(part)
            if match:
                part = str(words(match))
                break
        parts.append(part)
    return gettext("; ").join(parts)


@register.filter
def can(service, capability):
    """Whether the service's runtime backend has this capability flag."""
    from hakobune.platform.services import backends

    return backends.can(service, capability)


@register.filter
def short_image(ref: str) -> str:
    """An image as a person reads it: team/service and a short tag or digest
    (the registry's host and path are in the title)."""
    name, at, digest = (ref or "").partition("@")
    short = "/".join(name.split("/")[-2:])
    if at:
        algorithm, _, value = digest.partition(":")
        return f"{short}@{algorithm}:{value[:12]}"
    return short


@register.filter
def secret_prefix(service):
    """The start of the names of the secrets the service's team may use, where
    its runtime reads a secret store with one ("" elsewhere)."""
    from hakobune.platform.services.backends import backend_for
    from hakobune.runtime.base import RuntimeBackendError

    try:
        backend = backend_for(service)
    except RuntimeBackendError:
        return ""
    prefix = getattr(backend, "secret_prefix", None)
    return prefix(service.team.name) if prefix else ""


@register.filter
def event_words(event):
    """An event (observability/events.py) in a sentence, in the reader's language."""
    from hakobune.platform.observability.events import sentence_of

    return sentence_of(event)


# Events worth a mark beside their sentence, and its words.
EVENT_MARKS = {
    "error": ("bad", pgettext_lazy("event", "error")),
    "warning": ("busy", pgettext_lazy("event", "warning")),
    "success": ("good", pgettext_lazy("event", "done")),
}


@register.filter
def event_mark(event):
    """(tone, word) of the event's severity, or None for a plain one."""
    return EVENT_MARKS.get(event.severity)


@register.filter
def mib(value):
    """Bytes as MiB, to one decimal ("—" for none): the unit a service's memory is set in."""
    if value is None:
        return "—"
    return f"{value / (1024 * 1024):.1f}".removesuffix(".0")


@register.filter
def size_words(value):
    """Bytes in the nearest unit of 1024 (B, KiB, MiB, GiB): layer and image sizes."""
    if value is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
