"""Actions that change services. Views read models directly but write only
through these functions."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Max

from hakobune.platform.builds.models import Build

from .models import Service


class ServiceActionError(Exception):
    pass


def create_service(*, team, name: str, created_by, **settings_fields) -> Service:
    if Service.objects.filter(team=team, name=name).exists():
        raise ServiceActionError(f"Your team already has a service called {name}.")
    service = Service(team=team, name=name, created_by=created_by, **settings_fields)
    service.full_clean()
    try:
        with transaction.atomic():
            service.save()
    except IntegrityError:
        raise ServiceActionError(f"Your team already has a service called {name}.")
    return service


def deploy_service(*, service: Service, source_file, created_by) -> Build:
    """Records a deploy of an uploaded archive and queues its pipeline once the
    record is committed."""
    from hakobune.worker.tasks import fetch_source

    with transaction.atomic():
        # Lock the service row so two deploys do not take the same number.
        Service.objects.select_for_update().filter(id=service.id).first()
        number = (service.builds.aggregate(last=Max("number"))["last"] or 0) + 1
        build = Build(service=service, number=number, created_by=created_by)
        build.source_filename = getattr(source_file, "name", "") or ""
        build.source_archive.save(f"build-{number}{_archive_suffix(build.source_filename)}", source_file, save=False)
        build.save()
        transaction.on_commit(lambda: fetch_source.delay(build.id))
    return build


def _archive_suffix(filename: str) -> str:
    lowered = filename.lower()
    for suffix in (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar", ".zip"):
        if lowered.endswith(suffix):
            return suffix
    return ".archive"
