"""Who may see and change what. Views and the API ask these; nothing else decides.
A team's objects are found through the person's membership of it, so an
outsider gets the same 404 as for something that does not exist."""

from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import Membership, Role, Team


def require(membership: Membership, need: Role, doing: str) -> None:
    """Refuses, in a sentence, a member whose role is below `need`."""
    if membership.has_role(need):
        return
    team = membership.team.name
    if Role(need) == Role.OWNER:
        raise PermissionDenied(f"Only owners of {team} can {doing}.")
    raise PermissionDenied(f"Viewers cannot {doing}. Ask an owner of {team} to make you a developer.")


def member_of(user, team_name, need: Role = Role.VIEWER, doing: str = "change services") -> Membership:
    """The user's membership of the named team, with at least the role `need`.
    An outsider gets the same 404 as for a team that does not exist, so team
    names do not leak."""
    try:
        membership = Membership.objects.select_related("team").get(team__name=team_name, user=user)
    except Membership.DoesNotExist:
        raise Http404("No such team")
    require(membership, need, doing)
    return membership


def team_for_audit(user, team_name) -> Team:
    """The team whose audit log the person may read: an owner reads their
    team's, an administrator any team's. Another member gets 403 with a
    sentence; an outsider the 404 of a team that does not exist."""
    if user.is_staff:
        team = Team.objects.filter(name=team_name).first()
        if team is None:
            raise Http404("No such team")
        return team
    return member_of(user, team_name, Role.OWNER, "read the team's audit log").team


def staff_or_403(user, doing: str) -> None:
    """Pages and actions for the platform's administrators only."""
    if not user.is_staff:
        raise PermissionDenied(f"Only administrators {doing}.")


def teams_of(user):
    return Team.objects.filter(memberships__user=user).order_by("name")
