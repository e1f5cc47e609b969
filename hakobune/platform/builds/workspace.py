"""Where a build's steps keep its files on the worker's host."""

from pathlib import Path

from django.conf import settings


def workspace_dir(build_id: int) -> Path:
    return settings.DATA_DIR / "workspaces" / f"build-{build_id}"
