"""The REST API, v1. Permissions are the portal's: outsiders get 404, viewers
read, owners and developers change services, owners manage members and delete.
Every write goes through the actions in accounts/services.py, accounts/tokens.py
and services/services.py."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from datetime import datetime, timedelta
from types import SimpleNamespace

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import F, Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from hakobune.platform.accounts.models import Membership, Role
from hakobune.platform.accounts.permissions import member_of, require, team_for_audit
from hakobune.platform.accounts.services import add_member, create_team, remove_member
from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.observability import drains, events
from hakobune.platform.notifications import actions as notification_actions
from hakobune.platform.notifications import alerts
from hakobune.platform.notifications.models import AlertRules, Delivery
from hakobune.platform.services import jobs
from hakobune.platform.services.access import service_for
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.forms import ArchiveField
from hakobune.platform.services.models import DesiredState, OneOffRun, Service, with_latest_builds
from hakobune.platform.services.services import (
    ServiceActionError,
    cancel_build,
    create_service,
    delete_service,
    deploy_service,
    process_table,
    rollback,
    scale_processes,
    set_env,
    set_source,
    split_traffic,
    traffic_of,
    update_settings,
)
from hakobune.platform.services.uploads import upload_refusal
from hakobune.platform.observability.hood import has_hood, read_hood, service_for_hood
from hakobune.runtime.base import RuntimeBackendError, ServiceRef

from . import serializers as s
from .errors import Conflict, NotImplementedHere
from .streams import event_stream, sse

MASK = "••••••"
# How many one-off commands the API lists (the latest).
RUNS_LISTED = 50


def errors(*codes):
    described = {
        400: "The request is not valid; `error` says why.",
        401: "No valid token.",
        403: "Your role does not allow it.",
        404: "Not found, or of a team you are not in.",
        409: "The service is not in a state that allows it.",
        415: "The body is not multipart/form-data with a `source` file, nor JSON, or it could not be read as either.",
        429: "Too many failed logins: refused, even with the right password, for `retry_after` seconds.",
        501: "The service's runtime cannot do this.",
    }
    return {code: OpenApiResponse(s.ErrorSerializer, description=described[code]) for code in codes}


READ_ERRORS = (401, 404)
WRITE_ERRORS = (400, 401, 403, 404)


# -- shared checks ------------------------------------------------------------------------


def _django_errors(exc: DjangoValidationError):
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError({name: [m for e in errs for m in e.messages] for name, errs in exc.error_dict.items()})
    return exceptions.ValidationError({"non_field_errors": exc.messages})


DURATION = re.compile(r"^(\d{1,9})([smhd]?)$")


def parse_since(value: str | None) -> datetime | None:
    """An ISO 8601 time, or a duration back from now: 30s, 10m, 2h, 1d."""
    if not value:
        return None
    seconds = parse_duration(value, "since", allow_datetime=True)
    if isinstance(seconds, datetime):
        return seconds
    return timezone.now() - timedelta(seconds=seconds)


def parse_duration(value: str, name: str, *, allow_datetime: bool = False):
    match = DURATION.match(value.strip())
    if match:
        number, unit = int(match.group(1)), match.group(2) or "s"
        return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if allow_datetime:
        try:
            stamp = parse_datetime(value.strip())
        except ValueError:
            stamp = None
        if stamp is not None:
            return stamp if timezone.is_aware(stamp) else timezone.make_aware(stamp, timezone.utc)
    example = "an ISO 8601 time like 2026-01-31T12:00:00Z, or a duration like 10m" if allow_datetime else "a duration like 60s or 5m"
    raise exceptions.ValidationError({name: [f"{value!r} is not {example}."]})


def _truthy(value) -> bool:
    return str(value or "").lower() in {"1", "true", "yes", "on"}


class PlainTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, (str, bytes)) else json.dumps(data)


class EventStreamRenderer(PlainTextRenderer):
    media_type = "text/event-stream"
    format = "sse"


class StreamingView(APIView):
    """Answers text/plain or text/event-stream; errors are still JSON."""

    renderer_classes = [JSONRenderer, PlainTextRenderer, EventStreamRenderer]

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and response.status_code >= 400:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


# -- auth ----------------------------------------------------------------------------------


class TokenView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_token_create",
        request=s.TokenRequestSerializer,
        responses={
            201: s.TokenSerializer, **errors(400, 401, 429),
            403: OpenApiResponse(s.ErrorSerializer, description="The account must choose its own password first."),
        },
        auth=[],
        summary="Get an API token with a username and password",
    )
    def post(self, request):
        data = _valid(s.TokenRequestSerializer, request.data)
        # With the request, so that django-axes counts a failure and refuses a
        # locked-out client (its middleware answers 429, see accounts/lockout.py).
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            raise WrongPassword()
        record, token = create_api_token(user=user, name=data["name"], expires_in_days=data["expires_in_days"])
        return Response(
            {"token": token, "id": record.id, "name": record.name, "expires_at": record.expires_at},
            status=status.HTTP_201_CREATED,
        )


class WrongPassword(exceptions.APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "Wrong username or password. Check both, or log in to the portal to be sure."
    default_code = "authentication_failed"


def _valid(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    _refuse_unknown_fields(serializer, data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _refuse_unknown_fields(serializer, data):
    """A field the endpoint does not take is refused (400) rather than ignored: a
    misspelt or misplaced field (PUT …/env/ {"HELLO": "x"} instead of {"set": {…}})
    would otherwise answer 200 and change nothing."""
    if not hasattr(data, "keys"):
        return
    accepted = [name for name, field in serializer.fields.items() if not field.read_only]
    unknown = sorted(str(key) for key in data.keys() if key not in accepted)
    if unknown:
        takes = ", ".join(accepted) if accepted else "no fields"
        raise exceptions.ValidationError({
            name: [f"This endpoint does not take the field {name!r}; it takes: {takes}."] for name in unknown
        })


def _takes_no_fields(request):
    """An endpoint that takes no body refuses one with fields, as the others
    refuse a field they do not take."""
    try:
        data = request.data
    except (exceptions.UnsupportedMediaType, exceptions.ParseError):
        return  # a body of no type it reads (an empty form): no field to name
    _refuse_unknown_fields(SimpleNamespace(fields={}), data)


class MeView(APIView):
    @extend_schema(operation_id="me", responses={200: s.MeSerializer, **errors(*READ_ERRORS)}, summary="Who you are")
    def get(self, request):
        return Response(s.MeSerializer(request.user).data)


# -- teams and members ----------------------------------------------------------------------


def _team_data(membership, services=None, addons=None):
    """`services`: the team's services not deleted, and `addons`: its
    add-ons' sizes, when the caller read those of every team at once."""
    from hakobune.platform.governance.quotas import limits_of, usage_of
    from hakobune.platform.governance.reviews import review_required

    team = membership.team
    usage, limits = usage_of(team, services, addons), limits_of(team)
    return {
        "name": team.name, "role": membership.role, "created_at": team.created_at,
        "quota": {
            "services": {"used": usage.services, "limit": limits.services},
            "cpu": {"used": usage.cpu, "limit": limits.cpu},
            "memory_mb": {"used": usage.memory_mb, "limit": limits.memory_mb},
            "review": review_required(team),
        },
    }


