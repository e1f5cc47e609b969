"""Staff send a team's Cloud Run services to the team's own Google Cloud
project, with a service-account key stored encrypted; services read secrets
from Secret Manager and choose Google's buildpacks. Against the fake Google
endpoints and the Cloud Storage emulator, through the portal, the API and the
pipeline's tasks."""

import json

import pytest
from django.contrib.auth import get_user_model
from google.cloud.run_v2 import IngressTraffic

from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.models import CloudRunDefaults, EnvVar, Release, TeamCloudRunSettings
from hakobune.platform.services.services import ServiceActionError, create_service, set_env
from hakobune.worker import tasks
from tests.unit.cloud_run_fixtures import (  # noqa: F401 (fixtures)
    PROJECT,
    REGION,
    cloudrun_target,
    fake_gcp,
    loopback_only,
    run_pipeline,
    service_account_key,
    storage_emulator,
)

ACME_SERVICE = "projects/acme-prod/locations/us-central1/services/acme-hello"
SERVICE = f"projects/{PROJECT}/locations/{REGION}/services/acme-hello"
KEY_EMAIL = "deployer@acme-prod.iam.gserviceaccount.com"


@pytest.fixture
def admin(db):
    return get_user_model().objects.create_user(username="ada", password="correct horse battery", is_staff=True)


@pytest.fixture
def acme_key(cloudrun_target):
    return json.dumps(service_account_key(cloudrun_target, email=KEY_EMAIL))


def save_team_settings(client, team_name, **fields):
    data = {"project": "", "region": "", "repository": "", "bucket": "", "service_account": "", "credentials": "", **fields}
    return client.post(f"/cloud-run/t/{team_name}/", data, follow=True)


def test_an_admin_gives_a_team_its_own_project_and_key_and_its_deploys_go_there(
    team, owner, outsider, admin, login, acme_key, cloudrun_target, queued_tasks
):
    page = save_team_settings(login(admin), "acme", project="acme-prod", region="us-central1", key_text=acme_key)
    assert page.status_code == 200
    assert f"service-account key of {KEY_EMAIL} (stored encrypted)" in page.content.decode()
    assert "BEGIN PRIVATE KEY" not in page.content.decode()
    stored = TeamCloudRunSettings.objects.get(team=team)
    assert stored.key_email == KEY_EMAIL and stored.credentials == "key"
    assert "PRIVATE KEY" not in stored.key_encrypted and stored.key_encrypted.startswith("fernet:")

    acme_build = run_pipeline(create_service(team=team, name="hello", created_by=owner, target="cloudrun"), owner, queued_tasks)
    other_team = outsider.teams.get()
    other_build = run_pipeline(create_service(team=other_team, name="hello", created_by=outsider, target="cloudrun"), outsider, queued_tasks)

    assert acme_build.status == BuildStatus.LIVE and other_build.status == BuildStatus.LIVE
    # acme's: built in acme-prod's Cloud Build, pushed to its registry, run there,
    # every call made as acme's service account.
    assert acme_build.image.startswith("us-central1-docker.pkg.dev/acme-prod/apps/acme/hello@sha256:")
    assert ACME_SERVICE in cloudrun_target.services
    acme_calls = cloudrun_target.calls(pattern="/projects/acme-prod/")
    assert {cloudrun_target.who(call.bearer) for call in acme_calls} == {KEY_EMAIL}
    assert cloudrun_target.calls("POST", "^/v1/projects/acme-prod/builds$")
    # The other team's: the platform's project, with the platform's credentials.
    assert other_build.image.startswith(f"{REGION}-docker.pkg.dev/{PROJECT}/apps/other/hello@sha256:")
    assert f"projects/{PROJECT}/locations/{REGION}/services/other-hello" in cloudrun_target.services
    assert {call.bearer for call in cloudrun_target.calls(pattern=f"/projects/{PROJECT}/")} == {""}


def test_a_change_of_settings_reaches_the_next_action_without_a_restart(team, owner, admin, login, cloudrun_target):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    assert backend_for(service).region == REGION
    save_team_settings(login(admin), "acme", region="us-east1")
    assert backend_for(service).region == "us-east1"
    login(admin).post("/cloud-run/t/acme/", {"action": "reset"})
    assert backend_for(service).region == REGION
    # The platform's own settings sit under every team's.
    CloudRunDefaults(region="asia-northeast1").save()
    assert backend_for(service).region == "asia-northeast1"


