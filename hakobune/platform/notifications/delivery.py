"""Sending one delivery (the task deliver_notification, housekeeping queue):
the alert put into words in its target's language, sent, and the outcome
recorded. A delivery that did not go is tried NOTIFY_MAX_ATTEMPTS times in
all, NOTIFY_RETRY_SECONDS apart; an address the guard refuses is not tried
again. Whatever happens, the outcome is written on the delivery, where the
team's notification page shows it."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop, override

from hakobune.platform.diagnoses import render
from hakobune.platform.failures import RetryStep

from . import channels
from .alerts import count
from .models import Alert, Delivery, Event

logger = logging.getLogger(__name__)

# (title, body) of each event, written from the alert's parameters.
WORDS = {
    Event.DEPLOY_FAILED: (
        gettext_noop("Deploy #%(build)s of %(service)s failed"),
        gettext_noop("Deploy #%(build)s of %(service)s (team %(team)s) failed while %(step)s: %(reason)s\n"
                     "The service that was live goes on serving. The build's log: %(link)s"),
    ),
    Event.CRASH_LOOP: (
        gettext_noop("%(service)s keeps crashing"),
        gettext_noop("%(service)s (team %(team)s) keeps crashing: %(instances)s instance(s) of its %(processes)s "
                     "process exit and are restarted again and again. Its runtime logs say why: %(link)s"),
    ),
    Event.MEMORY_HIGH: (
        gettext_noop("%(service)s is near its memory limit"),
        gettext_noop("%(service)s (team %(team)s) uses %(percent)s%% of its %(limit_mb)s MiB memory limit (this alert "
                     "is set at %(threshold)s%%). At the limit it is killed and restarted: give it more memory, or "
                     "make it use less. %(link)s"),
    ),
    Event.ERROR_RATE: (
        gettext_noop("%(service)s: %(rate)s%% of requests fail"),
        gettext_noop("%(service)s (team %(team)s) answered %(failed)s of its %(requests)s requests in the last "
                     "%(minutes)s minutes with a server error (5xx): %(rate)s%% (this alert is set at %(threshold)s%%). "
                     "Its runtime logs say why: %(link)s"),
    ),
    Event.BACKUP_FAILED: (
        gettext_noop("A backup of team %(team)s failed"),
        gettext_noop("The backup of %(what)s (team %(team)s) failed: %(reason)s"),
    ),
    Event.TEST: (
        gettext_noop("A test notification from Hakobune"),
        gettext_noop("This is a test notification for team %(team)s, sent to %(target)s. If you read it, "
                     "notifications reach you here. %(link)s"),
    ),
}

# A failed build's step, as the deploy-failed words name it.
STEPS = {
    "queued": gettext_noop("waiting to start"),
    "fetching": gettext_noop("fetching the source"),
    "detecting": gettext_noop("detecting the stack"),
    "building": gettext_noop("building the image"),
    "reviewing": gettext_noop("waiting for review"),
    "deploying": gettext_noop("deploying"),
}

# The webhook's JSON fields, besides apprise's own (version, title, message, type).
FIELDS = ("team", "service", "build", "step", "reason", "what", "percent", "threshold", "rate", "link")


def compose(alert: Alert, language: str) -> channels.Message:
    params = {"team": alert.team.name, **alert.params}
    with override(language):
        if alert.event == Event.DEPLOY_FAILED:
            step = params.get("step") or ""
            params["step"] = gettext(STEPS[step]) if step in STEPS else step
            if params.get("rule"):
                params["reason"] = render(params["rule"], params.get("rule_params") or {})
        title, body = (gettext(text) % params for text in WORDS[alert.event])
    fields = {"event": alert.event, **{name: str(alert.params[name]) for name in FIELDS if name in alert.params}}
    fields["team"] = alert.team.name
    return channels.Message(title=title, body=body, fields=fields, failure=alert.event != Event.TEST)


def max_attempts() -> int:
    return settings.NOTIFY_MAX_ATTEMPTS


def deliver(delivery_id: int, *, attempt: int = 1) -> None:
    """Sends the delivery once (a duplicate task finds it claimed); raises
    RetryStep when it should be tried again."""
    if not Delivery.objects.filter(id=delivery_id, status=Delivery.Status.PENDING, attempts__lt=attempt).update(
            attempts=attempt):
        return
    delivery = Delivery.objects.select_related("alert__team", "target").get(id=delivery_id)
    target = delivery.target
    if target is None:
        _finish(delivery, Delivery.Status.FAILED, "the target was removed before it was sent")
        return
    try:
        channels.send(target.kind, target.address, compose(delivery.alert, target.language))
    except channels.Refused as exc:
        _finish(delivery, Delivery.Status.FAILED, str(exc))
    except channels.NotSent as exc:
        if attempt < max_attempts():
            wait = settings.NOTIFY_RETRY_SECONDS
            Delivery.objects.filter(id=delivery.id).update(
                reason=f"attempt {attempt} of {max_attempts()}: {exc}; trying again in {wait} s")
            raise RetryStep(wait, str(exc)) from None
        _finish(delivery, Delivery.Status.FAILED, str(exc))
    except Exception as exc:  # noqa: BLE001 - recorded on the delivery, whatever it was
        logger.exception("sending notification delivery %s failed", delivery.id)
        _finish(delivery, Delivery.Status.FAILED, f"Hakobune could not send it ({type(exc).__name__}: {exc})")
    else:
        _finish(delivery, Delivery.Status.SENT, "")


def _finish(delivery: Delivery, status: str, reason: str) -> None:
    Delivery.objects.filter(id=delivery.id).update(status=status, reason=reason[:2000], finished_at=timezone.now())
    if status == Delivery.Status.FAILED:
        logger.warning("notification to %s (team %s) failed: %s", delivery.target_name, delivery.alert.team.name, reason)
    count(status)
