"""What each team has of its own in Google Cloud, so that teams sharing a
project cannot reach one another there: its secrets, those of the project in
effect for the team whose names start with the team's prefix,
"hakobune_<team>_".

Team names are DNS labels ([a-z0-9-], starting with a letter), so the prefix
ends with "_", which no team name holds: one team's prefix is never the
beginning of another's ("hakobune_a_" and "hakobune_a-b_").

Nothing here knows Django or calls Google."""

from __future__ import annotations

import re

SECRET_PREFIX = "hakobune_{team}_"

_SECRET_REF = re.compile(
    r"^(?:projects/(?P<project>[a-z0-9-]{1,30})/secrets/)?(?P<name>[A-Za-z0-9_-]{1,255})"
    r"(?:(?:/versions/|:)(?P<version>latest|[1-9][0-9]{0,9}))?$"
)


def secret_prefix(team: str) -> str:
    return SECRET_PREFIX.format(team=team)


# -- secret references ----------------------------------------------------------------


def parse_secret_ref(reference: str) -> tuple[str, str, str]:
    """A Secret Manager reference's (project or "", name, version): "db-password"
    (the latest version), "db-password:3", or "projects/P/secrets/NAME
    [/versions/V]". Raises ValueError in words when it is no reference at all."""
    match = _SECRET_REF.match((reference or "").strip())
    if not match:
        raise ValueError(
            f"{reference!r} is not a Secret Manager secret: give its name (db-password), or a name and version "
            "(db-password:3)."
        )
    return match["project"] or "", match["name"], match["version"] or "latest"


def team_secret(reference: str, *, team: str, project: str) -> str:
    """What a member of `team` wrote, as the reference Hakobune stores:
    "NAME:VERSION" of a secret of `project` whose name starts with the team's
    prefix. A short name is taken to mean the team's ("db-password" is
    "hakobune_acme_db-password"); a name that already starts with the prefix
    is taken as it is. Raises ValueError saying what is allowed."""
    own, name, version = parse_secret_ref(reference)
    prefix = secret_prefix(team)
    allowed = (
        f"team {team}'s services may read only the secrets of project {project} whose names start with {prefix} "
        f"(write the rest of the name: db-password means {prefix}db-password)"
    )
    if own and own != project:
        raise ValueError(f"{reference.strip()!r} is a secret of project {own}: {allowed}.")
    if not name.startswith(prefix):
        if own or name.startswith("hakobune_"):
            raise ValueError(f"{name} is not one of team {team}'s secrets: {allowed}.")
        name = prefix + name
    if len(name) > 255:
        raise ValueError(f"{name} is longer than the 255 characters Secret Manager allows in a name.")
    return f"{name}:{version}"


def stored_secret_problem(key: str, reference: str, *, team: str, project: str) -> str:
    """Why a stored reference may not be sent for `team` (one stored before the
    rules, or with the team's project changed since), or "" when it may."""
    try:
        own, name, _ = parse_secret_ref(reference)
    except ValueError as exc:
        return f"{key}: {exc}"
    prefix = secret_prefix(team)
    if (own and own != project) or not name.startswith(prefix):
        where = f"project {own}'s secret {name}" if own else f"the secret {name}"
        # What the name means without a team's prefix (team names hold no "_").
        short = name.partition("_")[2].partition("_")[2] if name.startswith("hakobune_") else name
        short = short or name
        return (
            f"{key} reads {where}, which is not one of team {team}'s: its services may read only the secrets of "
            f"project {project} whose names start with {prefix}. Keep the value in {prefix}{short} and set {key} "
            f"again with the short name {short}; nothing was deployed."
        )
    return ""
