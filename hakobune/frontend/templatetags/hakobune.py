from django import template

from hakobune.platform.builds.models import BuildStatus

register = template.Library()

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
        label = BuildStatus.REVIEWING.label if build.status == BuildStatus.REVIEWING and state == "current" else status.label
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
    }.get(str(status), "busy")


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
