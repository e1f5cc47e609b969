"""A step that never ends is stopped at its time limit and fails in words,
with what it started stopped too: a build whose command never returns (at
BUILD_TIMEOUT, by the build's watch), and a deploy whose app never answers
(at the deploy step's own time limit, DEPLOY_TIMEOUT, by Celery)."""

import secrets

import pytest

from hakobune.platform.services.models import Release
from hakobune.runtime.docker_local import LABEL_SERVICE, LABEL_TEAM
from tests.faults.checks import assert_clean_end, log_of, wait_for_final, wait_until
from tests.faults.test_crashes import app_saying

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.django_db(transaction=True)]

BUILD_TIMEOUT = 15
DEPLOY_TIMEOUT = 30
# The deploy step may also run the release phase: its limit is the sum.
RELEASE_COMMAND_TIMEOUT = 5
DEPLOY_STEP_LIMIT = DEPLOY_TIMEOUT + RELEASE_COMMAND_TIMEOUT


@pytest.fixture
def platform_env():
    # The app's boot may take longer than the deploy step may: the step's limit is what stops it.
    return {"BUILD_TIMEOUT": str(BUILD_TIMEOUT), "DEPLOY_TIMEOUT": str(DEPLOY_TIMEOUT),
            "RELEASE_COMMAND_TIMEOUT": str(RELEASE_COMMAND_TIMEOUT), "BOOT_TIMEOUT": "600"}


def test_a_build_that_never_ends_fails_at_its_time_limit_and_its_container_goes(platform, deployer, docker_client):
    build = deployer("web", build_command=f"echo endless-{secrets.token_hex(4)} && sleep 100000")

    build = wait_for_final(build, 300)

    assert build.status == "failed" and build.failed_step == "building"
    assert f"The build took longer than {BUILD_TIMEOUT} s, the time a build may take, and was stopped." in \
        build.failure_reason, log_of(build)
    assert build.failure_reason in log_of(build)
    assert_clean_end(platform, docker_client, build)


def test_a_deploy_whose_app_never_answers_fails_at_the_steps_time_limit(platform, deployer, docker_client):
    build = deployer("web", files=app_saying("Never", boot_seconds=100000))

    build = wait_for_final(build, 300)

    assert build.status == "failed" and build.failed_step == "deploying", log_of(build)
    assert build.failure_rule == "pipeline.step_timeout"
    assert f"The deploy step took longer than {DEPLOY_STEP_LIMIT} s" in build.failure_reason
    release = Release.objects.get(build=build)
    assert release.status == Release.Status.FAILED
    team = build.service.team.name
    # The instance it was starting is gone with it.
    wait_until(lambda: docker_client.containers.list(
        all=True, filters={"label": [f"{LABEL_TEAM}={team}", f"{LABEL_SERVICE}=web"]}) == [], 30,
        "the release's instance stayed")
    assert_clean_end(platform, docker_client, build)
