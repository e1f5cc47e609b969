"""The pipeline's crash safety, piece by piece: a claimed step is a lease its
worker renews; the sweeper resumes a step whose lease ran out (at most
STEP_MAX_RESUMES times), fails one that ran for its whole time limit, and
queues again a step whose message was lost; a step past its time limit
fails in words; the deploy lock renews itself while held and frees itself
when its holder dies. The real thing (kill -9, Redis restarts) is
tests/faults/."""

import secrets
import time
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from hakobune.platform.builds import sweeper
from hakobune.platform.builds.lease import Heartbeat, Lease
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance, claim, renew, take_back
from hakobune.platform.locks import deploy_lock, redis_client
from hakobune.platform.services.models import Release
from hakobune.platform.services import releases
from hakobune.platform.services.services import create_service, deploy_service, restart_service, scale
from hakobune.worker import tasks
from hakobune.worker.builders.local_docker import LocalDockerBuilder
from tests.conftest import upload_of

S = BuildStatus
PATH = [S.QUEUED, S.FETCHING, S.DETECTING, S.BUILDING, S.DEPLOYING]


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


@pytest.fixture
def build(service, owner):
    return deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)


@pytest.fixture
def redis_kept(monkeypatch):
    """Redis did not restart since the last sweep (the test's own choice, so
    that no marker is written to a Redis a live platform may use)."""
    monkeypatch.setattr(sweeper, "broker_forgot", lambda: False)


def at(build, status):
    for current, following in zip(PATH, PATH[1:]):
        if current == status:
            break
        advance(build.id, current, following)
    return Build.objects.get(id=build.id)


def ago(seconds):
    return timezone.now() - timedelta(seconds=seconds)


def log_of(build):
    return "\n".join(Build.objects.get(id=build.id).log_lines.values_list("text", flat=True))


# -- the lease ---------------------------------------------------------------------------------


def test_a_claim_is_a_lease_its_worker_renews(build):
    at(build, S.BUILDING)
    before = Build.objects.get(id=build.id)
    assert before.claimed_at is None and before.heartbeat_at is not None  # queued for a worker
    assert claim(build.id, S.BUILDING)
    claimed = Build.objects.get(id=build.id)
    assert claimed.claimed_step == S.BUILDING and claimed.claimed_at is not None
    Build.objects.filter(id=build.id).update(heartbeat_at=ago(100))
    assert renew(build.id, S.BUILDING)
    assert Build.objects.get(id=build.id).heartbeat_at > ago(5)
    # Once the build moved on, the step is no longer the worker's to renew.
    advance(build.id, S.BUILDING, S.DEPLOYING)
    assert not renew(build.id, S.BUILDING)
    moved = Build.objects.get(id=build.id)
    assert moved.claimed_step == "" and moved.claimed_at is None and moved.step_resumes == 0


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_renews_the_lease_while_the_step_runs_and_notices_when_it_is_taken(build):
    at(build, S.BUILDING)
    claim(build.id, S.BUILDING)
    Build.objects.filter(id=build.id).update(heartbeat_at=ago(100))
    with Heartbeat(build.id, S.BUILDING, every=0.05) as beat:
        deadline = time.monotonic() + 5
        while Build.objects.get(id=build.id).heartbeat_at < ago(5) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Build.objects.get(id=build.id).heartbeat_at > ago(5)
        seen = Build.objects.get(id=build.id).heartbeat_at
        assert take_back(build.id, S.BUILDING, seen) or take_back(
            build.id, S.BUILDING, Build.objects.get(id=build.id).heartbeat_at
        )
        while not beat.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beat.lost


def test_only_one_sweeper_takes_a_step_back(build):
    at(build, S.DETECTING)
    claim(build.id, S.DETECTING)
    seen = Build.objects.get(id=build.id).heartbeat_at
    assert take_back(build.id, S.DETECTING, seen) is True
    assert take_back(build.id, S.DETECTING, seen) is False


# -- the sweeper ------------------------------------------------------------------------------