def test_a_team_project_has_its_own_default_bucket_and_accounts(team, owner, admin, login, settings, cloudrun_target):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    save_team_settings(login(admin), "acme", project="acme-prod")
    backend = backend_for(service)
    assert backend.bucket_name == "acme-prod_cloudbuild"
    assert backend.runtime_account("acme") == "hakobune-run-acme@acme-prod.iam.gserviceaccount.com"
    assert backend.build_account("acme") == "hakobune-build-acme@acme-prod.iam.gserviceaccount.com"


def test_a_bad_key_is_refused_in_words_and_the_settings_stay(team, admin, login, acme_key, cloudrun_target):
    client = login(admin)
    save_team_settings(client, "acme", project="acme-prod", key_text=acme_key)

    page = save_team_settings(client, "acme", project="acme-staging", key_text='{"type": "authorized_user"}')
    assert 'its &quot;type&quot; must be &quot;service_account&quot;' in page.content.decode()
    page = save_team_settings(client, "acme", project="acme-staging", key_text="-----BEGIN PRIVATE KEY-----")
    assert "This is not a key file" in page.content.decode()
    page = save_team_settings(client, "acme", project="Not A Project")
    assert "A Google Cloud project ID" in page.content.decode()
    stored = TeamCloudRunSettings.objects.get(team=team)
    assert stored.project == "acme-prod" and stored.key_email == KEY_EMAIL


def test_a_key_can_be_uploaded_as_a_file_and_is_dropped_when_no_longer_used(team, admin, login, acme_key, cloudrun_target):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = login(admin)
    upload = SimpleUploadedFile("acme-prod-0123abcd.json", acme_key.encode(), content_type="application/json")
    client.post("/cloud-run/t/acme/", {"project": "acme-prod", "credentials": "", "key_file": upload})
    assert TeamCloudRunSettings.objects.get(team=team).key_email == KEY_EMAIL

    save_team_settings(client, "acme", project="acme-prod", credentials="host")
    stored = TeamCloudRunSettings.objects.get(team=team)
    assert stored.credentials == "host" and stored.key_encrypted == "" and stored.key_email == ""


def test_check_access_says_what_it_found_or_what_is_missing(team, owner, admin, login, acme_key, cloudrun_target):
    client = login(admin)
    save_team_settings(client, "acme", project="acme-prod", region="us-central1", key_text=acme_key)

    page = client.post("/cloud-run/t/acme/", {"action": "check"}).content.decode()
    assert f"✓ Hakobune reached Cloud Run in project acme-prod, region us-central1, as {KEY_EMAIL}: 0 services there" in page
    assert "✓ Cloud Build answers" in page

    cloudrun_target.fail("GET", r"/services$", 403, "Permission 'run.services.list' denied on resource")
    page = client.post("/cloud-run/t/acme/", {"action": "check"}).content.decode()
    assert f"permission denied: {KEY_EMAIL} needs roles/run.admin on project acme-prod" in page


def test_only_staff_see_and_change_cloud_run_settings(team, owner, login, cloudrun_target):
    client = login(owner)
    assert client.get("/cloud-run/").status_code == 403
    assert client.post("/cloud-run/t/acme/", {"project": "stolen-project"}).status_code == 403
    assert not TeamCloudRunSettings.objects.exists()


def test_the_page_says_how_to_turn_cloud_run_on_when_it_is_off(admin, login, settings):
    settings.RUNTIME_BACKENDS = {"local": {"BACKEND": "hakobune.runtime.dummy.DummyBackend", "OPTIONS": {}}}
    assert "Set <code>CLOUDRUN_PROJECT</code>" in login(admin).get("/cloud-run/").content.decode()


# -- secrets from Secret Manager ---------------------------------------------------------------


def test_a_developer_takes_a_variable_from_secret_manager_in_the_portal(team, owner, login, cloudrun_target, queued_tasks):
    cloudrun_target.secrets = {"hakobune_acme_db-password": {"versions": {"1", "2"}}}
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    client = login(owner)
    assert "<code>db-password</code> means <code>hakobune_acme_db-password</code>" in client.get("/t/acme/hello/").content.decode()

    page = client.post("/t/acme/hello/env/", {"key": "DATABASE_PASSWORD", "secret": "db-password:2"}, follow=True)
    assert "DATABASE_PASSWORD comes from Secret Manager" in page.content.decode()
    assert "from Secret Manager: <code>hakobune_acme_db-password:2</code>" in page.content.decode()
    build = run_pipeline(service, owner, queued_tasks)

    assert build.status == BuildStatus.LIVE, build.failure_reason
    env = cloudrun_target.calls("POST", r"/services$")[0].body["template"]["containers"][0]["env"]
    assert {"name": "DATABASE_PASSWORD",
            "valueSource": {"secretKeyRef": {"secret": "hakobune_acme_db-password", "version": "2"}}} in env


