"""Failures are classified once and acted on: a passing fault (the Docker
Engine, Redis or a Google API hiccuping) is retried by the step that met it,
with backoff, and the deploy goes on; a user's error fails at once; a
platform fault fails with a reason for the administrator. The steps run
through Celery's own retry, eagerly (`apply`)."""

import logging

import docker.errors
import pytest
import redis
import requests
from google.api_core import exceptions as google_errors

from hakobune.platform.accounts.models import Membership, Role
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance
from hakobune.platform.failures import MAX_ATTEMPTS, FailureKind, classify
from hakobune.platform.services.models import Release
from hakobune.platform.services.services import create_service, deploy_service, scale
from hakobune.runtime.base import RuntimeBackendError
from hakobune.worker import tasks
from hakobune.worker.builder import BuildError
from hakobune.worker.builders.base import BuiltImage
from hakobune.worker.builders.local_docker import LocalDockerBuilder
from hakobune.worker.buildpacks import NoStackDetected
from hakobune.worker.source import SourceError
from tests.conftest import upload_of

S = BuildStatus


def engine_error(status=500):
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Server Error: the engine is restarting", response=response)


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


def built(service, owner):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING)]:
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(image="hakobune/acme/hello:one")
    return build


def log_of(build):
    return "\n".join(build.log_lines.values_list("text", flat=True))


def test_a_docker_engine_error_on_the_first_deploy_is_retried_and_the_deploy_goes_live(service, owner, dummy_backend):
    build = built(service, owner)
    dummy_backend.fail_next_deploys(engine_error())

    tasks.deploy_release.apply(args=[build.id])

    build.refresh_from_db()
    assert build.status == S.LIVE
    assert [name for name, _ in dummy_backend.calls].count("deploy") == 2
    log = log_of(build)
    assert f"Attempt 1 of {MAX_ATTEMPTS} met a passing fault: 500 Server Error" in log
    assert "Trying again in 2 s." in log
    # The retry found the release the first attempt made: one release, live.
    assert list(service.releases.values_list("number", "status")) == [(1, Release.Status.LIVE)]


def test_an_engine_that_does_not_answer_while_building_is_waited_for(service, owner, dummy_backend, queued_tasks,
                                                                    monkeypatch):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    answers = [docker.errors.DockerException("Error while fetching server API version: Connection refused")]

    def builds_once_the_engine_answers(self, request, log):
        if answers:
            raise answers.pop()
        return BuiltImage("hakobune/acme/hello:abc", request.plan)

    monkeypatch.setattr(LocalDockerBuilder, "build", builds_once_the_engine_answers)
    tasks.build_image.apply(args=[build.id])

    build.refresh_from_db()
    assert (build.status, build.image) == (S.DEPLOYING, "hakobune/acme/hello:abc")
    assert "Attempt 1 of 4 met a passing fault: Error while fetching server API version" in log_of(build)
    assert ("deploy_release", build.id) in queued_tasks


def test_a_users_error_is_not_retried(settings, service, owner, dummy_backend):
    dummy_backend.options["fail_deploy"] = True
    build = built(service, owner)

    tasks.deploy_release.apply(args=[build.id])

    build.refresh_from_db()
    assert build.status == S.FAILED and build.failure_rule == "runtime.failed"
    assert "the app did not answer on $PORT" in build.failure_reason
    assert [name for name, _ in dummy_backend.calls].count("deploy") == 1
    assert "Attempt" not in log_of(build)
    release = service.releases.get()
    assert (release.status, release.failure_rule) == (Release.Status.FAILED, "runtime.failed")
    assert release.failure_reason == release.failure_text == "the app did not answer on $PORT\nTraceback …\nSyntaxError"