class TeamsView(APIView):
    @extend_schema(operation_id="teams_list", responses={200: s.TeamSerializer(many=True), **errors(401)})
    def get(self, request):
        from hakobune.platform.governance.quotas import addon_sizes_of

        memberships = list(
            Membership.objects.filter(user=request.user).select_related("team__policy").order_by("team__name")
        )
        # Every team's services in one query, not one per team.
        teams = {m.team_id: m.team for m in memberships}
        services = list(Service.objects.filter(team__in=list(teams)).exclude(desired_state=DesiredState.DELETED))
        for service in services:
            service.team = teams[service.team_id]
        addons = addon_sizes_of(list(teams.values()))
        return Response([
            _team_data(m, [service for service in services if service.team_id == m.team_id], addons[m.team_id])
            for m in memberships
        ])

    @extend_schema(
        operation_id="teams_create", request=s.TeamCreateSerializer,
        responses={
            201: s.TeamSerializer, **errors(400, 401),
            403: OpenApiResponse(
                s.ErrorSerializer,
                description="You created as many teams as one person may, or Hakobune has no room for another "
                "team network (code no_room_for_team_network: an administrator must widen TEAM_SUBNET_POOL).",
            ),
        },
        summary="Create a team; you become its owner",
    )
    def post(self, request):
        data = _valid(s.TeamCreateSerializer, request.data)
        try:
            team = create_team(name=data["name"], owner=request.user)
        except DjangoValidationError as exc:
            if "name" in getattr(exc, "error_dict", {}) and any(e.code == "unique" for e in exc.error_dict["name"]):
                raise exceptions.ValidationError({"name": [f"The team name {data['name']} is taken. Choose another."]})
            raise _django_errors(exc)
        return Response(_team_data(team.memberships.get(user=request.user)), status=status.HTTP_201_CREATED)