def test_a_step_whose_worker_died_is_resumed(build, queued_tasks, redis_kept):
    at(build, S.BUILDING)
    claim(build.id, S.BUILDING)
    Build.objects.filter(id=build.id).update(claimed_at=ago(60), heartbeat_at=ago(45))
    queued_tasks.clear()

    swept = tasks.sweeper.sweep()

    assert (swept.resumed, swept.failed) == (1, 0)
    assert queued_tasks == [("build_image", build.id)]
    resumed = Build.objects.get(id=build.id)
    assert resumed.status == S.BUILDING and resumed.claimed_step == "" and resumed.step_resumes == 1
    assert "The worker running the build step stopped (resume 1 of 3); the step starts again." in log_of(build)
    # The resumed step claims it as any first delivery would; a duplicate does nothing.
    assert claim(build.id, S.BUILDING) and not claim(build.id, S.BUILDING)
    assert Build.objects.get(id=build.id).step_resumes == 1


def test_a_step_whose_worker_is_alive_is_left_alone(build, queued_tasks, redis_kept):
    at(build, S.DEPLOYING)
    claim(build.id, S.DEPLOYING)
    Build.objects.filter(id=build.id).update(claimed_at=ago(600), heartbeat_at=ago(3))
    queued_tasks.clear()
    assert sweeper.sweep() == sweeper.Swept()
    assert queued_tasks == []
    assert Build.objects.get(id=build.id).claimed_step == S.DEPLOYING


def test_a_step_resumed_too_often_fails_with_a_reason(build, queued_tasks, redis_kept, settings):
    at(build, S.FETCHING)  # fetching is claimed with its move
    Build.objects.filter(id=build.id).update(
        claimed_step=S.FETCHING, claimed_at=ago(60), heartbeat_at=ago(50), step_resumes=settings.STEP_MAX_RESUMES
    )
    queued_tasks.clear()

    assert sweeper.sweep().failed == 1

    failed = Build.objects.get(id=build.id)
    assert failed.status == S.FAILED and failed.failed_step == S.FETCHING
    assert failed.failure_rule == "pipeline.worker_lost"
    assert failed.failure_reason.startswith("The worker running the fetch step stopped 4 times")
    assert queued_tasks == []
    assert failed.failure_reason in log_of(build)


def test_a_step_that_ran_until_it_was_killed_at_its_limit_fails_as_too_long(build, queued_tasks, redis_kept,
                                                                           settings):
    at(build, S.BUILDING)
    claim(build.id, S.BUILDING)
    limit = settings.TASK_TIME_LIMITS["build_image"]
    Build.objects.filter(id=build.id).update(claimed_at=ago(limit + 60), heartbeat_at=ago(40))

    sweeper.sweep()

    failed = Build.objects.get(id=build.id)
    assert failed.status == S.FAILED and failed.failure_rule == "build.timed_out"
    assert f"The build took longer than {limit} s" in failed.failure_reason


def test_a_deploy_that_ran_out_of_time_fails_and_so_does_its_release(service, build, queued_tasks, redis_kept,
                                                                     settings):
    at(build, S.DEPLOYING)
    Build.objects.filter(id=build.id).update(image="hakobune/acme/hello:one")
    claim(build.id, S.DEPLOYING)
    release = Release.objects.create(service=service, build=build, number=1, image="hakobune/acme/hello:one",
                                     config={}, status=Release.Status.DEPLOYING)
    limit = settings.TASK_TIME_LIMITS["deploy_release"]
    Build.objects.filter(id=build.id).update(claimed_at=ago(limit + 100), heartbeat_at=ago(60))

    sweeper.sweep()

    failed = Build.objects.get(id=build.id)
    assert failed.failure_rule == "pipeline.step_timeout"
    assert f"The deploy step took longer than {limit} s" in failed.failure_reason
    release.refresh_from_db()
    assert release.status == Release.Status.FAILED and release.failure_rule == "pipeline.step_timeout"


def test_a_step_whose_message_was_lost_is_queued_again_once_a_while(build, queued_tasks, redis_kept):
    at(build, S.DETECTING)
    queued_tasks.clear()
    assert sweeper.sweep().requeued == 0  # just queued: its worker may be busy
    Build.objects.filter(id=build.id).update(heartbeat_at=ago(61))
    assert sweeper.sweep().requeued == 1
    assert sweeper.sweep().requeued == 0  # not again at once
    assert queued_tasks == [("detect_stack", build.id)]
    assert Build.objects.get(id=build.id).step_resumes == 0


