"""A deploy to the Cloud Run target through the pipeline's tasks, against the
fake Google endpoints and the Cloud Storage emulator: the flask fixture is
built by (fake) Cloud Build instead of the local Docker Engine and ends as a
live release at the Cloud Run service's address. Then the portal's traffic
split, shown and used only where the backend can split traffic."""

import pytest

from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.services.models import Release
from hakobune.platform.services.services import ServiceActionError, create_service, deploy_service, split_traffic
from hakobune.worker import tasks
from hakobune.worker.builders.local_docker import LocalDockerBuilder
from tests.conftest import upload_of
from tests.unit.cloud_run_fixtures import (  # noqa: F401 (fixtures)
    PROJECT,
    REGION,
    cloudrun_target,
    fake_gcp,
    loopback_only,
    run_pipeline,
    storage_emulator,
)

SERVICE = f"projects/{PROJECT}/locations/{REGION}/services/acme-hello"


@pytest.fixture
def service(team, owner, cloudrun_target):
    return create_service(team=team, name="hello", created_by=owner, target="cloudrun")


def test_a_flask_app_is_built_in_cloud_build_and_goes_live_on_cloud_run(service, owner, queued_tasks, cloudrun_target):
    build = run_pipeline(service, owner, queued_tasks)

    assert build.status == BuildStatus.LIVE, build.failure_reason
    assert build.image.startswith(f"{REGION}-docker.pkg.dev/{PROJECT}/apps/acme/hello@sha256:")
    # Built remotely from the plan's Dockerfile on the registry stack image, with the app's files.
    files = next(iter(cloudrun_target.builds.values()))["_source_files"]
    assert files[".hakobune/Dockerfile"].startswith("FROM python:3.12-slim")
    assert "app.py" in files and "requirements.txt" in files
    log = list(build.log_lines.values_list("text", flat=True))
    assert "Step #0: Successfully built 0123abcd" in log
    # Deployed with the image that was built; the release records its revision.
    sent = cloudrun_target.calls("POST", r"/services$")[0].body["template"]["containers"][0]
    assert sent["image"] == build.image
    release = Release.objects.get(build=build)
    assert release.status == Release.Status.LIVE
    assert release.runtime_state["revision"] == "acme-hello-00001-f1k"
    service.refresh_from_db()
    assert service.url == "https://acme-hello-fake.a.run.app"


def test_a_failed_cloud_build_fails_the_build_with_its_log(service, owner, queued_tasks, cloudrun_target):
    cloudrun_target.build_outcome = "FAILURE"
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    tasks.build_image(build.id)
    build.refresh_from_db()
    assert build.status == BuildStatus.FAILED
    assert "Cloud Build" in build.failure_reason and "failed" in build.failure_reason


def test_local_services_still_build_locally(team, owner, cloudrun_target, monkeypatch, queued_tasks):
    local = create_service(team=team, name="here", created_by=owner)
    build = deploy_service(service=local, source_file=upload_of("flask-hello"), created_by=owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    monkeypatch.setattr(LocalDockerBuilder, "build", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("local builder")))
    tasks.build_image(build.id)
    build.refresh_from_db()
    assert build.status == BuildStatus.FAILED  # it went to the local builder (stubbed to fail here)
    assert cloudrun_target.builds == {}


def test_traffic_is_split_between_releases_by_percentage(service, owner, queued_tasks, cloudrun_target):
    first = run_pipeline(service, owner, queued_tasks)
    cloudrun_target.build_log = ["another build"]
    # A second deploy with another configuration makes a second revision.
    service.memory_mb = 1024
    service.save()
    second = run_pipeline(service, owner, queued_tasks)
    v1, v2 = Release.objects.get(build=first), Release.objects.get(build=second)
    assert v1.runtime_state["revision"] != v2.runtime_state["revision"]

    splits = split_traffic(service=service, percents={v1.number: 80, v2.number: 20})

    assert splits == {v1.runtime_state["revision"]: 80, v2.runtime_state["revision"]: 20}
    traffic = cloudrun_target.services[SERVICE]["traffic"]
    assert [(t["revision"], t["percent"]) for t in traffic] == [
        (v1.runtime_state["revision"], 80), (v2.runtime_state["revision"], 20)
    ]
    with pytest.raises(ServiceActionError, match="together they must make 100"):
        split_traffic(service=service, percents={v1.number: 50})
    with pytest.raises(ServiceActionError, match="v9 never ran"):
        split_traffic(service=service, percents={9: 100})


def test_the_portal_offers_the_split_only_where_the_backend_can(service, team, owner, login, queued_tasks, cloudrun_target):
    build = run_pipeline(service, owner, queued_tasks)
    client = login(owner)
    page = client.get(f"/t/acme/{service.name}/").content.decode()
    assert 'id="traffic-split"' in page
    number = Release.objects.get(build=build).number

    response = client.post(f"/t/acme/{service.name}/traffic/", {f"v{number}": "100"}, follow=True)
    assert "Requests now go 100% to v1" in response.content.decode()

    local = create_service(team=team, name="here", created_by=owner)
    assert 'id="traffic-split"' not in client.get(f"/t/acme/{local.name}/").content.decode()
    response = client.post(f"/t/acme/{local.name}/traffic/", {"v1": "100"}, follow=True)
    assert "cannot split traffic" in response.content.decode()


