"""Java apps as an owner uploads them, each built by a real Celery worker on
the real Docker Engine on the Java stack (Debian's OpenJDK and Maven) and
answered through the tests' Caddy: a Maven project, built offline from the
plugins Debian packages, and plain .java files compiled with javac. A Maven
project needing a library only Maven Central has fails at its build, where
this host cannot reach Central, in one sentence naming what to change.

The three are deployed at once to one team; the tests read what each did."""

import re
import secrets

import pytest
from django.contrib.auth import get_user_model

from hakobune.platform.accounts.services import create_team
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, remove_team_containers_and_network, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

APPS = ("java-maven", "java-plain", "java-maven-central")
BUILD_TIMEOUT = 1200


@pytest.fixture(scope="module")
def deployed(django_db_blocker, worker, router, docker_client):
    """app -> (the finished build, its service's answer to GET / or None)."""
    team_name = f"jv{secrets.token_hex(3)}"
    with django_db_blocker.unblock():
        owner = get_user_model().objects.create_user(username=f"owner-{team_name}", password="x")
        team = create_team(name=team_name, owner=owner)
        TeamPolicy.objects.create(team=team, max_services=len(APPS), max_cpu=len(APPS), max_memory_mb=len(APPS) * 1024)
        builds = {app: deploy_service(service=create_service(team=team, name=app, created_by=owner),
                                      source_file=upload_of(app), created_by=owner) for app in APPS}
        found = {}
        for app, build in builds.items():
            build = wait_for_build(build, timeout=BUILD_TIMEOUT)
            answer = get_through_router(build.service.hostname, "/") if build.status == "live" else None
            found[app] = (build, answer, "\n".join(build.log_lines.values_list("text", flat=True)))
    yield found
    remove_team_containers_and_network(docker_client, team_name)
    with django_db_blocker.unblock():
        get_user_model().objects.filter(username=f"owner-{team_name}").delete()


def test_a_maven_app_is_built_from_debians_maven_plugins_and_answers(deployed):
    build, answer, log = deployed["java-maven"]
    assert build.status == "live", f"{build.failure_reason}\n{log[-4000:]}"
    assert answer.status_code == 200 and answer.text.startswith("hello from java-maven (Java 17"), answer.text[:300]
    assert build.plan["stack"] == "java" and "Java 17" in build.plan["stack_version"]
    assert "RUN mvn" in log and "dependency:resolve dependency:resolve-plugins" in log
    # Maven says BUILD SUCCESS, unless the engine's cache held the very same
    # step already (the same pom and code built before, by this test's last run).
    package_step = re.search(r"^Step \d+/\d+ : RUN mvn .* package\n(.*)$", log, re.MULTILINE)
    assert package_step, log[-4000:]
    assert "BUILD SUCCESS" in log or package_step[1] == " ---> Using cache", log[-4000:]


def test_the_jvm_heap_is_sized_from_the_instances_memory(deployed):
    build, answer, _ = deployed["java-maven"]
    heap_mb = int(re.search(r"heap up to (\d+) MB", answer.text).group(1))
    memory_mb = build.service.memory_mb
    # -XX:MaxRAMPercentage=75 of the container's limit (less what the collector keeps aside).
    assert 0.6 * memory_mb < heap_mb <= 0.75 * memory_mb, (heap_mb, memory_mb)


def test_plain_java_sources_are_compiled_with_javac_and_answer(deployed):
    build, answer, log = deployed["java-plain"]
    assert build.status == "live", f"{build.failure_reason}\n{log[-4000:]}"
    assert answer.status_code == 200 and answer.text.strip() == "hello from java-plain"


def test_a_maven_app_needing_maven_central_fails_saying_what_an_administrator_changes(deployed):
    build, _, log = deployed["java-maven-central"]
    assert build.status == "failed", log[-2000:]
    assert build.failure_reason.startswith(
        "Maven could not download io.javalin:javalin:pom:6.3.0 from the Maven repository "
        "https://repo.maven.apache.org/maven2 ("), build.failure_reason
    assert "an administrator sets MAVEN_REPOSITORY to a Maven repository this host can reach" in build.failure_reason
    # Maven's own words are in the log, for whoever wants the detail.
    assert "Could not transfer artifact io.javalin:javalin:pom:6.3.0 from/to central" in log
