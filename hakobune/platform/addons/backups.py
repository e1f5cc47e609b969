"""Backups of add-ons: made on a schedule (each add-on's cron line, daily by
default) or on demand, stored in the data directory or a bucket
(backup_store.py), and marked `verified` only once the stored file, read
back, restores into a scratch container holding what the add-on held when it
was dumped (rows per table, keys). Anything else is `failed`, with a sentence,
an event and a "backup failed" notification; the portal shows it in red.

A backup is a row before it is work: `create_backup` writes it (step
`queued`) and queues `run_backup`; the scheduler's tick (`tick`, every
BACKUP_TICK_SECONDS on the housekeeping queue) makes the due scheduled ones,
queues again what a lost queue dropped, and fails what a dead worker left.
Claims are conditional updates, so a duplicate message does nothing twice.

Retention keeps each add-on's newest `backup_retention` verified backups and
deletes older ones only after a newer one is verified: a run of failures
never leaves an add-on without a good backup.

Restoring (`restore`) is into the add-on itself, once the person typed its
name, or into a new add-on made for it; the file is checked against its
SHA-256 first, and a file that changed since it was verified marks the
backup failed and is not restored."""

from __future__ import annotations

import logging
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from hakobune.platform.crypto import decrypt
from hakobune.platform.governance.disk_quota import check_disk_quota
from hakobune.platform.governance.quotas import QuotaExceeded
from hakobune.platform.notifications import alerts
from hakobune.platform.observability.events import record_event
from hakobune.platform.queue import enqueue_on_commit
from hakobune.platform.services.backends import get_backend
from hakobune.runtime.addons import POSTGRES
from hakobune.runtime.backups import EXTENSIONS, BackupSource, LocalBackups, file_digest
from hakobune.runtime.base import RuntimeBackendError
from hakobune.runtime.docker_local import team_network_name

from .backup_store import LOCAL, StoreError, configured, key_of, store_for
from .models import AddOn, Backup, Restore

logger = logging.getLogger(__name__)

Status, Step = Backup.Status, Backup.Step
# A backup or restore accepted this long ago and still waiting is queued again (its message was lost).
REQUEUE_AFTER = timedelta(minutes=3)


class BackupError(Exception):
    """A request about backups that cannot be done; the message says why."""


def refuse_if_over_disk_quota(team) -> None:
    """Raises BackupError, in the quota's sentence, when `team` is at or past
    its disk quota (its volumes and the backups kept on this host together:
    governance/disk_quota.py), before a backup is started."""
    try:
        check_disk_quota(team)
    except QuotaExceeded as exc:
        raise BackupError(str(exc)) from None


def backup_bytes_of_team(team) -> int:
    """The bytes of this host's disk that the team's backups take: those kept
    in the data directory (a bucket's are not on this host)."""
    total = (Backup.objects.filter(team=team, storage=LOCAL).exclude(location="")
             .aggregate(total=Sum("size_bytes"))["total"])
    return int(total or 0)


def _runtime() -> LocalBackups:
    from .actions import ADDON_BACKEND

    return LocalBackups(get_backend(ADDON_BACKEND), memory_mb=settings.BACKUP_MEMORY_MB, cpu=settings.BACKUP_CPU,
                        timeout=settings.BACKUP_TIMEOUT)


def _source(addon: AddOn) -> BackupSource:
    return BackupSource(team=addon.team.name, name=addon.name, kind=addon.kind, image=addon.image,
                        password=decrypt(addon.password_encrypted), database=addon.database,
                        network=team_network_name(addon.team.name))


def _work_dir() -> Path:
    work = Path(settings.BACKUP_DIR) / ".work"
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=work))


# -- asking for one --------------------------------------------------------------------


