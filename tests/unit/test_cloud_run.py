"""The Cloud Run backend through Google's real client libraries (REST
transport) against fake Google endpoints on loopback and the Cloud Storage
emulator: what is sent, that long-running operations are polled to their end,
and that each error reaches the person in words."""

import io
import tarfile
import zipfile

import pytest

from hakobune.runtime.base import DeploySpec, RuntimeBackendError, ServiceRef
from hakobune.runtime.release_config import ReleaseConfig, is_setting
from hakobune.runtime.cloud_run import CloudRunBackend, cloud_run_resources, team_secret
from hakobune.worker.builders.base import BuildError
from tests.support.fake_gcp import error_info
from tests.unit.cloud_run_fixtures import (  # noqa: F401 (fixtures)
    PROJECT,
    REGION,
    backend_options,
    cloud_monitoring_series,
    cloud_run,
    fake_gcp,
    loopback_only,
    service_account_key,
    storage_emulator,
)

REF = ServiceRef("acme", "hello")
SERVICE = f"projects/{PROJECT}/locations/{REGION}/services/acme-hello"
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/apps/acme/hello@sha256:1234"


def spec(**changes):
    values = dict(team="acme", service="hello", release_id=11, release_number=1, image=IMAGE, hostname="hello-acme.x",
                  port=8080, cpu=0.5, memory_mb=256, instances=3, env={"GREETING": "hi", "PORT": "1"})
    values.update(changes)
    settings = {name: values.pop(name) for name in list(values) if is_setting(name)}
    return DeploySpec(**values, config=ReleaseConfig.of(**settings))


def source_archive(tmp_path, fmt="tar.gz"):
    files = {"app.py": "from flask import Flask\napp = Flask(__name__)\n", "requirements.txt": "flask\n"}
    path = tmp_path / f"src.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as bundle:
            for name, text in files.items():
                bundle.writestr(name, text)
    else:
        with tarfile.open(path, "w:gz") as tar:
            for name, text in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text.encode()))
    return path


# -- deploy ---------------------------------------------------------------------------


def test_deploy_creates_the_service_with_image_env_resources_and_scaling(cloud_run, fake_gcp):
    result = cloud_run.deploy(spec())

    create = fake_gcp.calls("POST", r"/services$")[0]
    assert create.query["serviceId"] == "acme-hello"
    template = create.body["template"]
    container = template["containers"][0]
    assert container["image"] == IMAGE
    assert container["env"] == [{"name": "GREETING", "value": "hi"}]  # PORT is Cloud Run's to set
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert template["scaling"] == {"maxInstanceCount": 3}  # min 0 is the default, left out
    assert template["maxInstanceRequestConcurrency"] == 80
    assert template["timeout"] == "300s"
    assert template["labels"]["hakobune-release"] == "11"
    assert create.body["labels"] == {"hakobune-team": "acme", "hakobune-service": "hello"}
    assert create.body["traffic"] == [{"type": 1, "percent": 100}]  # 1 = LATEST

    assert result.url == "https://acme-hello-fake.a.run.app"
    assert result.state["revision"] == "acme-hello-00001-f1k"
    assert result.state["url"] == result.url


def test_the_deploy_operation_is_polled_until_done(cloud_run, fake_gcp):
    cloud_run.deploy(spec())
    polls = fake_gcp.calls("GET", r"/operations/op-1$")
    assert len(polls) == 3  # done=false twice, then done=true with the service


def test_a_public_service_gets_the_all_users_invoker_binding(cloud_run, fake_gcp):
    cloud_run.deploy(spec())
    set_policy = fake_gcp.calls("POST", r":setIamPolicy$")[0]
    assert set_policy.body["policy"]["bindings"] == [{"role": "roles/run.invoker", "members": ["allUsers"]}]


def test_a_private_service_gets_no_public_binding_and_loses_one_it_had(cloud_run, fake_gcp):
    fake_gcp.policies[SERVICE] = {
        "etag": "BwAAAA==", "bindings": [{"role": "roles/run.invoker", "members": ["allUsers", "user:ana@example.com"]}]
    }
    cloud_run.deploy(spec(public=False))
    set_policy = fake_gcp.calls("POST", r":setIamPolicy$")[0]
    assert set_policy.body["policy"]["bindings"] == [{"role": "roles/run.invoker", "members": ["user:ana@example.com"]}]

    fake_gcp.requests.clear()
    cloud_run.deploy(spec(public=False, release_id=12))
    assert fake_gcp.calls("POST", r":setIamPolicy$") == []  # already private: nothing to change