class MembersView(APIView):
    @extend_schema(operation_id="members_list", responses={200: s.MemberSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request, team):
        membership = member_of(request.user, team)
        members = membership.team.memberships.select_related("user").order_by("user__username")
        return Response(s.MemberSerializer(members, many=True).data)

    @extend_schema(
        operation_id="members_add", request=s.MemberAddSerializer,
        responses={201: s.MemberSerializer, **errors(*WRITE_ERRORS)},
        summary="Add a person by username or e-mail, or change their role (owners only)",
    )
    def post(self, request, team):
        membership = member_of(request.user, team, Role.OWNER, "add members")
        data = _valid(s.MemberAddSerializer, request.data)
        User = get_user_model()
        who = data["user"].strip()
        user = User.objects.filter(is_active=True).filter(Q(username=who) | Q(email__iexact=who)).order_by("id").first() if who else None
        if user is None:
            raise exceptions.ValidationError(
                {"user": [f"No one has the username or e-mail {who!r}. They need a Hakobune account first."]}
            )
        added = add_member(team=membership.team, user=user, role=data["role"], by=request.user)
        return Response(s.MemberSerializer(added).data, status=status.HTTP_201_CREATED)


class MemberView(APIView):
    @extend_schema(
        operation_id="members_remove", responses={204: None, **errors(*WRITE_ERRORS)},
        summary="Remove a member (owners; anyone may leave)",
    )
    def delete(self, request, team, username):
        _takes_no_fields(request)
        membership = member_of(request.user, team)
        if username != request.user.username:
            require(membership, Role.OWNER, "remove members")
        target = get_object_or_404(Membership, team=membership.team, user__username=username)
        remove_member(team=membership.team, user=target.user, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- notifications (owners) ------------------------------------------------------------------


def _owner_of(request, team):
    return member_of(request.user, team, Role.OWNER, "change the team's notifications").team


class NotificationTargetsView(APIView):
    @extend_schema(operation_id="notification_targets_list",
                   responses={200: s.NotificationTargetSerializer(many=True), **errors(401, 403, 404)},
                   summary="The team's notification targets (owners)")
    def get(self, request, team):
        return Response(s.NotificationTargetSerializer(_owner_of(request, team).notification_targets.all(),
                                                       many=True).data)

    @extend_schema(operation_id="notification_targets_add", request=s.NotificationTargetCreateSerializer,
                   responses={201: s.NotificationTargetSerializer, **errors(*WRITE_ERRORS)},
                   summary="Add a notification target (owners); a URL that is not a public address is refused")
    def post(self, request, team):
        found = _owner_of(request, team)
        data = _valid(s.NotificationTargetCreateSerializer, request.data)
        try:
            target = notification_actions.add_target(team=found, created_by=request.user, **data)
        except DjangoValidationError as exc:
            raise _django_errors(exc)
        return Response(s.NotificationTargetSerializer(target).data, status=status.HTTP_201_CREATED)


class NotificationTargetView(APIView):
    @extend_schema(operation_id="notification_targets_remove", responses={204: None, **errors(*WRITE_ERRORS)},
                   summary="Remove a notification target (owners)")
    def delete(self, request, team, target_id):
        _takes_no_fields(request)
        target = get_object_or_404(_owner_of(request, team).notification_targets, id=target_id)
        notification_actions.remove_target(target)
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotificationTargetTestView(APIView):
    @extend_schema(operation_id="notification_targets_test", request=None,
                   responses={202: s.DeliverySerializer, **errors(*WRITE_ERRORS)},
                   summary="Send a test notification to one target (owners); its delivery says how it went")
    def post(self, request, team, target_id):
        _takes_no_fields(request)
        target = get_object_or_404(_owner_of(request, team).notification_targets, id=target_id)
        return Response(s.DeliverySerializer(alerts.send_test(target)).data, status=status.HTTP_202_ACCEPTED)


class NotificationDeliveriesView(APIView):
    @extend_schema(operation_id="notification_deliveries_list",
                   responses={200: s.DeliverySerializer(many=True), **errors(401, 403, 404)},
                   summary="The team's last notification deliveries, newest first (owners)")
    def get(self, request, team):
        deliveries = Delivery.objects.filter(alert__team=_owner_of(request, team)).select_related("alert__service")
        return Response(s.DeliverySerializer(deliveries[:50], many=True).data)


class AlertRulesView(APIView):
    @extend_schema(operation_id="alert_rules_list",
                   responses={200: s.AlertRuleSerializer(many=True), **errors(401, 403, 404)},
                   summary="The team's alert rules: its own (service null) and each service's (owners). A team "
                   "without rules of its own has the defaults: every event, memory at 90 %, errors at 5 %, "
                   "to every target")
    def get(self, request, team):
        rules = AlertRules.objects.filter(team=_owner_of(request, team)).select_related("service", "updated_by") \
            .prefetch_related("targets").order_by(F("service__name").asc(nulls_first=True))
        return Response(s.AlertRuleSerializer(rules, many=True).data)

    @extend_schema(operation_id="alert_rules_create", request=s.AlertRuleCreateSerializer,
                   responses={201: s.AlertRuleSerializer, **errors(400, 401, 403, 404, 409)},
                   summary="Set the team's alert rules, or a service's (owners); 409 when they are set already")
    def post(self, request, team):
        found = _owner_of(request, team)
        data = dict(_valid(s.AlertRuleCreateSerializer, request.data))
        service = None
        if data.get("service"):
            service = found.services.exclude(desired_state=DesiredState.DELETED).filter(name=data["service"]).first()
            if service is None:
                raise exceptions.ValidationError({"service": [
                    f"Team {found.name} has no service called {data['service']}."]})
        try:
            rules = notification_actions.create_rules(
                team=found, service=service, values=data, targets=data.get("targets"),
                new_targets=data.get("new_targets") or (), updated_by=request.user)
        except notification_actions.RulesExist as exc:
            whose = f"{service.name}" if service else f"team {found.name}"
            raise Conflict(f"The alert rules of {whose} are set already (id {exc.rules.id}): change them with "
                           f"PATCH /api/v1/teams/{found.name}/alerts/{exc.rules.id}/.")
        except DjangoValidationError as exc:
            raise _django_errors(exc)
        return Response(s.AlertRuleSerializer(rules).data, status=status.HTTP_201_CREATED)


class AlertRuleView(APIView):
    def _rules(self, request, team, rules_id):
        return get_object_or_404(AlertRules.objects.select_related("service", "team", "updated_by"),
                                 team=_owner_of(request, team), id=rules_id)

    @extend_schema(operation_id="alert_rules_retrieve", responses={200: s.AlertRuleSerializer, **errors(401, 403, 404)},
                   summary="One set of alert rules (owners)")
    def get(self, request, team, rules_id):
        return Response(s.AlertRuleSerializer(self._rules(request, team, rules_id)).data)

    @extend_schema(operation_id="alert_rules_update", request=s.AlertRuleWriteSerializer,
                   responses={200: s.AlertRuleSerializer, **errors(*WRITE_ERRORS)},
                   summary="Change some of the rules (owners); `targets`, when given, is the whole new list")
    def patch(self, request, team, rules_id):
        rules = self._rules(request, team, rules_id)
        data = _valid(s.AlertRuleWriteSerializer, request.data)
        try:
            rules = notification_actions.update_rules(rules, values=data, targets=data.get("targets"),
                                                      new_targets=data.get("new_targets") or (),
                                                      updated_by=request.user)
        except DjangoValidationError as exc:
            raise _django_errors(exc)
        return Response(s.AlertRuleSerializer(rules).data)

    @extend_schema(operation_id="alert_rules_remove", responses={204: None, **errors(*WRITE_ERRORS)},
                   summary="Remove the rules (owners): a service follows the team's again, the team's go back to "
                   "the defaults")
    def delete(self, request, team, rules_id):
        notification_actions.remove_rules(self._rules(request, team, rules_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- a team's log drain ----------------------------------------------------------------------


def _drain_data(drain):
    error = None
    if drain.last_error_rule:
        error = {"rule": drain.last_error_rule, "message": drain.last_error_text, "at": drain.last_error_at}
    return {**s.LogDrainSerializer(drain).data, "last_error": error}


class LogDrainView(APIView):
    @extend_schema(
        operation_id="log_drain_retrieve",
        responses={200: s.LogDrainSerializer, 401: errors(401)[401],
                   404: OpenApiResponse(s.ErrorSerializer, description="Not found, of a team you are not in, or the "
                                        "team has no log drain (code no_log_drain).")},
        summary="The team's log drain and how its sending goes (members)",
    )
    def get(self, request, team):
        membership = member_of(request.user, team)
        drain = drains.drain_of(membership.team)
        if drain is None:
            raise NoLogDrain()
        return Response(_drain_data(drain))

    @extend_schema(
        operation_id="log_drain_set", request=s.LogDrainUpdateSerializer,
        responses={200: s.LogDrainSerializer, **errors(*WRITE_ERRORS)},
        summary="Send the team's runtime logs to an address of its own from now on (owners)",
    )
    def put(self, request, team):
        membership = member_of(request.user, team, Role.OWNER, "change the team's log drain")
        data = _valid(s.LogDrainUpdateSerializer, request.data)
        try:
            drain = drains.set_drain(team=membership.team, url=data["url"], created_by=request.user)
        except drains.DrainRefused as exc:
            raise exceptions.ValidationError({"url": [str(exc)]})
        return Response(_drain_data(drain))

    @extend_schema(operation_id="log_drain_remove", responses={204: None, **errors(*WRITE_ERRORS)},
                   summary="Stop sending the team's logs (owners)")
    def delete(self, request, team):
        _takes_no_fields(request)
        membership = member_of(request.user, team, Role.OWNER, "change the team's log drain")
        if not drains.remove_drain(team=membership.team):
            raise NoLogDrain()
        return Response(status=status.HTTP_204_NO_CONTENT)


class NoLogDrain(exceptions.NotFound):
    default_detail = "This team has no log drain. Set one with PUT and {\"url\": \"https://…\"}."
    default_code = "no_log_drain"


# -- services -------------------------------------------------------------------------------


def _services_of(team):
    return team.services.exclude(desired_state=DesiredState.DELETED).select_related("team", "live_release__build")


class ServicesView(APIView):
    @extend_schema(operation_id="services_list", responses={200: s.ServiceSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request, team):
        membership = member_of(request.user, team)
        return Response(s.ServiceSerializer(with_latest_builds(_services_of(membership.team)), many=True).data)

    @extend_schema(
        operation_id="services_create", request=s.ServiceCreateSerializer,
        responses={201: s.ServiceSerializer, **errors(*WRITE_ERRORS)},
        summary="Create a service (then deploy it)",
    )
    def post(self, request, team):
        membership = member_of(request.user, team, Role.DEVELOPER, "create services")
        data = dict(_valid(s.ServiceCreateSerializer, request.data))
        subdir = data.pop("subdir", None)
        try:
            service = create_service(team=membership.team, created_by=request.user, **data)
        except DjangoValidationError as exc:
            raise _django_errors(exc)
        if subdir:
            set_source(service=service, subdir=subdir, created_by=request.user)
        return Response(s.ServiceSerializer(service).data, status=status.HTTP_201_CREATED)


class ServiceView(APIView):
    @extend_schema(operation_id="services_retrieve", responses={200: s.ServiceSerializer, **errors(*READ_ERRORS)})
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        return Response(s.ServiceSerializer(found).data)

    @extend_schema(
        operation_id="services_update", request=s.ServiceUpdateSerializer,
        responses={200: s.ServiceChangeSerializer, **errors(*WRITE_ERRORS)},
        summary="Change instances, cpu, memory, port or health check; a live service gets a new release",
    )
    def patch(self, request, team, service):
        _, found = service_for(request.user, team, service, Role.DEVELOPER)
        data = dict(_valid(s.ServiceUpdateSerializer, request.data))
        # Build settings (cloud_builder) apply from the next deploy: no new release for them.
        release = update_settings(service=found, created_by=request.user, **data)
        found.refresh_from_db()
        body = s.ServiceSerializer(found).data
        body["release"] = release.number if release else None
        return Response(body)

    @extend_schema(
        operation_id="services_destroy", request=s.ServiceDeleteSerializer,
        responses={202: s.MessageSerializer, **errors(*WRITE_ERRORS)},
        summary="Delete a service: its instances, address and images (owners only, confirmed by its name); "
                "its volumes and add-ons stay",
    )
    def delete(self, request, team, service):
        _, found = service_for(request.user, team, service, Role.OWNER, "delete a service")
        data = _valid(s.ServiceDeleteSerializer, request.data or {})
        delete_service(service=found, confirm=data["confirm"], created_by=request.user)
        return Response(
            {"message": f"{found.name} is being deleted: its instances, address and images. "
                        "Its volumes and add-ons stay."},
            status=status.HTTP_202_ACCEPTED,
        )


def _build_data(request, build, **extra):
    data = dict(s.BuildSerializer(build).data)
    data.update(extra)
    return data


class DeploysView(APIView):
    parser_classes = [MultiPartParser, JSONParser]

    @extend_schema(
        operation_id="deploys_create",
        request={"multipart/form-data": s.DeployUploadSerializer, "application/json": s.DeployGitSerializer},
        responses={202: s.DeployAcceptedSerializer, **errors(*WRITE_ERRORS, 415)},
        summary="Deploy: upload a `source` archive (multipart), or JSON {git_url, ref, subdir}",
    )
    def post(self, request, team, service):
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "deploy")
        refusal = upload_refusal(request._request)
        if refusal:
            raise exceptions.ValidationError({"source": [refusal]})
        if request.content_type.startswith("multipart/"):
            data = _valid(s.DeployUploadSerializer, request.data)
            try:
                upload = ArchiveField().clean(data["source"])
            except DjangoValidationError as exc:
                raise exceptions.ValidationError({"source": exc.messages})
            if "subdir" in data:
                set_source(service=found, subdir=data["subdir"], created_by=request.user)
            build = deploy_service(service=found, source_file=upload, created_by=request.user, trigger="api")
        else:
            data = _valid(s.DeployGitSerializer, request.data if isinstance(request.data, dict) else {})
            if data.get("git_url"):
                set_source(service=found, git_url=data["git_url"], git_ref=data.get("ref", ""), subdir=data.get("subdir"),
                           created_by=request.user)
                ref = ""
            else:
                if "subdir" in data:
                    set_source(service=found, subdir=data["subdir"], created_by=request.user)
                ref = data.get("ref", "")
            if found.source_kind != "git":
                raise exceptions.ValidationError({"non_field_errors": [
                    f"{found.name} has no git repository. Upload the app as a multipart `source` archive "
                    "(`hakobune deploy` does), or send JSON {\"git_url\": \"https://…\", \"ref\": \"main\"}."
                ]})
            build = deploy_service(service=found, git_ref=ref, created_by=request.user, trigger="api")
        log_url = request.build_absolute_uri(f"/api/v1/builds/{build.id}/log")
        return Response(_build_data(request, build, log_url=log_url), status=status.HTTP_202_ACCEPTED)


# -- builds ---------------------------------------------------------------------------------


def _build(request, build_id) -> Build:
    """A build of a service of one of the person's teams (404 otherwise)."""
    build = Build.objects.select_related("service__team").filter(id=build_id).first()
    if build is None:
        raise Http404
    service_for(request.user, build.service.team.name, build.service.name)
    return build


class BuildView(APIView):
    @extend_schema(operation_id="builds_retrieve", responses={200: s.BuildSerializer, **errors(*READ_ERRORS)},
                   summary="A build: status, reason, plan, image, timings")
    def get(self, request, build_id):
        return Response(s.BuildSerializer(_build(request, build_id)).data)


class BuildCancelView(APIView):
    @extend_schema(
        operation_id="builds_cancel", request=None,
        responses={200: s.BuildSerializer, **errors(409, *WRITE_ERRORS)},
        summary="Cancel a deploy still queued or building: its running step and containers are stopped",
    )
    def post(self, request, team, service, number):
        _takes_no_fields(request)
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "cancel deploys")
        build = get_object_or_404(Build.objects.select_related("service__team"), service=found, number=number)
        try:
            build = cancel_build(build=build, cancelled_by=request.user)
        except ServiceActionError as exc:
            raise Conflict(str(exc))
        return Response(s.BuildSerializer(build).data)


FOLLOW = OpenApiParameter("follow", OpenApiTypes.BOOL, description="Stream as server-sent events.")
# A portal process serves a bounded number of followed streams (api/streams.py).
STREAM_ERRORS = {
    429: OpenApiResponse(s.ErrorSerializer, description="With ?follow=1: you follow as many logs at once as one "
                         "person may; close one. `Retry-After` says when to try again."),
    503: OpenApiResponse(s.ErrorSerializer, description="With ?follow=1: the portal serves as many followed logs as it "
                         "may; follow again after `Retry-After` seconds, or read without ?follow=1."),
}


class BuildLogView(StreamingView):
    @extend_schema(
        operation_id="builds_log",
        parameters=[
            FOLLOW,
            OpenApiParameter("after", OpenApiTypes.INT, description="Only lines after this line id (an event's id)."),
        ],
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="The log so far, one line per line."),
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.ANY,
                description="With ?follow=1: one event per line (id = line id) until the build ends or waits "
                "for review, then an `end` event whose data is {\"status\", \"reason\"}.",
            ),
            **errors(400, *READ_ERRORS),
            **STREAM_ERRORS,
        },
        summary="A build's log, as text or followed as server-sent events",
    )
    def get(self, request, build_id):
        build = _build(request, build_id)
        after = request.query_params.get("after") or request.headers.get("Last-Event-ID") or "0"
        if not after.isdigit() or len(after) > 18:
            raise exceptions.ValidationError({"after": ["Give a line id, a whole number."]})
        after = int(after)
        if not _truthy(request.query_params.get("follow")):
            lines = build.log_lines.filter(id__gt=after).values_list("text", flat=True)
            text = "".join(f"{line}\n" for line in lines)
            return HttpResponse(text, content_type="text/plain; charset=utf-8")
        return event_stream(request, _follow_build(build.id, after))


