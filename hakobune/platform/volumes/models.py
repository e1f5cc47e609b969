"""Volumes: a team's named volumes on the local runtime, each mounted by at
most one of its services at a path (hakobune/platform/volumes/actions.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Sum
from django.utils.translation import gettext_lazy as _

from hakobune.platform.accounts.models import Team, dns_label_validator
from hakobune.platform.services.models import Service


class Volume(models.Model):
    class Status(models.TextChoices):
        PROVISIONING = "provisioning", _("being made")
        READY = "ready", _("ready")
        FAILED = "failed", _("failed")
        DELETING = "deleting", _("deleting")

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="volumes")
    name = models.CharField(max_length=30, validators=[dns_label_validator])
    # The Docker Engine's name of it (runtime/volumes.py engine_name).
    engine_name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROVISIONING)
    # Why it failed, in a sentence; empty otherwise.
    status_detail = models.TextField(blank=True)
    # The service that mounts it, and where; a deleted service lets go of it
    # (its data stays).
    service = models.ForeignKey(Service, null=True, blank=True, on_delete=models.SET_NULL, related_name="volumes")
    mount_path = models.CharField(max_length=200, blank=True)
    # Its owner says the app copes with several containers writing to it at
    # once: the service may then run several instances and deploy rolling.
    shared = models.BooleanField(default=False)
    # What it holds on disk, as last measured (housekeeping), in bytes.
    size_bytes = models.BigIntegerField(default=0)
    measured_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="volume_name_unique_per_team")]
        ordering = ["name"]

    def __str__(self):
        return f"{self.team.name}/{self.name}"


def volume_bytes_of(team) -> int:
    """What the team's volumes hold, as last measured: its disk quota's part for volumes."""
    return int(Volume.objects.filter(team=team).aggregate(total=Sum("size_bytes"))["total"] or 0)


def single_instance_volumes(service) -> list[str]:
    """The names of the volumes the service mounts that are not marked safe to share."""
    if service.pk is None:
        return []
    return sorted(Volume.objects.filter(service=service, shared=False).exclude(status=Volume.Status.DELETING)
                  .values_list("name", flat=True))
