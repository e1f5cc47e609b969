"""What the rest of the platform asks about a service's volumes (the
releases, scaling and deleting a service), apart from the actions, so that
asking imports nothing more than the models."""

from __future__ import annotations

from django.utils.translation import gettext as _

from hakobune.runtime.base import VolumeMount
from hakobune.runtime.release_config import WEB

from .models import Volume, single_instance_volumes


class VolumeError(Exception):
    """A request about a volume that cannot be done; the message says why."""


def counts_wanted(service, instances=None, processes=None) -> dict[str, int]:
    """How many instances of each process type the service would run."""
    instances = int(service.instances if instances is None else instances)
    processes = service.processes if processes is None else processes
    counts = {WEB: instances} if getattr(service, "serves_web", True) else {}
    for name, sizes in (processes or {}).items():
        counts[name] = int((sizes or {}).get("instances", 1))
    return counts


def check_single_instance(service, *, instances=None, processes=None, adding: Volume | None = None) -> None:
    """VolumeError, in a sentence, when the service would run more than one
    instance of a process type while it mounts a volume not marked shared."""
    names = single_instance_volumes(service)
    if adding is not None and not adding.shared and adding.name not in names:
        names = sorted([*names, adding.name])
    if not names:
        return
    over = {name: count for name, count in counts_wanted(service, instances, processes).items() if count > 1}
    if over:
        said = ", ".join(f"{name}={count}" for name, count in sorted(over.items()))
        raise VolumeError(_(
            "%(service)s mounts the volume %(volumes)s, which only one instance may use at a time, so each of its "
            "process types runs one instance (asked: %(said)s). Scale to 1, or have an owner mark the volume "
            "safe to share if your app can handle several writers.") % {
            "service": service.name, "volumes": ", ".join(names), "said": said})


def mounts_of(service) -> tuple[VolumeMount, ...]:
    """The volumes the runtime mounts in every container of the service."""
    if service.pk is None:
        return ()
    found = Volume.objects.filter(service=service).exclude(status=Volume.Status.DELETING).order_by("mount_path")
    return tuple(VolumeMount(volume=v.engine_name, path=v.mount_path, shared=v.shared) for v in found)


def stays_with(service) -> dict[str, list[str]]:
    """What deleting the service does not delete: its volumes and add-ons, by name."""
    from hakobune.platform.addons.models import AddOn

    return {
        "volumes": sorted(Volume.objects.filter(service=service).values_list("name", flat=True)),
        "addons": sorted(AddOn.objects.filter(services=service).values_list("name", flat=True)),
    }