def _build_news(build_id: int, after: int):
    build = Build.objects.only("status", "failure_reason").get(id=build_id)
    return build, list(build.log_lines.filter(id__gt=after).values_list("id", "text")[:1000])


async def _follow_build(build_id: int, after: int):
    """Polls the build every API_STREAM_POLL_SECONDS (asleep on the event loop
    in between); sends its new lines until it ends, for at most
    API_STREAM_MAX_SECONDS."""
    deadline = time.monotonic() + settings.API_STREAM_MAX_SECONDS
    while True:
        build, lines = await sync_to_async(_build_news)(build_id, after)
        # Waiting for an administrator's review is waiting for a person: the stream ends there.
        finished = not build.in_progress or build.status == BuildStatus.REVIEWING
        for line_id, text in lines:
            yield sse(text, id=line_id)
            after = line_id
        if len(lines) == 1000:
            continue
        if finished:
            yield sse(json.dumps({"status": build.status, "reason": build.failure_reason}), event="end")
            return
        if time.monotonic() >= deadline:
            yield sse(json.dumps({"status": build.status, "reason": "The stream's time is up; follow again to go on."}),
                      event="timeout")
            return
        yield ": waiting\n\n"
        await asyncio.sleep(settings.API_STREAM_POLL_SECONDS)


