"""A build's statuses, apart from the model, so that services' models can
name them without importing the builds' models (which import services')."""

from django.db import models


class BuildStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    FETCHING = "fetching", "Fetching source"
    DETECTING = "detecting", "Detecting stack"
    BUILDING = "building", "Building image"
    # Built; an administrator reviews the service before its first deploy goes live.
    REVIEWING = "reviewing", "Waiting for review"
    DEPLOYING = "deploying", "Deploying"
    LIVE = "live", "Live"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


IN_PROGRESS = (
    BuildStatus.QUEUED,
    BuildStatus.FETCHING,
    BuildStatus.DETECTING,
    BuildStatus.BUILDING,
    BuildStatus.REVIEWING,
    BuildStatus.DEPLOYING,
)
FINISHED = (BuildStatus.LIVE, BuildStatus.FAILED, BuildStatus.CANCELLED)