def test_a_second_deploy_updates_the_service_and_makes_a_new_revision(cloud_run, fake_gcp):
    first = cloud_run.deploy(spec())
    second = cloud_run.deploy(spec(release_id=12, release_number=2, image=IMAGE.replace("1234", "5678"), cpu=2, memory_mb=1024))
    patch = fake_gcp.calls("PATCH", "/services/acme-hello$")[0]
    assert patch.body["template"]["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "1024Mi"}
    assert patch.body["etag"]
    assert second.state["revision"] != first.state["revision"]


def test_rollback_moves_traffic_to_the_earlier_revision_instead_of_making_one(cloud_run, fake_gcp):
    first = cloud_run.deploy(spec())
    cloud_run.deploy(spec(release_id=12, release_number=2, image=IMAGE.replace("1234", "5678")))
    revisions_before = len(fake_gcp.revisions)
    fake_gcp.requests.clear()

    rollback = cloud_run.deploy(spec(release_id=13, release_number=3))  # v1's image and configuration again

    assert rollback.state["revision"] == first.state["revision"] and rollback.state["reused"]
    assert len(fake_gcp.revisions) == revisions_before
    patch = fake_gcp.calls("PATCH", "/services/acme-hello$")[0]
    assert patch.body["traffic"] == [{"type": 2, "revision": first.state["revision"], "percent": 100}]


def test_traffic_can_be_split_between_revisions(cloud_run, fake_gcp):
    first = cloud_run.deploy(spec()).state["revision"]
    second = cloud_run.deploy(spec(release_id=12, image=IMAGE.replace("1234", "5678"))).state["revision"]
    fake_gcp.requests.clear()

    cloud_run.route_traffic(REF, {first: 90, second: 10})

    patch = fake_gcp.calls("PATCH", "/services/acme-hello$")[0]
    assert patch.body["traffic"] == [
        {"type": 2, "revision": first, "percent": 90},
        {"type": 2, "revision": second, "percent": 10},
    ]
    assert len(fake_gcp.calls("GET", "/operations/")) == 3
    assert cloud_run.traffic(REF) == {first: 90, second: 10}


def test_a_traffic_split_must_add_up_and_name_known_revisions(cloud_run, fake_gcp):
    first = cloud_run.deploy(spec()).state["revision"]
    with pytest.raises(RuntimeBackendError, match="add up to 100"):
        cloud_run.route_traffic(REF, {first: 60})
    with pytest.raises(RuntimeBackendError, match="no revision acme-hello-00009"):
        cloud_run.route_traffic(REF, {first: 50, "acme-hello-00009": 50})


def test_resources_are_rounded_up_to_what_cloud_run_accepts():
    assert cloud_run_resources(0.25, 128) == ("1", "512Mi")
    assert cloud_run_resources(1, 2048) == ("1", "2048Mi")
    assert cloud_run_resources(3, 1024) == ("4", "2048Mi")
    assert cloud_run_resources(8, 8192) == ("8", "8192Mi")


def test_long_names_become_valid_cloud_run_ids():
    short = CloudRunBackend.service_id(ServiceRef("acme", "hello"))
    long = CloudRunBackend.service_id(ServiceRef("a" * 40, "b" * 30))
    assert short == "acme-hello"
    assert len(long) <= 49 and long[0].isalpha()
    assert long != CloudRunBackend.service_id(ServiceRef("a" * 40, "b" * 29))


# -- build ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_build_uploads_the_source_with_the_plans_dockerfile_and_streams_the_log(cloud_run, fake_gcp, tmp_path, fmt):
    lines = []
    image = cloud_run.image_builder().submit(source_archive(tmp_path, fmt), "FROM python:3.12-slim\nCMD [\"app\"]\n", "acme/hello:abc", lines.append)

    create = fake_gcp.calls("POST", "/v1/projects/hk-test/builds$")[0].body
    tag = f"{REGION}-docker.pkg.dev/{PROJECT}/apps/acme/hello:abc"
    assert create["steps"] == [{"name": "gcr.io/cloud-builders/docker",
                                "args": ["build", "-t", tag, "-f", ".hakobune/Dockerfile", "."]}]
    assert create["images"] == [tag]
    assert create["source"]["storageSource"]["bucket"] == "hk-test_cloudbuild"
    build = next(iter(fake_gcp.builds.values()))
    # What Cloud Build downloaded from Cloud Storage: the app and the plan's Dockerfile.
    assert build["_source_files"][".hakobune/Dockerfile"].startswith("FROM python:3.12-slim")
    assert "from flask import Flask" in build["_source_files"]["app.py"]
    # The operation was polled to its end, and the log arrived in its two parts.
    assert len(fake_gcp.calls("GET", r"/v1/operations/build/")) == 3
    assert lines[-4:] == fake_gcp.build_log
    assert image.startswith(f"{REGION}-docker.pkg.dev/{PROJECT}/apps/acme/hello@sha256:")


def test_build_with_googles_buildpacks(cloud_run, fake_gcp, tmp_path):
    cloud_run.image_builder().submit(source_archive(tmp_path), None, "acme/hello:abc", lambda line: None, buildpacks=True)
    step = fake_gcp.calls("POST", "/builds$")[0].body["steps"][0]
    assert step["name"] == "gcr.io/k8s-skaffold/pack"
    assert step["args"][:4] == ["build", f"{REGION}-docker.pkg.dev/{PROJECT}/apps/acme/hello:abc", "--builder", "gcr.io/buildpacks/builder:latest"]
    assert ".hakobune/Dockerfile" not in next(iter(fake_gcp.builds.values()))["_source_files"]


def test_an_apps_own_dockerfile_is_used_as_it_is(cloud_run, fake_gcp, tmp_path):
    cloud_run.image_builder().submit(source_archive(tmp_path), None, "acme/hello:abc", lambda line: None, dockerfile_path="deploy/Dockerfile")
    assert fake_gcp.calls("POST", "/builds$")[0].body["steps"][0]["args"][-2:] == ["deploy/Dockerfile", "."]


def test_a_failed_build_says_so_with_the_last_log_lines(cloud_run, fake_gcp, tmp_path):
    fake_gcp.build_outcome = "FAILURE"
    fake_gcp.build_log = ["Step #0: ERROR: No matching distribution found for flask==99", "ERROR"]
    with pytest.raises(BuildError) as caught:
        cloud_run.image_builder().submit(source_archive(tmp_path), "FROM x\n", "acme/hello:abc", lambda line: None)
    assert "failed" in caught.value.message and "non-zero status" in caught.value.message
    assert "No matching distribution found for flask==99" in caught.value.log_tail[0]


# -- the rest of the interface ----------------------------------------------------------------


def test_logs_come_from_cloud_logging_oldest_first(cloud_run, fake_gcp):
    resource = {"type": "cloud_run_revision", "labels": {"service_name": "acme-hello", "revision_name": "acme-hello-00001"}}
    fake_gcp.log_entries = [
        {"logName": f"projects/{PROJECT}/logs/run.googleapis.com%2Fstdout", "resource": resource,
         "timestamp": "2026-11-28T10:00:01Z", "textPayload": "Listening on 0.0.0.0:8080", "insertId": "1"},
        {"logName": f"projects/{PROJECT}/logs/run.googleapis.com%2Fstderr", "resource": resource,
         "timestamp": "2026-11-28T10:00:02Z", "jsonPayload": {"message": "GET / 200"}, "insertId": "2"},
        {"logName": f"projects/{PROJECT}/logs/x", "resource": {"type": "cloud_run_revision", "labels": {"service_name": "other"}},
         "timestamp": "2026-11-28T10:00:03Z", "textPayload": "not ours", "insertId": "3"},
    ]
    lines = cloud_run.logs(REF, tail=50)
    assert [line.text for line in lines] == ["Listening on 0.0.0.0:8080", "GET / 200"]
    assert lines[0].instance == "acme-hello-00001"
    query = fake_gcp.calls("POST", "/v2/entries:list")[0].body
    assert 'resource.labels.service_name="acme-hello"' in query["filter"]
    assert query["resourceNames"] == [f"projects/{PROJECT}"] and query["orderBy"] == "timestamp desc"


def test_metrics_come_from_cloud_monitoring(cloud_run, fake_gcp):
    fake_gcp.time_series = cloud_monitoring_series("2026-11-28T10:05:00Z")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in cloud_run.metrics(REF)}
    assert samples == {
        ("request_count", (("response_code_class", "2xx"),)): 42,
        ("request_count", (("response_code_class", "5xx"),)): 3,
        ("request_latency_p50_ms", ()): 12.5,
        ("request_latency_p95_ms", ()): 80.0,
        ("request_latency_p99_ms", ()): 120.0,
        ("cpu_percent", ()): 35.0,
        ("memory_percent", ()): 50.0,
        ("instance_count", (("state", "active"),)): 2,
    }
    count = fake_gcp.calls("GET", "/timeSeries$")[0].query
    assert 'metric.type="run.googleapis.com/request_count"' in count["filter"]
    assert 'resource.labels.service_name="acme-hello"' in count["filter"]
    assert count["aggregation.groupByFields"] == "metric.labels.response_code_class"