# -- releases ------------------------------------------------------------------------------


class ReleasesView(APIView):
    @extend_schema(operation_id="releases_list", responses={200: s.ReleaseSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        return Response(s.ReleaseSerializer(found.releases.select_related("build")[:100], many=True).data)


class RollbackView(APIView):
    @extend_schema(
        operation_id="releases_rollback", request=s.RollbackSerializer,
        responses={202: s.ReleaseSerializer, **errors(*WRITE_ERRORS)},
        summary="Roll back: a new release with an earlier release's image and settings",
    )
    def post(self, request, team, service):
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "roll back")
        data = _valid(s.RollbackSerializer, request.data)
        target = found.releases.filter(number=data["release"]).first()
        if target is None:
            raise exceptions.ValidationError({"release": [f"{found.name} has no release v{data['release']}."]})
        release = rollback(service=found, to_release=target, created_by=request.user)
        return Response(s.ReleaseSerializer(release).data, status=status.HTTP_202_ACCEPTED)


def _processes_data(service, release=None):
    return {"processes": process_table(service), "release": release.number if release else None}


class ProcessesView(APIView):
    @extend_schema(operation_id="processes_retrieve", responses={200: s.ProcessesSerializer, **errors(*READ_ERRORS)},
                   summary="The service's process types (web, and the Procfile's others) and their instances")
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        return Response(_processes_data(found))

    @extend_schema(
        operation_id="processes_scale",
        request={"application/json": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
                                      "example": {"worker": 2}}},
        responses={200: s.ProcessesSerializer, **errors(*WRITE_ERRORS)},
        summary='Scale process types, like {"worker": 2}; a live service gets a new release with the counts',
    )
    def patch(self, request, team, service):
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "scale")
        if not isinstance(request.data, dict):
            raise exceptions.ValidationError({"processes": ['Give process types and counts, like {"worker": 2}.']})
        release = scale_processes(service=found, counts=dict(request.data), created_by=request.user)
        found.refresh_from_db()
        return Response(_processes_data(found, release))


