"""Releases after the first deploy: rollback without a rebuild, scaling as a
new release of the same image, stop and start, and who may do which."""

from pathlib import Path

import pytest
from django.urls import reverse

from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance
from hakobune.platform.locks import deploy_lock
from hakobune.platform.services.models import DesiredState, Release, Service
from hakobune.platform.services.housekeeping import prune_source_snapshots
from hakobune.platform.services.services import (
    ServiceActionError, create_service, delete_service, deploy_service, redeploy_build, rollback, scale,
)
from hakobune.runtime.base import ServiceRef
from hakobune.worker import tasks
from tests.conftest import upload_of

S = BuildStatus


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


def deployed(service, owner, image):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING)]:
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(image=image)
    tasks.deploy_release(build.id)
    service.refresh_from_db()
    return service.live_release


def test_a_rollback_is_a_new_release_of_the_old_image_with_no_build(service, owner, dummy_backend, queued_tasks,
                                                                     django_capture_on_commit_callbacks):
    v1 = deployed(service, owner, "hakobune/acme/hello:one")
    deployed(service, owner, "hakobune/acme/hello:two")
    builds_before = Build.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        v3 = rollback(service=service, to_release=v1)
    assert queued_tasks[-1] == ("start_release", v3.id)
    tasks.start_release(v3.id)
    tasks.start_release(v3.id)  # a second delivery does nothing

    service.refresh_from_db()
    assert service.live_release == v3 and v3.number == 3
    v3.refresh_from_db()
    assert v3.status == "live" and v3.image == "hakobune/acme/hello:one" and v3.description == "Rollback to v1"
    assert Build.objects.count() == builds_before
    assert [name for name, _ in dummy_backend.calls].count("deploy") == 3
    assert Release.objects.get(number=2, service=service).status == "superseded"


def test_a_rollback_that_fails_keeps_the_live_release(service, owner, dummy_backend, queued_tasks):
    v1 = deployed(service, owner, "hakobune/acme/hello:one")
    v2 = deployed(service, owner, "hakobune/acme/hello:two")
    dummy_backend.options["fail_deploy"] = True
    v3 = rollback(service=service, to_release=v1)
    tasks.start_release(v3.id)
    v3.refresh_from_db()
    service.refresh_from_db()
    assert v3.status == "failed" and "did not answer" in v3.failure_reason
    assert service.live_release == v2


def test_only_releases_that_ran_can_be_rolled_back_to(service, owner, dummy_backend, queued_tasks):
    v1 = deployed(service, owner, "hakobune/acme/hello:one")
    with pytest.raises(ServiceActionError, match="already live"):
        rollback(service=service, to_release=v1)


def test_scaling_a_live_service_starts_a_release_with_the_new_count(service, owner, dummy_backend, queued_tasks):
    deployed(service, owner, "hakobune/acme/hello:one")
    release = scale(service=service, instances=3)
    tasks.start_release(release.id)
    assert dummy_backend.calls[-1][1].instances == 3
    service.refresh_from_db()
    assert service.instances == 3 and service.live_release.description == "Scaled to 3 instances"
    with pytest.raises(ServiceActionError):
        scale(service=service, instances=0)


def test_who_may_roll_back_scale_stop_and_delete(login, owner, developer, viewer, outsider, service, dummy_backend,
                                                 queued_tasks):
    v1 = deployed(service, owner, "hakobune/acme/hello:one")
    deployed(service, owner, "hakobune/acme/hello:two")
    rollback_url = reverse("services:rollback", args=["acme", "hello", v1.number])
    actions = [(rollback_url, {}), (reverse("services:scale", args=["acme", "hello"]), {"instances": 2}),
               (reverse("services:stop", args=["acme", "hello"]), {}), (reverse("services:start", args=["acme", "hello"]), {})]
    for url, data in actions:
        assert login(outsider).post(url, data).status_code == 404
        assert login(viewer).post(url, data).status_code == 403
        assert login(developer).post(url, data).status_code == 302
    delete = reverse("services:delete", args=["acme", "hello"])
    assert login(developer).post(delete, {"confirm_name": "hello"}).status_code == 403
    login(owner).post(delete, {"confirm_name": "wrong"})
    assert Service.objects.get(id=service.id).desired_state == DesiredState.RUNNING
    assert login(owner).post(delete, {"confirm_name": "hello"}).status_code == 302
    assert Service.objects.get(id=service.id).desired_state == DesiredState.DELETED
    assert login(owner).get(reverse("services:detail", args=["acme", "hello"])).status_code == 404


def test_stop_and_start_reach_the_backend(login, developer, service, owner, dummy_backend, queued_tasks):
    deployed(service, owner, "hakobune/acme/hello:one")
    client = login(developer)
    client.post(reverse("services:stop", args=["acme", "hello"]))
    service.refresh_from_db()
    assert service.desired_state == DesiredState.STOPPED
    assert b"stopped" in client.get(reverse("services:dashboard")).content
    client.post(reverse("services:start", args=["acme", "hello"]))
    assert [name for name, _ in dummy_backend.calls][-2:] == ["stop", "start"]