def test_viewers_cannot_split_traffic(service, viewer, login, cloudrun_target):
    assert login(viewer).post(f"/t/acme/{service.name}/traffic/", {"v1": "100"}).status_code == 403


def test_the_new_service_form_offers_the_targets_only_when_there_are_several(settings, cloudrun_target):
    from hakobune.platform.services.forms import NewServiceForm

    assert list(dict(NewServiceForm().fields["target"].choices)) == ["local", "cloudrun"]
    settings.RUNTIME_BACKENDS = {"local": settings.RUNTIME_BACKENDS["local"]}
    assert "target" not in NewServiceForm().fields


def test_the_release_table_shows_each_revision_and_its_share(service, owner, login, queued_tasks, cloudrun_target):
    first = run_pipeline(service, owner, queued_tasks)
    service.memory_mb = 1024
    service.save()
    second = run_pipeline(service, owner, queued_tasks)
    v1, v2 = Release.objects.get(build=first), Release.objects.get(build=second)
    split_traffic(service=service, percents={v1.number: 70, v2.number: 30})

    page = login(owner).get(f"/t/acme/{service.name}/").content.decode()

    assert v1.runtime_state["revision"] in page and v2.runtime_state["revision"] in page
    assert '<td class="traffic"><strong>70%</strong></td>' in page and '<td class="traffic"><strong>30%</strong></td>' in page
    assert f'name="v{v1.number}" min="0" max="100" value="70"' in page
    assert f'name="v{v2.number}" min="0" max="100" value="30"' in page

    cloudrun_target.fail("GET", "/services/acme-hello$", 403, "Permission 'run.services.get' denied on resource")
    page = login(owner).get(f"/t/acme/{service.name}/").content.decode()
    assert "The traffic split could not be read: permission denied: the account Hakobune uses needs roles/run.admin" in page


def test_a_restart_makes_a_fresh_revision_and_a_rollback_reuses_the_old_one(service, owner, queued_tasks, cloudrun_target):
    from hakobune.platform.services.services import restart_service, rollback

    v1 = Release.objects.get(build=run_pipeline(service, owner, queued_tasks))
    service.refresh_from_db()
    tasks.start_release(restart_service(service=service).id)
    v2 = service.releases.get(number=2)
    assert v2.status == Release.Status.LIVE and v2.runtime_state["revision"] != v1.runtime_state["revision"]

    service.refresh_from_db()
    tasks.start_release(rollback(service=service, to_release=v1).id)
    assert service.releases.get(number=3).runtime_state == {**v1.runtime_state, "reused": True}


def test_what_cloud_run_does_by_itself_is_not_offered(service, owner, login, queued_tasks, cloudrun_target):
    from hakobune.platform.services.services import add_domain, set_scale_to_zero

    run_pipeline(service, owner, queued_tasks)
    page = login(owner).get(f"/t/acme/{service.name}/").content.decode()
    assert 'id="domains"' not in page and 'name="scale_to_zero"' not in page and 'id="id_instances"' not in page
    assert "starts and stops instances with the requests by itself" in page
    with pytest.raises(ServiceActionError, match="runs on cloudrun, which cannot serve custom domains"):
        add_domain(service=service, hostname="www.example.com")
    with pytest.raises(ServiceActionError, match="runs on cloudrun, which cannot scale to zero on its own schedule"):
        set_scale_to_zero(service=service, enabled=True, idle_minutes=5)


@pytest.mark.django_db(transaction=True)
def test_traffic_through_the_api_and_the_cli(live_server, owner, cloudrun_target, queued_tasks, monkeypatch, capsys, tmp_path):
    from hakobune import cli
    from hakobune.platform.accounts.services import create_team
    from hakobune.platform.accounts.tokens import create_api_token

    team = create_team(name="acme", owner=owner)
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    run_pipeline(service, owner, queued_tasks)
    service.memory_mb = 1024
    service.save()
    run_pipeline(service, owner, queued_tasks)
    local = create_service(team=team, name="here", created_by=owner)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HAKOBUNE_URL", live_server.url)
    monkeypatch.setenv("HAKOBUNE_TOKEN", create_api_token(user=owner, name="cli")[1])

    assert cli.main(["traffic", "-s", "hello", "-t", "acme", "v1=25", "v2=75"]) == 0
    assert capsys.readouterr().out.splitlines() == ["v2     75%  acme-hello-00002-f2k", "v1     25%  acme-hello-00001-f1k"]
    assert [(t["revision"], t["percent"]) for t in cloudrun_target.services[SERVICE]["traffic"]] == [
        ("acme-hello-00001-f1k", 25), ("acme-hello-00002-f2k", 75)
    ]
    assert cli.main(["traffic", "-s", "hello", "-t", "acme", "v1=50"]) == 1
    assert "together they must make 100" in capsys.readouterr().err
    assert cli.main(["traffic", "-s", "here", "-t", "acme"]) == 1
    assert "local cannot split traffic between releases" in capsys.readouterr().err
    assert local.releases.count() == 0


