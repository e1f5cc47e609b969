"""What people and workers do with volumes: create one (a worker makes it on
this host's Docker Engine), attach it to a service at a path and detach it
(a new release with or without it), mark it safe to share, delete it (only
when no service mounts it and its name is typed), measure what each holds
for the team's disk quota, and the mounts the runtime gives a service.

A volume not marked shared is held by one container at a time: the service
runs one instance of each process type, and a deploy stops the old release
before starting the new one (a short gap)."""

from __future__ import annotations

import logging
import posixpath
import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from hakobune.platform.accounts.models import dns_label_validator
from hakobune.platform.governance.disk_quota import check_disk_quota
from hakobune.platform.observability.events import record_event
from hakobune.platform.queue import enqueue_on_commit
from hakobune.platform.services.backends import can, get_backend
from hakobune.platform.services.models import DesiredState, Service
from hakobune.runtime.base import RuntimeBackendError
from hakobune.runtime.volumes import LocalVolumes

from .models import Volume
from .rules import VolumeError, check_single_instance, counts_wanted, mounts_of, stays_with  # noqa: F401

logger = logging.getLogger(__name__)

# The runtime volumes live on: this host's Docker Engine.
VOLUME_BACKEND = "local"
CAPABILITY = "volumes"
# Where the app's code is (the buildpacks' WORKDIR): a volume there, or on a
# directory holding it, would hide the code.
APP_ROOT = "/app"
# The system's own directories, and /tmp (the instance's tmpfs): never a volume's place.
RESERVED = ("/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr",
            "/boot", "/run", "/var/run", "/tmp", "/root", "/var/lib/docker")
PATH_CHARACTERS = re.compile(r"^[A-Za-z0-9._/-]+$")
MAX_PATH = 200


def _runtime() -> LocalVolumes:
    return LocalVolumes(get_backend(VOLUME_BACKEND))


def validate_mount_path(path) -> str:
    """The path a volume is mounted at, as given, if it is a plain absolute
    path outside the system's directories and the app's code; else VolumeError."""
    text = path if isinstance(path, str) else ""
    text = text.strip()
    if len(text) > 1 and text.endswith("/"):
        text = text.rstrip("/")
    bad = VolumeError(_("%(path)r cannot be a volume's mount path: give an absolute path like /data or "
                        "/app/uploads (letters, digits, dots, hyphens, underscores and slashes).") % {"path": path})
    if not text or not text.startswith("/") or len(text) > MAX_PATH or not PATH_CHARACTERS.match(text):
        raise bad
    if text == "/":
        raise VolumeError(_("A volume cannot be mounted on / (the whole file system)."))
    parts = text.split("/")[1:]
    if any(part in ("", ".", "..") for part in parts) or posixpath.normpath(text) != text:
        raise VolumeError(_("%(path)r is not a plain path: no \"..\", \".\" or doubled slashes.") % {"path": path})
    for reserved in RESERVED:
        if text == reserved or text.startswith(reserved + "/"):
            raise VolumeError(_("%(path)s is in %(reserved)s, which belongs to the system; mount the volume at a "
                                "path of your app's, like /data.") % {"path": text, "reserved": reserved})
    if APP_ROOT == text or APP_ROOT.startswith(text + "/"):
        raise VolumeError(_("%(path)s holds your app's code (%(root)s), which a volume would hide; mount it at a "
                            "directory of its own, like /data or %(root)s/uploads.") % {"path": text, "root": APP_ROOT})
    return text


def create_volume(*, team, name: str, created_by=None) -> Volume:
    """Records the volume and has a worker make it; refused, in a sentence,
    when the name is taken or the team is past its disk quota."""
    name = (name or "").strip()
    try:
        dns_label_validator(name)
    except ValidationError:
        raise VolumeError(_("%(name)r cannot name a volume: use lower-case letters, digits and hyphens (at most 30), "
                            "starting with a letter.") % {"name": name})
    if len(name) > 30:
        raise VolumeError(_("%(name)r is longer than 30 characters.") % {"name": name})
    taken = VolumeError(_("Team %(team)s already has a volume called %(name)s.") % {"team": team.name, "name": name})
    if Volume.objects.filter(team=team, name=name).exists():
        raise taken
    check_disk_quota(team)
    try:
        with transaction.atomic():
            volume = Volume.objects.create(team=team, name=name, engine_name=_runtime().name_of(team.name, name),
                                           created_by=created_by)
    except IntegrityError:  # made by another request meanwhile
        raise taken from None
    enqueue_on_commit("provision_volume", volume.id)
    record_event("volume.created", team=team, actor=created_by, volume=name)
    return volume