def test_a_secret_that_cannot_be_read_fails_the_release_in_words(team, owner, cloudrun_target, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    set_env(service=service, values={}, unset=[], secrets={"DATABASE_PASSWORD": "db-password"})

    build = run_pipeline(service, owner, queued_tasks)

    assert build.status == BuildStatus.FAILED
    release = Release.objects.get(build=build)
    assert release.failure_reason.startswith("Secret Manager has no secret hakobune_acme_db-password (version latest)")


def test_local_services_cannot_take_secrets_and_say_why(team, owner, login, cloudrun_target):
    local = create_service(team=team, name="here", created_by=owner)
    with pytest.raises(ServiceActionError, match="here runs on local, which cannot read Secret Manager"):
        set_env(service=local, values={}, unset=[], secrets={"TOKEN": "api-token"})
    page = login(owner).get("/t/acme/here/").content.decode()
    assert 'name="secret"' not in page
    assert not EnvVar.objects.exists()


def test_a_secret_reference_that_is_no_secret_is_refused_and_the_old_value_stays(team, owner, login, cloudrun_target):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    set_env(service=service, values={"TOKEN": "abc"}, unset=[])
    page = login(owner).post("/t/acme/hello/env/", {"key": "TOKEN", "secret": "my secret!"}, follow=True).content.decode()
    assert "TOKEN: &#x27;my secret!&#x27; is not a Secret Manager secret" in page
    var = EnvVar.objects.get(service=service, key="TOKEN")
    assert var.secret_ref == "" and var.value_encrypted


def test_secrets_through_the_api(team, owner, cloudrun_target):
    from rest_framework.test import APIClient

    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    api = APIClient()
    api.force_authenticate(owner)
    answer = api.put("/api/v1/teams/acme/services/hello/env/", {"set": {"MODE": "prod"}, "secrets": {"DB": "db-password:3"}},
                     format="json")
    assert answer.status_code == 200, answer.content
    assert [(v["key"], v["secret"]) for v in answer.json()["env"]] == [("DB", "hakobune_acme_db-password:3"), ("MODE", None)]
    refused = api.put("/api/v1/teams/acme/services/hello/env/", {"set": {"DB": "x"}, "secrets": {"DB": "db-password"}},
                      format="json")
    assert refused.status_code == 400 and "Give DB once" in refused.content.decode()
    assert EnvVar.objects.get(service=service, key="DB").secret_ref == "hakobune_acme_db-password:3"


# -- the builder, per service ---------------------------------------------------------------------


def test_a_service_chooses_googles_buildpacks_in_its_settings(team, owner, login, cloudrun_target, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    client = login(owner)
    assert 'name="cloud_builder"' in client.get("/t/acme/hello/").content.decode()
    client.post("/t/acme/hello/settings/", {
        "cpu": "1", "memory_mb": "512", "port": "8080", "health_check_path": "/", "public": "on",
        "start_command": "gunicorn -b :$PORT app:app", "build_command": "", "cloud_builder": "buildpacks",
    })
    service.refresh_from_db()
    assert service.cloud_builder == "buildpacks"

    build = run_pipeline(service, owner, queued_tasks)

    assert build.status == BuildStatus.LIVE, build.failure_reason
    step = cloudrun_target.calls("POST", "/builds$")[0].body["steps"][0]
    assert step["name"] == "gcr.io/k8s-skaffold/pack"
    assert step["args"][-1] == "GOOGLE_ENTRYPOINT=gunicorn -b :$PORT app:app"
    assert "Building with cloudrun's buildpacks" in "\n".join(build.log_lines.values_list("text", flat=True))


def test_the_builder_is_offered_only_where_the_backend_builds(team, owner, login, cloudrun_target):
    create_service(team=team, name="here", created_by=owner)
    assert 'name="cloud_builder"' not in login(owner).get("/t/acme/here/").content.decode()


def test_the_builder_through_the_api_makes_no_release(team, owner, cloudrun_target):
    from rest_framework.test import APIClient

    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    api = APIClient()
    api.force_authenticate(owner)
    answer = api.patch("/api/v1/teams/acme/services/hello/", {"cloud_builder": "buildpacks"}, format="json")
    assert answer.status_code == 200 and answer.json()["cloud_builder"] == "buildpacks"
    assert answer.json()["release"] is None
    refused = api.patch("/api/v1/teams/acme/services/hello/", {"cloud_builder": "kaniko"}, format="json")
    assert refused.status_code == 400
    service.refresh_from_db()
    assert service.cloud_builder == "buildpacks"


# -- scaling on requests, per service -----------------------------------------------------------


def test_an_owner_tunes_scaling_timeout_and_ingress_and_cloud_run_gets_them(team, owner, login, cloudrun_target, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    run_pipeline(service, owner, queued_tasks)
    client = login(owner)
    assert 'name="concurrency"' in client.get("/t/acme/hello/").content.decode()

    page = client.post("/t/acme/hello/settings/", {
        "cpu": "1", "memory_mb": "512", "port": "8080", "health_check_path": "/", "public": "on",
        "start_command": "", "build_command": "", "cloud_builder": "",
        "min_instances": "1", "max_instances": "4", "concurrency": "20", "request_timeout": "900", "ingress": "internal",
    }, follow=True).content.decode()
    assert "v2 starts with the new settings" in page
    tasks.start_release(service.releases.get(number=2).id)

    sent = cloudrun_target.calls("PATCH", "/services/acme-hello$")[-1].body
    assert sent["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 4}
    assert sent["template"]["maxInstanceRequestConcurrency"] == 20 and sent["template"]["timeout"] == "900s"
    assert sent["ingress"] == IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY  # enums go as numbers on REST

    # A rollback to v1 brings back its revision and its ingress, without a new revision.
    revisions = len(cloudrun_target.revisions)
    client.post("/t/acme/hello/releases/1/rollback/")
    tasks.start_release(service.releases.get(number=3).id)
    assert len(cloudrun_target.revisions) == revisions
    assert cloudrun_target.services[SERVICE]["ingress"] == IngressTraffic.INGRESS_TRAFFIC_ALL


def test_scaling_bounds_that_cross_are_refused_and_nothing_changes(team, owner, login, cloudrun_target):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    page = login(owner).post("/t/acme/hello/settings/", {
        "cpu": "1", "memory_mb": "512", "port": "8080", "health_check_path": "/", "public": "on",
        "start_command": "", "build_command": "", "min_instances": "5", "max_instances": "2",
    }, follow=True).content.decode()
    assert "The fewest instances cannot be more than the most." in page
    service.refresh_from_db()
    assert (service.min_instances, service.max_instances) == (None, None)


def test_local_services_do_not_offer_request_scaling(team, owner, login, cloudrun_target):
    create_service(team=team, name="here", created_by=owner)
    assert 'name="concurrency"' not in login(owner).get("/t/acme/here/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_cli_sets_a_secret_variable(live_server, owner, cloudrun_target, monkeypatch, capsys, tmp_path):
    from hakobune import cli
    from hakobune.platform.accounts.services import create_team
    from hakobune.platform.accounts.tokens import create_api_token

    team = create_team(name="acme", owner=owner)
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HAKOBUNE_URL", live_server.url)
    monkeypatch.setenv("HAKOBUNE_TOKEN", create_api_token(user=owner, name="cli")[1])

    assert cli.main(["env", "-s", "hello", "-t", "acme", "set", "MODE=prod", "--secret", "DB_PASSWORD=db-password:2"]) == 0
    assert "Set MODE, DB_PASSWORD." in capsys.readouterr().out
    assert cli.main(["env", "-s", "hello", "-t", "acme", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == ["DB_PASSWORD from Secret Manager: hakobune_acme_db-password:2",
                                                    "MODE=••••••"]
    assert cli.main(["env", "-s", "hello", "-t", "acme", "set", "--secret", "TOKEN"]) == 2
    assert "write KEY=SECRET[:VERSION]" in capsys.readouterr().err
    assert EnvVar.objects.get(service=service, key="DB_PASSWORD").secret_ref == "hakobune_acme_db-password:2"


def test_settings_that_would_strand_running_services_are_not_saved(team, owner, admin, login, cloudrun_target, queued_tasks, acme_key):
    run_pipeline(create_service(team=team, name="hello", created_by=owner, target="cloudrun"), owner, queued_tasks)
    client = login(admin)

    page = save_team_settings(client, "acme", region="us-east1").content.decode()
    assert "Not saved: acme/hello already runs in the project, region and repository in effect now" in page
    assert not TeamCloudRunSettings.objects.exists()
    page = client.post("/cloud-run/", {"project": "", "region": "asia-northeast1", "repository": "", "bucket": "",
                                       "service_account": "", "credentials": ""}).content.decode()
    assert "Not saved: acme/hello already runs" in page
    assert CloudRunDefaults.load().region == ""

    # A new key for the same project moves nothing.
    save_team_settings(client, "acme", key_text=acme_key)
    assert TeamCloudRunSettings.objects.get(team=team).key_email == KEY_EMAIL
