"""Disk: which images pruning keeps (what rollback needs), the refusal to
start a build on a disk too full, in words, and the administrators' page."""

import errno
from collections import namedtuple

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from hakobune.platform.builds import disk, images
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance
from hakobune.platform.diagnoses import diagnose
from hakobune.platform.services.housekeeping import prune, prune_images
from hakobune.platform.services.models import Release
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.worker import tasks
from tests.conftest import upload_of

S = BuildStatus
Usage = namedtuple("Usage", "total used free")


def test_the_last_releases_and_the_live_one_are_kept():
    releases = [(n, f"img:{n}") for n in range(1, 8)]
    assert disk.kept_images(releases, keep=3) == {"img:5", "img:6", "img:7"}
    # Rolled back to v2: its image stays though it is older than the last three.
    assert disk.kept_images(releases, live_image="img:2", keep=3) == {"img:2", "img:5", "img:6", "img:7"}


def test_images_of_builds_on_their_way_to_a_release_are_kept():
    kept = disk.kept_images([(1, "img:1"), (2, "img:2")], pending=["img:waiting-review"], keep=1)
    assert kept == {"img:2", "img:waiting-review"}


def test_a_rollback_release_shares_its_image_and_keeps_it():
    # v3 is a rollback to v1: the same image, so v1's image is kept by v3.
    releases = [(1, "img:a"), (2, "img:b"), (3, "img:a")]
    assert disk.kept_images(releases, keep=1) == {"img:a"}


def test_keep_zero_still_keeps_the_live_release():
    assert disk.kept_images([(1, "img:1"), (2, "img:2")], live_image="img:2", keep=0) == {"img:2"}


class RecordingBuilder:
    """Stands in for the local builder: records what pruning asks."""

    capabilities = frozenset({"local_images"})

    def __init__(self):
        self.removed_with_keep = []
        self.leftovers = []

    def remove_images(self, team, service, *, keep=frozenset()):
        self.removed_with_keep.append((service, set(keep)))
        return ["hakobune/x/old:1"]

    def prune_leftovers(self, hours):
        self.leftovers.append(hours)
        return 1234

    def data_root(self):
        return ""

    def disk_usage(self):
        return {"data_root": "/var/lib/docker", "images": 7, "images_bytes": 3 * 1024 ** 3, "dangling_images": 2,
                "build_cache_bytes": 512 * 1024 ** 2, "volumes": 1, "volumes_bytes": 0}


@pytest.fixture
def builder(monkeypatch):
    fake = RecordingBuilder()
    monkeypatch.setattr(images, "builder_for", lambda service: fake)
    monkeypatch.setattr(images, "local_builder", lambda: fake)
    monkeypatch.setattr("hakobune.platform.services.housekeeping.local_builder", lambda: fake)
    monkeypatch.setattr("hakobune.platform.builds.images.builder_for", lambda service: fake)
    return fake


def _released(service, owner, image):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING)]:
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(image=image)
    tasks.deploy_release(build.id)
    return build


def test_pruning_keeps_what_a_rollback_needs(team, owner, dummy_backend, queued_tasks, settings, builder):
    settings.KEEP_RELEASES = 2
    service = create_service(team=team, name="hello", created_by=owner)
    for n in range(1, 5):
        _released(service, owner, f"hakobune/acme/hello:{n}")
    # Rolled back to v1, then a build waiting for review with its own image.
    Release.objects.filter(service=service, number=1).update(status=Release.Status.LIVE)
    service.live_release = service.releases.get(number=1)
    service.save(update_fields=["live_release"])
    waiting = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    Build.objects.filter(id=waiting.id).update(status=S.REVIEWING, image="hakobune/acme/hello:waiting")

    assert prune_images() == 1
    [(name, keep)] = builder.removed_with_keep
    assert name == "hello"
    assert keep == {"hakobune/acme/hello:1", "hakobune/acme/hello:3", "hakobune/acme/hello:4",
                    "hakobune/acme/hello:waiting"}


def test_a_prune_records_what_it_freed(team, owner, dummy_backend, queued_tasks, settings, builder):
    create_service(team=team, name="hello", created_by=owner)
    settings.BUILD_CACHE_PRUNE_HOURS = 48
    outcome = prune()
    assert builder.leftovers == [48]
    assert outcome["leftover_bytes"] == 1234
    assert disk.last_prune()["images_removed"] == outcome["images_removed"]
    assert disk.last_prune()["at"]


