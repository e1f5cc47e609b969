"""Staff: where Cloud Run services go and as whom — the platform's settings
over the CLOUDRUN_* variables, and each team's over those."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.forms import modelform_factory
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.module_loading import import_string

from hakobune.platform.accounts.models import Team
from hakobune.platform.accounts.permissions import staff_or_403
from hakobune.runtime.base import RuntimeBackendError

from .backends import get_backend
from .cloud_settings import layered_options, save_unless_services_move
from .forms import CloudRunSettingsForm
from .models import CloudRunDefaults, DesiredState, TeamCloudRunSettings


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
    form_class = modelform_factory(type(row), form=CloudRunSettingsForm)
    here = reverse("services:cloud_run_team", args=[team]) if team else reverse("services:cloud_run")
    check = None
    if request.method == "POST" and request.POST.get("action") == "check":
        try:
            check = get_backend(alias, team=team_obj).check_access()
        except RuntimeBackendError as exc:
            check = [(False, exc.message)]
        form = form_class(instance=row, inherited=inherited)
    elif request.method == "POST" and request.POST.get("action") == "reset" and team_obj is not None:
        TeamCloudRunSettings.objects.filter(team=team_obj).delete()
        messages.success(request, f"Team {team_obj} uses the platform's Cloud Run settings again.")
        return redirect(here)
    elif request.method == "POST":
        form = form_class(request.POST, request.FILES, instance=row, inherited=inherited)
        if form.is_valid():
            saved = form.save(commit=False)
            saved.updated_by = request.user
            stranded = save_unless_services_move(saved, alias, base)
            if not stranded:
                messages.success(request, f"Saved; {alias} services of {team_obj or 'every team'} use these settings from their next action.")
                return redirect(here)
            form.add_error(None, (
                f"Not saved: {', '.join(stranded)} already run{'s' if len(stranded) == 1 else ''} in the project, region "
                "and repository in effect now, and would be left behind there. Delete them first, or change only "
                "the credentials, bucket or runtime identity."
            ))
    else:
        form = form_class(instance=row, inherited=inherited)
    effective, _ = layered_options(base, team_obj)
    teams = [
        {"team": t, "settings": getattr(t, "cloud_run_settings", None),
         "services": t.services.filter(target=alias).exclude(desired_state=DesiredState.DELETED).count()}
        for t in Team.objects.select_related("cloud_run_settings").order_by("name")
    ]
    return render(request, "services/cloud_run.html", {
        "configured": True, "alias": alias, "form": form, "team": team_obj, "row": row, "check": check,
        "effective": _effective_summary(effective), "teams": teams,
    })


def _effective_summary(options: dict) -> list[tuple[str, str]]:
    if options.get("credentials_info"):
        credentials = f"service-account key of {options['credentials_info'].get('client_email', '?')} (stored encrypted)"
    elif options.get("credentials") and options["credentials"] != "anonymous":
        credentials = f"key file {options['credentials']}"
    elif options.get("credentials") == "anonymous":
        credentials = "none (anonymous)"
    else:
        credentials = "this host's application default credentials"
    project = options.get("project") or ""
    return [
        ("Project", project or "— not set"),
        ("Region", options.get("region") or "— not set"),
        ("Artifact Registry repository", options.get("repository") or "hakobune"),
        ("Bucket", options.get("bucket") or (f"{project}_cloudbuild" if project else "—")),
        ("Services run as", options.get("service_account") or "the Compute Engine default service account"),
        ("Credentials", credentials),
        ("Builder", options.get("builder") or "dockerfile"),
    ]