def helper_image() -> str:
    """The platform's own image the helper containers run (never a team's)."""
    from hakobune.platform.builds.images import local_builder

    return local_builder().ensure_stack("python", lambda line: logger.info("volume helper: %s", line)).ref


def provision(volume_id: int) -> None:
    """The worker's part of creating a volume: the engine's volume, labelled
    with the team and given to the apps' user."""
    volume = Volume.objects.select_related("team").filter(id=volume_id, status=Volume.Status.PROVISIONING).first()
    if volume is None:
        return
    try:
        _runtime().create(volume.team.name, volume.name, helper_image=helper_image())
    except Exception as exc:  # noqa: BLE001 - any failure is the volume's status, in words
        message = getattr(exc, "message", None) or str(exc)
        logger.warning("volume %s could not be made: %s", volume, message)
        Volume.objects.filter(id=volume.id, status=Volume.Status.PROVISIONING).update(
            status=Volume.Status.FAILED, status_detail=message[:2000])
        return
    Volume.objects.filter(id=volume.id, status=Volume.Status.PROVISIONING).update(
        status=Volume.Status.READY, status_detail="")


def attach(*, volume: Volume, service: Service, path, created_by=None):
    """Mounts the volume in the service at `path`: a live service gets a new
    release with it (returned, else None)."""
    if service.team_id != volume.team_id:
        raise VolumeError(_("%(volume)s is a volume of another team.") % {"volume": volume.name})
    if service.desired_state == DesiredState.DELETED:
        raise VolumeError(_("%(service)s is being deleted.") % {"service": service.name})
    if service.target != VOLUME_BACKEND or not can(service, CAPABILITY):
        raise VolumeError(_(
            "%(volume)s is on this host's disk, and %(service)s runs on %(target)s, which cannot mount it: volumes "
            "are for services on this host. Keep data in a database or a bucket instead.") % {
            "volume": volume.name, "service": service.name, "target": service.target})
    if volume.status in (Volume.Status.DELETING, Volume.Status.FAILED):
        raise VolumeError(_("%(volume)s is %(status)s; attach a volume that is ready or being made.") % {
            "volume": volume.name, "status": volume.get_status_display()})
    if volume.service_id is not None:
        other = volume.service
        raise VolumeError(_("%(volume)s is mounted by %(service)s already; detach it there first.") % {
            "volume": volume.name, "service": other.name if other else "?"})
    path = validate_mount_path(path)
    for other in Volume.objects.filter(service=service).exclude(id=volume.id):
        if path == other.mount_path or path.startswith(other.mount_path + "/") or other.mount_path.startswith(path + "/"):
            raise VolumeError(_("%(service)s mounts %(other)s at %(at)s already; give %(volume)s a path of its own.") % {
                "service": service.name, "other": other.name, "at": other.mount_path, "volume": volume.name})
    check_single_instance(service, adding=volume)
    with transaction.atomic():
        updated = Volume.objects.filter(id=volume.id, service__isnull=True).update(service=service, mount_path=path)
        if not updated:
            raise VolumeError(_("%(volume)s was just attached elsewhere.") % {"volume": volume.name})
    volume.service, volume.mount_path = service, path
    record_event("volume.attached", service=service, actor=created_by, volume=volume.name, path=path)
    # Stored in English, shown in the reader's words (frontend's in_readers_words).
    return _new_release(service, f"Mount {volume.name} at {path}")


def detach(*, volume: Volume, service: Service, created_by=None):
    if volume.service_id != service.id:
        raise VolumeError(_("%(volume)s is not attached to %(service)s.") % {"volume": volume.name, "service": service.name})
    Volume.objects.filter(id=volume.id).update(service=None, mount_path="")
    volume.service, volume.mount_path = None, ""
    record_event("volume.detached", service=service, actor=created_by, volume=volume.name)
    return _new_release(service, f"Unmount {volume.name}")