def _full(monkeypatch, free_mb):
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: Usage(100 * 1024 ** 3, 0, free_mb * 1024 ** 2))


def test_a_build_is_refused_in_words_when_the_disk_is_nearly_full(
    team, owner, dummy_backend, queued_tasks, settings, builder, monkeypatch
):
    settings.BUILD_MIN_FREE_DISK_MB = 1024
    _full(monkeypatch, 300)
    service = create_service(team=team, name="hello", created_by=owner)
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)

    tasks.fetch_source(build.id)

    build.refresh_from_db()
    assert build.status == S.FAILED
    assert build.failure_rule == "disk.low"
    text = build.failure_text
    assert "300.0 MiB free" in text and "1.0 GiB" in text
    assert "the build workspace" in text
    assert "prune old images and build cache" in text and "not your app" in text
    assert not (settings.WORKSPACE_DIR / f"build-{build.id}").exists()


def test_a_build_starts_when_there_is_room(team, owner, dummy_backend, queued_tasks, settings, builder, monkeypatch):
    settings.BUILD_MIN_FREE_DISK_MB = 1024
    _full(monkeypatch, 5000)
    service = create_service(team=team, name="hello", created_by=owner)
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    tasks.fetch_source(build.id)
    build.refresh_from_db()
    assert build.status == S.DETECTING


def test_a_disk_that_fills_up_during_a_step_is_named():
    diagnosis = diagnose(OSError(errno.ENOSPC, "No space left on device", "/data/workspaces/build-3/src/a"))
    assert diagnosis.rule == "disk.full"
    assert "/data/workspaces/build-3/src/a" in diagnosis.in_english()
    assert diagnosis.kind == "platform"


@pytest.fixture
def admin(db):
    return get_user_model().objects.create_user(username="ada", password="correct horse battery", is_staff=True)


def test_the_disk_page_shows_free_space_the_engine_and_the_last_prune(
    admin, owner, login, settings, builder, monkeypatch, queued_tasks, django_capture_on_commit_callbacks
):
    settings.BUILD_MIN_FREE_DISK_MB = 1024
    _full(monkeypatch, 300)
    disk.record_prune({"images_removed": 4, "snapshots_deleted": 2, "leftover_bytes": 0,
                       "bytes_freed": 5 * 1024 ** 3, "errors": []})
    page = login(admin).get(reverse("governance:disk")).content.decode()
    assert "300.0 MiB" in page and "builds are refused" in page
    assert "3.0 GiB" in page and "512.0 MiB" in page  # images, build cache
    assert "freed 5.0 GiB" in page and "4 image tags" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = login(admin).post(reverse("governance:prune"))
    assert response.status_code == 302 and ("prune_images",) in queued_tasks
    assert login(owner).get(reverse("governance:disk")).status_code == 403


def test_the_disk_page_shows_the_metrics_collections_skipped_because_they_overran(
    admin, owner, login, settings, builder, monkeypatch
):
    import secrets

    from hakobune.platform.locks import redis_client
    from hakobune.platform.observability import collectors

    _full(monkeypatch, 300)
    settings.CELERY_TASK_DEFAULT_QUEUE = f"hakobune-unit-{secrets.token_hex(4)}"  # Redis keys of its own
    try:
        page = login(admin).get(reverse("governance:disk")).content.decode()
        assert "none yet" in page and "0 since Redis last started" in page

        monkeypatch.setattr(collectors, "collect_all", lambda: 42)
        assert collectors.collect_on_schedule() == 42
        held = redis_client().lock(collectors._key("collecting"), timeout=settings.METRICS_SECONDS)
        assert held.acquire(blocking=False)  # a collection still running ...
        try:
            assert collectors.collect_on_schedule() is None  # ... so the next two are skipped
            assert collectors.collect_on_schedule() is None
        finally:
            held.release()

        page = login(admin).get(reverse("governance:disk")).content.decode()
        section = page.split('id="metrics-collection"')[1]
        assert "42 readings in" in section
        assert '<span class="badge bad">2</span> since Redis last started' in section
        assert f"A collection took longer than {settings.METRICS_SECONDS} s" in section
        assert login(owner).get(reverse("governance:disk")).status_code == 403
    finally:
        for name in ("collecting", "skipped", "last"):
            redis_client().delete(collectors._key(name))
