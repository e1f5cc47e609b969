"""The pipeline's tasks, step by step, with the dummy runtime backend: what each
step records, what it queues next, and what a duplicate delivery does."""

import io
import tarfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance
from hakobune.platform.services.models import Release
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.worker import tasks
from tests.conftest import archive_of, upload_of

S = BuildStatus


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


def deploy(service, owner, app="flask-hello", fmt="tar.gz"):
    return deploy_service(service=service, source_file=upload_of(app, fmt), created_by=owner)


def test_deploying_queues_the_pipeline_only_after_commit(service, owner, queued_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        build = deploy(service, owner)
        assert queued_tasks == []
    assert len(callbacks) == 1
    callbacks[0]()
    # Admission lets the build into the pipeline (builds/admission.py).
    assert queued_tasks == [("admit_builds",)]
    assert build.status == S.QUEUED and build.number == 1


def test_fetch_unpacks_records_the_digest_and_queues_detection(service, owner, queued_tasks):
    build = deploy(service, owner)
    tasks.fetch_source(build.id)
    build.refresh_from_db()
    assert build.status == S.DETECTING
    assert len(build.source_digest) == 64
    assert queued_tasks == [("detect_stack", build.id)]
    assert any("files" in line for line in build.log_lines.values_list("text", flat=True))


def test_a_duplicate_delivery_does_nothing_twice(service, owner, queued_tasks):
    build = deploy(service, owner)
    tasks.fetch_source(build.id)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    tasks.detect_stack(build.id)
    assert queued_tasks == [("detect_stack", build.id), ("build_image", build.id)]


def test_the_same_source_in_another_format_has_the_same_digest(service, owner, queued_tasks):
    first = deploy(service, owner, fmt="tar.gz")
    tasks.fetch_source(first.id)
    second = deploy(service, owner, fmt="zip")  # supersedes the first, whose fetch is done
    tasks.fetch_source(second.id)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (second.status, second.failure_reason) == ("detecting", "")
    assert first.source_digest == second.source_digest


def test_detection_records_the_plan_and_the_reason(service, owner, queued_tasks):
    build = deploy(service, owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    build.refresh_from_db()
    assert build.status == S.BUILDING
    assert build.plan["stack"] == "python"
    assert build.plan["port"] == service.port
    assert "app.py creating a Flask app named `app`" in build.detection_reason


def notes_only() -> SimpleUploadedFile:
    """An upload with nothing but notes in it: no app to detect."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"just notes\n"
        info = tarfile.TarInfo("notes.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return SimpleUploadedFile("notes.tar.gz", buffer.getvalue())


def test_an_archive_that_is_not_an_app_fails_with_what_was_looked_for(service, owner, queued_tasks, tmp_path):
    build = deploy_service(service=service, source_file=notes_only(), created_by=owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    build.refresh_from_db()
    assert build.status == S.FAILED
    assert build.failed_step == S.DETECTING
    assert "requirements.txt" in build.failure_reason
    assert queued_tasks == [("detect_stack", build.id), ("admit_builds",)]


def _built(service, owner, image="hakobune/acme/hello:abc"):
    build = deploy(service, owner)
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING)]:
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(image=image)
    return build


def test_a_deploy_makes_a_live_release_and_supersedes_the_previous_one(service, owner, dummy_backend):
    first = _built(service, owner, "hakobune/acme/hello:one")
    tasks.deploy_release(first.id)
    second = _built(service, owner, "hakobune/acme/hello:two")
    tasks.deploy_release(second.id)

    service.refresh_from_db()
    assert service.live_release.build_id == second.id
    assert service.live_release.number == 2
    assert Release.objects.get(build=first).status == Release.Status.SUPERSEDED
    spec = dummy_backend.calls[-1][1]
    assert spec.image == "hakobune/acme/hello:two"
    assert spec.hostname == "hello.acme.localhost"
    assert spec.memory_mb == service.memory_mb and spec.port == service.port


def test_a_duplicate_deploy_delivery_makes_one_release(service, owner, dummy_backend):
    build = _built(service, owner)
    tasks.deploy_release(build.id)
    tasks.deploy_release(build.id)
    assert Release.objects.filter(service=service).count() == 1
    assert [name for name, _ in dummy_backend.calls] == ["deploy"]


def test_a_failed_deploy_keeps_the_previous_release_live(service, owner, dummy_backend):
    good = _built(service, owner, "hakobune/acme/hello:good")
    tasks.deploy_release(good.id)
    dummy_backend.options["fail_deploy"] = True
    bad = _built(service, owner, "hakobune/acme/hello:bad")
    tasks.deploy_release(bad.id)

    bad.refresh_from_db()
    service.refresh_from_db()
    assert bad.status == S.FAILED
    assert "did not answer" in bad.failure_reason
    assert "SyntaxError" in "\n".join(bad.log_lines.values_list("text", flat=True))
    assert service.live_release.build_id == good.id
    assert Release.objects.get(build=bad).status == Release.Status.FAILED


def _through_detection(service, owner, extra):
    build = deploy_service(
        service=service,
        source_file=SimpleUploadedFile("app.tar.gz", archive_of("flask-hello", extra=extra)),
        created_by=owner,
    )
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    advance(build.id, S.BUILDING, S.DEPLOYING)
    Build.objects.filter(id=build.id).update(image="hakobune/acme/hello:toml")
    tasks.deploy_release(build.id)
    build.refresh_from_db()
    return build


def test_the_apps_hakobune_toml_sets_port_and_health_check_unless_the_portal_did(service, owner, dummy_backend,
                                                                                   queued_tasks):
    toml = {"hakobune.toml": 'port = 5000\nhealth_check_path = "/healthz"\n'}
    build = _through_detection(service, owner, toml)
    spec = dummy_backend.calls[-1][1]
    assert (spec.port, spec.health_check_path) == (5000, "/healthz")
    assert "hakobune.toml sets the port: 5000" in "\n".join(build.log_lines.values_list("text", flat=True))

    service.port = 9000
    service.save()
    _through_detection(service, owner, toml)
    assert dummy_backend.calls[-1][1].port == 9000
