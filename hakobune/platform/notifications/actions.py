"""What a team's owners change in its notifications, for the portal and the
API alike: targets added and removed, rules saved for the team or one
service. Views check the role (owners) before calling these."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from hakobune.platform.accounts.models import Team
from hakobune.platform.crypto import encrypt
from hakobune.platform.services.models import Service

from .channels import check_address
from .models import AlertRules, Delivery, NotificationTarget, TargetKind


class RulesExist(Exception):
    """Rules for that team or service are there already (one row each)."""

    def __init__(self, rules: AlertRules):
        super().__init__(rules.id)
        self.rules = rules

RULE_FIELDS = ("deploy_failed", "crash_loop", "memory_high", "memory_percent", "error_rate", "error_rate_percent",
               "backup_failed")


def add_target(*, team: Team, name: str, kind: str, address: str, language: str = "en",
               created_by=None) -> NotificationTarget:
    """Adds a target once its address passed the checks (the SSRF guard for
    URLs); raises ValidationError {field: sentence} otherwise."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": _("Give the target a name, like “ops e-mail” or “#deploys”.")})
    if kind not in TargetKind.values:
        raise ValidationError({"kind": _("Choose e-mail, Slack, Discord, Microsoft Teams or webhook.")})
    try:
        checked = check_address(kind, address)
    except ValidationError as exc:
        raise ValidationError({"address": exc.messages}) from None
    try:
        with transaction.atomic():
            return NotificationTarget.objects.create(
                team=team, name=name, kind=kind, address_encrypted=encrypt(checked.address), shown=checked.shown,
                language=language, created_by=created_by,
            )
    except IntegrityError:
        raise ValidationError({"name": _("The team has a target called %(name)s already.") % {"name": name}}) from None


def remove_target(target: NotificationTarget) -> None:
    """Its deliveries stay, with its name, in the list of last deliveries."""
    Delivery.objects.filter(target=target, status=Delivery.Status.PENDING).update(
        status=Delivery.Status.FAILED, reason="the target was removed before it was sent")
    target.delete()


def save_rules(*, team: Team, service: Service | None = None, values: dict, updated_by=None) -> AlertRules:
    """The team's rules (service None), or one service's, which replace the
    team's for it."""
    rules = AlertRules.objects.filter(team=team, service=service).first() or AlertRules(team=team, service=service)
    for name in RULE_FIELDS:
        if name in values:
            setattr(rules, name, values[name])
    rules.updated_by = updated_by
    rules.full_clean(exclude=["team", "service", "updated_by"])
    rules.save()
    return rules


def remove_service_rules(*, team: Team, service: Service) -> bool:
    """The service follows the team's rules again."""
    return AlertRules.objects.filter(team=team, service=service).delete()[0] > 0


def create_rules(*, team: Team, service: Service | None, values: dict, targets=None, new_targets=(),
                 updated_by=None) -> AlertRules:
    """New rules for the team (service None) or one service, sent to the
    targets named (`targets`: names of the team's; `new_targets`: targets
    added now, through add_target's checks); none named: every target.
    Raises RulesExist, or ValidationError {field: sentences}, and then
    changes nothing."""
    with transaction.atomic():
        found = AlertRules.objects.filter(team=team, service=service).first()
        if found is not None:
            raise RulesExist(found)
        return _save(AlertRules(team=team, service=service), values, targets or [], new_targets, updated_by)


def update_rules(rules: AlertRules, *, values: dict, targets=None, new_targets=(), updated_by=None) -> AlertRules:
    """Changes the rules' values given; `targets` (names), when given, is the
    whole new list of targets (plus `new_targets`, added now)."""
    with transaction.atomic():
        if targets is None and new_targets:
            targets = list(rules.targets.values_list("name", flat=True)) if rules.pk else []
        return _save(rules, values, targets, new_targets, updated_by)


def remove_rules(rules: AlertRules) -> None:
    """The team's rules go back to the defaults; a service's follow the team's again."""
    rules.delete()


def _save(rules: AlertRules, values: dict, targets, new_targets, updated_by) -> AlertRules:
    for name in RULE_FIELDS:
        if name in values:
            setattr(rules, name, values[name])
    rules.updated_by = updated_by
    rules.full_clean(exclude=["team", "service", "updated_by", "targets"])
    chosen = None
    if targets is not None:
        chosen = list(rules.team.notification_targets.filter(name__in=targets))
        missing = sorted(set(targets) - {target.name for target in chosen})
        if missing:
            raise ValidationError({"targets": _("Team %(team)s has no target called %(names)s. Add it first, or give "
                                                "it in new_targets.") % {"team": rules.team.name,
                                                                         "names": ", ".join(missing)}})
    for number, new in enumerate(new_targets or ()):
        try:
            chosen.append(add_target(team=rules.team, created_by=updated_by, **new))
        except ValidationError as exc:
            raise ValidationError({f"new_targets[{number}].{field}": problems
                                   for field, problems in exc.message_dict.items()}) from None
    rules.save()
    if chosen is not None:
        rules.targets.set(chosen)
    return rules
