"""A team's notifications: where they go (targets), what they are sent for
(rules, for the team and per service), what happened (alerts) and how each
sending went (deliveries). See docs/architecture.md, "Notifications"."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from hakobune.platform.accounts.models import Team
from hakobune.platform.crypto import decrypt
from hakobune.platform.services.models import Service


class TargetKind(models.TextChoices):
    EMAIL = "email", _("E-mail")
    SLACK = "slack", "Slack"
    DISCORD = "discord", "Discord"
    TEAMS = "teams", "Microsoft Teams"
    WEBHOOK = "webhook", _("Webhook (JSON)")


class Event(models.TextChoices):
    DEPLOY_FAILED = "deploy_failed", _("A deploy failed")
    CRASH_LOOP = "crash_loop", _("A service keeps crashing")
    MEMORY_HIGH = "memory_high", _("A service is near its memory limit")
    ERROR_RATE = "error_rate", _("Many of a service's requests fail")
    BACKUP_FAILED = "backup_failed", _("A backup failed")
    TEST = "test", _("Test notification")


class NotificationTarget(models.Model):
    """Where a team's notifications go: an e-mail address, or a Slack,
    Discord, Microsoft Teams or JSON webhook URL. The address is a secret (a
    webhook URL lets anyone post): stored encrypted, shown by its host."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="notification_targets")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=TargetKind.choices)
    address_encrypted = models.TextField(editable=False)
    # What the page shows of the address: the host of a URL, an e-mail address half hidden.
    shown = models.CharField(max_length=200, editable=False)
    # The language its messages are written in.
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, default="en")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="one_target_name_per_team")]

    def __str__(self):
        return f"{self.team}: {self.name} ({self.kind})"

    @property
    def address(self) -> str:
        return decrypt(self.address_encrypted)


class AlertRules(models.Model):
    """Which events a team is notified of, and the thresholds. One row for the
    whole team (service empty) and, where a service needs other rules, one for
    that service, which then replaces the team's for it. A team without a
    row has the defaults: every event, memory at 90 %, errors at 5 %, sent
    to every target of the team. Rules may name some of the team's targets:
    their alerts then go to those only."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="alert_rules")
    service = models.ForeignKey(Service, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    deploy_failed = models.BooleanField(default=True)
    crash_loop = models.BooleanField(default=True)
    memory_high = models.BooleanField(default=True)
    memory_percent = models.PositiveSmallIntegerField(
        default=90, validators=[MinValueValidator(50), MaxValueValidator(100)])
    error_rate = models.BooleanField(default=True)
    error_rate_percent = models.FloatField(default=5.0, validators=[MinValueValidator(0.1), MaxValueValidator(100.0)])
    backup_failed = models.BooleanField(default=True)
    # Where these rules' alerts go: none chosen, every target of the team.
    targets = models.ManyToManyField(NotificationTarget, blank=True, related_name="rules")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team"], condition=Q(service__isnull=True), name="one_rules_per_team"),
            models.UniqueConstraint(fields=["team", "service"], condition=Q(service__isnull=False),
                                    name="one_rules_per_service"),
        ]

    def __str__(self):
        return f"Alert rules of {self.service or self.team}"

    def wants(self, event: str) -> bool:
        """Whether the event is sent (a test always is)."""
        return event == Event.TEST or bool(getattr(self, event, False))


class Alert(models.Model):
    """Something a team's targets are told about, with the parameters its
    words are written from (in each target's language, when sent)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="alerts")
    service = models.ForeignKey(Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    event = models.CharField(max_length=32, choices=Event.choices)
    params = models.JSONField(default=dict, blank=True)
    # What the cool-down counts by ("crash_loop:12": one service's crash loop).
    key = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["key", "created_at"]), models.Index(fields=["team", "created_at"])]

    def __str__(self):
        return f"{self.event} of {self.team} at {self.created_at:%Y-%m-%d %H:%M}"


class Delivery(models.Model):
    """One alert sent to one target: pending while it is tried (a few times),
    then sent, or failed with the reason."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    target = models.ForeignKey(NotificationTarget, null=True, on_delete=models.SET_NULL, related_name="deliveries")
    # Kept when the target is removed.
    target_name = models.CharField(max_length=100)
    target_kind = models.CharField(max_length=16, choices=TargetKind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When it may be tried (again): the sending that took it last failed,
    # and the next waits until then.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Until when the attempt under way holds it: a worker that died while
    # sending leaves it past this time, and the recovery pass tries it again.
    leased_until = models.DateTimeField(null=True, blank=True)
    # Why the last attempt failed, in the words of the mail server or the chat service (English).
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]

    def __str__(self):
        return f"{self.alert} to {self.target_name}: {self.status}"
