"""The detect step of the pipeline with the new settings: an owner's service
variables of Google Cloud's buildpack names are build settings, and an app
asking for a language version no stack has fails at detection in words."""

import pytest
from django.utils.translation import override

from hakobune.platform.builds import images
from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.services.services import create_service, deploy_service, set_env
from hakobune.worker import tasks
from hakobune.worker.buildpacks.versions import StackOffer
from tests.conftest import archive_of

S = BuildStatus


class StacksOfThisHost:
    """The builder's answer about its stacks: bookworm's Python, and trixie's."""

    def stack_offers(self, language):
        self.asked = language
        return [StackOffer("python", "", "3.11.2", "hakobune/stack-python:bookworm"),
                StackOffer("python", "trixie", "3.13.5", "hakobune/stack-python:trixie")]


@pytest.fixture
def stacks_here(monkeypatch):
    builder = StacksOfThisHost()
    monkeypatch.setattr(images, "builder_for", lambda service: builder)
    return builder


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


def deploy(service, owner, extra=None):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = archive_of("python-stdlib-main", extra=extra)
    return deploy_service(service=service, source_file=SimpleUploadedFile("app.tar.gz", data), created_by=owner)


def detected(build):
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    build.refresh_from_db()
    return build


def test_a_services_google_entrypoint_starts_its_app(service, owner, queued_tasks, stacks_here):
    set_env(service=service, values={"GOOGLE_ENTRYPOINT": "python3 -u main.py", "GREETING": "hi"}, unset=[])
    build = detected(deploy(service, owner))
    assert build.status == S.BUILDING
    assert build.plan["start_command"] == "python3 -u main.py"
    assert "GOOGLE_ENTRYPOINT (the service's settings) starts it" in build.detection_reason


def test_an_app_asking_for_a_newer_python_is_planned_on_the_stack_that_has_it(service, owner, queued_tasks,
                                                                               stacks_here):
    build = detected(deploy(service, owner, {".python-version": "3.13\n"}))
    assert build.status == S.BUILDING
    assert build.plan["stack_variant"] == "trixie"
    lines = list(build.log_lines.values_list("text", flat=True))
    assert any("built on hakobune/stack-python:trixie (Python 3.13.5)" in line for line in lines)


def test_an_app_asking_for_a_python_no_stack_has_fails_at_detection_in_words(service, owner, queued_tasks,
                                                                            stacks_here):
    build = detected(deploy(service, owner, {"runtime.txt": "python-3.99.1\n"}))
    assert build.status == S.FAILED and build.failed_step == S.DETECTING
    assert build.failure_rule == "detect.version_unavailable"
    assert build.failure_params["have"] == ("Python 3.11.2 (hakobune/stack-python:bookworm), "
                                            "Python 3.13.5 (hakobune/stack-python:trixie)")
    with override("en"):
        assert build.failure_reason.startswith("The app asks for Python 3.99.1 (runtime.txt), but the stacks here")
    assert stacks_here.asked == "python"


def test_the_build_request_carries_the_services_google_settings_and_no_other_variable(service, owner, tmp_path):
    from hakobune.worker.buildpacks.plan import BuildPlan

    set_env(service=service, values={"GOOGLE_RUNTIME_VERSION": "3.11", "DATABASE_PASSWORD": "s3cret"}, unset=[])
    build = deploy(service, owner)
    request = images.build_request_for(build, BuildPlan(stack="python", start_command="python main.py"),
                                       tmp_path, tmp_path)
    assert request.build_env == {"GOOGLE_RUNTIME_VERSION": "3.11"}