def set_shared(*, volume: Volume, shared: bool, changed_by=None):
    """Marks the volume safe (or not) for several containers at once; a live
    service that mounts it gets a new release (rolling, or stop-then-start)."""
    shared = bool(shared)
    if volume.shared == shared:
        return None
    service = volume.service
    if not shared and service is not None:
        volume.shared = False
        try:
            check_single_instance(service, adding=volume)
        finally:
            volume.shared = True
    Volume.objects.filter(id=volume.id).update(shared=shared)
    volume.shared = shared
    record_event("volume.shared" if shared else "volume.unshared", team=volume.team, actor=changed_by,
                 volume=volume.name)
    if service is None:
        return None
    return _new_release(service, f"Share {volume.name}" if shared else f"Stop sharing {volume.name}")


def _new_release(service: Service, description: str):
    from hakobune.platform.services.releases import new_release

    live = service.live_release
    if live is None:
        return None
    return new_release(service, build=live.build, image=live.image, config=dict(live.config), description=description)


def delete(*, volume: Volume, confirm: str = "", deleted_by=None) -> None:
    """Has a worker delete the volume and its data: only when no service
    mounts it and `confirm` is its name, never silently."""
    if volume.service_id is not None:
        raise VolumeError(_("%(volume)s is mounted by %(service)s; detach it first.") % {
            "volume": volume.name, "service": volume.service.name})
    if (confirm or "").strip() != volume.name:
        raise VolumeError(_("Deleting %(volume)s deletes its data for good; confirm with its name "
                            "(type %(volume)s).") % {"volume": volume.name})
    Volume.objects.filter(id=volume.id).update(status=Volume.Status.DELETING)
    volume.status = Volume.Status.DELETING
    enqueue_on_commit("remove_volume", volume.id)
    record_event("volume.deleted", team=volume.team, actor=deleted_by, volume=volume.name)


# A volume still held by a retiring instance is tried again this often, this many times.
REMOVE_RETRY_SECONDS = 10
REMOVE_ATTEMPTS = 30


def remove(volume_id: int, attempt: int = 1) -> None:
    """The worker's part of deleting a volume: the engine's volume, then the
    record. While an instance that mounted it is still retiring, it is tried
    again a little later; in the end the volume says why it could not go."""
    from hakobune.platform.queue import enqueue

    volume = Volume.objects.select_related("team").filter(id=volume_id, status=Volume.Status.DELETING).first()
    if volume is None:
        return
    try:
        for action in _runtime().remove(volume.team.name, volume.engine_name):
            logger.info("volume %s: %s", volume, action)
    except RuntimeBackendError as exc:
        if exc.permanent or attempt >= REMOVE_ATTEMPTS:
            Volume.objects.filter(id=volume.id).update(status=Volume.Status.FAILED, status_detail=exc.message[:2000])
            return
        Volume.objects.filter(id=volume.id).update(status_detail=exc.message[:2000])
        enqueue("remove_volume", volume.id, attempt + 1, countdown=REMOVE_RETRY_SECONDS)
        return
    volume.delete()


def remove_all_of_team(team_name: str) -> list[str]:
    """For a team being deleted (confirmed by its name): every volume it has."""
    if not Volume.objects.filter(team__name=team_name).exists():
        return []
    try:
        return _runtime().remove_all_of_team(team_name)
    except RuntimeBackendError as exc:
        return [f"could not remove the volumes of team {team_name}: {exc.message}"]


def measure_all() -> dict[str, int]:
    """Measures what every volume holds on disk, one helper container per
    team, and keeps it on the volume (the disk quota reads it): {team: bytes}."""
    runtime, image, totals = _runtime(), None, {}
    ready = Volume.objects.filter(status=Volume.Status.READY).select_related("team").order_by("team_id")
    by_team: dict = {}
    for volume in ready:
        by_team.setdefault(volume.team, []).append(volume)
    for team, volumes in by_team.items():
        image = image or helper_image()
        try:
            sizes = runtime.measure(team.name, [v.engine_name for v in volumes], helper_image=image)
        except RuntimeBackendError as exc:
            logger.warning("could not measure the volumes of %s: %s", team.name, exc.message)
            continue
        now = timezone.now()
        for volume in volumes:
            if volume.engine_name in sizes:
                Volume.objects.filter(id=volume.id).update(size_bytes=sizes[volume.engine_name], measured_at=now)
        totals[team.name] = sum(sizes.values())
    return totals