def create_backup(*, addon: AddOn, created_by=None, trigger: str = Backup.Trigger.ON_DEMAND,
                  scheduled_for: datetime | None = None) -> Backup:
    """Records a backup of the add-on and has a worker make it; refused, in a
    sentence, when the add-on is not ready or one is being made already."""
    if addon.status != AddOn.Status.READY:
        raise BackupError(f"{addon.name} is {addon.get_status_display()}; only a ready add-on can be backed up.")
    if trigger == Backup.Trigger.ON_DEMAND and addon.backups.filter(status=Status.RUNNING).exists():
        raise BackupError(f"A backup of {addon.name} is being made already; wait for it to end.")
    refuse_if_over_disk_quota(addon.team)
    try:
        storage = configured()
    except StoreError as exc:
        raise BackupError(str(exc))
    bucket = settings.BACKUP_S3.get("bucket", "") if storage != LOCAL else ""
    backup = Backup.objects.create(addon=addon, team=addon.team, kind=addon.kind, trigger=trigger,
                                   scheduled_for=scheduled_for, storage=storage, bucket=bucket, created_by=created_by)
    enqueue_on_commit("run_backup", backup.id)
    if created_by is not None:
        record_event("addon.backup_requested", team=addon.team, actor=created_by, addon=addon.name)
    return backup


# -- making it (the worker) ------------------------------------------------------------


def run_backup(backup_id: int) -> None:
    """Dumps, stores, reads back and checks one backup; it ends verified or failed."""
    now = timezone.now()
    claimed = Backup.objects.filter(id=backup_id, status=Status.RUNNING, step=Step.QUEUED).update(
        step=Step.DUMPING, started_at=now)
    if not claimed:
        return
    backup = Backup.objects.select_related("addon__team").get(id=backup_id)
    addon = backup.addon
    work = _work_dir()
    try:
        if addon.status != AddOn.Status.READY:
            raise BackupError(f"{addon.name} was {addon.get_status_display()} when its turn came.")
        runtime, source = _runtime(), _source(addon)
        try:
            dumped = runtime.dump(source, work / f"dump.{EXTENSIONS[addon.kind]}")
        except RuntimeBackendError as exc:
            raise BackupError(f"Dumping {addon.name} failed: {exc.message}")
        key = key_of(addon.team.name, addon.name, backup.id, EXTENSIONS[addon.kind])
        Backup.objects.filter(id=backup.id).update(step=Step.STORING, size_bytes=dumped.size, sha256=dumped.sha256,
                                                   counts=dumped.counts)
        backup.size_bytes, backup.sha256, backup.counts = dumped.size, dumped.sha256, dumped.counts
        store = store_for(backup.storage, backup.bucket)
        try:
            store.put(dumped.path, key)
        except StoreError as exc:
            raise BackupError(str(exc))
        Backup.objects.filter(id=backup.id).update(step=Step.CHECKING, location=key)
        backup.location = key
        dumped.path.unlink()
        checked = verify(backup, runtime=runtime, work=work)
        if not checked["passed"]:
            raise BackupError(checked["summary"])
    except BackupError as exc:
        _fail(backup, str(exc))
    except Exception as exc:  # noqa: BLE001 - any fault ends the backup failed, in words
        logger.exception("backup %s failed", backup_id)
        _fail(backup, f"The backup stopped on an unexpected error: {exc}")
    else:
        Backup.objects.filter(id=backup.id, status=Status.RUNNING).update(
            status=Status.VERIFIED, step=Step.DONE, checked=checked, finished_at=timezone.now(), detail="")
        record_event("addon.backup_verified", team=addon.team, addon=addon.name, size=backup.size_bytes,
                     summary=checked["summary"])
        apply_retention(addon)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verify(backup: Backup, *, runtime: LocalBackups | None = None, work: Path | None = None) -> dict:
    """Reads the stored file back, checks its SHA-256 and restores it into a
    scratch container: {"passed", "summary", "expected", "found"}."""
    runtime = runtime or _runtime()
    own_work = work is None
    work = work or _work_dir()
    try:
        path = work / f"stored.{EXTENSIONS[backup.kind]}"
        try:
            store_for(backup.storage, backup.bucket).get(backup.location, path)
        except StoreError as exc:
            return _checked(False, str(exc), backup.counts, {})
        if file_digest(path) != backup.sha256:
            return _checked(False, "The stored file is not the one that was dumped (its SHA-256 differs): "
                                   "it was damaged or changed in storage.", backup.counts, {})
        try:
            found = runtime.check(_source(backup.addon), path)
        except RuntimeBackendError as exc:
            return _checked(False, f"Restoring it into a scratch container failed: {exc.message}", backup.counts, {})
        return compare(backup.kind, backup.counts, found)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _checked(passed: bool, summary: str, expected: dict, found: dict) -> dict:
    return {"passed": passed, "summary": summary, "expected": expected, "found": found}


