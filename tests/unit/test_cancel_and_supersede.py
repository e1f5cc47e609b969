"""Two deploys of one service: the later one wins. Cancel: who may, and what a
cancelled build's steps then do (nothing)."""

import pytest

from hakobune.platform.builds import pipeline
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance
from hakobune.platform.services.models import Release
from hakobune.platform.services.services import ServiceActionError, cancel_build, create_service, deploy_service
from hakobune.worker import tasks
from tests.conftest import upload_of

S = BuildStatus
PATH = [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING), (S.BUILDING, S.DEPLOYING)]


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


def deploy(service, owner):
    return deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)


def moved_to(build, status, image="hakobune/acme/hello:x"):
    for current, following in PATH:
        if current == status:
            break
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(image=image)
    return Build.objects.get(id=build.id)


def log_of(build):
    return "\n".join(Build.objects.get(id=build.id).log_lines.values_list("text", flat=True))


# -- supersede --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.QUEUED, S.FETCHING, S.DETECTING, S.BUILDING])
def test_a_newer_deploy_supersedes_one_still_queued_or_building(service, owner, queued_tasks, status,
                                                                 django_capture_on_commit_callbacks):
    first = moved_to(deploy(service, owner), status)
    queued_tasks.clear()
    with django_capture_on_commit_callbacks(execute=True):
        second = deploy(service, owner)
    first.refresh_from_db()
    assert first.status == S.SUPERSEDED and first.failed_step == status and first.finished_at
    assert "Superseded by deploy #2" in log_of(first)
    assert second.status == S.QUEUED
    # What it runs is stopped (a queued one runs nothing); admission is asked.
    assert (("stop_build", first.id) in queued_tasks) == (status != S.QUEUED)
    assert ("admit_builds",) in queued_tasks


def test_a_deploy_already_deploying_stays_and_the_later_one_replaces_it_once_live(service, owner, queued_tasks):
    first = moved_to(deploy(service, owner), S.DEPLOYING, "hakobune/acme/hello:one")
    second = deploy(service, owner)
    assert Build.objects.get(id=first.id).status == S.DEPLOYING
    tasks.deploy_release(first.id)
    moved_to(second, S.DEPLOYING, "hakobune/acme/hello:two")
    tasks.deploy_release(second.id)
    service.refresh_from_db()
    assert service.live_release.build_id == second.id
    assert Release.objects.get(build=first).status == Release.Status.SUPERSEDED


def test_an_older_deploy_that_waited_for_the_lock_does_not_replace_a_newer_live_one(service, owner, queued_tasks,
                                                                                   dummy_backend):
    first = moved_to(deploy(service, owner), S.DEPLOYING, "hakobune/acme/hello:one")
    second = moved_to(deploy(service, owner), S.DEPLOYING, "hakobune/acme/hello:two")
    tasks.deploy_release(second.id)  # the newer one got the lock first
    calls = len(dummy_backend.calls)
    tasks.deploy_release(first.id)
    first.refresh_from_db()
    service.refresh_from_db()
    assert first.status == S.SUPERSEDED and "went live first" in log_of(first)
    assert service.live_release.build_id == second.id
    assert len(dummy_backend.calls) == calls and not Release.objects.filter(build=first).exists()


def test_a_superseded_builds_later_steps_do_nothing(service, owner, queued_tasks):
    first = deploy(service, owner)
    tasks.fetch_source(first.id)
    assert Build.objects.get(id=first.id).status == S.DETECTING
    deploy(service, owner)
    queued_tasks.clear()
    tasks.detect_stack(first.id)
    tasks.build_image(first.id)
    tasks.deploy_release(first.id)
    first.refresh_from_db()
    assert first.status == S.SUPERSEDED and first.plan is None and queued_tasks == []


