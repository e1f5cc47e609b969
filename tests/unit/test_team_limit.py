"""A person creates at most TEAM_CREATE_LIMIT teams: each team has its own
quota, so more teams would multiply a person's share. Administrators have no
limit."""

import json

from django.contrib.auth import get_user_model
from django.urls import reverse

from hakobune.platform.accounts.models import Membership, Role, Team
from hakobune.platform.accounts.tokens import create_api_token

API = "/api/v1"
RIGHT = "correct horse battery"


def test_a_person_creates_a_limited_number_of_teams(client, login, owner, team, outsider, settings):
    settings.TEAM_CREATE_LIMIT = 2
    _, token = create_api_token(user=owner, name="t")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    # Being a member, even an owner, of someone else's team does not count.
    Membership.objects.create(team=Team.objects.get(name="other"), user=owner, role=Role.OWNER)

    made = client.post(f"{API}/teams/", json.dumps({"name": "second"}), content_type="application/json", **auth)
    assert made.status_code == 201
    refused = client.post(f"{API}/teams/", json.dumps({"name": "third"}), content_type="application/json", **auth)
    assert refused.status_code == 403
    assert refused.json()["code"] == "team_limit"
    assert "You have created 2 teams, the most one person may create here (2)" in refused.json()["error"]

    portal = login(owner)
    assert "the most one person may create here" in portal.get(reverse("accounts:team_new")).content.decode()
    page = portal.post(reverse("accounts:team_new"), {"name": "fourth"})
    assert page.status_code == 200 and "the most one person may create here" in page.content.decode()
    assert not Team.objects.filter(name__in=["third", "fourth"]).exists()
    assert Team.objects.get(name="second").created_by == owner


def test_administrators_create_teams_without_a_limit(client, login, settings, db):
    settings.TEAM_CREATE_LIMIT = 1
    admin = get_user_model().objects.create_user(username="ada", password=RIGHT, is_staff=True)
    portal = login(admin)
    for name in ("one", "two", "three"):
        assert portal.post(reverse("accounts:team_new"), {"name": name}).status_code == 302
    assert Team.objects.filter(created_by=admin).count() == 3


def test_a_limit_of_zero_leaves_team_creation_to_administrators(login, owner, settings):
    settings.TEAM_CREATE_LIMIT = 0
    page = login(owner).post(reverse("accounts:team_new"), {"name": "mine"}).content.decode()
    assert "Only administrators create teams here" in page