def compare(kind: str, expected: dict, found: dict, *, only_expected: bool = False) -> dict:
    """Whether a restore found what the add-on held when dumped, in a sentence."""
    if kind == POSTGRES:
        problems = []
        for table, rows in sorted(expected.items()):
            if table not in found:
                problems.append(f"the table {table} is missing")
            elif found[table] != rows:
                problems.append(f"the table {table} has {found[table]} rows instead of {rows}")
        if not only_expected:
            problems += [f"the table {table} was not in the database" for table in sorted(set(found) - set(expected))]
        if problems:
            return _checked(False, "The restored copy differs from the database: " + "; ".join(problems[:5]) + ".",
                            expected, found)
        rows = sum(expected.values())
        return _checked(True, f"{len(expected)} tables and {rows} rows, as when it was dumped.", expected, found)
    keys = found.get("keys")
    low = min(expected.get("keys-before", 0), expected.get("keys-after", 0))
    high = max(expected.get("keys-before", 0), expected.get("keys-after", 0))
    if keys is None or not low <= keys <= high:
        held = f"{low}" if low == high else f"between {low} and {high}"
        return _checked(False, f"The restored copy has {keys} keys; the add-on held {held} when it was dumped.",
                        expected, found)
    return _checked(True, f"{keys} keys, as when it was dumped.", expected, found)


def _fail(backup: Backup, reason: str) -> None:
    reason = reason[:2000]
    logger.warning("backup %s failed: %s", backup.id, reason)
    Backup.objects.filter(id=backup.id).update(status=Status.FAILED, step=Step.DONE, detail=reason,
                                               finished_at=timezone.now())
    if backup.location:
        try:
            store_for(backup.storage, backup.bucket).delete(backup.location)
            Backup.objects.filter(id=backup.id).update(location="")
        except StoreError as exc:
            logger.warning("backup %s: its file stays: %s", backup.id, exc)
    addon = backup.addon
    record_event("addon.backup_failed", team=addon.team, addon=addon.name, reason=reason)
    alerts.backup_failed(team_id=addon.team_id, what=addon.name, reason=reason, backup_id=backup.id)


def apply_retention(addon: AddOn) -> list[int]:
    """Deletes the add-on's verified backups beyond its newest
    `backup_retention`, and failed ones older than the oldest kept; never the
    newest verified one. Returns the ids deleted."""
    keep = max(addon.backup_retention, 1)
    verified = list(addon.backups.filter(status=Status.VERIFIED).order_by("-finished_at", "-id"))
    if not verified:
        return []
    kept, dropped = verified[:keep], verified[keep:]
    oldest_kept = kept[-1]
    dropped += list(addon.backups.filter(status=Status.FAILED, created_at__lt=oldest_kept.created_at))
    deleted = []
    for backup in dropped:
        if backup.restores.filter(status__in=[Restore.Status.QUEUED, Restore.Status.RUNNING]).exists():
            continue
        if backup.location:
            try:
                store_for(backup.storage, backup.bucket).delete(backup.location)
            except StoreError as exc:
                logger.warning("retention: backup %s stays: %s", backup.id, exc)
                continue
        deleted.append(backup.id)
        backup.delete()
    return deleted


# -- restoring -------------------------------------------------------------------------


def restore(*, backup: Backup, confirm: str | None = None, new_addon: str | None = None, created_by=None) -> Restore:
    """Restores a verified backup into its add-on (`confirm` must be the
    add-on's name) or into a new add-on called `new_addon`."""
    with transaction.atomic():  # the new add-on's start is queued once its restore is recorded too
        return _restore(backup=backup, confirm=confirm, new_addon=new_addon, created_by=created_by)