def test_rebuilding_a_stack_redeploys_the_services_on_it(login, owner, service, dummy_backend, queued_tasks, db):
    from django.contrib.auth import get_user_model

    from hakobune.platform.services.services import redeploy_services_on_stack

    live = deployed(service, owner, "hakobune/acme/hello:one")
    Build.objects.filter(id=live.build_id).update(plan={"stack": "python"})
    assert redeploy_services_on_stack(language="node") == []
    [again] = redeploy_services_on_stack(language="python")
    assert again.trigger == "stack" and again.source_archive.name == live.build.source_archive.name

    staff = get_user_model().objects.create_user("root-admin", password="x", is_staff=True)
    assert login(owner).get(reverse("builds:stacks")).status_code == 403
    page = login(staff).get(reverse("builds:stacks")).content.decode()
    assert "Rebuild and redeploy" in page and "python" in page


def test_a_deleted_service_goes_with_its_releases_builds_and_logs(owner, service, dummy_backend, queued_tasks,
                                                                  django_capture_on_commit_callbacks):
    from hakobune.platform.builds.models import BuildLogLine
    from hakobune.platform.services.services import delete_service

    deployed(service, owner, "hakobune/acme/hello:one")
    deployed(service, owner, "hakobune/acme/hello:two")
    with django_capture_on_commit_callbacks(execute=True):
        delete_service(service=service, confirm=service.name)
    assert queued_tasks[-1] == ("destroy_service", service.id)
    tasks.destroy_service(service.id)
    assert not Service.objects.filter(id=service.id).exists()
    assert not Release.objects.exists() and not Build.objects.exists() and not BuildLogLine.objects.exists()
    assert ("destroy", ServiceRef("acme", "hello")) in dummy_backend.calls


def test_settings_in_the_portal_make_a_release_and_commands_apply_at_the_next_deploy(
        login, developer, viewer, service, owner, dummy_backend, queued_tasks):
    deployed(service, owner, "hakobune/acme/hello:one")
    url = reverse("services:settings", args=["acme", "hello"])
    data = {"cpu": "1.0", "memory_mb": 512, "port": 8080, "health_check_path": "/healthz",
            "start_command": "gunicorn -b 0.0.0.0:$PORT app:app", "build_command": ""}
    assert login(viewer).post(url, data).status_code == 403
    assert login(developer).post(url, data).status_code == 302
    service.refresh_from_db()
    assert (float(service.cpu), service.memory_mb, service.health_check_path) == (1.0, 512, "/healthz")
    assert service.start_command == "gunicorn -b 0.0.0.0:$PORT app:app"
    release = service.releases.order_by("-number").first()
    assert release.status == "pending" and release.config["memory_mb"] == 512
    assert release.config["health_check_path"] == "/healthz"

    bad = login(developer).post(url, {**data, "health_check_path": "healthz"}, follow=True)
    assert "A path on your app, starting with /" in bad.content.decode()


def test_the_start_command_set_in_the_portal_wins_over_detection(service, owner, dummy_backend, queued_tasks):
    Service.objects.filter(id=service.id).update(start_command="python3 -m http.server $PORT")
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    build.refresh_from_db()
    assert build.plan["start_command"] == "python3 -m http.server $PORT"


def test_a_restart_is_a_new_release_of_the_same_image(login, developer, service, owner, dummy_backend, queued_tasks):
    live = deployed(service, owner, "hakobune/acme/hello:one")
    assert login(developer).post(reverse("services:restart", args=["acme", "hello"])).status_code == 302
    restart = service.releases.order_by("-number").first()
    assert restart.description == "Restart" and restart.image == live.image
    # The same configuration, marked as a restart (so that runtimes that reuse revisions make a fresh one).
    assert {k: v for k, v in restart.config.items() if k != "restart"} == live.config and restart.config["restart"]


def test_the_router_sync_leaves_a_service_being_deployed_alone(service, owner, dummy_backend, queued_tasks):
    deployed(service, owner, "hakobune/acme/hello:one")
    lock = deploy_lock(service.id)
    assert lock.acquire(blocking=False)
    try:
        tasks.sync_router()
    finally:
        lock.release()
    [route] = dummy_backend.calls[-1][1]
    assert route.keep_current and route.hostname == "hello.acme.localhost"
    tasks.sync_router()
    [route] = dummy_backend.calls[-1][1]
    assert not route.keep_current


def test_old_source_snapshots_go_and_those_a_redeploy_or_rollback_needs_stay(
    service, owner, dummy_backend, queued_tasks, settings
):
    settings.KEEP_SOURCE_SNAPSHOTS = 2
    settings.KEEP_RELEASES = 1
    first = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    again = redeploy_build(build=first, created_by=owner)  # shares the first one's file
    later = [deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner) for _ in range(3)]
    files = {build.number: Path(build.source_archive.path) for build in [first, again, *later]}
    assert all(path.exists() for path in files.values())

    Build.objects.update(status=BuildStatus.FAILED)
    # The redeploy (#2) went live: its snapshot is needed by a stack rebuild.
    Build.objects.filter(id=again.id).update(status=BuildStatus.LIVE, image="hakobune/acme/hello:two")
    Service.objects.filter(id=service.id).update(
        live_release=Release.objects.create(service=service, build=again, number=1, image="x", config={},
                                            status=Release.Status.LIVE))
    assert prune_source_snapshots() == 1

    kept = dict(Build.objects.values_list("number", "source_archive"))
    assert kept[1] == "" and kept[2] and kept[4] and kept[5]  # #1's record goes, its file stays for #2
    assert kept[3] == ""
    assert files[1].exists() and not files[3].exists() and files[5].exists()


def test_deleting_a_service_deletes_its_source_snapshots(service, owner, dummy_backend, queued_tasks):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    snapshot = Path(build.source_archive.path)
    delete_service(service=service, confirm=service.name, created_by=owner)
    tasks.destroy_service(service.id)
    assert not snapshot.exists()
