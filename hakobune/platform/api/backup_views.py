"""The API of add-on backups (hakobune/platform/addons/backups.py): list and
make them, read one's file, restore one into its add-on (confirmed by the
add-on's name) or into a new add-on, and set the add-on's schedule.

Viewers list; developers and owners make backups, download them, restore
into a new add-on and change the schedule; restoring into the add-on itself
(replacing its data) is for owners, as deleting it is."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from hakobune.platform.accounts.models import Role
from hakobune.platform.addons import backups
from hakobune.platform.addons.actions import AddOnError
from hakobune.platform.addons.backup_store import StoreError, store_for
from hakobune.platform.addons.models import Backup, Restore
from hakobune.platform.governance.quotas import QuotaExceeded

from . import serializers as s
from .addon_views import addon_for
from .views import READ_ERRORS, WRITE_ERRORS, _valid, errors


def restore_data(found: Restore) -> dict:
    return {
        "id": found.id, "backup": found.backup_id, "addon": found.addon.name, "into_new": found.into_new,
        "status": found.status, "detail": found.detail, "counts": found.counts, "created_at": found.created_at,
        "finished_at": found.finished_at,
    }


def backup_data(backup: Backup) -> dict:
    return {
        "id": backup.id, "addon": backup.addon.name, "kind": backup.kind, "status": backup.status,
        "step": backup.step, "trigger": backup.trigger, "scheduled_for": backup.scheduled_for,
        "storage": backup.storage, "size_bytes": backup.size_bytes, "sha256": backup.sha256,
        "check": backup.checked or None, "detail": backup.detail,
        "created_by": backup.created_by.username if backup.created_by else None,
        "created_at": backup.created_at, "finished_at": backup.finished_at,
        "restores": [restore_data(found) for found in backup.restores.select_related("addon")[:10]],
    }


def schedule_data(addon) -> dict:
    found = backups.schedule_of(addon)
    return {key: found[key] for key in ("schedule", "retention", "next_run", "last_run", "missed")}


def _refused(action, **kwargs):
    try:
        return action(**kwargs)
    except (backups.BackupError, AddOnError, QuotaExceeded) as exc:
        raise exceptions.ValidationError({"non_field_errors": [str(exc)]})


def backup_for(user, team: str, addon: str, backup_id: int, need: Role = Role.VIEWER, doing: str = ""):
    membership, found = addon_for(user, team, addon, need, doing or "read backups")
    backup = Backup.objects.filter(addon=found, id=backup_id).select_related("addon__team", "created_by").first()
    if backup is None:
        raise Http404("No such backup")
    return membership, backup


class BackupsView(APIView):
    @extend_schema(operation_id="addon_backups_list", responses={200: s.BackupSerializer(many=True),
                                                                 **errors(*READ_ERRORS)})
    def get(self, request, team, addon):
        _, found = addon_for(request.user, team, addon)
        return Response([backup_data(backup) for backup in
                         found.backups.select_related("addon", "created_by")[:100]])

    @extend_schema(operation_id="addon_backups_create", request=None,
                   responses={202: s.BackupSerializer, **errors(*WRITE_ERRORS)},
                   summary="Back up the add-on now; a worker dumps it, stores it and verifies it by a restore")
    def post(self, request, team, addon):
        _, found = addon_for(request.user, team, addon, Role.DEVELOPER, "back up add-ons")
        backup = _refused(backups.create_backup, addon=found, created_by=request.user)
        return Response(backup_data(backup), status=status.HTTP_202_ACCEPTED)


class BackupScheduleView(APIView):
    @extend_schema(operation_id="addon_backup_schedule_retrieve",
                   responses={200: s.BackupScheduleSerializer, **errors(*READ_ERRORS)})
    def get(self, request, team, addon):
        _, found = addon_for(request.user, team, addon)
        return Response(schedule_data(found))

    @extend_schema(operation_id="addon_backup_schedule_update", request=s.BackupScheduleChangeSerializer,
                   responses={200: s.BackupScheduleSerializer, **errors(*WRITE_ERRORS)},
                   summary="Set the add-on's backup schedule (cron, UTC; empty: none) and how many are kept")
    def patch(self, request, team, addon):
        _, found = addon_for(request.user, team, addon, Role.DEVELOPER, "change backup schedules")
        data = _valid(s.BackupScheduleChangeSerializer, request.data)
        _refused(backups.set_schedule, addon=found, schedule=data.get("schedule"), retention=data.get("retention"),
                 changed_by=request.user)
        return Response(schedule_data(found))


class BackupView(APIView):
    @extend_schema(operation_id="addon_backups_retrieve", responses={200: s.BackupSerializer, **errors(*READ_ERRORS)})
    def get(self, request, team, addon, backup_id):
        _, backup = backup_for(request.user, team, addon, backup_id)
        return Response(backup_data(backup))


class BackupDownloadView(APIView):
    @extend_schema(operation_id="addon_backups_download",
                   responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
                              **errors(*WRITE_ERRORS)},
                   summary="The backup's file: a pg_dump custom-format archive or a Redis RDB")
    def get(self, request, team, addon, backup_id):
        _, backup = backup_for(request.user, team, addon, backup_id, Role.DEVELOPER, "download backups")
        if backup.status != Backup.Status.VERIFIED or not backup.location:
            raise exceptions.ValidationError({"non_field_errors": [
                f"Backup {backup.id} is {backup.get_status_display()}; only a verified backup can be downloaded."]})
        folder = Path(tempfile.mkdtemp())
        try:
            path = folder / "backup"
            store_for(backup.storage, backup.bucket).get(backup.location, path)
            handle = open(path, "rb")  # read on after the name is gone
        except StoreError as exc:
            raise exceptions.ValidationError({"non_field_errors": [str(exc)]})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        name = f"{backup.addon.team.name}-{backup.addon.name}-{backup.id}.{backup.location.rsplit('.', 1)[-1]}"
        return FileResponse(handle, as_attachment=True, filename=name, content_type="application/octet-stream")


class BackupRestoreView(APIView):
    @extend_schema(operation_id="addon_backups_restore", request=s.RestoreCreateSerializer,
                   responses={202: s.RestoreSerializer, **errors(*WRITE_ERRORS)},
                   summary="Restore a verified backup into its add-on (confirm with its name) or into a new add-on")
    def post(self, request, team, addon, backup_id):
        data = _valid(s.RestoreCreateSerializer, request.data)
        new_addon = (data.get("new_addon") or "").strip()
        if new_addon:
            _, backup = backup_for(request.user, team, addon, backup_id, Role.DEVELOPER, "restore backups")
        else:
            _, backup = backup_for(request.user, team, addon, backup_id, Role.OWNER,
                                   "restore backups into the add-on (replacing its data)")
        made = _refused(backups.restore, backup=backup, confirm=(data.get("confirm") or "").strip(),
                        new_addon=new_addon or None, created_by=request.user)
        return Response(restore_data(made), status=status.HTTP_202_ACCEPTED)