def _restore(*, backup: Backup, confirm, new_addon, created_by) -> Restore:
    from .actions import create_addon

    addon = backup.addon
    if backup.status != Status.VERIFIED:
        raise BackupError(f"Backup {backup.id} is {backup.get_status_display()}; only a verified backup is restored.")
    if new_addon:
        target = create_addon(team=addon.team, kind=addon.kind, name=new_addon, created_by=created_by)
        into_new = True
    else:
        if confirm != addon.name:
            raise BackupError(f"Restoring backup {backup.id} replaces what {addon.name} holds now; confirm with its "
                              f"name ({{\"confirm\": \"{addon.name}\"}}), or restore into a new add-on "
                              f"({{\"new_addon\": \"{addon.name}-restored\"}}).")
        if addon.status != AddOn.Status.READY:
            raise BackupError(f"{addon.name} is {addon.get_status_display()}; it can be restored into once ready.")
        if Restore.objects.filter(addon=addon, status__in=[Restore.Status.QUEUED, Restore.Status.RUNNING]).exists():
            raise BackupError(f"A restore into {addon.name} is under way already.")
        target, into_new = addon, False
    made = Restore.objects.create(backup=backup, addon=target, into_new=into_new, created_by=created_by)
    enqueue_on_commit("restore_backup", made.id)
    record_event("addon.restore_requested", team=addon.team, actor=created_by, addon=addon.name, backup=backup.id,
                 target=target.name)
    return made


def run_restore(restore_id: int) -> None:
    """The worker's part: once the target is ready, the file checked and restored into it."""
    found = Restore.objects.select_related("addon__team", "backup__addon__team").filter(id=restore_id).first()
    if found is None or found.status != Restore.Status.QUEUED:
        return
    target = found.addon
    if target.status == AddOn.Status.PROVISIONING:
        return  # queued again when it is ready (provision) or by the tick
    if target.status != AddOn.Status.READY:
        _end_restore(found, Restore.Status.FAILED, f"{target.name} is {target.get_status_display()}.")
        return
    if not Restore.objects.filter(id=found.id, status=Restore.Status.QUEUED).update(
            status=Restore.Status.RUNNING, started_at=timezone.now()):
        return
    backup = found.backup
    work = _work_dir()
    try:
        path = work / f"stored.{EXTENSIONS[backup.kind]}"
        store_for(backup.storage, backup.bucket).get(backup.location, path)
        if file_digest(path) != backup.sha256:
            reason = ("The stored file is not the one that was dumped (its SHA-256 differs): it was damaged or "
                      "changed in storage since it was verified.")
            _fail(backup, reason)
            raise BackupError(f"Backup {backup.id} was not restored: {reason}")
        counts = _runtime().restore(_source(target), path, ready_timeout=settings.ADDON_READY_TIMEOUT)
        checked = compare(backup.kind, backup.counts, counts, only_expected=True)
        if not checked["passed"]:
            raise BackupError(checked["summary"])
    except (BackupError, StoreError) as exc:
        _end_restore(found, Restore.Status.FAILED, str(exc))
    except RuntimeBackendError as exc:
        _end_restore(found, Restore.Status.FAILED, f"Restoring into {target.name} failed: {exc.message}")
    except Exception as exc:  # noqa: BLE001
        logger.exception("restore %s failed", restore_id)
        _end_restore(found, Restore.Status.FAILED, f"The restore stopped on an unexpected error: {exc}")
    else:
        _end_restore(found, Restore.Status.SUCCEEDED, checked["summary"], counts=counts)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _end_restore(found: Restore, status: str, detail: str, counts: dict | None = None) -> None:
    Restore.objects.filter(id=found.id).update(status=status, detail=detail[:2000], counts=counts or {},
                                               finished_at=timezone.now())
    addon = found.backup.addon
    if status == Restore.Status.SUCCEEDED:
        record_event("addon.restored", team=addon.team, addon=addon.name, backup=found.backup_id,
                     target=found.addon.name, summary=detail)
    else:
        record_event("addon.restore_failed", team=addon.team, addon=addon.name, backup=found.backup_id,
                     target=found.addon.name, reason=detail)