def test_after_redis_lost_its_memory_every_waiting_step_is_queued_again_at_once(service, owner, queued_tasks,
                                                                                 monkeypatch):
    waiting = at(deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner),
                 S.DEPLOYING)
    running = at(deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner),
                 S.BUILDING)
    claim(running.id, S.BUILDING)
    monkeypatch.setattr(sweeper, "broker_forgot", lambda: True)
    queued_tasks.clear()

    sweeper.sweep()

    # The claimed step's worker is alive (its lease is fresh): it goes on.
    assert queued_tasks == [("deploy_release", waiting.id)]


def test_after_redis_lost_its_memory_a_release_waiting_to_start_is_queued_again(service, build, queued_tasks,
                                                                                 monkeypatch):
    waiting = Release.objects.create(service=service, build=build, number=1, image="hakobune/acme/hello:one",
                                     config={}, status=Release.Status.PENDING)
    monkeypatch.setattr(sweeper, "broker_forgot", lambda: False)
    queued_tasks.clear()
    sweeper.sweep()
    assert ("start_release", waiting.id) not in queued_tasks
    monkeypatch.setattr(sweeper, "broker_forgot", lambda: True)
    sweeper.sweep()
    assert ("start_release", waiting.id) in queued_tasks


def test_a_queued_build_is_left_to_admission(build, queued_tasks, redis_kept):
    # Builds waiting in `queued` wait for a build slot (builds/admission.py,
    # which the scheduler asks every few seconds), not for a worker.
    queued_tasks.clear()
    Build.objects.filter(id=build.id).update(created_at=ago(3600))
    assert sweeper.sweep().requeued == 0
    assert queued_tasks == []


def test_finished_builds_are_never_swept(build, queued_tasks, redis_kept):
    for current, following in zip(PATH + [S.LIVE], PATH[1:] + [S.LIVE]):
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(heartbeat_at=ago(10_000), claimed_step=S.LIVE)
    queued_tasks.clear()
    assert sweeper.sweep() == sweeper.Swept() and queued_tasks == []


def test_redis_losing_its_memory_is_noticed_once(settings):
    settings.CELERY_TASK_DEFAULT_QUEUE = f"test-marker-{secrets.token_hex(4)}"
    try:
        assert sweeper.broker_forgot() is True
        assert sweeper.broker_forgot() is False
        redis_client().delete(sweeper.marker_key())  # what a restart of Redis does
        assert sweeper.broker_forgot() is True
    finally:
        redis_client().delete(sweeper.marker_key())


# -- time limits --------------------------------------------------------------------------------


def test_every_step_has_a_time_limit_and_the_build_steps_follows_build_timeout(settings):
    from hakobune.platform.celery import app

    for name in sweeper.STEP_TASKS.values():
        task = app.tasks[f"hakobune.worker.tasks.{name}"]
        assert 0 < task.soft_time_limit < task.time_limit
    assert app.tasks["hakobune.worker.tasks.build_image"].soft_time_limit == settings.BUILD_TIMEOUT + 60
    # No task runs long enough for Redis to hand its message to a second worker.
    longest = max(app.tasks[f"hakobune.worker.tasks.{name}"].time_limit for name in settings.TASK_TIME_LIMITS)
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > longest


def test_a_step_past_its_time_limit_fails_in_words(service, build, queued_tasks, monkeypatch, settings):
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)

    def never_ends(self, request, log):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(LocalDockerBuilder, "build", never_ends)
    tasks.build_image(build.id)

    failed = Build.objects.get(id=build.id)
    assert failed.status == S.FAILED and failed.failure_rule == "build.timed_out"
    assert f"took longer than {settings.BUILD_TIMEOUT + 60} s" in failed.failure_reason
    assert failed.failure_reason in log_of(build)


# -- releases made without a build (rollback, scale, settings, env, restart) -----------------------