def test_status_stop_and_start(cloud_run, fake_gcp):
    assert cloud_run.status(REF).state == "missing"
    cloud_run.deploy(spec())
    assert cloud_run.status(REF).state == "running"

    cloud_run.stop(REF)
    assert fake_gcp.services[SERVICE]["ingress"] == 2  # internal only
    assert fake_gcp.policies[SERVICE].get("bindings", []) == []
    assert cloud_run.status(REF).state == "stopped"

    cloud_run.start(REF)
    assert fake_gcp.services[SERVICE]["ingress"] == 1
    assert fake_gcp.policies[SERVICE]["bindings"] == [{"role": "roles/run.invoker", "members": ["allUsers"]}]
    assert cloud_run.status(REF).state == "running"


def test_a_revision_that_does_not_start_fails_the_deploy_in_words(cloud_run, fake_gcp):
    with pytest.raises(RuntimeBackendError, match="did not start the new revision.*PORT"):
        cloud_run.deploy(spec(image=IMAGE.replace("hello", "crashes")))


def test_a_revision_that_crashes_for_another_reason_is_not_told_to_check_its_port():
    from types import SimpleNamespace

    from hakobune.runtime.cloud_run.serve import _not_ready

    crashed = SimpleNamespace(terminal_condition=SimpleNamespace(
        message="Container called exit(1): ModuleNotFoundError: No module named 'yaml'"))
    said = _not_ready(crashed, SimpleNamespace(secrets=None))
    assert "No module named 'yaml'" in said and "0.0.0.0" not in said and "last lines" in said


