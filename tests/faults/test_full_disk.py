"""Fault: the workspace's disk is full. Builds unpack into WORKSPACE_DIR,
here a 20 MB ext4 file system of the test's own (a loop mount). Filled up, a
deploy is refused before it starts, in words that say how much is free and
what to prune; a disk that fills up during a step fails the build naming the
disk; the live release keeps answering all along; once space is freed, the
next deploy goes live.

The pipeline runs in this process (its steps called as the worker would), so
that only this test's builds use the small workspace."""

import os
import shutil
import subprocess
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from hakobune.platform import queue
from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.models import Service
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.worker import tasks
from tests.conftest import APPS_DIR, archive_of
from tests.support.infrastructure import get_through_router, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MB ext4 file system, loop-mounted; unmounted and deleted after."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("loop mounts need root and mkfs.ext4 (e2fsprogs)")
    image = tmp_path / "disk.img"
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "20M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"loop mounts are not possible here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)])
        image.unlink(missing_ok=True)


@pytest.fixture
def pipeline_here(monkeypatch):
    """Runs each task the platform sends at once, in this process."""

    def run(name, *args, countdown=None, host=None):
        getattr(tasks, name)(*args)

    monkeypatch.setattr(queue, "enqueue", run)


def fill(disk, leave_mb: float):
    """Writes ballast until only `leave_mb` is free; returns the file."""
    free = shutil.disk_usage(disk).free
    ballast = disk / f"ballast-{uuid.uuid4().hex[:6]}"
    with open(ballast, "wb") as out:
        out.write(b"\0" * max(int(free - leave_mb * MB), 0))
    return ballast


def upload(greeting, extra=None):
    app = (APPS_DIR / "flask-hello" / "app.py").read_text().replace("Hello from Hakobune", greeting)
    return SimpleUploadedFile("app.tar.gz", archive_of("flask-hello", extra={"app.py": app, **(extra or {})}))


def test_a_full_workspace_disk_refuses_deploys_in_words_and_breaks_nothing(
    owner, team_name, router, docker_client, settings, small_disk, pipeline_here
):
    settings.WORKSPACE_DIR = small_disk / "workspaces"
    settings.BUILD_MIN_FREE_DISK_MB = 8
    team = create_team(name=team_name, owner=owner)
    service = create_service(team=team, name="steady", created_by=owner)

    first = wait_for_build(deploy_service(service=service, source_file=upload("Still standing"), created_by=owner))
    assert first.status == "live", first.failure_text
    assert get_through_router(service.hostname).text.startswith("Still standing")

    # Under the threshold: refused before anything is unpacked.
    ballast = fill(small_disk, leave_mb=3)
    refused = wait_for_build(deploy_service(service=service, source_file=upload("Never built"), created_by=owner))
    assert refused.status == "failed"
    assert refused.failure_rule == "disk.low"
    said = refused.failure_text
    assert "the build workspace has only" in said and "MiB free" in said and "8.0 MiB" in said
    assert str(settings.WORKSPACE_DIR) in said and "prune old images and build cache" in said
    assert "not your app" in said
    assert get_through_router(service.hostname).text.startswith("Still standing")

    # Over the threshold, but the disk fills up while the source is unpacked.
    settings.BUILD_MIN_FREE_DISK_MB = 1
    big = os.urandom(4 * MB).hex()  # 8 MB of text, more than is left
    filled = wait_for_build(deploy_service(service=service, source_file=upload("Too big", {"data.txt": big}),
                                           created_by=owner))
    assert filled.status == "failed"
    assert filled.failure_rule == "disk.full", filled.failure_text
    assert "The disk filled up during this build" in filled.failure_text
    assert not list(settings.WORKSPACE_DIR.glob(f"build-{filled.id}/src/*"))  # its workspace went
    assert get_through_router(service.hostname).text.startswith("Still standing")
    assert Service.objects.get(id=service.id).live_release.number == 1

    # Space freed: the next deploy goes live.
    ballast.unlink()
    settings.BUILD_MIN_FREE_DISK_MB = 8
    after = wait_for_build(deploy_service(service=service, source_file=upload("Back in business"), created_by=owner))
    assert after.status == "live", after.failure_text
    assert get_through_router(service.hostname).text.startswith("Back in business")
