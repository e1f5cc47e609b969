"""Disk: what the pruning keeps, the free space a build needs before it
starts, and the numbers the administrators' page shows.

The policy (docs/architecture.md, "Disk"): each service keeps the images of
its live release, of its last KEEP_RELEASES releases (what "roll back" may
use), and of its builds on their way to a release (built, waiting for review
or being deployed); older images go. Build leftovers (untagged images of
Hakobune's builds, BuildKit's cache) go once unused for
BUILD_CACHE_PRUNE_HOURS; source snapshots beyond what kept builds and
releases need go too (services/housekeeping.prune_source_snapshots). Each
prune's outcome is written to DATA_DIR/disk/last-prune.json for the page."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from . import images
from .models import IN_PROGRESS

MB = 1024 * 1024


def kept_images(releases: Iterable[tuple[int, str]], *, live_image: str = "", pending: Iterable[str] = (),
                keep: int) -> set[str]:
    """The images of one service that pruning keeps: those of its last `keep`
    releases by number (`releases`: (number, image)), of its live release,
    and `pending` (builds not yet released)."""
    newest = sorted(((number, image) for number, image in releases if image), reverse=True)[: max(keep, 0)]
    kept = {image for _, image in newest}
    kept.update(image for image in pending if image)
    if live_image:
        kept.add(live_image)
    return kept


def images_kept_for(service) -> set[str]:
    live = service.live_release.image if service.live_release_id else ""
    pending = service.builds.filter(status__in=IN_PROGRESS).exclude(image="").values_list("image", flat=True)
    return kept_images(service.releases.values_list("number", "image"), live_image=live, pending=pending,
                       keep=settings.KEEP_RELEASES)


# -- free space -------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    what: str  # said to people: "the build workspace"
    path: str
    free_bytes: int
    total_bytes: int

    @property
    def free_mb(self) -> int:
        return self.free_bytes // MB


class LowDisk(Exception):
    """No build starts on a disk this full (diagnosis disk.low)."""

    rule = "disk.low"
    platform_fault = True

    def __init__(self, space: Space, threshold_mb: int):
        self.space = space
        self.params = {"where": space.what, "path": space.path, "free": human_size(space.free_bytes),
                       "threshold": human_size(threshold_mb * MB)}
        super().__init__(f"only {self.params['free']} free on {space.what} ({space.path}), "
                         f"under the {self.params['threshold']} a build needs")


def _space(what: str, path: Path | str) -> Space | None:
    path = Path(path)
    # The folder may not exist yet; its nearest existing parent holds it.
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return None
    return Space(what, str(path), usage.free, usage.total)


def docker_data_root() -> str:
    """The local engine's data root when it is on this host's file system, else ""."""
    try:
        root = images.local_builder().data_root()
    except Exception:  # the engine is down or not local: its own failure says so later
        return ""
    return root if root and os.path.isdir(root) else ""


def watched_spaces(*, docker: bool = True) -> list[Space]:
    """The file systems a build writes to: its workspace, the uploads and
    snapshots (MEDIA_ROOT), the data folder, and the Docker Engine's data
    root (images and build cache). One entry per file system."""
    places = [("the build workspace", settings.WORKSPACE_DIR), ("the uploads and source snapshots", settings.MEDIA_ROOT),
              ("Hakobune's data folder", settings.DATA_DIR)]
    if docker:
        root = docker_data_root()
        if root:
            places.append(("the Docker Engine's data root (images and build cache)", root))
    found: dict[int, tuple[Space, list[str]]] = {}
    for what, path in places:
        space = _space(what, path)
        if space is None:
            continue
        probe = Path(space.path)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        found.setdefault(probe.stat().st_dev, (space, []))[1].append(what)
    # One entry per file system, named by everything it holds.
    return [Space("the disk that holds " + _joined(names), space.path, space.free_bytes, space.total_bytes)
            for space, names in found.values()]


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def check_free_disk(service=None) -> None:
    """Raises LowDisk when a file system a build writes to has less free
    space than BUILD_MIN_FREE_DISK_MB. The Docker data root counts only for
    services built on this host's engine."""
    threshold = settings.BUILD_MIN_FREE_DISK_MB
    if threshold <= 0:
        return
    local = service is None or "local_images" in images.builder_for(service).capabilities
    for space in watched_spaces(docker=local):
        if space.free_bytes < threshold * MB:
            raise LowDisk(space, threshold)


def human_size(count: int | float) -> str:
    count = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


# -- the last prune -------------------------------------------------------------------------


def _last_prune_file() -> Path:
    return Path(settings.DATA_DIR) / "disk" / "last-prune.json"


def record_prune(outcome: dict) -> None:
    path = _last_prune_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({**outcome, "at": timezone.now().isoformat()}))
    os.replace(partial, path)


def last_prune() -> dict | None:
    try:
        return json.loads(_last_prune_file().read_text())
    except (OSError, ValueError):
        return None


def usage_report() -> dict:
    """For the administrators' page: free space of each file system builds
    write to, what the engine holds, and the last prune."""
    report = {"spaces": [asdict(space) | {"free": human_size(space.free_bytes), "total": human_size(space.total_bytes),
                                          "low": space.free_bytes < settings.BUILD_MIN_FREE_DISK_MB * MB}
                         for space in watched_spaces()],
              "engine": None, "engine_error": "", "last_prune": last_prune(),
              "threshold": human_size(settings.BUILD_MIN_FREE_DISK_MB * MB) if settings.BUILD_MIN_FREE_DISK_MB else "",
              "keep_releases": settings.KEEP_RELEASES, "cache_hours": settings.BUILD_CACHE_PRUNE_HOURS}
    try:
        engine = images.local_builder().disk_usage()
    except Exception as exc:  # shown on the page, not raised
        report["engine_error"] = getattr(exc, "message", None) or str(exc)
    else:
        if engine is not None:
            report["engine"] = {**engine, "images_size": human_size(engine["images_bytes"]),
                                "build_cache_size": human_size(engine["build_cache_bytes"]),
                                "volumes_size": human_size(engine["volumes_bytes"])}
    prune = report["last_prune"]
    if prune:
        prune["freed"] = human_size(prune.get("bytes_freed", 0))
    return report
