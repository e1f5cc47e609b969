"""A team's Cloud Run services may name only the team's own Secret Manager
secrets: those of the project in effect for the team whose names start with
"hakobune_<team>_" (a short name means the team's). Checked when a variable
is set (the portal, the API and the CLI all go through set_env) and again
before a deploy sends anything. Against the fake Google endpoints and the
Cloud Storage emulator."""

import itertools

import pytest

from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.services.models import EnvVar, Release
from hakobune.platform.services.services import ServiceActionError, create_service, set_env
from hakobune.runtime.base import DeploySpec, RuntimeBackendError
from hakobune.runtime.release_config import ReleaseConfig
from tests.unit.cloud_run_fixtures import (  # noqa: F401 (fixtures)
    PROJECT,
    REGION,
    cloud_run,
    cloudrun_target,
    fake_gcp,
    loopback_only,
    run_pipeline,
    storage_emulator,
)

IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/apps/acme/hello@sha256:1234"


def spec(**changes):
    values = dict(team="acme", service="hello", release_id=11, release_number=1, image=IMAGE, hostname="",
                  config=ReleaseConfig.of(port=8080, cpu=1, memory_mb=512, instances=1))
    values.update(changes)
    return DeploySpec(**values)


# -- the prefix ------------------------------------------------------------------------------


TEAM_NAMES = [
    "a", "acme", "a-b", "b", "build", "build-x", "x", "run-x", "r", "a--b", "abcde", "abcdefghijklmnop",
    "abcdefghijklmnopqrstuvwxyz0123", "abcdefghijklmnopqrstuvwxyz0124", "x" * 30, "x" * 17,
]


def test_no_teams_secret_prefix_begins_another_teams():
    from hakobune.runtime.cloud_run.tenants import secret_prefix

    # Team a's names never reach team a-b's secrets, nor the other way round.
    for first, second in itertools.permutations(TEAM_NAMES, 2):
        assert not secret_prefix(second).startswith(secret_prefix(first)), (first, second)


def test_team_secret_spells_what_is_allowed():
    from hakobune.runtime.cloud_run import team_secret

    assert team_secret("db-password:4", team="acme", project=PROJECT) == "hakobune_acme_db-password:4"
    with pytest.raises(ValueError, match="longer than the 255 characters"):
        team_secret("x" * 250, team="acme", project=PROJECT)


# -- secrets: when a variable is set ----------------------------------------------------------------------


@pytest.mark.parametrize("reference, refusal", [
    ("hakobune_other_db-password", "hakobune_other_db-password is not one of team acme's secrets"),
    (f"projects/{PROJECT}/secrets/hakobune_other_db-password", "is not one of team acme's secrets"),
    (f"projects/{PROJECT}/secrets/db-password:2", "db-password is not one of team acme's secrets"),
    ("projects/other-prod/secrets/hakobune_acme_db-password", "is a secret of project other-prod"),
    ("projects/other-prod/secrets/db-password/versions/3", "is a secret of project other-prod"),
])
def test_a_team_cannot_name_another_teams_secret_when_setting_a_variable(team, outsider, owner, cloudrun_target,
                                                                         reference, refusal):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    with pytest.raises(ServiceActionError) as caught:
        set_env(service=service, values={}, unset=[], secrets={"DB_PASSWORD": reference})
    assert refusal in str(caught.value)
    assert (f"team acme's services may read only the secrets of project {PROJECT} whose names start with "
            "hakobune_acme_ (write the rest of the name: db-password means hakobune_acme_db-password)") in str(caught.value)
    assert not EnvVar.objects.filter(service=service).exists()


def test_a_short_name_means_the_teams_own_secret_and_never_a_team_whose_name_continues_it(owner, cloudrun_target):
    acme = create_team(name="acme", owner=owner)
    create_team(name="acme-b", owner=owner)
    service = create_service(team=acme, name="hello", created_by=owner, target="cloudrun")
    set_env(service=service, values={}, unset=[], secrets={"A": "db-password", "B": "b_db:2",
                                                           "C": f"projects/{PROJECT}/secrets/hakobune_acme_api-key"})
    stored = dict(EnvVar.objects.filter(service=service).values_list("key", "secret_ref"))
    # acme-b's secret "db" is hakobune_acme-b_db: acme's "b_db" is not it.
    assert stored == {"A": "hakobune_acme_db-password:latest", "B": "hakobune_acme_b_db:2",
                      "C": "hakobune_acme_api-key:latest"}


def test_another_teams_secret_is_refused_in_the_portal_and_the_api_in_words(team, outsider, owner, login, cloudrun_target):
    from rest_framework.test import APIClient

    create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    page = login(owner).post("/t/acme/hello/env/", {"key": "TOKEN", "secret": "projects/other-prod/secrets/token"},
                             follow=True).content.decode()
    assert "TOKEN: &#x27;projects/other-prod/secrets/token&#x27; is a secret of project other-prod" in page
    api = APIClient()
    api.force_authenticate(owner)
    answer = api.put("/api/v1/teams/acme/services/hello/env/", {"secrets": {"TOKEN": "hakobune_other_token"}}, format="json")
    assert answer.status_code == 400
    assert "hakobune_other_token is not one of team acme's secrets" in answer.content.decode()
    assert not EnvVar.objects.exists()


# -- secrets: again before a deploy ----------------------------------------------------------------------


@pytest.mark.parametrize("stored, words", [
    ("db-password:latest", "DB_PASSWORD reads the secret db-password, which is not one of team acme's"),
    ("hakobune_other_db-password:latest", "DB_PASSWORD reads the secret hakobune_other_db-password, which is not"),
    ("projects/other-prod/secrets/hakobune_acme_db-password:2", "DB_PASSWORD reads project other-prod's secret"),
])
def test_a_stored_reference_that_is_not_the_teams_is_refused_before_anything_is_sent(cloud_run, fake_gcp, stored, words):
    with pytest.raises(RuntimeBackendError) as caught:
        cloud_run.deploy(spec(secret_env={"DB_PASSWORD": stored}))
    assert words in caught.value.message and caught.value.permanent
    assert "whose names start with hakobune_acme_" in caught.value.message
    assert fake_gcp.requests == []  # nothing was sent to Google


def test_a_reference_stored_before_the_rules_fails_the_release_in_words_and_cloud_run_is_never_asked(
    team, owner, cloudrun_target, queued_tasks
):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    # Stored before references were the team's own: a secret of any team, in any project.
    EnvVar.objects.create(service=service, key="DB_PASSWORD", secret_ref="projects/other-prod/secrets/db-password:latest")

    build = run_pipeline(service, owner, queued_tasks)

    assert build.status == BuildStatus.FAILED
    reason = Release.objects.get(build=build).failure_reason
    assert reason.startswith("DB_PASSWORD reads project other-prod's secret db-password, which is not one of team acme's")
    assert "Keep the value in hakobune_acme_db-password and set DB_PASSWORD again" in reason
    assert cloudrun_target.calls(pattern="^/v2/") == []


def test_the_portal_tells_members_their_teams_prefix(team, owner, login, cloudrun_target):
    create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    page = login(owner).get("/t/acme/hello/").content.decode()
    assert "those whose names start with <code>hakobune_acme_</code>" in page
