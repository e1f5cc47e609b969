"""Every built-in sample (samples/) deployed the way the guided first deploy
does it, for real: a worker looks at it and stores its plan without building
anything, then the plan is deployed at a named size, built on the Docker
Engine with its dependencies from PyPI and npm, started, health-checked and
routed; each answers through the tests' Caddy with its own page, and each
step's end is recorded for the deploy's timings."""

import secrets
import time

import pytest
from django.contrib.auth import get_user_model

from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds.models import Build, PlanCheck
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.services import guided
from hakobune.platform.services.services import create_service
from tests.support.infrastructure import get_through_router, remove_team_containers_and_network, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# sample -> (the stack its plan names, the size chosen, what GET / answers, another path and what it answers)
SAMPLES = {
    "flask": ("python", "medium", "Hello from Flask on Hakobune!", None),
    "fastapi": ("python", "medium", "Hello from FastAPI on Hakobune!", ("/api/hello?name=ark", '{"hello":"ark"}')),
    "django": ("python", "large", "Hello from Django on Hakobune!", ("/static/hello.css", "served by WhiteNoise")),
    "node-express": ("node", "medium", "Hello from Express on Hakobune!", None),
    "static": ("static", "small", "Hello from a static site on Hakobune!", ("/style.css", "font-family")),
}


def _wait_for_check(check, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check.refresh_from_db()
        if check.finished:
            return check
        time.sleep(0.25)
    raise AssertionError(f"the plan of {check.sample} was not ready in {timeout} s")


@pytest.fixture(scope="module")
def deployed(django_db_blocker, worker, router, docker_client):
    team_name = f"sm{secrets.token_hex(3)}"
    results = {}
    with django_db_blocker.unblock():
        owner = get_user_model().objects.create_user(username=f"newcomer-{team_name}", password="x")
        team = create_team(name=team_name, owner=owner)
        TeamPolicy.objects.create(team=team, max_services=len(SAMPLES), max_cpu=8, max_memory_mb=8192)
        checks = {}
        for name in SAMPLES:
            service = create_service(team=team, name=f"my-{name}", created_by=owner)
            checks[name] = guided.check_plan(service=service, created_by=owner, sample_name=name)
        builds = {}
        for name, check in checks.items():
            check = _wait_for_check(check)
            results[name] = {"check": check, "built_before_deploy": Build.objects.filter(service=check.service).exists()}
            if check.status == PlanCheck.Status.DONE:
                builds[name] = guided.deploy_checked_plan(check=check, size_name=SAMPLES[name][1], created_by=owner)
        for name, build in builds.items():
            build = wait_for_build(build, timeout=1200)
            results[name]["build"] = build
            results[name]["log"] = "\n".join(build.log_lines.values_list("text", flat=True))
            if build.status == "live":
                extra = SAMPLES[name][3]
                paths = ["/", extra[0]] if extra else ["/"]
                results[name]["answers"] = {path: get_through_router(build.service.hostname, path) for path in paths}
    yield results
    remove_team_containers_and_network(docker_client, team_name)
    with django_db_blocker.unblock():
        get_user_model().objects.filter(username=f"newcomer-{team_name}").delete()


@pytest.mark.parametrize("name", list(SAMPLES))
def test_a_sample_is_planned_before_it_is_built_then_deployed_and_answers(deployed, name):
    stack, size_name, page, extra = SAMPLES[name]
    result = deployed[name]
    check = result["check"]
    assert check.status == PlanCheck.Status.DONE, check.failure_reason
    assert check.stack == stack and check.plan["start_command"]
    assert not result["built_before_deploy"], "the plan is made without a build"
    build = result["build"]
    assert build.status == "live", f"{build.failure_reason}\n{result['log'][-3000:]}"
    assert set(build.milestones) == {"fetched", "detected", "built", "started", "healthy", "routed"}
    size = guided.size(size_name)
    assert (float(build.service.cpu), build.service.memory_mb) == (size.cpu, size.memory_mb)
    answer = result["answers"]["/"]
    assert answer.status_code == 200 and page in answer.text
    if extra:
        answer = result["answers"][extra[0]]
        assert answer.status_code == 200 and extra[1] in answer.text
