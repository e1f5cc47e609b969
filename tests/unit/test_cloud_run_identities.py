"""Teams sharing a Google Cloud project do not share an identity there: each
team's Cloud Run services run as its own runtime service account, its Cloud
Builds as its own build account without Cloud Build's `cloudbuild` network;
staff see each team's accounts and cannot name a shared or another team's
one; a missing account is said in words with how to make it. Against the
fake Google endpoints and the Cloud Storage emulator, through the backend,
the portal and the pipeline's tasks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.services.models import TeamCloudRunSettings
from hakobune.platform.services.services import create_service, set_env
from hakobune.runtime.base import DeploySpec, RuntimeBackendError, ServiceRef
from hakobune.runtime.cloud_run import CloudRunBackend
from hakobune.runtime.release_config import ReleaseConfig
from tests.unit.cloud_run_fixtures import (  # noqa: F401 (fixtures)
    PROJECT,
    REGION,
    backend_options,
    cloud_run,
    cloudrun_target,
    fake_gcp,
    loopback_only,
    run_pipeline,
    storage_emulator,
)

ACME_RUNS_AS = f"hakobune-run-acme@{PROJECT}.iam.gserviceaccount.com"
ACME_BUILDS_AS = f"hakobune-build-acme@{PROJECT}.iam.gserviceaccount.com"
OTHER_RUNS_AS = f"hakobune-run-other@{PROJECT}.iam.gserviceaccount.com"
OTHER_BUILDS_AS = f"hakobune-build-other@{PROJECT}.iam.gserviceaccount.com"
COMPUTE_DEFAULT = "123456789012-compute@developer.gserviceaccount.com"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/apps/acme/hello@sha256:1234"


@pytest.fixture
def admin(db):
    return get_user_model().objects.create_user(username="ada", password="correct horse battery", is_staff=True)


def spec(team="acme", **changes):
    values = dict(team=team, service="hello", release_id=11, release_number=1, image=IMAGE, hostname="",
                  config=ReleaseConfig.of(port=8080, cpu=1, memory_mb=512, instances=1))
    values.update(changes)
    return DeploySpec(**values)


def save_team_settings(client, team_name, **fields):
    data = {"project": "", "region": "", "repository": "", "bucket": "", "service_account": "",
            "build_service_account": "", "credentials": "", **fields}
    return client.post(f"/cloud-run/t/{team_name}/", data, follow=True)


# -- the names ------------------------------------------------------------------------------


TEAM_NAMES = [
    "a", "acme", "a-b", "b", "build", "build-x", "x", "run-x", "r", "a--b", "abcde", "abcdefghijklmnop",
    "abcdefghijklmnopq", "abcdefghijklmnopqr", "abcdefghijklmnopqrstuvwxyz0123", "abcdefghijklmnopqrstuvwxyz0124",
    "abcde-fghijklmnopqrstuvwxyz012", "x" * 30, "x" * 29, "x" * 18, "x" * 17, "x" * 16, "x" * 15,
]


def test_every_team_gets_account_names_no_other_team_can_get():
    from hakobune.runtime.cloud_run.tenants import ACCOUNT_ID, BUILD, RUNTIME, account_id

    ids = [(account_id(kind, team), team, kind) for team in TEAM_NAMES for kind in (RUNTIME, BUILD)]
    for name, team, kind in ids:
        assert ACCOUNT_ID.match(name) and len(name) <= 30, (team, kind, name)
    assert len({name for name, _, _ in ids}) == len(ids)  # no two teams, nor a team's two kinds, share one
    assert account_id(RUNTIME, "acme") == "hakobune-run-acme" and account_id(BUILD, "acme") == "hakobune-build-acme"


# -- who services run as ----------------------------------------------------------------------------------


def test_each_teams_revisions_run_as_its_own_account(team, owner, outsider, cloudrun_target, queued_tasks):
    cloudrun_target.secrets = {"hakobune_acme_db-password": {}}
    acme = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    set_env(service=acme, values={}, unset=[], secrets={"DB_PASSWORD": "db-password"})
    other = create_service(team=outsider.teams.get(), name="hello", created_by=outsider, target="cloudrun")

    assert run_pipeline(acme, owner, queued_tasks).status == BuildStatus.LIVE
    assert run_pipeline(other, outsider, queued_tasks).status == BuildStatus.LIVE

    created = {call.query["serviceId"]: call.body["template"] for call in cloudrun_target.calls("POST", r"/services$")}
    assert created["acme-hello"]["serviceAccount"] == ACME_RUNS_AS
    assert created["other-hello"]["serviceAccount"] == OTHER_RUNS_AS
    assert created["acme-hello"]["containers"][0]["env"][-1] == {
        "name": "DB_PASSWORD", "valueSource": {"secretKeyRef": {"secret": "hakobune_acme_db-password", "version": "latest"}}
    }


def test_an_account_staff_name_for_a_team_is_the_one_its_services_run_as(team, owner, admin, login, cloudrun_target,
                                                                         queued_tasks):
    save_team_settings(login(admin), "acme", service_account="acme-web@hk-test.iam.gserviceaccount.com")
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    assert run_pipeline(service, owner, queued_tasks).status == BuildStatus.LIVE
    sent = cloudrun_target.calls("POST", r"/services$")[0].body["template"]
    assert sent["serviceAccount"] == "acme-web@hk-test.iam.gserviceaccount.com"
    # The build account was not named: the derived one.
    assert cloudrun_target.calls("POST", "/builds$")[0].body["serviceAccount"] == f"projects/{PROJECT}/serviceAccounts/{ACME_BUILDS_AS}"


def test_a_backend_made_with_one_teams_accounts_runs_no_other_team_as_them(fake_gcp, storage_emulator):
    backend = CloudRunBackend("cloudrun", **backend_options(
        fake_gcp, storage_emulator, team_accounts={"acme": {"runtime": "acme-web@hk-test.iam.gserviceaccount.com"}}
    ))
    backend.deploy(spec(team="other", image=IMAGE.replace("acme", "other")))
    assert fake_gcp.calls("POST", r"/services$")[0].body["template"]["serviceAccount"] == OTHER_RUNS_AS


def test_requests_never_go_to_a_revision_made_as_another_identity(cloud_run, fake_gcp):
    first = cloud_run.deploy(spec()).state["revision"]
    second = cloud_run.deploy(spec(release_id=12, image=IMAGE.replace("1234", "5678"))).state["revision"]
    # A revision from before each team ran as its own account.
    fake_gcp.revisions[f"projects/{PROJECT}/locations/{REGION}/services/acme-hello/revisions/{first}"]["serviceAccount"] = (
        COMPUTE_DEFAULT
    )
    fake_gcp.requests.clear()
    with pytest.raises(RuntimeBackendError) as caught:
        cloud_run.route_traffic(ServiceRef("acme", "hello"), {first: 50, second: 50})
    assert caught.value.message.startswith(
        f"the revision {first} runs as {COMPUTE_DEFAULT}, not as team acme's own account {ACME_RUNS_AS}"
    )
    assert fake_gcp.calls("PATCH") == []
    # A rollback to that release makes a new revision rather than reusing it.
    again = cloud_run.deploy(spec()).state
    assert again["revision"] not in (first, second) and "reused" not in again


def test_a_missing_runtime_account_is_said_in_words_with_how_to_make_it(cloud_run, fake_gcp):
    fake_gcp.service_accounts = {ACME_BUILDS_AS}
    with pytest.raises(RuntimeBackendError) as caught:
        cloud_run.deploy(spec())
    message = caught.value.message
    assert message.startswith(f"team acme's services run as {ACME_RUNS_AS}, which does not exist or which the account "
                              "Hakobune uses may not act as.")
    assert f"gcloud iam service-accounts create hakobune-run-acme --project={PROJECT}" in message
    assert "--role=roles/iam.serviceAccountUser" in message
    assert ("--role=roles/secretmanager.secretAccessor --condition='title=hakobune acme secrets,expression="
            'resource.name.startsWith("projects/PROJECT_NUMBER/secrets/hakobune_acme_")\'') in message
    assert caught.value.permanent


# -- who builds run as --------------------------------------------------------------------------------------


def test_each_teams_builds_run_as_its_build_account_without_the_cloudbuild_network(
    team, owner, outsider, cloudrun_target, queued_tasks
):
    acme = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    other = create_service(team=outsider.teams.get(), name="hello", created_by=outsider, target="cloudrun",
                           cloud_builder="buildpacks")

    acme_build = run_pipeline(acme, owner, queued_tasks)
    other_build = run_pipeline(other, outsider, queued_tasks)

    assert acme_build.status == other_build.status == BuildStatus.LIVE
    sent = {call.body["images"][0].split("/apps/")[1].split("/")[0]: call.body
            for call in cloudrun_target.calls("POST", "^/v1/projects/hk-test/builds$")}
    assert sent["acme"]["serviceAccount"] == f"projects/{PROJECT}/serviceAccounts/{ACME_BUILDS_AS}"
    assert sent["other"]["serviceAccount"] == f"projects/{PROJECT}/serviceAccounts/{OTHER_BUILDS_AS}"
    for team_name, body in sent.items():
        # A build with its own account keeps its log in the bucket only, under the team's prefix,
        # next to the team's sources.
        assert body["options"]["logging"] == 2  # GCS_ONLY (enums go as numbers on REST)
        assert body["logsBucket"] == f"gs://{PROJECT}_cloudbuild/hakobune/build-logs/{team_name}"
        assert body["source"]["storageSource"]["object"].startswith(f"hakobune/sources/{team_name}/")
        assert not any("cloudbuild" in arg for step in body["steps"] for arg in step.get("args", []))
        assert not any(step.get("env") for step in body["steps"])
    assert sent["other"]["steps"][0]["name"] == "gcr.io/k8s-skaffold/pack"
    # The log still arrives, line by line, from the team's prefix.
    assert "Step #0: Successfully built 0123abcd" in list(acme_build.log_lines.values_list("text", flat=True))
    assert f"Building as team acme's build account {ACME_BUILDS_AS}" in list(acme_build.log_lines.values_list("text", flat=True))


def test_cloud_build_refuses_a_build_account_without_a_log_place(fake_gcp):
    import requests

    answer = requests.post(f"{fake_gcp.url}/v1/projects/{PROJECT}/builds", json={
        "serviceAccount": f"projects/{PROJECT}/serviceAccounts/{ACME_BUILDS_AS}", "steps": [],
        "source": {"storageSource": {"bucket": "b", "object": "o"}}}, timeout=10)
    assert answer.status_code == 400 and "if 'build.service_account' is specified" in answer.json()["error"]["message"]


def test_a_missing_build_account_fails_the_build_in_words(team, owner, cloudrun_target, queued_tasks):
    from hakobune.platform.services.services import deploy_service
    from hakobune.worker import tasks
    from tests.conftest import upload_of

    cloudrun_target.service_accounts = {ACME_RUNS_AS}
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    tasks.build_image(build.id)
    build.refresh_from_db()

    assert build.status == BuildStatus.FAILED
    assert build.failure_reason.startswith(f"team acme's builds run as {ACME_BUILDS_AS}, which does not exist")
    assert f"gcloud iam service-accounts create hakobune-build-acme --project={PROJECT}" in build.failure_reason
    assert "--role=roles/artifactregistry.writer" in build.failure_reason
    assert (f'resource.name.startsWith("projects/_/buckets/{PROJECT}_cloudbuild/objects/hakobune/sources/acme/")'
            in build.failure_reason)
    assert cloudrun_target.builds == {}


# -- what staff see and set -------------------------------------------------------------------------------


def test_check_access_names_the_accounts_that_are_missing(team, owner, admin, login, cloudrun_target):
    client = login(admin)
    cloudrun_target.service_accounts = set()
    page = client.post("/cloud-run/t/acme/", {"action": "check"}).content.decode()
    assert f"✗ Team acme&#x27;s services run as {ACME_RUNS_AS}, which does not exist" in page
    assert f"✗ Team acme&#x27;s builds run as {ACME_BUILDS_AS}, which does not exist" in page
    assert f"gcloud iam service-accounts create hakobune-run-acme --project={PROJECT}" in page

    cloudrun_target.service_accounts = {ACME_RUNS_AS, ACME_BUILDS_AS}
    cloudrun_target.acts_as = {ACME_RUNS_AS}
    page = client.post("/cloud-run/t/acme/", {"action": "check"}).content.decode()
    assert (f"✓ Team acme&#x27;s services run as {ACME_RUNS_AS}; Hakobune lets them name only the secrets of project "
            f"{PROJECT} whose names start with hakobune_acme_.") in page
    assert f"✗ Team acme&#x27;s builds run as {ACME_BUILDS_AS}, which the account Hakobune uses may not act as." in page

    # The platform's page checks the teams that use the platform's settings and have services.
    create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    cloudrun_target.acts_as = None
    page = client.post("/cloud-run/", {"action": "check"}).content.decode()
    assert f"✓ Team acme&#x27;s builds run as {ACME_BUILDS_AS}." in page


def test_the_staff_page_shows_each_teams_accounts_and_secret_prefix(team, outsider, admin, login, cloudrun_target):
    client = login(admin)
    page = client.get("/cloud-run/").content.decode()
    for email in (ACME_RUNS_AS, ACME_BUILDS_AS, OTHER_RUNS_AS, OTHER_BUILDS_AS):
        assert f"<code>{email}</code>" in page
    assert "<code>hakobune_acme_…</code>" in page and "<code>hakobune_other_…</code>" in page

    save_team_settings(client, "acme", project="acme-prod", build_service_account="acme-ci@acme-prod.iam.gserviceaccount.com")
    page = client.get("/cloud-run/t/acme/").content.decode()
    assert "<th>Services run as</th><td><code>hakobune-run-acme@acme-prod.iam.gserviceaccount.com</code>" in page
    assert "<th>Builds run as</th><td><code>acme-ci@acme-prod.iam.gserviceaccount.com</code>" in page
    assert "<th>Secrets it may use</th><td><code>hakobune_acme_… in project acme-prod</code>" in page


@pytest.mark.parametrize("field, email, refusal", [
    ("service_account", COMPUTE_DEFAULT, "is one of the project&#x27;s default accounts"),
    ("build_service_account", "123456789012@cloudbuild.gserviceaccount.com", "is one of the project&#x27;s default accounts"),
    ("service_account", OTHER_RUNS_AS, "is team other&#x27;s runtime account; each team needs its own"),
    ("build_service_account", "hakobune-run-other@elsewhere.iam.gserviceaccount.com", "is team other&#x27;s runtime account"),
    ("service_account", "shared@hk-test.iam.gserviceaccount.com", "is already team other&#x27;s"),
    ("service_account", "hakobune-run-later@hk-test.iam.gserviceaccount.com", "are kept for the accounts Hakobune names"),
    ("service_account", "not an email", "Give the email of a service account"),
])
def test_staff_cannot_give_a_team_a_shared_account_or_another_teams(team, outsider, admin, login, cloudrun_target,
                                                                     field, email, refusal):
    client = login(admin)
    save_team_settings(client, "other", service_account="shared@hk-test.iam.gserviceaccount.com")
    page = save_team_settings(client, "acme", **{field: email}).content.decode()
    assert refusal in page
    assert not TeamCloudRunSettings.objects.filter(team=team).exists()


def test_the_platform_names_no_account_for_every_team(admin, login, cloudrun_target):
    page = login(admin).get("/cloud-run/").content.decode()
    assert 'name="service_account"' not in page and 'name="build_service_account"' not in page
    assert "each team&#x27;s own account" in page

    env = {**os.environ, "CLOUDRUN_PROJECT": "hk-test", "CLOUDRUN_SERVICE_ACCOUNT": "runner@hk-test.iam.gserviceaccount.com",
           "DJANGO_SETTINGS_MODULE": "hakobune.platform.settings"}
    root = Path(__file__).resolve().parents[2]
    refused = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "CLOUDRUN_SERVICE_ACCOUNT is no longer read" in refused.stderr


def test_the_admin_site_cannot_give_a_team_a_shared_account_either(team, outsider, cloudrun_target):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        TeamCloudRunSettings(team=team, service_account=COMPUTE_DEFAULT, build_service_account=OTHER_BUILDS_AS).full_clean()
    assert set(caught.value.message_dict) == {"service_account", "build_service_account"}
