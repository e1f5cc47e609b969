"""The one way the portal and the API find a team's service for a person."""

from django.http import Http404

from hakobune.platform.accounts.models import Membership, Role
from hakobune.platform.accounts.permissions import member_of, require

from .models import DesiredState, Service


def service_for(
    user, team_name: str, service_name: str, need: Role = Role.VIEWER, doing: str = "change services"
) -> tuple[Membership, Service]:
    """The person's membership of the team and its service of that name.

    Http404 when they are not in the team, or the service does not exist or
    was deleted: another team's service looks like one that does not exist.
    Then PermissionDenied, in a sentence about `doing`, when their role is
    below `need` (viewer < developer < owner)."""
    membership = member_of(user, team_name)
    service = (
        Service.objects.select_related("team", "live_release__build")
        .exclude(desired_state=DesiredState.DELETED)
        .filter(team=membership.team, name=service_name)
        .first()
    )
    if service is None:
        raise Http404("No such service")
    require(membership, need, doing)
    return membership, service
