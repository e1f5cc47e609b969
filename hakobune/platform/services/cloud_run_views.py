"""Staff: where Cloud Run services go and as whom — the platform's settings
over the CLOUDRUN_* variables, and each team's over those; what each team has
of its own there (the accounts its services and builds run as, the prefix of
its secrets)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.forms import modelform_factory
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.module_loading import import_string
from django.utils.translation import gettext, ngettext

from hakobune.platform.accounts.models import Team
from hakobune.platform.accounts.permissions import staff_or_403
from hakobune.runtime.base import RuntimeBackendError

from .backends import get_backend
from .cloud_settings import identities, layered_options, save_unless_services_move
from .forms import CloudRunSettingsForm
from .models import CloudRunDefaults, DesiredState, Service, TeamCloudRunSettings


def _cloud_run_alias() -> str | None:
    """The target whose backend takes the staff's Cloud Run settings, if any."""
    for alias, config in settings.RUNTIME_BACKENDS.items():
        if getattr(import_string(config["BACKEND"]), "layered_settings", False):
            return alias
    return None


@login_required
def cloud_run_settings(request, team=None):
    """Staff: the platform's Cloud Run settings (project, region, repository,
    credentials) over the CLOUDRUN_* variables, and each team's over those."""
    staff_or_403(request.user, "manage where Cloud Run services go")
    alias = _cloud_run_alias()
    if alias is None:
        return render(request, "services/cloud_run.html", {"configured": False})
    base = settings.RUNTIME_BACKENDS[alias].get("OPTIONS", {})
    if team is None:
        team_obj = None
        row = CloudRunDefaults.load()
        inherited = base
    else:
        team_obj = get_object_or_404(Team, name=team)
        row = TeamCloudRunSettings.objects.filter(team=team_obj).first() or TeamCloudRunSettings(team=team_obj)
        inherited, _ = layered_options(base, None)
    form_class = modelform_factory(type(row), form=CloudRunSettingsForm, fields=CloudRunSettingsForm.fields_for(type(row)))
    here = reverse("services:cloud_run_team", args=[team]) if team else reverse("services:cloud_run")
    check = None
    if request.method == "POST" and request.POST.get("action") == "check":
        try:
            check = get_backend(alias, team=team_obj).check_access(teams=_teams_to_check(alias, team_obj))
        except RuntimeBackendError as exc:
            check = [(False, exc.message)]
        form = form_class(instance=row, inherited=inherited)
    elif request.method == "POST" and request.POST.get("action") == "reset" and team_obj is not None:
        TeamCloudRunSettings.objects.filter(team=team_obj).delete()
        messages.success(request, gettext("Team %(team)s uses the platform's Cloud Run settings again.") % {"team": team_obj})
        return redirect(here)
    elif request.method == "POST":
        form = form_class(request.POST, request.FILES, instance=row, inherited=inherited)
        if form.is_valid():
            saved = form.save(commit=False)
            saved.updated_by = request.user
            stranded = save_unless_services_move(saved, alias, base)
            if not stranded:
                messages.success(request, (
                    gettext("Saved; %(alias)s services of %(team)s use these settings from their next action.")
                    % {"alias": alias, "team": team_obj} if team_obj else
                    gettext("Saved; %(alias)s services of every team use these settings from their next action.")
                    % {"alias": alias}))
                return redirect(here)
            form.add_error(None, ngettext(
                "Not saved: %(services)s already runs in the project, region "
                "and repository in effect now, and would be left behind there. Delete it first, or change only "
                "the credentials, bucket or runtime identity.",
                "Not saved: %(services)s already run in the project, region "
                "and repository in effect now, and would be left behind there. Delete them first, or change only "
                "the credentials, bucket or runtime identity.",
                len(stranded),
            ) % {"services": ", ".join(stranded)})
    else:
        form = form_class(instance=row, inherited=inherited)
    effective, _ = layered_options(base, team_obj)
    teams = [
        {"team": t, "settings": getattr(t, "cloud_run_settings", None),
         "services": t.services.filter(target=alias).exclude(desired_state=DesiredState.DELETED).count(),
         "own": identities(layered_options(base, t)[0], t.name)}
        for t in Team.objects.select_related("cloud_run_settings").order_by("name")
    ] if team_obj is None else []
    return render(request, "services/cloud_run.html", {
        "configured": True, "alias": alias, "form": form, "team": team_obj, "row": row, "check": check,
        "effective": _effective_summary(effective, team_obj), "teams": teams,
    })


def _teams_to_check(alias: str, team) -> list[str]:
    """Whose accounts Check access looks at: the team's, on its page; on the
    platform's, those of the teams with services here that use the platform's
    settings (a team with its own may have other credentials)."""
    if team is not None:
        return [team.name]
    running = Service.objects.filter(target=alias).exclude(desired_state=DesiredState.DELETED).values("team_id")
    return list(
        Team.objects.filter(id__in=running, cloud_run_settings__isnull=True).order_by("name").values_list("name", flat=True)
    )


def _effective_summary(options: dict, team=None) -> list[tuple[str, str]]:
    if options.get("credentials_info"):
        credentials = gettext("service-account key of %(email)s (stored encrypted)") % {
            "email": options["credentials_info"].get("client_email", "?")}
    elif options.get("credentials") and options["credentials"] != "anonymous":
        credentials = gettext("key file %(path)s") % {"path": options["credentials"]}
    elif options.get("credentials") == "anonymous":
        credentials = gettext("none (anonymous)")
    else:
        credentials = gettext("this host's application default credentials")
    project = options.get("project") or ""
    rows = [
        (gettext("Project"), project or gettext("— not set")),
        (gettext("Region"), options.get("region") or gettext("— not set")),
        (gettext("Artifact Registry repository"), options.get("repository") or "hakobune"),
        (gettext("Bucket"), options.get("bucket") or (f"{project}_cloudbuild" if project else "—")),
    ]
    if team is not None:
        own = identities(options, team.name)
        rows += [
            (gettext("Services run as"), own["runtime"] or "—"),
            (gettext("Builds run as"), own["build"] or "—"),
            (gettext("Secrets it may use"), gettext("%(prefix)s… in project %(project)s") % {
                "prefix": own["secret_prefix"], "project": project or "—"}),
        ]
    else:
        rows += [
            (gettext("Services run as"), gettext("each team's own account (below)")),
            (gettext("Builds run as"), gettext("each team's own account (below)")),
        ]
    return rows + [(gettext("Credentials"), credentials), (gettext("Builder"), options.get("builder") or "dockerfile")]
