"""The API of volumes (hakobune/platform/volumes): a team's named volumes on
this host, mounting them in its services at a path, and the team's disk use.
Viewers read; developers and owners create, attach and detach; owners mark
a volume safe to share and delete one (confirmed by its name)."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from hakobune.platform.accounts.models import Role
from hakobune.platform.accounts.permissions import member_of, require
from hakobune.platform.governance.disk_quota import MIB, disk_limit_mb, team_disk_usage_by_user
from hakobune.platform.governance.quotas import QuotaExceeded
from hakobune.platform.services.access import service_for
from hakobune.platform.volumes import actions
from hakobune.platform.volumes.models import Volume

from . import serializers as s
from .views import READ_ERRORS, WRITE_ERRORS, _valid, errors


def volume_data(volume: Volume) -> dict:
    return {
        "name": volume.name, "status": volume.status, "status_detail": volume.status_detail,
        "service": volume.service.name if volume.service_id else None, "mount_path": volume.mount_path,
        "shared": volume.shared, "size_bytes": volume.size_bytes, "measured_at": volume.measured_at,
        "created_at": volume.created_at,
    }


def volume_for(user, team: str, name: str, need: Role = Role.VIEWER, doing: str = "change volumes"):
    membership = member_of(user, team)
    volume = Volume.objects.filter(team=membership.team, name=name).select_related("service").first()
    if volume is None:
        raise Http404("No such volume")
    require(membership, need, doing)
    return membership, volume


def _refused(action, **kwargs):
    try:
        return action(**kwargs)
    except (actions.VolumeError, QuotaExceeded) as exc:
        raise exceptions.ValidationError({"non_field_errors": [str(exc)]})


class VolumesView(APIView):
    @extend_schema(operation_id="volumes_list", responses={200: s.VolumeSerializer(many=True), **errors(*READ_ERRORS)})
    def get(self, request, team):
        membership = member_of(request.user, team)
        return Response([volume_data(v) for v in Volume.objects.filter(team=membership.team).select_related("service")])

    @extend_schema(operation_id="volumes_create", request=s.VolumeCreateSerializer,
                   responses={201: s.VolumeSerializer, **errors(*WRITE_ERRORS)},
                   summary="Create a named volume on this host; refused past the team's disk quota")
    def post(self, request, team):
        membership = member_of(request.user, team, Role.DEVELOPER, "create volumes")
        data = _valid(s.VolumeCreateSerializer, request.data)
        volume = _refused(actions.create_volume, team=membership.team, name=data["name"], created_by=request.user)
        return Response(volume_data(volume), status=status.HTTP_201_CREATED)


class VolumeView(APIView):
    @extend_schema(operation_id="volumes_retrieve", responses={200: s.VolumeSerializer, **errors(*READ_ERRORS)})
    def get(self, request, team, volume):
        _, found = volume_for(request.user, team, volume)
        return Response(volume_data(found))

    @extend_schema(operation_id="volumes_update", request=s.VolumeUpdateSerializer,
                   responses={200: s.VolumeSerializer, **errors(*WRITE_ERRORS)},
                   summary="Mark a volume safe to share (or not); its service gets a new release")
    def patch(self, request, team, volume):
        _, found = volume_for(request.user, team, volume, Role.OWNER, "mark volumes safe to share")
        data = _valid(s.VolumeUpdateSerializer, request.data)
        release = _refused(actions.set_shared, volume=found, shared=data["shared"], changed_by=request.user)
        return Response({**volume_data(found), "release": release.number if release else None})

    @extend_schema(operation_id="volumes_destroy", request=s.VolumeDeleteSerializer,
                   responses={202: s.VolumeSerializer, **errors(*WRITE_ERRORS)},
                   summary="Delete a volume and its data: only when no service mounts it, confirmed by its name")
    def delete(self, request, team, volume):
        _, found = volume_for(request.user, team, volume, Role.OWNER, "delete volumes")
        data = _valid(s.VolumeDeleteSerializer, request.data or {})
        _refused(actions.delete, volume=found, confirm=data["confirm"], deleted_by=request.user)
        return Response(volume_data(found), status=status.HTTP_202_ACCEPTED)


class DiskView(APIView):
    @extend_schema(operation_id="team_disk", responses={200: s.DiskUsageSerializer, **errors(*READ_ERRORS)},
                   summary="What the team's volumes and backups hold on disk, against its quota")
    def get(self, request, team):
        membership = member_of(request.user, team)
        parts = team_disk_usage_by_user(membership.team)
        return Response({"used_bytes": sum(parts.values()), "limit_bytes": disk_limit_mb(membership.team) * MIB,
                         "by_user": parts})


class ServiceVolumesView(APIView):
    @extend_schema(operation_id="service_volumes_list", responses={200: s.VolumeSerializer(many=True),
                                                                   **errors(*READ_ERRORS)})
    def get(self, request, team, service):
        _, found = service_for(request.user, team, service)
        return Response([volume_data(v) for v in Volume.objects.filter(service=found).select_related("service")])

    @extend_schema(operation_id="service_volumes_attach", request=s.VolumeAttachSerializer,
                   responses={200: s.VolumeSerializer, **errors(*WRITE_ERRORS)},
                   summary="Mount a volume in the service at a path: a new release with it")
    def post(self, request, team, service):
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "attach volumes")
        data = _valid(s.VolumeAttachSerializer, request.data)
        _, volume = volume_for(request.user, team, data["volume"], Role.DEVELOPER, "attach volumes")
        release = _refused(actions.attach, volume=volume, service=found, path=data["path"], created_by=request.user)
        return Response({**volume_data(volume), "release": release.number if release else None})


class ServiceVolumeView(APIView):
    @extend_schema(operation_id="service_volumes_detach", responses={200: s.VolumeSerializer, **errors(*WRITE_ERRORS)},
                   summary="Unmount a volume from the service: a new release without it; its data stays")
    def delete(self, request, team, service, volume):
        _, found = service_for(request.user, team, service, Role.DEVELOPER, "detach volumes")
        _, attached = volume_for(request.user, team, volume, Role.DEVELOPER, "detach volumes")
        release = _refused(actions.detach, volume=attached, service=found, created_by=request.user)
        return Response({**volume_data(attached), "release": release.number if release else None})