@pytest.fixture
def live_service(service, build, queued_tasks, dummy_backend):
    """The owner's service with a first release live, from a deploy."""
    at(build, S.DEPLOYING)
    Build.objects.filter(id=build.id).update(image="hakobune/acme/hello:one")
    tasks.deploy_release(build.id)
    assert Build.objects.get(id=build.id).status == S.LIVE
    queued_tasks.clear()
    service.refresh_from_db()
    return service


def test_a_restart_whose_worker_died_is_started_again_by_the_sweeper(live_service, owner, queued_tasks,
                                                                    redis_kept, dummy_backend,
                                                                    django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        restart = restart_service(service=live_service, created_by=owner)
    assert queued_tasks == [("start_release", restart.id)]
    assert releases.claim_pending(restart.id)  # a worker took it ...
    claimed = Release.objects.get(id=restart.id)
    assert claimed.status == Release.Status.DEPLOYING and claimed.claimed_at is not None
    # ... and was killed: its lease is no longer renewed.
    Release.objects.filter(id=restart.id).update(claimed_at=ago(60), heartbeat_at=ago(45))
    queued_tasks.clear()

    swept = sweeper.sweep()

    assert (swept.resumed, swept.failed) == (1, 0)
    assert queued_tasks == [("start_release", restart.id)]
    taken_back = Release.objects.get(id=restart.id)
    assert taken_back.status == Release.Status.PENDING and taken_back.start_resumes == 1
    # Another worker starts it; the restart goes live and replaces the first release.
    with django_capture_on_commit_callbacks(execute=True):
        tasks.start_release(restart.id)
    assert Release.objects.get(id=restart.id).status == Release.Status.LIVE
    assert list(live_service.releases.values_list("number", "status")) == [
        (2, Release.Status.LIVE), (1, Release.Status.SUPERSEDED)]


def test_a_release_being_started_by_a_live_worker_is_left_alone(live_service, owner, queued_tasks, redis_kept):
    scaled = scale(service=live_service, instances=2, created_by=owner)
    assert releases.claim_pending(scaled.id)
    Release.objects.filter(id=scaled.id).update(claimed_at=ago(300), heartbeat_at=ago(3))
    queued_tasks.clear()
    assert sweeper.sweep() == sweeper.Swept()
    assert Release.objects.get(id=scaled.id).status == Release.Status.DEPLOYING


@pytest.mark.django_db(transaction=True)
def test_the_start_renews_its_lease_while_it_runs(live_service, owner, queued_tasks, redis_kept):
    restart = restart_service(service=live_service, created_by=owner)
    assert releases.claim_pending(restart.id)
    Release.objects.filter(id=restart.id).update(heartbeat_at=ago(100))
    with Lease("test", lambda: releases.renew_start(restart.id), every=0.05) as lease:
        deadline = time.monotonic() + 5
        while Release.objects.get(id=restart.id).heartbeat_at < ago(5) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Release.objects.get(id=restart.id).heartbeat_at > ago(5)
        Release.objects.filter(id=restart.id).update(status=Release.Status.LIVE)  # it went live
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost


def test_a_release_whose_workers_kept_dying_fails_with_a_reason_and_the_live_one_stays(
        live_service, owner, queued_tasks, redis_kept, settings):
    rollback_to = live_service.releases.get(number=1)
    restart = restart_service(service=live_service, created_by=owner)
    assert releases.claim_pending(restart.id)
    Release.objects.filter(id=restart.id).update(
        claimed_at=ago(60), heartbeat_at=ago(45), start_resumes=settings.STEP_MAX_RESUMES)
    queued_tasks.clear()

    assert sweeper.sweep().failed == 1

    failed = Release.objects.get(id=restart.id)
    assert failed.status == Release.Status.FAILED and failed.failure_rule == "pipeline.worker_lost"
    assert failed.failure_reason.startswith("The worker running the start step stopped 4 times")
    assert queued_tasks == []
    live_service.refresh_from_db()
    assert live_service.live_release_id == rollback_to.id


def test_a_start_that_ran_for_its_whole_time_limit_fails_as_too_long(live_service, owner, queued_tasks,
                                                                     redis_kept, settings):
    restart = restart_service(service=live_service, created_by=owner)
    assert releases.claim_pending(restart.id)
    limit = settings.TASK_TIME_LIMITS["start_release"]
    Release.objects.filter(id=restart.id).update(claimed_at=ago(limit + 60), heartbeat_at=ago(40))
    sweeper.sweep()
    failed = Release.objects.get(id=restart.id)
    assert failed.status == Release.Status.FAILED and failed.failure_rule == "pipeline.step_timeout"
    assert f"The start step took longer than {limit} s" in failed.failure_reason


def test_a_release_whose_start_message_was_lost_is_queued_again_once_a_while(live_service, owner, queued_tasks,
                                                                             redis_kept):
    scaled = scale(service=live_service, instances=2, created_by=owner)
    queued_tasks.clear()
    assert sweeper.sweep().requeued == 0  # just queued: its worker may be busy
    Release.objects.filter(id=scaled.id).update(heartbeat_at=ago(61))
    assert sweeper.sweep().requeued == 1
    assert sweeper.sweep().requeued == 0  # not again at once
    assert queued_tasks == [("start_release", scaled.id)]


def test_a_builds_own_release_is_left_to_its_builds_deploy_step(service, build, queued_tasks, redis_kept):
    at(build, S.DEPLOYING)
    claim(build.id, S.DEPLOYING)
    release = Release.objects.create(service=service, build=build, number=1, image="hakobune/acme/hello:one",
                                     config={}, status=Release.Status.DEPLOYING, heartbeat_at=ago(600))
    queued_tasks.clear()
    sweeper.sweep()
    assert Release.objects.get(id=release.id).status == Release.Status.DEPLOYING
    assert queued_tasks == []


# -- a resumed deploy ---------------------------------------------------------------------------


def test_a_deploy_resumed_after_its_release_went_live_only_says_so(service, build, queued_tasks, dummy_backend):
    at(build, S.DEPLOYING)
    Build.objects.filter(id=build.id).update(image="hakobune/acme/hello:one")
    tasks.deploy_release(build.id)
    assert Build.objects.get(id=build.id).status == S.LIVE
    deploys = [name for name, _ in dummy_backend.calls].count("deploy")
    # As if the worker died between the release going live and the build saying so.
    Build.objects.filter(id=build.id).update(status=S.DEPLOYING, claimed_step="", finished_at=None)

    tasks.deploy_release(build.id)

    assert Build.objects.get(id=build.id).status == S.LIVE
    assert [name for name, _ in dummy_backend.calls].count("deploy") == deploys
    assert list(service.releases.values_list("number", "status")) == [(1, Release.Status.LIVE)]


# -- the deploy lock ------------------------------------------------------------------------------


@pytest.fixture
def lock_id():
    service_id = 10_000_000 + secrets.randbelow(1_000_000)
    yield service_id
    redis_client().delete(deploy_lock(service_id).name)


def test_the_deploy_lock_renews_itself_while_held(lock_id):
    lock = deploy_lock(lock_id, ttl=1)
    assert lock.acquire(blocking=False)
    try:
        time.sleep(2.5)
        assert lock.owned()
        assert not deploy_lock(lock_id).acquire(blocking=False)
    finally:
        lock.release()
    assert deploy_lock(lock_id).acquire(blocking=False)


def test_a_lock_whose_holder_died_is_free_within_its_time_to_live(lock_id):
    from hakobune.platform import locks

    lock = deploy_lock(lock_id, ttl=1)
    assert lock.acquire(blocking=False)
    locks._renewer.drop(lock)  # what a kill -9 of its holder does to the renewing
    time.sleep(1.3)
    assert deploy_lock(lock_id).acquire(blocking=False)


def test_a_held_lock_that_redis_lost_is_put_back_and_a_lost_one_does_not_fail_the_release(lock_id):
    lock = deploy_lock(lock_id, ttl=1)
    assert lock.acquire(blocking=False)
    redis_client().delete(lock.name)  # Redis restarted, empty
    lock.renew()
    assert lock.owned()
    # Lost to another holder meanwhile: said, and the release does not raise.
    redis_client().set(lock.name, b"someone-else")
    lock.renew()
    assert lock.lost and not lock.owned()
    lock.release()
    assert redis_client().get(lock.name) == b"someone-else"