class JobsView(APIView):
    @extend_schema(operation_id="jobs_list", responses={200: s.JobsSerializer, **errors(*READ_ERRORS)},
                   summary="The service's scheduled jobs (hakobune.toml's [[jobs]]) and their latest runs")
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        return Response(s.JobsSerializer({"jobs": jobs.history(found)}).data)


class RunsView(APIView):
    @extend_schema(
        operation_id="runs_list", responses={200: s.OneOffRunsSerializer, **errors(*READ_ERRORS)},
        summary="The one-off commands run in the service (`hakobune run`), by whom; running one is a WebSocket "
                "at …/run (docs/architecture.md)",
    )
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        runs = OneOffRun.objects.filter(service=found).select_related("release")[:RUNS_LISTED]
        return Response(s.OneOffRunsSerializer({"runs": runs}).data)


class TrafficView(APIView):
    @extend_schema(operation_id="traffic_retrieve", responses={200: s.TrafficSerializer, **errors(409, *READ_ERRORS)},
                   summary="How the requests are split between releases (runtimes with revisions: Cloud Run)")
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        return Response(_traffic_data(found))

    @extend_schema(
        operation_id="traffic_update", request=s.TrafficUpdateSerializer,
        responses={200: s.TrafficSerializer, **errors(409, *WRITE_ERRORS)},
        summary="Split the requests between releases by percentage",
    )
    def put(self, request, team, service):
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "split traffic")
        data = _valid(s.TrafficUpdateSerializer, request.data)
        _traffic_data(found)  # a runtime that cannot split says so before anything is checked
        split_traffic(service=found, percents=data["percents"], created_by=request.user)
        return Response(_traffic_data(found))


def _traffic_data(service):
    releases = list(service.releases.all()[:50])
    try:
        shares = traffic_of(service, releases)
    except ServiceActionError as exc:  # its runtime has no revisions to split between
        raise Conflict(str(exc))
    revisions = {r.number: r.runtime_state.get("revision", "") for r in releases}
    return {"split": [{"release": n, "revision": revisions[n], "percent": p} for n, p in shares.items()]}


# -- environment ---------------------------------------------------------------------------


def _env_data(service, release=None):
    return {
        "env": [
            {"key": v.key, "value": MASK, "secret": v.secret_ref or None, "updated_at": v.updated_at}
            for v in service.env_vars.all()
        ],
        "release": release.number if release else None,
    }


class EnvView(APIView):
    @extend_schema(operation_id="env_retrieve", responses={200: s.EnvSerializer, **errors(*READ_ERRORS)},
                   summary="The service's environment variables (values masked)")
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        return Response(_env_data(found))

    @extend_schema(
        operation_id="env_update", request=s.EnvUpdateSerializer, responses={200: s.EnvSerializer, **errors(*WRITE_ERRORS)},
        summary="Set and unset environment variables; a live service gets a new release with them",
    )
    def put(self, request, team, service):
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "change environment variables")
        data = _valid(s.EnvUpdateSerializer, request.data)
        release = set_env(
            service=found, values=dict(data["set"]), unset=list(data["unset"]), secrets=dict(data["secrets"]),
            created_by=request.user,
        )
        return Response(_env_data(found, release))


# -- runtime logs and metrics --------------------------------------------------------------


def _running(service):
    if service.live_release_id is None:
        raise Conflict(f"{service.name} has not been deployed yet, so it has no logs or metrics. Deploy it first.")


def _line_data(line):
    data = {"timestamp": line.timestamp, "instance": line.instance, "text": line.text}
    if getattr(line, "id", None) is not None:  # a stored line (the local runtime's collected logs)
        data.update(id=line.id, stream=line.stream, process=line.process, release=line.release)
    return data


def _log_filter(params, since):
    from hakobune.platform.observability.logstore import STREAMS, LogFilter

    stream = params.get("stream") or ""
    if stream and stream not in STREAMS:
        raise exceptions.ValidationError({"stream": [f"Give one of {', '.join(STREAMS)}."]})
    release = (params.get("release") or "").lstrip("vV")
    if release and not release.isdigit():
        raise exceptions.ValidationError({"release": ["Give a release number: 3 or v3."]})
    until = parse_since(params.get("until")) if params.get("until") else None
    return LogFilter(text=(params.get("q") or "")[:200], stream=stream, process=params.get("process") or "",
                     release=int(release) if release else None, since=since, until=until)


