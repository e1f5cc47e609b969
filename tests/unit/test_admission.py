"""Build admission: deploys wait queued, a bounded number are let into the
pipeline at a time, and the free slots go fairly between teams."""

from datetime import timedelta

import pytest
from django.utils import timezone

from hakobune.platform.accounts.models import Membership, Role
from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds import admission
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance, fail
from hakobune.platform.diagnoses import Diagnosis
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.worker import tasks
from tests.conftest import upload_of

S = BuildStatus


@pytest.fixture(autouse=True)
def two_slots(settings):
    settings.BUILD_CONCURRENCY = 2


def test_the_fair_order_takes_turns_between_teams_then_the_oldest():
    # Team 1 queued 5 builds first, team 2 three, team 3 one; nothing runs yet.
    queued = [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 2), (7, 2), (8, 2), (9, 3)]
    assert admission.fair_order(queued, {}) == [1, 6, 9, 2, 7, 3, 8, 4, 5]


def test_between_teams_with_as_many_in_progress_the_one_served_longest_ago_goes_first():
    # Team 3 never had a build admitted, team 2 longer ago than team 1.
    assert admission.fair_order([(10, 1), (11, 2), (12, 3)], {}, {1: 100.0, 2: 50.0}) == [12, 11, 10]


def test_a_team_with_builds_in_progress_waits_behind_teams_with_none():
    queued = [(1, 1), (2, 1), (3, 2), (4, 3)]
    assert admission.fair_order(queued, {1: 2, 2: 1}) == [4, 3, 1, 2]
    assert admission.fair_order([], {1: 3}) == []


@pytest.fixture
def teams(owner, dummy_backend):
    """Three teams, each with services, like a class with its groups."""
    return {name: create_team(name=name, owner=owner) for name in ("alpha", "beta", "gamma")}


def queue_builds(team, owner, count, prefix="app"):
    """`count` deploys of the team, each of its own service (so none supersedes another)."""
    builds = []
    for index in range(count):
        service = create_service(team=team, name=f"{prefix}{index}", created_by=owner)
        builds.append(deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner))
    return builds


def statuses(builds):
    return [Build.objects.get(id=build.id).status for build in builds]


def test_at_most_build_concurrency_builds_are_admitted(teams, owner, queued_tasks):
    builds = queue_builds(teams["alpha"], owner, 5)
    assert admission.admit_builds() == [builds[0].id, builds[1].id]
    assert statuses(builds) == [S.FETCHING, S.FETCHING, S.QUEUED, S.QUEUED, S.QUEUED]
    assert [task for task in queued_tasks if task[0] == "fetch_source"] == [
        ("fetch_source", builds[0].id), ("fetch_source", builds[1].id)]
    # No slot is free: asking again admits nothing and sends nothing twice.
    assert admission.admit_builds() == []
    assert len([task for task in queued_tasks if task[0] == "fetch_source"]) == 2
    # One build fails: its slot goes to the next.
    fail(builds[0].id, Diagnosis("pipeline.stalled"))
    assert admission.admit_builds() == [builds[2].id]
    # Waiting for review or deploying takes no build slot.
    for current, following in [(S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING), (S.BUILDING, S.DEPLOYING)]:
        advance(builds[1].id, current, following)
    assert admission.admit_builds() == [builds[3].id]


def test_a_free_slot_goes_to_the_team_with_fewest_builds_in_progress(teams, owner, queued_tasks):
    alpha = queue_builds(teams["alpha"], owner, 4)
    beta = queue_builds(teams["beta"], owner, 1)
    gamma = queue_builds(teams["gamma"], owner, 1)
    # The oldest of alpha's and the oldest of the others, not alpha's two oldest.
    assert admission.admit_builds() == [alpha[0].id, beta[0].id]
    assert admission.waiting_ahead(Build.objects.get(id=gamma[0].id)) == 0
    assert admission.waiting_ahead(Build.objects.get(id=alpha[1].id)) == 1
    assert admission.waiting_ahead(Build.objects.get(id=alpha[0].id)) is None
    fail(alpha[0].id, Diagnosis("pipeline.stalled"))
    # Alpha and gamma have none in progress now: gamma, never served, goes before alpha's older build.
    assert admission.admit_builds() == [gamma[0].id]
    fail(beta[0].id, Diagnosis("pipeline.stalled"))
    # Alpha and beta have none in progress: alpha was served longer ago.
    assert admission.admit_builds() == [alpha[1].id]


def test_the_api_and_the_page_say_how_many_builds_are_ahead(teams, owner, queued_tasks, client):
    from tests.unit.test_api import bearer

    builds = queue_builds(teams["alpha"], owner, 4)
    admission.admit_builds()
    answer = client.get(f"/api/v1/builds/{builds[3].id}/", **bearer(owner)).json()
    assert answer["status"] == "queued" and answer["waiting_ahead"] == 1
    assert client.get(f"/api/v1/builds/{builds[0].id}/", **bearer(owner)).json()["waiting_ahead"] is None
    client.force_login(owner)
    page = client.get(f"/t/alpha/app3/builds/{builds[3].number}/").content.decode()
    assert "Waiting for a build slot: 1 build ahead" in page


def test_a_cancelled_or_superseded_build_is_not_admitted(teams, owner, queued_tasks):
    service = create_service(team=teams["alpha"], name="web", created_by=owner)
    first = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    second = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    assert Build.objects.get(id=first.id).status == S.SUPERSEDED
    assert admission.admit_builds() == [second.id]


def test_a_fetch_asked_for_a_queued_build_waits_for_a_free_slot(teams, owner, queued_tasks):
    builds = queue_builds(teams["alpha"], owner, 3)
    tasks.fetch_source(builds[0].id)
    tasks.fetch_source(builds[1].id)
    assert statuses(builds)[:2] == [S.DETECTING, S.DETECTING]
    tasks.fetch_source(builds[2].id)  # both slots are taken: it stays queued, for admission
    assert statuses(builds)[2] == S.QUEUED


def test_an_admitted_build_whose_fetch_request_was_lost_is_asked_for_again(teams, owner, queued_tasks):
    (build,) = queue_builds(teams["alpha"], owner, 1)
    admission.admit_builds()
    queued_tasks.clear()
    admission.admit_builds()
    assert queued_tasks == []  # taken up soon enough: nothing is asked twice
    Build.objects.filter(id=build.id).update(status_changed_at=timezone.now() - timedelta(minutes=5))
    admission.admit_builds()
    assert queued_tasks == [("fetch_source", build.id)]
    admission.admit_builds()
    assert queued_tasks == [("fetch_source", build.id)]  # once a minute at most
    tasks.fetch_source(build.id)
    assert statuses([build]) == [S.DETECTING]


def test_a_members_deploy_is_queued_and_admission_asked(teams, owner, queued_tasks, django_capture_on_commit_callbacks):
    developer_team = teams["beta"]
    service = create_service(team=developer_team, name="web", created_by=owner)
    assert Membership.objects.get(team=developer_team, user=owner).role == Role.OWNER
    with django_capture_on_commit_callbacks(execute=True):
        build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    assert build.status == S.QUEUED and queued_tasks == [("admit_builds",)]


def test_a_build_waiting_in_a_long_queue_is_not_called_stalled(teams, owner, queued_tasks, settings):
    (build,) = queue_builds(teams["alpha"], owner, 1)
    Build.objects.filter(id=build.id).update(created_at=timezone.now() - timedelta(hours=2),
                                             status_changed_at=timezone.now() - timedelta(hours=2))
    tasks.sweep_pipeline()
    assert statuses([build]) == [S.QUEUED]
