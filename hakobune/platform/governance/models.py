from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from hakobune.platform.accounts.models import Team


class TeamPolicy(models.Model):
    """What staff allow a team: how many services, how much CPU and memory
    they may hold at once, how much disk its volumes and backups may hold,
    and whether its new services wait for review.
    Empty fields: the platform's defaults (TEAM_MAX_* and REVIEW_NEW_SERVICES)."""

    class Review(models.TextChoices):
        DEFAULT = "", "The platform's default"
        REQUIRED = "required", "Reviewed before their first deploy goes live"
        TRUSTED = "trusted", "Not reviewed"

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="policy")
    max_services = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(1000)])
    max_cpu = models.DecimalField(
        max_digits=6, decimal_places=2, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0.1")), MaxValueValidator(Decimal("1000"))],
        help_text="CPU cores all its services may hold at once.",
    )
    max_memory_mb = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(64)], help_text="MiB all its services may hold at once."
    )
    max_disk_mb = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(10_000_000)],
        help_text="MiB its volumes and backups may hold on disk together.",
    )
    review = models.CharField(max_length=16, blank=True, choices=Review.choices)
    allowed_networks = models.TextField(
        blank=True,
        help_text="Private networks its services may reach (a company database, say), one per line like "
                  "10.20.0.0/16. Every other private range, the host and other teams stay out of reach.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self):
        return f"Policy of {self.team}"

    @property
    def egress_allow(self) -> tuple[str, ...]:
        return tuple(line.strip() for line in self.allowed_networks.split() if line.strip())


class ServiceReview(models.Model):
    """An administrator's look at a service before its first deploy goes live,
    on platforms or teams that ask for one."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Not approved"
        # Nothing waits for it any more: the build that waited was superseded
        # or cancelled. A newer build of the service opens it again.
        CLOSED = "closed", "Closed: nothing waits"

    service = models.OneToOneField("services.Service", on_delete=models.CASCADE, related_name="review")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    note = models.TextField(blank=True, help_text="Why, in words the team can act on.")
    requested_at = models.DateTimeField(auto_now_add=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["requested_at"]

    def __str__(self):
        return f"Review of {self.service}: {self.status}"