class LogsView(StreamingView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        operation_id="logs_retrieve",
        parameters=[
            OpenApiParameter("since", OpenApiTypes.STR, description="An ISO 8601 time, or a duration back: 30s, 10m, 2h, 1d."),
            OpenApiParameter("until", OpenApiTypes.STR, description="An ISO 8601 time, or a duration back: lines up to it."),
            OpenApiParameter("tail", OpenApiTypes.INT, description="At most this many lines (1–5000, default 200; "
                             "collected logs give at most LOGS_PAGE_MAX a page, 500 by default)."),
            OpenApiParameter("q", OpenApiTypes.STR, description="Only lines holding this text (any case). Collected "
                             "logs: a filter reads at most LOGS_SEARCH_LINES lines a call (see searched_back_to)."),
            OpenApiParameter("stream", OpenApiTypes.STR, description="stdout, stderr or platform (Hakobune's own "
                             "lines about the log: dropped lines)."),
            OpenApiParameter("release", OpenApiTypes.STR, description="Only lines of this release: 3 or v3."),
            OpenApiParameter("process", OpenApiTypes.STR, description="Only lines of this process type: web, worker."),
            OpenApiParameter("before", OpenApiTypes.INT, description="Collected logs: the page before the line with "
                             "this id."),
            OpenApiParameter("after", OpenApiTypes.INT, description="Collected logs: the lines after the line with "
                             "this id (following goes on from there)."),
            FOLLOW,
        ],
        responses={
            (200, "application/json"): s.LogsSerializer,
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="With ?follow=1: one event per line, data as JSON {timestamp, instance, text} (collected "
                "logs add id, stream, process, release); a `timeout` event ends a stream that reached its time limit.",
            ),
            **errors(400, 409, *READ_ERRORS),
            **STREAM_ERRORS,
        },
        summary="What the service's instances print",
    )
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        params = request.query_params
        since = parse_since(params.get("since"))
        tail = params.get("tail") or "200"
        if not tail.isdigit() or not 1 <= int(tail) <= 5000:
            raise exceptions.ValidationError({"tail": ["Give a number of lines from 1 to 5000."]})
        for name in ("before", "after"):
            if params.get(name) and not params[name].isdigit():
                raise exceptions.ValidationError({name: ["Give the id of a line."]})
        _running(found)
        backend, ref = backend_for(found), ServiceRef(found.team.name, found.name)
        follow = _truthy(params.get("follow"))
        if "collected_logs" in backend.capabilities:
            from hakobune.platform.observability import logstore

            wanted = _log_filter(params, since)
            if params.get("after"):
                lines, last = logstore.after(found.id, wanted, int(params["after"]), limit=int(tail))
                page = logstore.Page(lines)
            else:
                before = int(params["before"]) if params.get("before") else None
                page = logstore.tail(found.id, wanted, limit=int(tail), before=before)
                last = page.lines[-1].id if page.lines else logstore.newest_id(found.id)
            if not follow:
                return Response({"lines": [_line_data(line) for line in page.lines], "before": page.before,
                                 "searched_back_to": page.searched_back_to})
            return event_stream(request, _follow_stored(found.id, wanted, page.lines, last))
        lines = [line for line in backend.logs(ref, tail=int(tail)) if _after(line, since)]
        if not follow:
            return Response({"lines": [_line_data(line) for line in lines]})
        return event_stream(request, _follow_logs(backend, ref, lines))


async def _follow_stored(service_id, wanted, first, last):
    """Sends the stored lines after `last` as the collector stores them
    (a look every API_STREAM_POLL_SECONDS), for at most API_STREAM_MAX_SECONDS."""
    from hakobune.platform.observability import logstore

    for line in first:
        yield sse(json.dumps(_line_data(line), default=str))
    deadline = time.monotonic() + settings.API_STREAM_MAX_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(settings.API_STREAM_POLL_SECONDS)
        lines, last = await sync_to_async(logstore.after)(service_id, wanted, last)
        for line in lines:
            yield sse(json.dumps(_line_data(line), default=str))
        if not lines:
            yield ": waiting\n\n"
    yield sse(json.dumps({"reason": "The stream's time is up; follow again to go on."}), event="timeout")


def _after(line, since) -> bool:
    return since is None or (line.timestamp is not None and line.timestamp >= since)


async def _follow_logs(backend, ref, first):
    """Polls the backend every API_STREAM_POLL_SECONDS (asleep on the event
    loop in between); sends lines it has not sent, for at most
    API_STREAM_MAX_SECONDS. For runtimes whose logs Hakobune does not collect
    (Cloud Run: Cloud Logging keeps them)."""

    seen = set()
    last = None

    def fresh(lines):
        nonlocal last
        for line in lines:
            key = (line.timestamp, line.instance, line.text)
            if key in seen or (last is not None and line.timestamp is not None and line.timestamp < last):
                continue
            seen.add(key)
            if line.timestamp is not None:
                last = line.timestamp if last is None else max(last, line.timestamp)
            yield sse(json.dumps(_line_data(line), default=str))

    for event in fresh(first):
        yield event
    deadline = time.monotonic() + settings.API_STREAM_MAX_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(settings.API_STREAM_POLL_SECONDS)
        try:
            lines = await sync_to_async(backend.logs)(ref, tail=500)
        except Exception as exc:  # the runtime went away: say so and end
            yield sse(json.dumps({"reason": getattr(exc, "message", str(exc))}), event="error")
            return
        news = list(fresh(lines))
        for event in news:
            yield event
        if not news:
            yield ": waiting\n\n"
        # Keep the memory of what was sent bounded.
        if len(seen) > 20000:
            seen.clear()
    yield sse(json.dumps({"reason": "The stream's time is up; follow again to go on."}), event="timeout")


