"""The staff's Cloud Run settings in the portal, layered over the CLOUDRUN_*
environment variables: the platform's over those, a team's over the platform's.
What comes out are the options a team's Cloud Run backend is made with; and
what each team has of its own there (its accounts and secret prefix), for the
staff's page."""

from __future__ import annotations

import json

from django.db import transaction

from hakobune.platform.crypto import decrypt, encrypt
from hakobune.runtime.cloud_run.tenants import BUILD, RUNTIME, secret_prefix, team_account

from .models import CloudRunDefaults, CloudRunSettingsBase, TeamCloudRunSettings

Credentials = CloudRunSettingsBase.Credentials
PLACE = "the Cloud Run page of the portal (staff)"


def layered_options(base: dict, team=None) -> tuple[dict, tuple]:
    """The backend options for `team` (None: the platform's own), and a stamp
    that changes whenever they do, so that a backend made with older ones is
    not used again."""
    options = dict(base)
    # One account for every team is what per-team accounts replace: an older
    # CLOUDRUN_SERVICE_ACCOUNT is not used.
    options.pop("service_account", None)
    options.pop("team_accounts", None)
    stamp = []
    layers = [(CloudRunDefaults.objects.filter(pk=1).first(), f"the platform's settings on {PLACE}")]
    if team is not None:
        layers.append((TeamCloudRunSettings.objects.filter(team=team).first(), f"team {team}'s settings on {PLACE}"))
    for layer, place in layers:
        if layer is None:
            continue
        stamp.append((type(layer).__name__, layer.pk, layer.updated_at.isoformat()))
        changed = layer.overrides()
        if "project" in changed and changed["project"] != options.get("project"):
            # Another project has its own default bucket.
            options["bucket"] = ""
        options.update(changed)
        accounts = layer.team_accounts()
        if accounts:
            # Only ever the team's own: keyed by its name, so that a backend
            # made with these options runs no other team as them.
            options["team_accounts"] = {team.name: accounts}
        if layer.credentials == Credentials.KEY:
            options["credentials"] = ""
            try:
                options["credentials_info"] = json.loads(decrypt(layer.key_encrypted))
            except ValueError as exc:
                options["credentials_info"] = None
                options["credentials_problem"] = f"the service-account key stored for {place} cannot be read: {exc}"
        elif layer.credentials == Credentials.HOST:
            options["credentials"] = ""
            options["credentials_info"] = None
        if changed or accounts or layer.credentials:
            options["settings_place"] = place
    return options, tuple(stamp)


def identities(options: dict, team: str) -> dict:
    """What `team` has of its own with these (layered) options: the accounts
    its services and builds run as, and the prefix of its secrets."""
    project = options.get("project") or ""
    accounts = options.get("team_accounts")
    return {
        "project": project,
        "runtime": team_account(RUNTIME, team, project, accounts) if project else "",
        "build": team_account(BUILD, team, project, accounts) if project else "",
        "secret_prefix": secret_prefix(team),
    }


def read_service_account_key(text: str) -> tuple[dict, str]:
    """A service-account key as Google gives it (the JSON of `gcloud iam
    service-accounts keys create`); returns it parsed with its email. Raises
    ValueError saying what is wrong."""
    try:
        key = json.loads(text)
    except ValueError:
        raise ValueError("This is not a key file: a service-account key is JSON, as Google Cloud gives it for download.")
    if not isinstance(key, dict) or key.get("type") != "service_account":
        raise ValueError('This JSON is not a service-account key (its "type" must be "service_account").')
    missing = [field for field in ("client_email", "private_key", "token_uri") if not key.get(field)]
    if missing:
        raise ValueError(f"The key lacks {', '.join(missing)}; download a new key from the service account's Keys tab.")
    from google.oauth2 import service_account

    try:
        service_account.Credentials.from_service_account_info(key)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"The key's private key cannot be read ({exc}); download a new key.")
    return key, key["client_email"]


def store_key(settings_row: CloudRunSettingsBase, text: str) -> None:
    key, email = read_service_account_key(text)
    settings_row.key_encrypted = encrypt(json.dumps(key))
    settings_row.key_email = email
    settings_row.credentials = Credentials.KEY


def save_unless_services_move(row: CloudRunSettingsBase, alias: str, base: dict) -> list[str]:
    """Saves staff's settings unless they would move existing services to
    another project, region or repository (where Hakobune would no longer find
    them, nor delete them and their images). Returns those services, not saving."""
    from hakobune.platform.accounts.models import Team

    from .models import DesiredState, Service

    services = Service.objects.filter(target=alias, releases__isnull=False).exclude(desired_state=DesiredState.DELETED).distinct()
    if isinstance(row, TeamCloudRunSettings):
        services = services.filter(team=row.team)
    teams = list(Team.objects.filter(id__in=services.values("team_id")))

    def where(team) -> tuple:
        options, _ = layered_options(base, team)
        return options.get("project"), options.get("region"), options.get("repository")

    before = {team.id: where(team) for team in teams}
    was_new = row._state.adding
    with transaction.atomic():
        row.save()
        moved = {team.id for team in teams if where(team) != before[team.id]}
        if moved:
            transaction.set_rollback(True)
    if not moved:
        return []
    if was_new and not isinstance(row, CloudRunDefaults):
        row.pk, row._state.adding = None, True
    return [f"{service.team.name}/{service.name}" for service in services.filter(team_id__in=moved).select_related("team")]
