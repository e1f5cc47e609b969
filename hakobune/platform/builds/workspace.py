"""Where a build's steps keep its files on the worker's host."""

from pathlib import Path

from django.conf import settings


def workspace_dir(build_id: int) -> Path:
    """On the worker host that fetched the build (Build.worker_host)."""
    return Path(settings.WORKSPACE_DIR) / f"build-{build_id}"
