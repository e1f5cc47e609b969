"""What each team has of its own in Google Cloud, so that teams sharing a
project cannot reach one another there:

- a runtime service account its Cloud Run services run as;
- a build service account its Cloud Build builds run as;
- its secrets: those of the project in effect for the team whose names start
  with the team's prefix, "hakobune_<team>_".

The names are derived from the team's name (staff may name other accounts in
the team's Cloud Run settings) and are unambiguous: no two teams, and no team's
runtime and build accounts, ever get the same name. Team names are DNS labels
([a-z0-9-], starting with a letter), so

- the secret prefix ends with "_", which no team name holds: one team's prefix
  is never the beginning of another's ("hakobune_a_" and "hakobune_a-b_");
- an account id is at most 30 characters. A short team name is kept whole
  ("hakobune-run-<team>", "hakobune-build-<team>"); a longer one becomes
  "hakobune-r-" or "hakobune-b-", its first five characters and 65 bits of a
  SHA-256 of the whole name. The four forms differ in their first eleven
  characters, so none can be spelled by another, and finding a second team
  name with the same hash is out of reach.

Nothing here knows Django or calls Google."""

from __future__ import annotations

import base64
import hashlib
import re

RUNTIME = "runtime"
BUILD = "build"

SECRET_PREFIX = "hakobune_{team}_"
_WHOLE = {RUNTIME: "hakobune-run-", BUILD: "hakobune-build-"}
_HASHED = {RUNTIME: "hakobune-r-", BUILD: "hakobune-b-"}
ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# Accounts every workload of a project may share: never a team's own.
SHARED_ACCOUNTS = re.compile(
    r"^(?:\d+-compute@developer\.gserviceaccount\.com|\d+@cloudbuild\.gserviceaccount\.com"
    r"|[^@]+@appspot\.gserviceaccount\.com|service-\d+@.*)$"
)
KIND_WORDS = {RUNTIME: "services", BUILD: "builds"}

_SECRET_REF = re.compile(
    r"^(?:projects/(?P<project>[a-z0-9-]{1,30})/secrets/)?(?P<name>[A-Za-z0-9_-]{1,255})"
    r"(?:(?:/versions/|:)(?P<version>latest|[1-9][0-9]{0,9}))?$"
)


def account_id(kind: str, team: str) -> str:
    """The id (the part before @) of a team's runtime or build account."""
    whole = f"{_WHOLE[kind]}{team}"
    if len(whole) <= 30:
        return whole
    digest = base64.b32encode(hashlib.sha256(team.encode()).digest()).decode().lower()
    return f"{_HASHED[kind]}{team[:5]}-{digest[:13]}"


def account_email(kind: str, team: str, project: str) -> str:
    return f"{account_id(kind, team)}@{project}.iam.gserviceaccount.com"


def team_account(kind: str, team: str, project: str, team_accounts: dict | None = None) -> str:
    """The account `team`'s services (RUNTIME) or builds (BUILD) run as: the
    one staff named for the team (`team_accounts`: {team: {kind: email}}),
    else the one derived from its name in `project`."""
    return ((team_accounts or {}).get(team) or {}).get(kind) or account_email(kind, team, project)


def in_derived_scheme(email: str) -> bool:
    """Whether `email`'s account id is spelled the way derived ids are: such
    names are kept for the teams they are derived from, including teams not
    made yet."""
    local = (email or "").partition("@")[0].lower()
    return local.startswith((*_WHOLE.values(), *_HASHED.values()))


def derived_by(email: str, teams) -> tuple[str, str] | None:
    """(team, kind) when `email`'s account id is one derived for one of
    `teams`, in any project."""
    local = (email or "").partition("@")[0].lower()
    for team in teams:
        for kind in (RUNTIME, BUILD):
            if local == account_id(kind, team):
                return team, kind
    return None


def secret_prefix(team: str) -> str:
    return SECRET_PREFIX.format(team=team)


def is_shared_account(email: str) -> bool:
    """The project's default accounts (Compute Engine's, Cloud Build's, App
    Engine's) and Google's service agents: shared by everything in a project."""
    return bool(SHARED_ACCOUNTS.match((email or "").strip().lower()))


def account_parts(email: str) -> tuple[str, str]:
    """(account id, project) of a user-managed service account's email; the
    project is "" for any other kind of address."""
    local, _, domain = (email or "").partition("@")
    return local, domain.removesuffix(".iam.gserviceaccount.com") if domain.endswith(".iam.gserviceaccount.com") else ""


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


# -- what to do in Google Cloud -----------------------------------------------------------


def account_setup(kind: str, team: str, email: str, *, deployer: str, project: str, bucket: str = "",
                  repository: str = "", region: str = "") -> str:
    """The gcloud commands that make a team's runtime or build account and
    give it what it needs, and only that."""
    account, home = account_parts(email)
    member = f"serviceAccount:{email}"
    steps = []
    if home:
        steps.append(
            f"create it: gcloud iam service-accounts create {account} --project={home} "
            f'--display-name="Hakobune {team} {KIND_WORDS[kind]}"'
        )
    else:
        steps.append("create it (IAM → Service accounts)")
    steps.append(
        f"let Hakobune ({deployer}) {'deploy' if kind == RUNTIME else 'start builds'} as it: gcloud iam service-accounts "
        f"add-iam-policy-binding {email} --project={home or project} --member=serviceAccount:{_email_or_placeholder(deployer)} "
        "--role=roles/iam.serviceAccountUser"
    )
    if kind == RUNTIME:
        prefix = secret_prefix(team)
        steps.append(
            f"let it read its team's secrets and no others: gcloud projects add-iam-policy-binding {project} "
            f"--member={member} --role=roles/secretmanager.secretAccessor "
            f"--condition='title=hakobune {team} secrets,expression=resource.name.startsWith("
            f'"projects/PROJECT_NUMBER/secrets/{prefix}")\' '
            f"(PROJECT_NUMBER: gcloud projects describe {project} --format='value(projectNumber)')"
        )
    else:
        objects = f"projects/_/buckets/{bucket}/objects/hakobune"
        steps.append(
            f"let it push images: gcloud artifacts repositories add-iam-policy-binding {repository} "
            f"--location={region} --project={project} --member={member} --role=roles/artifactregistry.writer"
        )
        steps.append(
            f"and let it read its team's sources and write their build logs, nothing else of the bucket: gcloud "
            f"storage buckets add-iam-policy-binding gs://{bucket} --member={member} --role=roles/storage.objectUser "
            f"--condition='title=hakobune {team} builds,expression=resource.name.startsWith("
            f'"{objects}/sources/{team}/") || resource.name.startsWith("{objects}/build-logs/{team}/")\''
        )
    return "; ".join(steps)


def _email_or_placeholder(deployer: str) -> str:
    return deployer if "@" in deployer else "<Hakobune's account>"
