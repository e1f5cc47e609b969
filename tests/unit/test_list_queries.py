"""The dashboard and the API's list of a team's services read every service's
latest build in one query for all of them (with_latest_builds), not one or two
per service: their number of queries does not grow with the services
(bench/portal_load.py found the dashboard at 36 queries for 15 services)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hakobune.platform.accounts.models import Team
from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.services.models import Service, with_latest_builds


def add_services(team, owner, names, latest=BuildStatus.LIVE):
    for name in names:
        service = Service.objects.create(team=team, name=name, created_by=owner)
        Build.objects.create(service=service, number=1, status=BuildStatus.LIVE)
        Build.objects.create(service=service, number=2, status=latest)


def count_queries(call):
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code == 200
    return len(captured.captured_queries), response


def test_with_latest_builds_reads_the_newest_build_of_each_service(team, owner):
    add_services(team, owner, ["one", "two"], latest=BuildStatus.FAILED)
    Service.objects.create(team=team, name="never", created_by=owner)
    services = with_latest_builds(Service.objects.filter(team=team).order_by("name"))
    with CaptureQueriesContext(connection) as captured:
        latest = {service.name: service.latest_build for service in services}
    assert not captured.captured_queries
    assert {name: build and (build.number, build.status) for name, build in latest.items()} == {
        "never": None, "one": (2, BuildStatus.FAILED), "two": (2, BuildStatus.FAILED),
    }
    assert with_latest_builds([]) == []


@pytest.mark.parametrize("page", ["dashboard", "api"])
def test_the_lists_take_as_many_queries_for_ten_services_as_for_one(client, login, team, owner, dummy_backend, page):
    if page == "dashboard":
        login(owner)
        call = lambda: client.get("/")  # noqa: E731
    else:
        token = create_api_token(user=owner, name="test")[1]
        call = lambda: client.get("/api/v1/teams/acme/services/", HTTP_AUTHORIZATION=f"Bearer {token}")  # noqa: E731
    add_services(team, owner, ["svc0"])
    call()  # once first: sessions, token use and caches settle
    one, _ = count_queries(call)
    add_services(team, owner, [f"svc{n}" for n in range(1, 10)], latest=BuildStatus.FAILED)
    ten, response = count_queries(call)
    assert ten == one
    if page == "dashboard":
        assert response.content.decode().count("#2") >= 10
    else:
        assert [entry["latest_build"]["number"] for entry in response.json()] == [2] * 10
        assert [entry["status"] for entry in response.json()] == ["new"] + ["failed"] * 9


@pytest.mark.parametrize("page", ["dashboard", "api teams"])
def test_a_person_in_four_teams_costs_as_many_queries_as_in_one(client, login, team, owner, dummy_backend, page,
                                                                settings):
    """A teacher in several class teams: the dashboard and the API's list of
    teams read every team's services, latest builds and policy at once
    (bench/portal_load.py found 16 and 17 queries for a person in 4 teams)."""
    from hakobune.platform.accounts.services import create_team
    from hakobune.platform.governance.models import TeamPolicy

    if page == "dashboard":
        login(owner)
        call = lambda: client.get("/")  # noqa: E731
    else:
        token = create_api_token(user=owner, name="test")[1]
        call = lambda: client.get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Bearer {token}")  # noqa: E731
    settings.TEAM_CREATE_LIMIT = 10
    add_services(team, owner, ["svc0"])
    call()
    one, _ = count_queries(call)
    for name in ("beta", "gamma", "delta"):
        other = create_team(name=name, owner=owner)
        add_services(other, owner, [f"{name}-one", f"{name}-two"])
    TeamPolicy.objects.create(team=Team.objects.get(name="beta"), max_services=7)
    four, response = count_queries(call)
    assert four == one
    if page == "dashboard":
        assert "delta-two" in response.content.decode()
    else:
        quotas = {entry["name"]: entry["quota"]["services"] for entry in response.json()}
        assert quotas["beta"] == {"used": 2, "limit": 7} and quotas["acme"]["used"] == 1
