"""The team's Notifications page (owners only): its targets, its rules (the
team's and per service), a test button per target, and the last deliveries,
failures in red with their reason."""

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of
from hakobune.platform.services.models import DesiredState

from . import actions, alerts
from .forms import RulesForm, ServiceRulesForm, TargetForm
from .models import AlertRules, Delivery

LAST_DELIVERIES = 25


def owners_only(view):
    """Logged in, and an owner of the team (outsiders get a 404, other members a 403)."""

    @login_required
    @wraps(view)
    def wrapper(request, team, *args, **kwargs):
        membership = member_of(request.user, team, Role.OWNER, "change the team's notifications")
        return view(request, membership.team, *args, **kwargs)

    return wrapper


def _services(team):
    return list(team.services.exclude(desired_state=DesiredState.DELETED).order_by("name"))


def _page(request, team, *, target_form=None, rules_form=None, service_rules_form=None):
    services = _services(team)
    team_rules = alerts.rules_for(team.id)
    deliveries = Delivery.objects.filter(alert__team=team).select_related("alert__service")
    service_rules = list(AlertRules.objects.filter(team=team, service__isnull=False).select_related("service")
                         .prefetch_related("targets").order_by("service__name"))
    for rules in service_rules:
        rules.target_names = ", ".join(sorted(target.name for target in rules.targets.all()))
    return render(request, "notifications/notifications.html", {
        "team": team,
        "targets": team.notification_targets.all(),
        "target_form": target_form or TargetForm(initial={"language": translation.get_language() or "en"}),
        "rules_form": rules_form or RulesForm(instance=team_rules),
        "service_rules_form": service_rules_form or ServiceRulesForm(services=services, instance=team_rules),
        "service_rules": service_rules,
        "team_target_names": ", ".join(sorted(team_rules.targets.values_list("name", flat=True)))
        if team_rules.pk and team_rules.service_id is None else "",
        "deliveries": deliveries[:LAST_DELIVERIES],
        "failed": deliveries.filter(status=Delivery.Status.FAILED).count(),
        "days": settings.NOTIFY_KEEP_DAYS,
        "cooldown": settings.NOTIFY_COOLDOWN_MINUTES,
    })


@owners_only
def notifications_page(request, team):
    return _page(request, team)


@owners_only
@require_POST
def target_add(request, team):
    form = TargetForm(request.POST)
    if form.is_valid():
        try:
            target = actions.add_target(team=team, created_by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                for problem in problems:
                    form.add_error(field if field in form.fields else None, problem)
        else:
            messages.success(request, _("%(name)s will get the team's notifications. Send it a test to be sure.")
                             % {"name": target.name})
            return redirect("notifications:page", team=team.name)
    return _page(request, team, target_form=form)


@owners_only
@require_POST
def target_remove(request, team, target_id):
    target = get_object_or_404(team.notification_targets, id=target_id)
    actions.remove_target(target)
    messages.success(request, _("%(name)s gets no more notifications.") % {"name": target.name})
    return redirect("notifications:page", team=team.name)


@owners_only
@require_POST
def target_test(request, team, target_id):
    target = get_object_or_404(team.notification_targets, id=target_id)
    alerts.send_test(target)
    messages.success(request, _("A test notification is on its way to %(name)s; how it went shows under "
                                "Last deliveries within a few seconds.") % {"name": target.name})
    return redirect("notifications:page", team=team.name)


@owners_only
@require_POST
def rules_save(request, team):
    form = RulesForm(request.POST, instance=AlertRules(team=team))
    if not form.is_valid():
        return _page(request, team, rules_form=form)
    actions.save_rules(team=team, values=form.cleaned_data, updated_by=request.user)
    messages.success(request, _("Saved the team's notification rules."))
    return redirect("notifications:page", team=team.name)


@owners_only
@require_POST
def service_rules_save(request, team):
    services = _services(team)
    form = ServiceRulesForm(request.POST, services=services, instance=AlertRules(team=team))
    if not form.is_valid():
        return _page(request, team, service_rules_form=form)
    service = next(service for service in services if service.name == form.cleaned_data["service"])
    actions.save_rules(team=team, service=service, values=form.cleaned_data, updated_by=request.user)
    messages.success(request, _("Saved the notification rules of %(service)s; they replace the team's for it.")
                     % {"service": service.name})
    return redirect("notifications:page", team=team.name)


@owners_only
@require_POST
def service_rules_remove(request, team, service):
    found = get_object_or_404(team.services.exclude(desired_state=DesiredState.DELETED), name=service)
    actions.remove_service_rules(team=team, service=found)
    messages.success(request, _("%(service)s follows the team's notification rules again.") % {"service": found.name})
    return redirect("notifications:page", team=team.name)
