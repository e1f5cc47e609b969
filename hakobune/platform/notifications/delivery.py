"""Sending one delivery (the task deliver_notification, housekeeping queue):
the alert put into words in its target's language, sent, and the outcome
recorded. A delivery that did not go is tried NOTIFY_MAX_ATTEMPTS times in
all, NOTIFY_RETRY_SECONDS apart; an address the guard refuses is not tried
again. Whatever happens, the outcome is written on the delivery, where the
team's notification page shows it.

The database, not the queue, holds what is owed: each attempt takes a lease
on its row (`leased_until`), and a failed attempt writes when the next is
due (`next_attempt_at`). The housekeeping pass recover() queues again a
delivery whose worker died while sending (its lease ran out) or whose task
was lost with the queue (Redis keeps nothing on disk), and fails the ones
that used their attempts up."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop, override

from hakobune.platform import queue
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


def lease_seconds() -> int:
    """How long one attempt holds its delivery: the sending task's hard time
    limit, so a lease runs out only once its worker is surely gone."""
    return settings.TASK_TIME_LIMITS["deliver_notification"] + settings.TASK_KILL_GRACE


def claim(delivery_id: int, attempt: int = 1) -> bool:
    """Takes the delivery for one attempt: pending, attempts left, not held
    by another attempt, and due (its next attempt's time has come, or this is
    the task's retry of the attempt before: `attempt` is the task's own count).
    A duplicate task, or the recovery pass's copy of a task that was only
    late, finds it taken or done and does nothing."""
    now = timezone.now()
    return bool(Delivery.objects.filter(
        Q(leased_until__isnull=True) | Q(leased_until__lt=now),
        # The task's retry comes at its countdown, as the time written.
        Q(next_attempt_at__lte=now) | Q(attempts__lt=attempt),
        id=delivery_id, status=Delivery.Status.PENDING, attempts__lt=max_attempts(),
    ).update(attempts=F("attempts") + 1, leased_until=now + timedelta(seconds=lease_seconds())))


def deliver(delivery_id: int, *, attempt: int = 1) -> None:
    """Sends the delivery once if it is due and free (see claim()); raises
    RetryStep when it should be tried again."""
    if not claim(delivery_id, attempt):
        return
    delivery = Delivery.objects.select_related("alert__team", "target").get(id=delivery_id)
    target = delivery.target
    if target is None:
        _finish(delivery, Delivery.Status.FAILED, "the target was removed before it was sent")
        return
    done = delivery.attempts
    try:
        channels.send(target.kind, target.address, compose(delivery.alert, target.language))
    except channels.Refused as exc:
        _finish(delivery, Delivery.Status.FAILED, str(exc))
    except channels.NotSent as exc:
        if done < max_attempts():
            wait = settings.NOTIFY_RETRY_SECONDS
            Delivery.objects.filter(id=delivery.id).update(
                reason=f"attempt {done} of {max_attempts()}: {exc}; trying again in {wait} s",
                next_attempt_at=timezone.now() + timedelta(seconds=wait), leased_until=None)
            raise RetryStep(wait, str(exc)) from None
        _finish(delivery, Delivery.Status.FAILED, str(exc))
    except Exception as exc:  # noqa: BLE001 - recorded on the delivery, whatever it was
        logger.exception("sending notification delivery %s failed", delivery.id)
        _finish(delivery, Delivery.Status.FAILED, f"Hakobune could not send it ({type(exc).__name__}: {exc})")
    else:
        _finish(delivery, Delivery.Status.SENT, "")


def recover() -> dict[str, int]:
    """The housekeeping pass over pending deliveries that nothing is sending:
    an attempt whose lease ran out (its worker died mid-way) or a due one
    whose task was lost is queued again while attempts are left; one that
    used them all is failed, with why. Returns the counts."""
    now = timezone.now()
    # A due delivery's task is normally taken within seconds; one still
    # waiting after a retry's interval is taken as lost.
    late = now - timedelta(seconds=max(settings.NOTIFY_RETRY_SECONDS, 30))
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=now)
    stranded = Delivery.objects.filter(free, status=Delivery.Status.PENDING).filter(
        Q(leased_until__lt=now) | Q(next_attempt_at__lt=late))
    outcome = {"queued": 0, "failed": 0}
    for delivery in stranded.select_related("alert__team").order_by("id")[:RECOVER_BATCH]:
        cut_short = delivery.leased_until is not None
        if delivery.attempts >= max_attempts():
            why = (f"its last attempt (attempt {delivery.attempts} of {max_attempts()}) was cut short: the worker "
                   f"sending it stopped" if cut_short else f"tried {delivery.attempts} times")
            if Delivery.objects.filter(free, id=delivery.id, status=Delivery.Status.PENDING).update(
                    status=Delivery.Status.FAILED, reason=(f"{why}; {delivery.reason}" if delivery.reason and not
                                                           cut_short else why)[:2000],
                    finished_at=now, leased_until=None):
                logger.warning("notification to %s (team %s) failed: %s", delivery.target_name,
                               delivery.alert.team.name, why)
                count(Delivery.Status.FAILED)
                outcome["failed"] += 1
            continue
        changes = {"leased_until": None, "next_attempt_at": now}
        if cut_short:
            changes["reason"] = (f"attempt {delivery.attempts} of {max_attempts()} was cut short (the worker sending "
                                 f"it stopped); trying again")
        if Delivery.objects.filter(free, id=delivery.id, status=Delivery.Status.PENDING).update(**changes):
            queue.enqueue("deliver_notification", delivery.id)
            outcome["queued"] += 1
    if outcome["queued"] or outcome["failed"]:
        logger.info("notification deliveries recovered: %(queued)s queued again, %(failed)s failed", outcome)
    return outcome


# Deliveries one recovery pass looks at, at most (the next pass takes the rest).
RECOVER_BATCH = 500


def _finish(delivery: Delivery, status: str, reason: str) -> None:
    Delivery.objects.filter(id=delivery.id).update(status=status, reason=reason[:2000], finished_at=timezone.now(),
                                                   leased_until=None)
    if status == Delivery.Status.FAILED:
        logger.warning("notification to %s (team %s) failed: %s", delivery.target_name, delivery.alert.team.name, reason)
    count(status)