# -- crashes Cloud Run reports ----------------------------------------------------------------


def test_a_crashing_revision_is_a_crash_event_once_and_a_crash_loop_alert(service, owner, queued_tasks,
                                                                          cloudrun_target, settings, mailoutbox,
                                                                          django_capture_on_commit_callbacks):
    from hakobune.platform.notifications import actions
    from hakobune.platform.notifications.models import Alert, Delivery
    from hakobune.platform.observability.events import sentence_of
    from hakobune.platform.services import housekeeping
    from tests.unit.test_notifications import send_queued

    actions.add_target(team=service.team, name="ops", kind="email", address="ops@acme.example")
    run_pipeline(service, owner, queued_tasks)
    service.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        housekeeping.reconcile()
    assert not service.events.filter(kind__startswith="instance.").exists() and not Alert.objects.exists()

    revision = cloudrun_target.crash(
        "acme-hello", "Container terminated on signal 9 after it exited with code 137.", at="2026-11-30T08:00:00Z")
    for _ in range(3):  # every pass of the reconciler sees the same condition
        with django_capture_on_commit_callbacks(execute=True):
            housekeeping.reconcile()
    [event] = service.events.filter(kind="instance.crashed")
    assert (event.params["instance"], event.params["code"], event.params["times"]) == (revision, 137, 1)
    assert sentence_of(event) == (f"The web process crashed (revision {revision}): Container terminated on signal 9 "
                                  "after it exited with code 137.")
    # The crash-loop alert, once within its cool-down, as for a local service.
    assert list(Alert.objects.values_list("event", flat=True)) == ["crash_loop"]
    send_queued(queued_tasks)
    assert [mail.subject for mail in mailoutbox] == ["hello keeps crashing"]
    assert Delivery.objects.get().status == "sent"

    # It crashes again a minute later: the same event counts it.
    cloudrun_target.crash("acme-hello", "Container terminated on signal 9 after it exited with code 137.",
                          at="2026-11-30T08:01:00Z")
    housekeeping.reconcile()
    [event] = service.events.filter(kind="instance.crashed")
    assert event.params["times"] == 2 and "crashed 2 times" in sentence_of(event)

    # Out of memory: an OOM event, in Cloud Run's words.
    cloudrun_target.crash("acme-hello", "Memory limit of 512 MiB exceeded with 530 MiB used.",
                          at="2026-11-30T08:05:00Z", condition="ResourcesAvailable")
    housekeeping.reconcile()
    [oom] = service.events.filter(kind="instance.oom_killed")
    assert f"ran out of memory (revision {revision}): " in sentence_of(oom)
    assert "Memory limit of 512 MiB exceeded" in sentence_of(oom)


def test_a_revision_that_failed_to_start_is_its_deploys_failure_not_a_crash(service, owner, queued_tasks,
                                                                           cloudrun_target):
    from hakobune.platform.services import housekeeping

    run_pipeline(service, owner, queued_tasks)
    [revision_name] = cloudrun_target.revisions
    # A later revision, never live, whose container would not start.
    cloudrun_target.revisions[f"{revision_name}-next"] = {
        **cloudrun_target.revisions[revision_name], "name": f"{revision_name}-next",
        "labels": {"hakobune-release": "99999"},
        "conditions": [{"type": "Ready", "state": "CONDITION_FAILED", "message": "failed to start"}]}
    housekeeping.reconcile()
    assert not service.events.filter(kind__startswith="instance.").exists()


def test_a_service_on_cloud_run_gets_the_external_database_staff_entered_for_its_team(
    service, team, owner, queued_tasks, cloudrun_target
):
    from django.contrib.auth import get_user_model

    from hakobune.platform.addons.actions import add_external, attach

    staff = get_user_model().objects.create_user(username="sam", password="x", is_staff=True)
    url = "postgres://app:s3cret@203.0.113.7:5432/shop?sslmode=require"
    shop = add_external(team=team, kind="postgres", name="shop", url=url, created_by=staff)
    attach(addon=shop, service=service, created_by=owner)

    build = run_pipeline(service, owner, queued_tasks)

    assert build.status == BuildStatus.LIVE, build.failure_reason
    sent = cloudrun_target.calls("POST", r"/services$")[0].body["template"]["containers"][0]
    assert {"name": "DATABASE_URL", "value": url} in sent["env"]
    # The deploy log never shows it.
    assert not any("s3cret" in line for line in build.log_lines.values_list("text", flat=True))