# -- the schedule ----------------------------------------------------------------------


def tick(now: datetime | None = None) -> list[Backup]:
    """One pass of the scheduler: due scheduled backups made and queued; lost ones queued again; stuck ones failed."""
    now = now or timezone.now()
    made = start_due(now)
    recover(now)
    return made


def start_due(now: datetime) -> list[Backup]:
    from hakobune.platform.services.jobs import last_tick

    made = []
    for addon in AddOn.objects.filter(status=AddOn.Status.READY).exclude(backup_schedule="").select_related("team"):
        try:
            due = last_tick(addon.backup_schedule, now)
        except (ValueError, KeyError):
            continue
        if due < addon.created_at or addon.backups.filter(scheduled_for=due).exists():
            continue
        try:
            with transaction.atomic():
                made.append(create_backup(addon=addon, trigger=Backup.Trigger.SCHEDULE, scheduled_for=due))
        except IntegrityError:
            continue  # another scheduler made this tick's backup
        except Exception as exc:  # noqa: BLE001 - a refused scheduled backup is a failed one, shown
            try:
                with transaction.atomic():
                    backup = Backup.objects.create(addon=addon, team=addon.team, kind=addon.kind,
                                                   trigger=Backup.Trigger.SCHEDULE, scheduled_for=due,
                                                   storage=settings.BACKUP_STORAGE, step=Step.DONE)
            except IntegrityError:
                continue
            _fail(backup, f"The scheduled backup could not start: {exc}")
    return made


def recover(now: datetime) -> None:
    lost = Backup.objects.filter(status=Status.RUNNING, step=Step.QUEUED, created_at__lt=now - REQUEUE_AFTER)
    for backup_id in lost.values_list("id", flat=True):
        enqueue_on_commit("run_backup", backup_id)
    limit = timedelta(seconds=settings.TASK_TIME_LIMITS["run_backup"] + 120)
    for backup in Backup.objects.filter(status=Status.RUNNING, started_at__lt=now - limit).exclude(step=Step.QUEUED):
        _fail(backup, "The worker making it stopped before it ended; the next one is made as scheduled.")
    waiting = Restore.objects.filter(status=Restore.Status.QUEUED, addon__status=AddOn.Status.READY,
                                     created_at__lt=now - REQUEUE_AFTER)
    for restore_id in waiting.values_list("id", flat=True):
        enqueue_on_commit("restore_backup", restore_id)
    Restore.objects.filter(status=Restore.Status.QUEUED, addon__status=AddOn.Status.FAILED).update(
        status=Restore.Status.FAILED, detail="The add-on made for it failed to start.", finished_at=now)
    limit = timedelta(seconds=settings.TASK_TIME_LIMITS["restore_backup"] + 120)
    Restore.objects.filter(status=Restore.Status.RUNNING, started_at__lt=now - limit).update(
        status=Restore.Status.FAILED, detail="The worker restoring it stopped before it ended.", finished_at=now)
    # Scratch containers and volumes a dead worker left (older than any step may run).
    if AddOn.objects.exists():
        try:
            _runtime().remove_leftovers(older_than=limit.total_seconds())
        except Exception as exc:  # noqa: BLE001 - tidying never stops the schedule
            logger.warning("backups: leftovers not removed: %s", exc)