class UnderTheHoodView(APIView):
    @extend_schema(
        operation_id="under_the_hood_retrieve",
        responses={200: s.UnderTheHoodSerializer, **errors(409, 501, *READ_ERRORS)},
        summary="What runs the service, read live from one of its instances: its namespaces next to the host's, its "
        "cgroup limits and use, its capabilities, its image's layers (how many other services share each: a count "
        "only) and the host's kernel; on Cloud Run, the sandbox, revision and scaling it runs with",
    )
    def get(self, request, team, service):
        found = service_for_hood(request.user, team, service)
        if not has_hood(found):
            raise NotImplementedHere(f"The {found.target} runtime shows nothing under the hood.")
        try:
            view = read_hood(found)
        except RuntimeBackendError as exc:
            raise Conflict(exc.message)
        data = {"kind": view.kind, "container": None, "sandbox": None}
        if view.kind == "container":
            data["container"] = {
                **dataclasses.asdict(view),
                "cgroups": {**dataclasses.asdict(view.cgroups), "cpu_limit_cores": view.cgroups.cpu_limit_cores},
                "layers": [{**dataclasses.asdict(layer), "saves_bytes": layer.saves_bytes} for layer in view.layers],
                "saved_bytes": view.saved_bytes,
            }
            data["container"]["namespaces"] = [{**dataclasses.asdict(pair), "shared": pair.shared}
                                               for pair in view.namespaces]
        else:
            data["sandbox"] = dataclasses.asdict(view)
        return Response(s.UnderTheHoodSerializer(data).data)


class MetricsView(APIView):
    @extend_schema(
        operation_id="metrics_retrieve",
        parameters=[
            OpenApiParameter("since", OpenApiTypes.STR, description="An ISO 8601 time, or a duration back: 10m, 1h."),
            OpenApiParameter("step", OpenApiTypes.STR, description="Seconds between points: 60, 60s, 5m (default 60)."),
        ],
        responses={200: s.MetricsSerializer, **errors(400, 409, 501, *READ_ERRORS)},
        summary="The service's readings (CPU and memory of each instance; requests by status class, latency "
        "percentiles and bytes sent; on Cloud Run also instances): the collected history since `since` (default: "
        "the last hour), averaged per `step` (request_count and response_bytes: per minute over each whole step); "
        "the current sample when nothing was collected yet",
    )
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        since = parse_since(request.query_params.get("since"))
        step = parse_duration(request.query_params.get("step") or "60", "step")
        if not 1 <= step <= 86400:
            raise exceptions.ValidationError({"step": ["Give a step from 1 second to 1 day."]})
        _running(found)
        from hakobune.platform.observability.collectors import history

        since = since or timezone.now() - timedelta(hours=1)
        points = history(found, since, step)
        if points:
            return Response({"since": since, "step": step, "history": True, "samples": points})
        backend = backend_for(found)
        try:
            samples = backend.metrics(ServiceRef(found.team.name, found.name))
        except NotImplementedError:
            raise NotImplementedHere(f"The {found.target} runtime does not report metrics yet.")
        return Response({
            "since": since,
            "step": step,
            "history": False,
            "samples": [
                {"timestamp": m.timestamp, "name": m.name, "value": m.value, "labels": m.labels} for m in samples
            ],
        })


# -- events: the service's timeline, the team's audit log ------------------------------------

EVENT_PARAMETERS = [
    OpenApiParameter("before", OpenApiTypes.INT, description="The page before the event with this id (`next_before`)."),
    OpenApiParameter("kind", OpenApiTypes.STR, description="Only these kinds, comma-separated: a kind (deploy.live) or "
                     "a family (deploy, release, instance, service, settings, env, source, domain, scale_to_zero, "
                     "traffic, review, team, member)."),
    OpenApiParameter("since", OpenApiTypes.STR, description="An ISO 8601 time, or a duration back: 30m, 2h, 7d."),
    OpenApiParameter("limit", OpenApiTypes.INT, description="At most this many events (1–200, default 50)."),
]


def _events_page(request, rows):
    params = request.query_params
    before, limit = params.get("before") or "", params.get("limit") or str(events.PAGE_SIZE)
    if before and not before.isdigit():
        raise exceptions.ValidationError({"before": ["Give the id of an event."]})
    if not limit.isdigit() or not 1 <= int(limit) <= events.PAGE_MAX:
        raise exceptions.ValidationError({"limit": [f"Give a number of events from 1 to {events.PAGE_MAX}."]})
    kinds = [kind.strip() for kind in (params.get("kind") or "").split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in events.KINDS and kind not in events.FAMILIES]
    if unknown:
        raise exceptions.ValidationError({"kind": [
            f"{', '.join(unknown)}: not a kind of event. Give kinds like deploy.live, or families: "
            f"{', '.join(events.families())}."]})
    found, older = events.page(rows, before=int(before) if before else None, kinds=kinds or None,
                               since=parse_since(params.get("since")), size=int(limit))
    return Response({"events": [_event_data(event) for event in found], "next_before": older})


def _event_data(event):
    return {
        "id": event.id, "at": event.created_at, "kind": event.kind, "severity": event.severity,
        "team": event.team_name, "service": event.service_name or None,
        "actor": {"username": event.actor_label if event.actor_id else None, "label": event.actor_label,
                  "token": event.actor_token},
        "message": events.sentence_of(event), "params": event.params,
    }


class ServiceEventsView(APIView):
    @extend_schema(
        operation_id="service_events", parameters=EVENT_PARAMETERS,
        responses={200: s.EventsSerializer, **errors(400, *READ_ERRORS)},
        summary="The service's events, newest first: deploys, releases, crashes and OOM kills, changes, and who "
        "did each (every member of its team)",
    )
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        return _events_page(request, found.events.all())


class TeamEventsView(APIView):
    @extend_schema(
        operation_id="team_events", parameters=EVENT_PARAMETERS,
        responses={200: s.EventsSerializer, **errors(400, 401, 403, 404)},
        summary="The team's audit log: its services' events and its own (members, quota), newest first "
        "(owners and administrators)",
    )
    def get(self, request, team):
        return _events_page(request, team_for_audit(request.user, team).events.all())


class NoSuchEndpoint(APIView):
    """Any other address under /api/v1/: a JSON 404 that points at the docs."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request, rest=""):
        raise exceptions.NotFound(f"There is no API endpoint /api/v1/{rest}. The endpoints are listed at /api/v1/docs/.")

    post = put = patch = delete = get
