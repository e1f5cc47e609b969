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
    # A newer deploy of the service was accepted before this one deployed.
    SUPERSEDED = "superseded", "Superseded"


IN_PROGRESS = (
    BuildStatus.QUEUED,
    BuildStatus.FETCHING,
    BuildStatus.DETECTING,
    BuildStatus.BUILDING,
    BuildStatus.REVIEWING,
    BuildStatus.DEPLOYING,
)
FINISHED = (BuildStatus.LIVE, BuildStatus.FAILED, BuildStatus.CANCELLED, BuildStatus.SUPERSEDED)
# Ended by a person (cancel) or by a newer deploy: their later steps do nothing.
STOPPED = (BuildStatus.CANCELLED, BuildStatus.SUPERSEDED)
# Admitted into the pipeline and taking a build slot (settings.BUILD_CONCURRENCY).
ADMITTED = (BuildStatus.FETCHING, BuildStatus.DETECTING, BuildStatus.BUILDING)
# What a person may cancel, and what a newer deploy of the service supersedes:
# anything before the deploy step. A deploy already deploying finishes (the
# deploy lock serializes it with the newer one, which then replaces it).
STOPPABLE = (BuildStatus.QUEUED, *ADMITTED, BuildStatus.REVIEWING)
