"""Quotas and review, alike for services on this host and on Cloud Run: a team
holds no more CPU, memory and services than staff allow (a change that holds
less always passes), and where review is asked for, a new service's first
deploy is built and waits until an administrator approves it."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.governance.models import ServiceReview, TeamPolicy
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.releases import deploy_spec, egress_allow_by_team
from hakobune.platform.services.services import (
    ServiceActionError,
    create_service,
    deploy_service,
    rollback,
    scale,
    update_settings,
)
from hakobune.worker import tasks
from tests.conftest import upload_of
from tests.unit.cloud_run_fixtures import (  # noqa: F401 (fixtures)
    cloudrun_target,
    fake_gcp,
    loopback_only,
    run_pipeline,
    storage_emulator,
)


@pytest.fixture
def admin(db):
    return get_user_model().objects.create_user(username="ada", password="correct horse battery", is_staff=True)


@pytest.fixture
def small_quota(settings):
    settings.TEAM_MAX_SERVICES = 2
    settings.TEAM_MAX_CPU = 2
    settings.TEAM_MAX_MEMORY_MB = 1024


# -- quotas ---------------------------------------------------------------------------------


def test_a_team_cannot_create_more_services_than_its_quota(team, owner, small_quota, dummy_backend):
    create_service(team=team, name="one", created_by=owner)
    create_service(team=team, name="two", created_by=owner)
    with pytest.raises(ServiceActionError, match=r"Team acme may have at most 2 services \(it has 2\)"):
        create_service(team=team, name="three", created_by=owner)
    assert not Service.objects.filter(name="three").exists()


def test_scaling_past_the_cpu_quota_is_refused_and_nothing_changes(team, owner, small_quota, dummy_backend):
    service = create_service(team=team, name="api", created_by=owner, cpu=Decimal("0.5"), memory_mb=256)
    scale(service=service, instances=4)  # 2 cores, 1024 MiB: exactly the quota
    with pytest.raises(ServiceActionError) as refused:
        scale(service=service, instances=5)
    assert str(refused.value).startswith(
        "Team acme may have 2 CPU cores at once (its services would hold 2.5; now 2) and 1024 MiB of memory at "
        "once (its services would hold 1280; now 1024)."
    )
    assert "an administrator can raise the team's quota" in str(refused.value)
    service.refresh_from_db()
    assert service.instances == 4


def test_a_team_over_a_lowered_quota_may_still_shrink(team, owner, small_quota, dummy_backend):
    service = create_service(team=team, name="api", created_by=owner, cpu=Decimal("0.5"), memory_mb=256)
    scale(service=service, instances=4)
    TeamPolicy.objects.create(team=team, max_cpu=Decimal("1"))
    scale(service=service, instances=3)  # still over 1 core, but less than before
    with pytest.raises(ServiceActionError, match="may have 1 CPU cores at once"):
        update_settings(service=service, cpu=Decimal("0.6"))


def test_cloud_run_counts_whole_cpus_and_its_memory_minimum(team, owner, small_quota, cloudrun_target):
    # The same settings fit here (3 × 0.5 = 1.5 cores) but not on Cloud Run (3 × 1 core, 3 × 512 MiB).
    create_service(team=team, name="here", created_by=owner, cpu=Decimal("0.5"), memory_mb=128, instances=3)
    with pytest.raises(ServiceActionError, match=r"2 CPU cores at once \(its services would hold 4.5; now 1.5\)"):
        create_service(team=team, name="there", created_by=owner, target="cloudrun", cpu=Decimal("0.5"),
                       memory_mb=128, max_instances=3)


def test_a_rollback_that_would_go_over_the_quota_is_refused(team, owner, small_quota, dummy_backend, queued_tasks):
    from tests.unit.test_api import deployed

    service = create_service(team=team, name="api", created_by=owner, cpu=Decimal("0.5"), memory_mb=256)
    scale(service=service, instances=4)
    first = deployed(service, owner, "hakobune/acme/api:one")
    service.refresh_from_db()
    scale(service=service, instances=1)
    tasks.start_release(service.releases.order_by("-number").first().id)
    create_service(team=team, name="other", created_by=owner, cpu=Decimal("1"), memory_mb=256)
    service.refresh_from_db()
    assert service.live_release.config["instances"] == 1  # 0.5 + 1 cores held; v1 ran 4 instances
    with pytest.raises(ServiceActionError, match="may have 2 CPU cores at once"):
        rollback(service=service, to_release=first)


def test_the_api_says_why_a_service_is_refused(client, owner, team, small_quota, dummy_backend):
    from tests.conftest import read_stream
    from tests.unit.test_api import API, bearer

    for name in ("one", "two"):
        create_service(team=team, name=name, created_by=owner)
    answer = client.post(f"{API}/teams/acme/services/", {"name": "three"}, content_type="application/json", **bearer(owner))
    assert answer.status_code == 400
    assert "Team acme may have at most 2 services" in answer.content.decode()


def test_the_dashboard_shows_what_the_team_holds_of_its_quota(team, owner, login, small_quota, dummy_backend):
    create_service(team=team, name="api", created_by=owner, cpu=Decimal("0.5"), memory_mb=256, instances=2)
    page = login(owner).get("/").content.decode()
    assert "1 of 2 services · 1 of 2 CPU cores · 512 of 1024 MiB memory" in page


def test_staff_set_a_teams_quota_and_others_may_not(team, owner, admin, login, small_quota, dummy_backend):
    assert login(owner).get("/quotas/").status_code == 403
    assert login(owner).post("/quotas/t/acme/", {"max_services": "99"}).status_code == 403
    client = login(admin)
    page = client.post("/quotas/t/acme/", {"max_services": "5", "max_cpu": "", "max_memory_mb": "", "review": ""},
                       follow=True).content.decode()
    assert "Saved team acme&#x27;s quota" in page
    assert "<td>0 / 5</td>" in page  # services: the team's own limit; CPU and memory: the defaults
    refused = client.post("/quotas/t/acme/", {"max_services": "", "max_cpu": "-1", "max_memory_mb": "", "review": ""})
    assert "Ensure this value is greater than or equal to 0.1" in refused.content.decode()
    assert TeamPolicy.objects.get(team=team).max_cpu is None


def test_staff_let_a_team_reach_a_private_network_and_never_the_metadata_address(
    team, owner, admin, login, queued_tasks, django_capture_on_commit_callbacks
):
    form = {"max_services": "", "max_cpu": "", "max_memory_mb": "", "review": ""}
    assert login(owner).post("/quotas/t/acme/", {**form, "allowed_networks": "10.0.0.0/8"}).status_code == 403

    refused = login(admin).post("/quotas/t/acme/", {**form, "allowed_networks": "10.20.0.0/16\n169.254.169.254"})
    assert "169.254.169.254 is loopback, link-local (cloud metadata)" in refused.content.decode()
    assert not TeamPolicy.objects.filter(team=team).exists()

    with django_capture_on_commit_callbacks(execute=True):
        page = login(admin).post("/quotas/t/acme/", {**form, "allowed_networks": "10.20.0.0/16 192.168.5.9/24"},
                                 follow=True).content.decode()
    assert "The private networks it may reach change within seconds." in page
    assert TeamPolicy.objects.get(team=team).egress_allow == ("10.20.0.0/16", "192.168.5.0/24")
    assert ("reconcile",) in queued_tasks
    # What the runtime is told: at each deploy, and by the reconciler for every team.
    service = create_service(team=team, name="hello", created_by=owner)
    release = Release(service=service, number=1, image="x", config={
        "port": 8080, "cpu": 0.5, "memory_mb": 256, "instances": 1, "health_check_path": "/"})
    assert deploy_spec(service, release).egress_allow == ("10.20.0.0/16", "192.168.5.0/24")
    assert egress_allow_by_team() == {"acme": ("10.20.0.0/16", "192.168.5.0/24")}


# -- review -----------------------------------------------------------------------------------


@pytest.fixture
def reviewed_team(team):
    TeamPolicy.objects.create(team=team, review=TeamPolicy.Review.REQUIRED)
    return team


def build_until_review(service, owner):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    tasks.fetch_source(build.id)
    tasks.detect_stack(build.id)
    tasks.build_image(build.id)
    build.refresh_from_db()
    return build


def test_a_new_service_waits_for_review_and_goes_live_once_approved(
    reviewed_team, owner, admin, login, cloudrun_target, queued_tasks, django_capture_on_commit_callbacks
):
    service = create_service(team=reviewed_team, name="hello", created_by=owner, target="cloudrun")
    build = build_until_review(service, owner)

    assert build.status == BuildStatus.REVIEWING and build.image  # built, not deployed
    assert ("deploy_release", build.id) not in queued_tasks and not cloudrun_target.services
    page = login(owner).get(f"/t/acme/hello/builds/{build.number}/").content.decode()
    assert "An administrator looks at new services of this team before they go live" in page
    assert "in review" in login(owner).get("/").content.decode()
    queue = login(admin).get("/quotas/").content.decode()
    assert "acme/hello" in queue and "Its recipe (Dockerfile)" in queue

    with django_capture_on_commit_callbacks(execute=True):
        login(admin).post(f"/quotas/review/{service.id}/approve/")
    build.refresh_from_db()
    assert build.status == BuildStatus.DEPLOYING and ("deploy_release", build.id) in queued_tasks
    tasks.deploy_release(build.id)
    build.refresh_from_db()
    assert build.status == BuildStatus.LIVE

    # Approved once: the next deploy goes straight through.
    assert run_pipeline(service, owner, queued_tasks).status == BuildStatus.LIVE


def test_a_service_that_is_not_approved_fails_with_the_note_and_is_reviewed_again(
    reviewed_team, owner, admin, login, cloudrun_target, queued_tasks
):
    service = create_service(team=reviewed_team, name="hello", created_by=owner, target="cloudrun")
    build = build_until_review(service, owner)

    refused = login(admin).post(f"/quotas/review/{service.id}/reject/", {"note": ""}, follow=True).content.decode()
    assert "Say why, so that the team knows what to change." in refused
    login(admin).post(f"/quotas/review/{service.id}/reject/", {"note": "It mines cryptocurrency."})
    build.refresh_from_db()
    assert build.status == BuildStatus.FAILED
    assert build.failure_reason.startswith("An administrator did not approve this service: It mines cryptocurrency.")
    assert not Release.objects.filter(service=service).exists()

    again = build_until_review(service, owner)
    assert again.status == BuildStatus.REVIEWING
    assert ServiceReview.objects.get(service=service).status == ServiceReview.Status.PENDING


def test_only_staff_review(reviewed_team, owner, cloudrun_target, login, queued_tasks):
    service = create_service(team=reviewed_team, name="hello", created_by=owner, target="cloudrun")
    build = build_until_review(service, owner)
    assert login(owner).post(f"/quotas/review/{service.id}/approve/").status_code == 403
    build.refresh_from_db()
    assert build.status == BuildStatus.REVIEWING


def test_review_for_every_team_but_trusted_ones(team, owner, outsider, settings, cloudrun_target, queued_tasks):
    settings.REVIEW_NEW_SERVICES = True
    other = outsider.teams.get()
    TeamPolicy.objects.create(team=other, review=TeamPolicy.Review.TRUSTED)
    waiting = build_until_review(create_service(team=team, name="hello", created_by=owner, target="cloudrun"), owner)
    trusted = run_pipeline(create_service(team=other, name="hello", created_by=outsider, target="cloudrun"), outsider,
                           queued_tasks)
    assert waiting.status == BuildStatus.REVIEWING and trusted.status == BuildStatus.LIVE


def test_a_build_waiting_for_review_is_not_called_stalled(reviewed_team, owner, settings, cloudrun_target, queued_tasks):
    service = create_service(team=reviewed_team, name="hello", created_by=owner, target="cloudrun")
    build = build_until_review(service, owner)
    settings.STEP_LEASE_SECONDS = settings.STEP_REQUEUE_SECONDS = -10_000
    queued_tasks.clear()
    tasks.sweep_pipeline()
    assert Build.objects.get(id=build.id).status == BuildStatus.REVIEWING
    assert queued_tasks == []


def test_the_api_tells_a_member_the_teams_quota(client, owner, team, small_quota, dummy_backend):
    from tests.conftest import read_stream
    from tests.unit.test_api import API, bearer

    create_service(team=team, name="api", created_by=owner, cpu=Decimal("0.5"), memory_mb=256, instances=2)
    (answer,) = client.get(f"{API}/teams/", **bearer(owner)).json()
    assert answer["quota"] == {
        "services": {"used": 1, "limit": 2}, "cpu": {"used": 1.0, "limit": 2.0},
        "memory_mb": {"used": 512, "limit": 1024}, "review": False,
    }


def test_of_two_deploys_waiting_only_the_newest_goes_on(
    reviewed_team, owner, admin, cloudrun_target, queued_tasks, django_capture_on_commit_callbacks
):
    from hakobune.platform.governance.reviews import approve

    service = create_service(team=reviewed_team, name="hello", created_by=owner, target="cloudrun")
    first, second = build_until_review(service, owner), build_until_review(service, owner)
    with django_capture_on_commit_callbacks(execute=True):
        assert approve(service=service, by=admin) == [second.id]
    first.refresh_from_db()
    second.refresh_from_db()
    # The second deploy superseded the first, waiting for review, when it was accepted.
    assert first.status == BuildStatus.SUPERSEDED and first.failed_step == BuildStatus.REVIEWING
    assert any("Superseded by deploy #2" in line for line in first.log_lines.values_list("text", flat=True))
    assert second.status == BuildStatus.DEPLOYING
    assert [task for task in queued_tasks if task[0] == "deploy_release"] == [("deploy_release", second.id)]


def test_the_api_log_stream_ends_when_a_build_waits_for_review(client, reviewed_team, owner, cloudrun_target, queued_tasks):
    from tests.conftest import read_stream
    from tests.unit.test_api import API, bearer

    service = create_service(team=reviewed_team, name="hello", created_by=owner, target="cloudrun")
    build = build_until_review(service, owner)
    stream = client.get(f"{API}/builds/{build.id}/log?follow=1", **bearer(owner))
    text = read_stream(stream)
    assert "reviewed by an administrator" in text
    assert 'event: end\ndata: {"status": "reviewing", "reason": ""}' in text


def test_a_deploy_superseded_while_it_waits_for_review_closes_the_review_saying_why(
    reviewed_team, owner, admin, login, cloudrun_target, queued_tasks, django_capture_on_commit_callbacks
):
    from hakobune.platform.governance.reviews import approve

    service = create_service(team=reviewed_team, name="hello", created_by=owner, target="cloudrun")
    first = build_until_review(service, owner)
    assert ServiceReview.objects.get(service=service).status == ServiceReview.Status.PENDING

    # The owner deploys again before an administrator decided: the first deploy is superseded.
    second = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)

    review = ServiceReview.objects.get(service=service)
    assert review.status == ServiceReview.Status.CLOSED
    assert review.note == ("Deploy #1, which waited for this review, was superseded by deploy #2. "
                           "The review opens again once that one is built.")
    page = login(admin).get("/quotas/").content.decode()
    waiting = page.split('id="review-queue"')[1].split("<details>")[0]
    assert "Nothing is waiting." in waiting and "acme/hello" not in waiting
    assert "was superseded by deploy #2" in page and "Closed: nothing waits" in page

    # The newer deploy, once built, opens the review again, and approving it deploys it.
    tasks.fetch_source(second.id)
    tasks.detect_stack(second.id)
    tasks.build_image(second.id)
    assert Build.objects.get(id=second.id).status == BuildStatus.REVIEWING
    review.refresh_from_db()
    assert review.status == ServiceReview.Status.PENDING and review.note == ""
    with django_capture_on_commit_callbacks(execute=True):
        assert approve(service=service, by=admin) == [second.id]
    assert Build.objects.get(id=first.id).status == BuildStatus.SUPERSEDED


def test_a_deploy_cancelled_while_it_waits_for_review_closes_the_review(
    reviewed_team, owner, cloudrun_target, queued_tasks
):
    from hakobune.platform.services.services import cancel_build

    service = create_service(team=reviewed_team, name="hello", created_by=owner, target="cloudrun")
    build = build_until_review(service, owner)
    cancel_build(build=build, cancelled_by=owner)
    review = ServiceReview.objects.get(service=service)
    assert review.status == ServiceReview.Status.CLOSED
    assert review.note == "Deploy #1, which waited for this review, was cancelled by olivia."


def test_a_review_stays_open_while_another_deploy_still_waits_for_it(
    reviewed_team, owner, cloudrun_target, queued_tasks
):
    from hakobune.platform.governance.reviews import close_review

    service = create_service(team=reviewed_team, name="hello", created_by=owner, target="cloudrun")
    build_until_review(service, owner)
    assert close_review(service, "no") is False
    assert ServiceReview.objects.get(service=service).status == ServiceReview.Status.PENDING