def test_destroy_deletes_the_service_and_its_images(cloud_run, fake_gcp):
    cloud_run.deploy(spec())
    cloud_run.destroy(REF)
    assert SERVICE not in fake_gcp.services
    delete = fake_gcp.calls("DELETE", "/packages/")[0]
    assert delete.path == f"/v1/projects/{PROJECT}/locations/{REGION}/repositories/apps/packages/acme/hello"
    assert len(fake_gcp.calls("GET", rf"/v1/projects/{PROJECT}/locations/{REGION}/operations/")) == 3
    cloud_run.destroy(REF)  # already gone: nothing to do, no error


# -- errors in words ----------------------------------------------------------------------------


def test_permission_denied_names_the_missing_role(cloud_run, fake_gcp):
    fake_gcp.fail("POST", r"/services$", 403, "Permission 'run.services.create' denied on resource (or it may not exist).",
                  details=[error_info("IAM_PERMISSION_DENIED", permission="run.services.create")])
    with pytest.raises(RuntimeBackendError) as caught:
        cloud_run.deploy(spec())
    assert "needs roles/run.admin on project hk-test" in caught.value.message
    assert "run.services.create" in caught.value.message and caught.value.permanent


def test_permission_denied_on_cloud_build_names_its_role(cloud_run, fake_gcp, tmp_path):
    fake_gcp.fail("POST", r"/builds$", 403, "The caller does not have permission")
    with pytest.raises(BuildError, match="needs roles/cloudbuild.builds.editor on project hk-test"):
        cloud_run.image_builder().submit(source_archive(tmp_path), "FROM x\n", "acme/hello:abc", lambda line: None)