def test_a_fault_that_does_not_pass_fails_after_the_last_attempt_saying_so(service, owner, dummy_backend):
    build = built(service, owner)
    dummy_backend.fail_next_deploys(*[redis.ConnectionError("Connection reset by peer")] * MAX_ATTEMPTS)

    tasks.deploy_release.apply(args=[build.id])

    build.refresh_from_db()
    assert build.status == S.FAILED and build.failure_rule == "pipeline.gave_up"
    assert build.failure_params["attempts"] == MAX_ATTEMPTS
    assert f"did not answer after {MAX_ATTEMPTS} attempts" in build.failure_reason
    assert "This is not your app" in build.failure_reason
    log = log_of(build)
    assert all(f"Attempt {n} of {MAX_ATTEMPTS}" in log for n in range(1, MAX_ATTEMPTS))
    release = service.releases.get()
    assert (release.status, release.failure_rule) == (Release.Status.FAILED, "pipeline.gave_up")
    assert "This is not your app" in release.failure_text
    service.refresh_from_db()
    assert service.live_release is None


def test_a_platform_fault_fails_at_once_for_the_administrator(service, owner, dummy_backend, monkeypatch, caplog):
    build = built(service, owner)

    def broken(spec):
        raise KeyError("port")

    monkeypatch.setattr(dummy_backend, "deploy", broken)
    with caplog.at_level(logging.ERROR, logger="hakobune.platform.builds.pipeline"):
        tasks.deploy_release.apply(args=[build.id])

    build.refresh_from_db()
    assert build.status == S.FAILED and build.failure_rule == "pipeline.internal"
    assert build.failure_params["error"] == "KeyError: 'port'"
    assert "an internal error, not your app" in build.failure_text
    assert "platform fault in build" in caplog.text
    assert "Attempt" not in log_of(build)


def test_the_owner_reads_the_diagnosis_and_only_staff_read_the_fault_behind_it(
    service, owner, dummy_backend, monkeypatch, login, django_user_model
):
    build = built(service, owner)
    monkeypatch.setattr(dummy_backend, "deploy", lambda spec: {}["port"])
    tasks.deploy_release.apply(args=[build.id])
    status_page = f"/t/acme/hello/builds/{build.number}/status/"

    seen_by_owner = login(owner).get(status_page).content.decode()
    assert "an internal error, not your app" in seen_by_owner and "KeyError" not in seen_by_owner
    staff = django_user_model.objects.create_user(username="ada", password="x", is_staff=True, is_superuser=True)
    Membership.objects.create(team=service.team, user=staff, role=Role.VIEWER)
    assert "For administrators: KeyError: &#x27;port&#x27;" in login(staff).get(status_page).content.decode()


def test_a_release_without_a_build_is_retried_too(service, owner, dummy_backend, queued_tasks):
    built_one = built(service, owner)
    tasks.deploy_release(built_one.id)
    service.refresh_from_db()
    release = scale(service=service, instances=2)
    dummy_backend.fail_next_deploys(RuntimeBackendError("the engine is restarting", permanent=False))

    tasks.start_release.apply(args=[release.id])

    release.refresh_from_db()
    assert release.status == Release.Status.LIVE
    service.refresh_from_db()
    assert service.live_release_id == release.id


@pytest.mark.parametrize(("error", "kind"), [
    (engine_error(500), FailureKind.TRANSIENT),
    (engine_error(404), FailureKind.PLATFORM),
    (redis.ConnectionError("reset"), FailureKind.TRANSIENT),
    (requests.ConnectionError("refused"), FailureKind.TRANSIENT),
    (google_errors.ServiceUnavailable("503"), FailureKind.TRANSIENT),
    (google_errors.TooManyRequests("429"), FailureKind.TRANSIENT),
    (google_errors.PermissionDenied("403"), FailureKind.PLATFORM),
    (RuntimeBackendError("the app did not answer", permanent=True), FailureKind.USER),
    (RuntimeBackendError("Cloud Run answered 503", permanent=False), FailureKind.TRANSIENT),
    (BuildError("RUN pip install failed"), FailureKind.USER),
    (BuildError("the builder crashed", user_error=False), FailureKind.PLATFORM),
    (SourceError("the archive is empty"), FailureKind.USER),
    (NoStackDetected("no app here"), FailureKind.USER),
    (KeyError("port"), FailureKind.PLATFORM),
])
def test_each_failure_is_classified_once(error, kind):
    assert classify(error) == kind
