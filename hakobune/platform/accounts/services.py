"""Actions that change accounts and teams."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.translation import gettext, ngettext

from hakobune.platform.observability.events import record_event

from . import networks
from .models import Membership, Profile, Role, Team


class TeamLimitReached(Exception):
    pass


def teams_created_by(user) -> int:
    return Team.objects.filter(created_by=user).count()


def team_limit_refusal(user) -> str | None:
    """Why the person may not create another team, or None when they may.
    Each team has its own quota, so without a limit quotas would multiply;
    administrators have none."""
    if user.is_staff:
        return None
    limit = settings.TEAM_CREATE_LIMIT
    created = teams_created_by(user)
    if created < limit:
        return None
    if limit <= 0:
        return gettext("Only administrators create teams here. Ask an administrator to create one and add you to it.")
    return ngettext(
        "You have created %(count)s team, the most one person may create here (%(limit)s). "
        "Use one of your teams, or ask an administrator to create another for you.",
        "You have created %(count)s teams, the most one person may create here (%(limit)s). "
        "Use one of your teams, or ask an administrator to create another for you.",
        created,
    ) % {"count": created, "limit": limit}


@transaction.atomic
def create_team(*, name: str, owner) -> Team:
    """Creates a team with `owner` as its owner; refused (TeamLimitReached)
    once the person created TEAM_CREATE_LIMIT teams, and
    (networks.NoRoomForTeamNetwork) when no address block is left for its
    network."""
    # One creation per person at a time, so two at once cannot both pass the count.
    list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True))
    refusal = team_limit_refusal(owner)
    if refusal:
        raise TeamLimitReached(refusal)
    team = Team(name=name, created_by=owner)
    team.full_clean()
    team.save()
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    record_event("team.created", team=team, actor=owner)
    # Its network's address block now, so that a full range refuses the team
    # (NoRoomForTeamNetwork, and nothing is created) before anyone uses it.
    if networks.enabled():
        networks.claim(team)
    return team


def generate_one_time_password() -> str:
    return secrets.token_urlsafe(12)


@transaction.atomic
def create_first_admin(*, username: str, email: str = "") -> tuple[object, str | None]:
    """Creates the first administrator with a one-time password, and a team of
    their own. Returns (user, password); password is None when the user
    already existed (its password was shown once, at creation)."""
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is not None:
        return user, None
    password = generate_one_time_password()
    user = User.objects.create_superuser(username=username, email=email, password=password)
    Profile.objects.create(user=user, must_change_password=True)
    create_team(name=_team_name_for(username), owner=user)
    return user, password


@transaction.atomic
def reset_one_time_password(user) -> str:
    password = generate_one_time_password()
    user.set_password(password)
    user.save(update_fields=["password"])
    Profile.objects.update_or_create(user=user, defaults={"must_change_password": True})
    return password


def _team_name_for(username: str) -> str:
    cleaned = "".join(ch for ch in username.lower() if ch.isalnum() or ch == "-").strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"team-{cleaned}".strip("-")
    return cleaned[:30]


class MembershipError(Exception):
    pass


@transaction.atomic
def add_member(*, team: Team, user, role: str, by=None) -> Membership:
    """Adds a person to a team, or changes their role when they are in it,
    as `by` (an owner) asked."""
    if role not in Role.values:
        raise MembershipError(f"{role!r} is not a role; choose one of {', '.join(Role.values)}.")
    membership = Membership.objects.filter(team=team, user=user).first()
    if membership is None:
        record_event("member.added", team=team, actor=by, user=user.get_username(), role=role)
        return Membership.objects.create(team=team, user=user, role=role)
    if membership.role == Role.OWNER and role != Role.OWNER:
        _keep_an_owner(team, leaving=membership)
    if membership.role != role:
        record_event("member.role_changed", team=team, actor=by, user=user.get_username(), role=role, was=membership.role)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def remove_member(*, team: Team, user, by=None) -> None:
    """Takes a person out of a team, as `by` asked (they themselves: they leave)."""
    membership = Membership.objects.select_for_update().filter(team=team, user=user).first()
    if membership is None:
        raise MembershipError(f"{user.username} is not in {team.name}.")
    if membership.role == Role.OWNER:
        _keep_an_owner(team, leaving=membership)
    membership.delete()
    record_event("member.removed", team=team, actor=by, user=user.get_username(), left=by is not None and by.pk == user.pk)


def _keep_an_owner(team, *, leaving):
    if not Membership.objects.filter(team=team, role=Role.OWNER).exclude(id=leaving.id).exists():
        raise MembershipError(f"{team.name} needs at least one owner; make someone else an owner first.")
