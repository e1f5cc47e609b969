"""Who may see and change what. Views ask these; nothing else decides."""

from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import Membership, Team


def membership_or_404(user, team_name) -> Membership:
    """The user's membership of the named team. An outsider gets the same 404 as
    for a team that does not exist, so team names do not leak."""
    try:
        return Membership.objects.select_related("team").get(team__name=team_name, user=user)
    except Membership.DoesNotExist:
        raise Http404("No such team")


def staff_or_403(user, doing: str) -> None:
    """Pages and actions for the platform's administrators only."""
    if not user.is_staff:
        raise PermissionDenied(f"Only administrators {doing}.")


def teams_of(user):
    return Team.objects.filter(memberships__user=user).order_by("name")
