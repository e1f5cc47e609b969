"""The one access rule of the portal and the API: outsiders find nothing (404),
members find their team's services and may do what their role allows (403
beyond it, in a sentence)."""

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of
from hakobune.platform.services.access import service_for
from hakobune.platform.services.models import DesiredState, Service
from hakobune.platform.services.services import create_service


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


def test_roles_are_ordered_viewer_developer_owner():
    assert Role.OWNER.at_least(Role.DEVELOPER) and Role.OWNER.at_least(Role.VIEWER) and Role.OWNER.at_least(Role.OWNER)
    assert Role.DEVELOPER.at_least(Role.VIEWER) and not Role.DEVELOPER.at_least(Role.OWNER)
    assert not Role.VIEWER.at_least(Role.DEVELOPER)
    assert Role("viewer").at_least("viewer")


def test_members_find_the_service_with_their_membership(service, owner, developer, viewer):
    for user in (owner, developer, viewer):
        membership, found = service_for(user, "acme", "hello")
        assert found == service and membership.user == user and membership.team == service.team


def test_an_outsider_and_a_missing_or_deleted_service_look_alike(service, outsider, owner):
    with pytest.raises(Http404):
        service_for(outsider, "acme", "hello")
    with pytest.raises(Http404):
        service_for(owner, "acme", "nothing-here")
    with pytest.raises(Http404):
        service_for(owner, "no-such-team", "hello")
    Service.objects.filter(id=service.id).update(desired_state=DesiredState.DELETED)
    with pytest.raises(Http404):
        service_for(owner, "acme", "hello")


def test_a_role_below_the_need_is_refused_in_a_sentence(service, owner, developer, viewer):
    with pytest.raises(PermissionDenied, match="Viewers cannot deploy. Ask an owner of acme to make you a developer."):
        service_for(viewer, "acme", "hello", need=Role.DEVELOPER, doing="deploy")
    with pytest.raises(PermissionDenied, match="Only owners of acme can delete a service."):
        service_for(developer, "acme", "hello", need=Role.OWNER, doing="delete a service")
    assert service_for(developer, "acme", "hello", need=Role.DEVELOPER)[1] == service
    assert service_for(owner, "acme", "hello", need=Role.OWNER)[1] == service


def test_a_missing_service_is_not_found_before_the_role_is_checked(service, viewer):
    with pytest.raises(Http404):
        service_for(viewer, "acme", "nothing-here", need=Role.OWNER)


def test_team_membership_with_a_needed_role(team, owner, viewer, outsider):
    assert member_of(owner, "acme", Role.OWNER).team == team
    with pytest.raises(Http404):
        member_of(outsider, "acme")
    with pytest.raises(PermissionDenied):
        member_of(viewer, "acme", Role.DEVELOPER, "create services")