def test_an_api_that_is_not_enabled_says_which_to_enable(cloud_run, fake_gcp):
    fake_gcp.fail("GET", r"/services/acme-hello$", 403,
                  "Cloud Run Admin API has not been used in project 123 before or it is disabled.",
                  details=[error_info("SERVICE_DISABLED", service="run.googleapis.com", consumer="projects/123")])
    with pytest.raises(RuntimeBackendError) as caught:
        cloud_run.deploy(spec())
    assert caught.value.message.startswith("enable the Cloud Run API in project hk-test")
    assert "gcloud services enable run.googleapis.com --project hk-test" in caught.value.message


def test_quota_exceeded_is_temporary_and_says_where_to_ask(cloud_run, fake_gcp):
    fake_gcp.fail("POST", r"/services$", 429, "Quota exceeded for quota metric 'Write requests' of service 'run.googleapis.com'.")
    with pytest.raises(RuntimeBackendError) as caught:
        cloud_run.deploy(spec())
    assert "quota of project hk-test is used up" in caught.value.message
    assert "iam-admin/quotas" in caught.value.message and not caught.value.permanent


def test_an_image_that_does_not_exist(cloud_run, fake_gcp):
    with pytest.raises(RuntimeBackendError) as caught:
        cloud_run.deploy(spec(image=IMAGE.replace("hello", "missing")))
    assert "cannot find the image" in caught.value.message and "Build the service again" in caught.value.message


def test_an_invalid_region(fake_gcp, storage_emulator):
    backend = CloudRunBackend("cloudrun", **backend_options(fake_gcp, storage_emulator, region="mars-north1"))
    fake_gcp.fail("GET", r"/locations/mars-north1/", 400, "Location 'mars-north1' is not a valid location.")
    with pytest.raises(RuntimeBackendError, match="'mars-north1' is not a Cloud Run region.*CLOUDRUN_REGION"):
        backend.deploy(spec())


def test_an_unconfigured_target_says_what_to_set():
    backend = CloudRunBackend("cloudrun", credentials="anonymous")
    with pytest.raises(RuntimeBackendError, match="set CLOUDRUN_PROJECT and CLOUDRUN_REGION"):
        backend.deploy(spec())


def test_a_missing_key_file_says_so(fake_gcp, storage_emulator, tmp_path):
    backend = CloudRunBackend("cloudrun", **backend_options(fake_gcp, storage_emulator, credentials=str(tmp_path / "nope.json")))
    with pytest.raises(RuntimeBackendError, match="nope.json.*cannot be read"):
        backend.deploy(spec())


def test_an_invalid_region_set_by_staff_says_where_to_change_it(fake_gcp, storage_emulator):
    place = "team acme's settings on the Cloud Run page of the portal (staff)"
    backend = CloudRunBackend(
        "cloudrun", **backend_options(fake_gcp, storage_emulator, region="mars-north1", settings_place=place)
    )
    fake_gcp.fail("GET", r"/locations/mars-north1/", 400, "Location 'mars-north1' is not a valid location.")
    with pytest.raises(RuntimeBackendError, match="Set the region in team acme's settings on the Cloud Run page"):
        backend.deploy(spec())


# -- credentials: a service-account key --------------------------------------------------


def test_a_service_account_key_signs_in_and_every_call_carries_its_token(fake_gcp, storage_emulator):
    key = service_account_key(fake_gcp)
    options = backend_options(fake_gcp, storage_emulator, credentials="", credentials_info=key)
    backend = CloudRunBackend("cloudrun", **options)

    backend.deploy(spec())

    # Signing in exchanged a JWT signed with the key for a token; every call then
    # carried a credential of the key's account, checked against its public key.
    (exchange,) = fake_gcp.calls("POST", "^/token$")
    assert exchange.body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    run_calls = fake_gcp.calls(pattern="^/v2/projects/")
    assert run_calls and {fake_gcp.who(call.bearer) for call in run_calls} == {"deployer@acme-prod.iam.gserviceaccount.com"}


