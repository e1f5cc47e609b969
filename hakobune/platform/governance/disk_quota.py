"""A team's disk quota: what its volumes, backups and anything else that
keeps its data on this host's disk may hold together.

Docker's local volumes have no size limit, so the platform measures what each
holds (the housekeeping queue, every VOLUME_MEASURE_SECONDS, cached on the
Volume row) and refuses a new volume, or a new backup, once the team is past
its quota. What keeps a team's bytes registers itself here once (an app's
`ready()`):

    register_disk_user("backups", lambda team: <bytes the team's backups hold>)

and `team_disk_usage(team)` sums them all. Code that is about to write a
team's data asks `check_disk_quota(team, adding_bytes=...)` first."""

from __future__ import annotations

from typing import Callable

from django.conf import settings
from django.utils.translation import gettext as _

from .quotas import QuotaExceeded, policy_of

MIB = 1024 * 1024

# name: bytes_of(team) -> int
_DISK_USERS: dict[str, Callable[[object], int]] = {}


def register_disk_user(name: str, bytes_of: Callable[[object], int]) -> None:
    """Counts what `bytes_of(team)` returns in the team's disk use, under `name`
    (registering the same name again replaces it)."""
    _DISK_USERS[name] = bytes_of


def disk_users() -> tuple[str, ...]:
    return tuple(_DISK_USERS)


def team_disk_usage_by_user(team) -> dict[str, int]:
    """What each registered disk user holds of the team's disk, in bytes."""
    return {name: max(int(bytes_of(team) or 0), 0) for name, bytes_of in _DISK_USERS.items()}


def team_disk_usage(team) -> int:
    """The bytes the team holds on disk: its volumes, backups and every other registered disk user."""
    return sum(team_disk_usage_by_user(team).values())


def disk_limit_mb(team) -> int:
    """The team's disk quota in MiB: its policy's, else TEAM_MAX_DISK_MB."""
    policy = policy_of(team)
    value = getattr(policy, "max_disk_mb", None) if policy else None
    return int(settings.TEAM_MAX_DISK_MB if value is None else value)


def check_disk_quota(team, adding_bytes: int = 0) -> None:
    """Raises QuotaExceeded, in a sentence, when the team is at or past its
    disk quota, or `adding_bytes` more would take it past."""
    limit = disk_limit_mb(team) * MIB
    used = team_disk_usage(team)
    adding = max(int(adding_bytes or 0), 0)
    if used >= limit or used + adding > limit:
        raise QuotaExceeded(
            _("Team %(team)s may keep %(limit)s MiB on disk (volumes and backups), and holds %(used)s MiB"
              "%(adding)s. Delete data, a volume or old backups you no longer need; an administrator can raise "
              "the team's disk quota.") % {
                "team": team.name, "limit": limit // MIB, "used": _mib(used),
                "adding": _(" (this needs %(more)s MiB more)") % {"more": _mib(adding)} if adding else ""}
        )


def _mib(value: int) -> str:
    return f"{value / MIB:.1f}".rstrip("0").rstrip(".")
