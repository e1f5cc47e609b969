"""The API of add-ons (hakobune/platform/addons): a team's PostgreSQL and Redis,
and attaching them to its services. Viewers read; developers and owners
create, attach and detach; owners delete. Passwords are never shown."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of, require
from hakobune.platform.addons import actions
from hakobune.platform.addons.models import AddOn
from hakobune.platform.governance.quotas import QuotaExceeded
from hakobune.platform.services.access import service_for
from hakobune.platform.services.models import DesiredState

from . import serializers as s
from .views import READ_ERRORS, WRITE_ERRORS, _valid, errors


def addon_data(addon: AddOn) -> dict:
    return {
        "name": addon.name, "kind": addon.kind, "status": addon.status, "status_detail": addon.status_detail,
        "version": addon.version, "cpu": float(addon.cpu), "memory_mb": addon.memory_mb, "volume": addon.volume,
        "env_key": addon.env_key, "url": addon.url(masked=True), "external": addon.external,
        "services": sorted(addon.services.exclude(desired_state=DesiredState.DELETED).values_list("name", flat=True)),
        "created_at": addon.created_at,
    }


def addon_for(user, team: str, name: str, need: Role = Role.VIEWER, doing: str = "change add-ons"):
    membership = member_of(user, team)
    addon = AddOn.objects.filter(team=membership.team, name=name).first()
    if addon is None:
        raise Http404("No such add-on")
    require(membership, need, doing)
    return membership, addon


def _refused(action, **kwargs):
    try:
        return action(**kwargs)
    except (actions.AddOnError, QuotaExceeded) as exc:
        raise exceptions.ValidationError({"non_field_errors": [str(exc)]})


class AddOnsView(APIView):
    @extend_schema(operation_id="addons_list", responses={200: s.AddOnSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request, team):
        membership = member_of(request.user, team)
        found = AddOn.objects.filter(team=membership.team).prefetch_related("services")
        return Response([addon_data(addon) for addon in found])

    @extend_schema(operation_id="addons_create", request=s.AddOnCreateSerializer,
                   responses={201: s.AddOnSerializer, **errors(*WRITE_ERRORS)},
                   summary="Create a PostgreSQL or Redis add-on on this host; a worker starts it")
    def post(self, request, team):
        membership = member_of(request.user, team, Role.DEVELOPER, "create add-ons")
        data = _valid(s.AddOnCreateSerializer, request.data)
        addon = _refused(actions.create_addon, team=membership.team, kind=data["kind"], name=data["name"],
                         created_by=request.user)
        return Response(addon_data(addon), status=status.HTTP_201_CREATED)


class AddOnView(APIView):
    @extend_schema(operation_id="addons_retrieve", responses={200: s.AddOnSerializer, **errors(*READ_ERRORS)})
    def get(self, request, team, addon):
        _, found = addon_for(request.user, team, addon)
        return Response(addon_data(found))

    @extend_schema(operation_id="addons_destroy", request=s.AddOnDeleteSerializer,
                   responses={202: s.AddOnSerializer, **errors(*WRITE_ERRORS)},
                   summary="Delete an add-on and its data: only when no service uses it, confirmed by its name")
    def delete(self, request, team, addon):
        _, found = addon_for(request.user, team, addon, Role.OWNER, "delete add-ons")
        data = _valid(s.AddOnDeleteSerializer, request.data or {})
        was = addon_data(found)
        _refused(actions.delete, addon=found, confirm=data["confirm"], deleted_by=request.user)
        if was["external"]:  # only its record, gone at once
            return Response({**was, "status": AddOn.Status.DELETING, "services": []}, status=status.HTTP_202_ACCEPTED)
        found.refresh_from_db()
        return Response(addon_data(found), status=status.HTTP_202_ACCEPTED)


class ServiceAddOnsView(APIView):
    @extend_schema(operation_id="service_addons_attach", request=s.AddOnAttachSerializer,
                   responses={200: s.AddOnSerializer, **errors(*WRITE_ERRORS)},
                   summary="Attach an add-on: the service gets DATABASE_URL or REDIS_URL in a new release")
    def post(self, request, team, service):
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "attach add-ons")
        data = _valid(s.AddOnAttachSerializer, request.data)
        _, addon = addon_for(request.user, team, data["addon"], Role.DEVELOPER, "attach add-ons")
        release = _refused(actions.attach, addon=addon, service=found, created_by=request.user)
        return Response({**addon_data(addon), "release": release.number if release else None})


class ServiceAddOnView(APIView):
    @extend_schema(operation_id="service_addons_detach", responses={200: s.AddOnSerializer, **errors(*WRITE_ERRORS)},
                   summary="Detach an add-on: a new release without its variable; its data stays")
    def delete(self, request, team, service, addon):
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "detach add-ons")
        _, attached = addon_for(request.user, team, addon, Role.DEVELOPER, "detach add-ons")
        release = _refused(actions.detach, addon=attached, service=found, created_by=request.user)
        return Response({**addon_data(attached), "release": release.number if release else None})