def test_a_key_google_refuses_is_said_in_words(fake_gcp, storage_emulator):
    key = service_account_key(fake_gcp)
    fake_gcp.trusted_keys.clear()  # as when the key was deleted in the console
    backend = CloudRunBackend("cloudrun", **backend_options(fake_gcp, storage_emulator, credentials="", credentials_info=key))
    with pytest.raises(RuntimeBackendError, match="Google refused the key of deployer@acme-prod.*create a new key"):
        backend.deploy(spec())
    assert fake_gcp.calls(pattern="^/v2/") == []


def test_permission_denied_names_the_keys_account(fake_gcp, storage_emulator):
    key = service_account_key(fake_gcp)
    backend = CloudRunBackend("cloudrun", **backend_options(fake_gcp, storage_emulator, credentials="", credentials_info=key))
    fake_gcp.fail("GET", "/services/", 403, "Permission 'run.services.get' denied on resource")
    with pytest.raises(RuntimeBackendError, match="deployer@acme-prod.iam.gserviceaccount.com needs roles/run.admin"):
        backend.deploy(spec())


def test_check_access_reads_what_a_deploy_needs(cloud_run, fake_gcp):
    cloud_run.deploy(spec())
    assert cloud_run.check_access() == [
        (True, "Hakobune reached Cloud Run in project hk-test, region europe-west1, as the account Hakobune uses: "
               "1 service there, 1 of them Hakobune's."),
        (True, "Cloud Build answers: builds can start."),
        (True, "The bucket gs://hk-test_cloudbuild is there for sources and build logs."),
        (True, "The Artifact Registry repository apps in europe-west1 takes images."),
    ]
    # It only reads: checking again sends no write.
    writes_before = [c for c in fake_gcp.requests if c.method != "GET"]
    cloud_run.check_access()
    assert [c for c in fake_gcp.requests if c.method != "GET"] == writes_before


def test_check_access_says_each_thing_that_is_missing(fake_gcp, storage_emulator):
    backend = CloudRunBackend("cloudrun", **backend_options(fake_gcp, storage_emulator, repository="images",
                                                            bucket="hk-test-sources"))
    fake_gcp.fail("GET", r"/services$", 403, "Permission 'run.services.list' denied on resource")
    fake_gcp.fail("GET", r"/v1/projects/hk-test/builds$", 403, "The caller does not have permission",
                  details=[error_info("IAM_PERMISSION_DENIED", permission="cloudbuild.builds.list")])
    checks = backend.check_access()
    assert [fine for fine, _ in checks] == [False, False, True, False]
    assert "needs roles/run.admin" in checks[0][1]
    assert "needs roles/cloudbuild.builds.editor on project hk-test (it lacks cloudbuild.builds.list)" in checks[1][1]
    assert checks[2][1] == "The bucket gs://hk-test-sources does not exist yet; the first deploy makes it."
    assert checks[3][1].startswith("Artifact Registry has no repository images in europe-west1: create it (gcloud "
                                   "artifacts repositories create images --repository-format=docker")


# -- secrets from Secret Manager ----------------------------------------------------------


def test_secret_env_goes_as_secret_manager_references(cloud_run, fake_gcp):
    fake_gcp.secrets = {"hakobune_acme_db-password": {"versions": {"1", "2", "3"}}, "hakobune_acme_api-key": {}}
    cloud_run.deploy(spec(secret_env={"DB_PASSWORD": "hakobune_acme_db-password:3",
                                      "API_KEY": f"projects/{PROJECT}/secrets/hakobune_acme_api-key/versions/latest"}))

    env = fake_gcp.calls("POST", r"/services$")[0].body["template"]["containers"][0]["env"]
    assert env == [
        {"name": "GREETING", "value": "hi"},
        {"name": "API_KEY", "valueSource": {"secretKeyRef": {"secret": "hakobune_acme_api-key", "version": "latest"}}},
        {"name": "DB_PASSWORD", "valueSource": {"secretKeyRef": {"secret": "hakobune_acme_db-password", "version": "3"}}},
    ]