def schedule_of(addon: AddOn, now: datetime | None = None) -> dict:
    """The add-on's schedule for the portal and the API: its next tick, its
    last scheduled backup, and whether a tick passed with no backup made
    (`missed`, shown in red: the scheduler is not running)."""
    from hakobune.platform.services.jobs import last_tick, next_tick

    now = now or timezone.now()
    if not addon.backup_schedule:
        return {"schedule": "", "retention": addon.backup_retention, "next_run": None, "last_run": None,
                "missed": False}
    last = addon.backups.filter(trigger=Backup.Trigger.SCHEDULE).order_by("-scheduled_for").first()
    try:
        due, upcoming = last_tick(addon.backup_schedule, now), next_tick(addon.backup_schedule, now)
    except (ValueError, KeyError):
        due = upcoming = None
    grace = timedelta(seconds=2 * settings.BACKUP_TICK_SECONDS + 60)
    missed = bool(due and due >= addon.created_at and now - due > grace and addon.status == AddOn.Status.READY
                  and not addon.backups.filter(scheduled_for=due).exists())
    return {"schedule": addon.backup_schedule, "retention": addon.backup_retention, "next_run": upcoming,
            "last_run": last.scheduled_for if last else None, "missed": missed, "missed_tick": due if missed else None}


def set_schedule(*, addon: AddOn, schedule: str | None = None, retention: int | None = None, changed_by=None) -> AddOn:
    from croniter import croniter

    if schedule is not None:
        schedule = " ".join(schedule.split())
        if schedule and not croniter.is_valid(schedule):
            raise BackupError(f"{schedule!r} is not a cron schedule (five fields, in UTC: \"0 3 * * *\" is every "
                              "day at 03:00); leave it empty for no scheduled backups.")
        addon.backup_schedule = schedule
    if retention is not None:
        if not 1 <= retention <= 365:
            raise BackupError("Keep between 1 and 365 verified backups.")
        addon.backup_retention = retention
    addon.save(update_fields=["backup_schedule", "backup_retention"])
    record_event("addon.backup_schedule_changed", team=addon.team, actor=changed_by, addon=addon.name,
                 schedule=addon.backup_schedule or "-", retention=addon.backup_retention)
    return addon


# -- what the portal shows in red ------------------------------------------------------


def with_backup_state(addons):
    """The add-ons with, in one query, the status of their newest finished
    backup and the tick of their newest scheduled one (for `needs_attention`)."""
    from django.db.models import OuterRef, Subquery

    finished = Backup.objects.filter(addon=OuterRef("pk")).exclude(status=Status.RUNNING).order_by("-created_at", "-id")
    scheduled = Backup.objects.filter(addon=OuterRef("pk"), trigger=Backup.Trigger.SCHEDULE).order_by("-scheduled_for")
    return addons.annotate(newest_finished=Subquery(finished.values("status")[:1]),
                           newest_scheduled=Subquery(scheduled.values("scheduled_for")[:1]))


def needs_attention(addon: AddOn, now: datetime | None = None) -> str:
    """Why the add-on's backups are shown in red: "failed" (its newest
    finished backup failed) or "missed" (its schedule's latest tick passed
    with no backup made: the scheduler is not running); "" when fine."""
    if not hasattr(addon, "newest_finished"):
        addon = with_backup_state(AddOn.objects.filter(id=addon.id)).select_related("team").first() or addon
    if getattr(addon, "newest_finished", None) == Status.FAILED:
        return "failed"
    if addon.backup_schedule and addon.status == AddOn.Status.READY:
        from hakobune.platform.services.jobs import last_tick

        now = now or timezone.now()
        try:
            due = last_tick(addon.backup_schedule, now)
        except (ValueError, KeyError):
            return ""
        grace = timedelta(seconds=2 * settings.BACKUP_TICK_SECONDS + 60)
        newest = getattr(addon, "newest_scheduled", None)
        if due >= addon.created_at and now - due > grace and (newest is None or newest < due):
            return "missed"
    return ""


def attention_of_teams(teams) -> dict[int, list[tuple[str, str]]]:
    """{team id: [(add-on name, "failed" | "missed"), …]} for the add-ons
    whose backups need attention, in one query for all the teams."""
    found: dict[int, list[tuple[str, str]]] = {}
    addons = with_backup_state(AddOn.objects.filter(team__in=teams).exclude(status=AddOn.Status.DELETING))
    for addon in addons.order_by("name"):
        why = needs_attention(addon)
        if why:
            found.setdefault(addon.team_id, []).append((addon.name, why))
    return found