def test_a_build_stopped_during_its_step_ends_stopped_not_failed(service, owner, queued_tasks, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    build = deploy(service, owner)
    tasks.fetch_source(build.id)

    def detect_while_cancelled(src, **options):
        with django_capture_on_commit_callbacks(execute=True):
            cancel_build(build=Build.objects.get(id=build.id), cancelled_by=owner)
        raise RuntimeError("the step met its end half-way")

    monkeypatch.setattr(pipeline, "detect", detect_while_cancelled)
    tasks.detect_stack(build.id)
    build.refresh_from_db()
    assert build.status == S.CANCELLED and build.failure_reason == "" and build.failed_step == S.DETECTING
    assert "Cancelled by olivia" in log_of(build) and "Stopped here" in log_of(build)
    assert not pipeline.workspace_dir(build.id).exists()


def test_a_step_that_prints_stops_once_its_build_is_cancelled(service, owner, queued_tasks):
    build = deploy(service, owner)
    tasks.fetch_source(build.id)
    log = pipeline.step_log(build.id)
    log.check_every, log.stop_check = 0, pipeline.stop_check(build.id, every=0)
    log.write("still going")
    Build.objects.filter(id=build.id).update(status=S.CANCELLED)
    with pytest.raises(pipeline.BuildStopped):
        log.write("and on")


def test_the_stop_task_stops_the_builds_containers_and_removes_its_workspace(service, owner, queued_tasks,
                                                                            monkeypatch):
    from hakobune.platform.builds import images

    build = moved_to(deploy(service, owner), S.BUILDING)
    pipeline.workspace_dir(build.id).mkdir(parents=True)
    stopped = []

    class Builder:
        def stop(self, team, build_id):
            stopped.append((team, build_id))
            return 1

    monkeypatch.setattr(images, "builder_for", lambda service: Builder())
    tasks.stop_build(build.id)
    assert stopped == []  # not stopped: nothing to do
    cancel_build(build=build, cancelled_by=owner)
    tasks.stop_build(build.id)
    assert stopped == [("acme", build.id)] and not pipeline.workspace_dir(build.id).exists()
    assert "Stopped 1 running build step." in log_of(build)


# -- cancel: what and who ---------------------------------------------------------------


def test_a_deploy_that_is_deploying_or_finished_cannot_be_cancelled(service, owner, queued_tasks):
    build = moved_to(deploy(service, owner), S.DEPLOYING)
    with pytest.raises(ServiceActionError, match="already starting its release"):
        cancel_build(build=build, cancelled_by=owner)
    tasks.deploy_release(build.id)
    with pytest.raises(ServiceActionError, match="already ended"):
        cancel_build(build=Build.objects.get(id=build.id), cancelled_by=owner)


@pytest.mark.parametrize("role,status,cancelled", [
    ("owner", 200, True), ("developer", 200, True), ("viewer", 403, False), ("outsider", 404, False),
])
def test_who_may_cancel_through_the_api(request, client, service, owner, queued_tasks, role, status, cancelled):
    from tests.unit.test_api import bearer

    build = moved_to(deploy(service, owner), S.BUILDING)
    user = request.getfixturevalue(role)
    response = client.post(f"/api/v1/teams/acme/services/hello/builds/{build.number}/cancel/", **bearer(user))
    assert response.status_code == status, response.content
    build.refresh_from_db()
    assert (build.status == S.CANCELLED) == cancelled
    if cancelled:
        assert response.json()["status"] == "cancelled"
        assert f"Cancelled by {user.username}" in log_of(build)


@pytest.mark.parametrize("role,status,cancelled", [
    ("owner", 302, True), ("developer", 302, True), ("viewer", 403, False), ("outsider", 404, False),
])
def test_who_may_cancel_in_the_portal(request, client, service, owner, queued_tasks, role, status, cancelled):
    build = moved_to(deploy(service, owner), S.FETCHING)
    user = request.getfixturevalue(role)
    client.force_login(user)
    page = f"/t/acme/hello/builds/{build.number}/"
    if role in ("owner", "developer"):
        assert 'id="cancel-build"' in client.get(page).content.decode()
    elif role == "viewer":
        assert 'id="cancel-build"' not in client.get(page).content.decode()
    response = client.post(f"{page}cancel/")
    assert response.status_code == status
    build.refresh_from_db()
    assert (build.status == S.CANCELLED) == cancelled
    if cancelled:
        shown = client.get(page).content.decode()
        assert "Cancelled" in shown and 'id="cancel-build"' not in shown


def test_deploys_and_rollbacks_of_a_service_start_under_one_deploy_lock(service, owner, queued_tasks, monkeypatch,
                                                                       django_capture_on_commit_callbacks):
    from contextlib import contextmanager

    from hakobune.platform.services import releases
    from hakobune.platform.services.services import rollback

    held = []

    @contextmanager
    def recorded(service_id, **kwargs):
        held.append(service_id)
        yield

    monkeypatch.setattr(pipeline, "deploy_lock", recorded)
    monkeypatch.setattr(releases, "deploy_lock", recorded)
    first = moved_to(deploy(service, owner), S.DEPLOYING, "hakobune/acme/hello:one")
    tasks.deploy_release(first.id)
    second = moved_to(deploy(service, owner), S.DEPLOYING, "hakobune/acme/hello:two")
    tasks.deploy_release(second.id)
    with django_capture_on_commit_callbacks(execute=True):
        back = rollback(service=service, to_release=Release.objects.get(build=first))
    tasks.start_release(back.id)
    assert held == [service.id] * 3
    service.refresh_from_db()
    assert service.live_release_id == back.id