def test_another_secret_version_makes_a_new_revision(cloud_run, fake_gcp):
    fake_gcp.secrets = {"hakobune_acme_db-password": {"versions": {"1", "2"}}}
    first = cloud_run.deploy(spec(secret_env={"DB_PASSWORD": "hakobune_acme_db-password:1"}))
    second = cloud_run.deploy(spec(secret_env={"DB_PASSWORD": "hakobune_acme_db-password:2"}))
    assert first.state["revision"] != second.state["revision"] and "reused" not in second.state


def test_a_secret_that_does_not_exist_says_how_to_create_it(cloud_run, fake_gcp):
    with pytest.raises(RuntimeBackendError) as caught:
        cloud_run.deploy(spec(secret_env={"DB_PASSWORD": "hakobune_acme_db-pasword:latest"}))
    assert caught.value.message.startswith(
        "Secret Manager has no secret hakobune_acme_db-pasword (version latest) in project 123456789012. Create it"
    )
    assert "gcloud secrets create hakobune_acme_db-pasword --project 123456789012 --data-file=-" in caught.value.message


def test_a_secret_the_service_may_not_read_names_the_role_and_the_account(cloud_run, fake_gcp):
    fake_gcp.secrets = {"hakobune_acme_db-password": {"readable": False}}
    with pytest.raises(RuntimeBackendError) as caught:
        cloud_run.deploy(spec(secret_env={"DB_PASSWORD": "hakobune_acme_db-password:latest"}))
    assert caught.value.message.startswith(
        "your service runs as hakobune-run-acme@hk-test.iam.gserviceaccount.com, which may not read the secret "
        "hakobune_acme_db-password in Secret Manager."
    )
    assert "--role=roles/secretmanager.secretAccessor" in caught.value.message


@pytest.mark.parametrize("given, stored", [
    ("db-password", "hakobune_acme_db-password:latest"),
    (" db-password:7 ", "hakobune_acme_db-password:7"),
    ("hakobune_acme_db-password", "hakobune_acme_db-password:latest"),
    (f"projects/{PROJECT}/secrets/api-key", "hakobune_acme_api-key:latest"),
    (f"projects/{PROJECT}/secrets/hakobune_acme_api-key/versions/2", "hakobune_acme_api-key:2"),
])
def test_secret_references_are_stored_in_one_spelling(given, stored):
    if given.startswith("projects/") and "hakobune_acme_" not in given:
        with pytest.raises(ValueError, match="is not one of team acme's secrets"):
            team_secret(given, team="acme", project=PROJECT)
        return
    assert team_secret(given, team="acme", project=PROJECT) == stored


@pytest.mark.parametrize("given", ["", "db password", "db-password:0", "db-password:newest", "projects//secrets/x", "a/b"])
def test_a_reference_that_is_no_secret_is_refused_in_words(given):
    with pytest.raises(ValueError, match="is not a Secret Manager secret: give its name"):
        team_secret(given, team="acme", project=PROJECT)


def test_buildpacks_are_told_the_services_start_command(cloud_run, fake_gcp, tmp_path):
    cloud_run.image_builder().submit(source_archive(tmp_path), None, "acme/hello:abc", lambda line: None, buildpacks=True,
                    start_command="gunicorn -b :$PORT app:app")
    args = fake_gcp.calls("POST", "/builds$")[0].body["steps"][0]["args"]
    assert args[-2:] == ["--env", "GOOGLE_ENTRYPOINT=gunicorn -b :$PORT app:app"]


def test_buildpacks_are_told_the_services_google_settings(cloud_run, fake_gcp, tmp_path):
    cloud_run.image_builder().submit(source_archive(tmp_path), None, "acme/hello:abc", lambda line: None, buildpacks=True,
                    build_env={"GOOGLE_RUNTIME_VERSION": "3.12", "GOOGLE_BUILDABLE": "./cmd/web", "OTHER": "x"})
    args = fake_gcp.calls("POST", "/builds$")[0].body["steps"][0]["args"]
    assert args[-4:] == ["--env", "GOOGLE_BUILDABLE=./cmd/web", "--env", "GOOGLE_RUNTIME_VERSION=3.12"]
