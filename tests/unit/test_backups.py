"""Backups of add-ons through the API, with the add-on's containers played by
a stand-in (the real ones: tests/integration/test_backups.py): who may list,
make, download and restore them (another team may do none of it, whatever
the way in), a backup is verified only when the stored file restores to what
was dumped, a failure is told (an event, a "backup failed" notification, red
on the pages), retention never leaves an add-on without a good backup, and
the schedule makes one backup per tick and says when it missed one."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from hakobune.platform.addons import backups
from hakobune.platform.addons.backup_store import LocalStore
from hakobune.platform.addons.models import AddOn, Backup, Restore
from hakobune.platform.notifications.models import Alert, NotificationTarget
from hakobune.platform.observability.models import Event
from hakobune.runtime.backups import BackupFailed, Dumped, file_digest
from tests.unit.test_api import bearer

API = "/api/v1/teams/acme/addons"


class StandIn:
    """Dumps what `held` says the add-on holds; a check reads the file back."""

    def __init__(self):
        self.held = {"public.notes": 3, "public.users": 1}
        self.restored_into = []

    def dump(self, source, dest):
        dest.write_bytes(b"DUMP:" + json.dumps(self.held).encode())
        return Dumped(dest, dest.stat().st_size, file_digest(dest), dict(self.held))

    def check(self, source, path):
        data = path.read_bytes()
        if not data.startswith(b"DUMP:"):
            raise BackupFailed("restoring it into a scratch database failed: pg_restore: error: input file does "
                               "not appear to be a valid archive")
        return json.loads(data[5:])

    def remove_leftovers(self, team=None, older_than=None):
        return 0

    def restore(self, source, path, ready_timeout=90):
        self.restored_into.append(source.name)
        return self.check(source, path)


@pytest.fixture
def stand_in(monkeypatch, settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.BACKUP_STORAGE = "local"
    runtime = StandIn()
    monkeypatch.setattr(backups, "_runtime", lambda: runtime)
    return runtime


@pytest.fixture
def db_addon(team, owner, queued_tasks):
    return AddOn.objects.create(team=team, name="db", kind="postgres", status=AddOn.Status.READY, cpu=0.5,
                                memory_mb=256, volume="hakobune-acme-addon-db", password_encrypted="",
                                database="db", image="hakobune/stack-postgres:bookworm", created_by=owner)


def made(as_, user, stand_in, queued_tasks):
    response = as_(user, "post", f"{API}/db/backups/")
    assert response.status_code == 202, response.content
    backup_id = response.json()["id"]
    assert ("run_backup", backup_id) in queued_tasks
    backups.run_backup(backup_id)
    return Backup.objects.get(id=backup_id)


def test_a_developer_backs_up_the_add_on_and_it_is_verified_by_a_restore(as_, developer, db_addon, stand_in,
                                                                         queued_tasks, settings):
    backup = made(as_, developer, stand_in, queued_tasks)
    assert backup.status == "verified", backup.detail
    assert backup.checked["passed"] and backup.checked["found"] == {"public.notes": 3, "public.users": 1}
    assert backup.checked["summary"] == "2 tables and 4 rows, as when it was dumped."
    stored = settings.BACKUP_DIR / backup.location
    assert stored.is_file() and stored.stat().st_mode & 0o777 == 0o600
    assert backup.size_bytes == stored.stat().st_size and backup.sha256 == file_digest(stored)
    listed = as_(developer, "get", f"{API}/db/backups/").json()
    assert [(b["id"], b["status"], b["size_bytes"]) for b in listed] == [(backup.id, "verified", backup.size_bytes)]
    assert listed[0]["check"]["passed"] is True
    assert Event.objects.filter(kind="addon.backup_verified").exists()
    assert backups.backup_bytes_of_team(db_addon.team) == backup.size_bytes


def test_a_dump_that_does_not_restore_is_marked_failed_told_and_shown_in_red(as_, owner, db_addon, stand_in,
                                                                             queued_tasks, login):
    NotificationTarget.objects.create(team=db_addon.team, name="ops", kind="webhook", address_encrypted="x",
                                      shown="example.test")
    stand_in.dump = lambda source, dest: (dest.write_bytes(b"garbage"),
                                          Dumped(dest, 7, file_digest(dest), {"public.notes": 3}))[1]
    backup = made(as_, owner, stand_in, queued_tasks)
    assert backup.status == "failed" and "valid archive" in backup.detail
    assert backup.location == ""  # its file is not kept
    assert Event.objects.filter(kind="addon.backup_failed").exists()
    assert Alert.objects.filter(event="backup_failed", key=f"backup_failed:{backup.id}").exists()
    page = login(owner).get("/teams/acme/addons/").content.decode()
    assert f'id="backup-{backup.id}" class="bad-row"' in page and "The newest backup failed" in page
    assert "backup-attention" in login(owner).get("/").content.decode()
    from hakobune.platform.services.services import create_service

    service = create_service(team=db_addon.team, name="web", created_by=owner)
    assert "backup-attention" not in login(owner).get("/t/acme/web/").content.decode()
    db_addon.services.add(service)
    page = login(owner).get("/t/acme/web/").content.decode()
    assert 'id="backup-attention"' in page and "The newest backup of the add-on db failed" in page


def test_a_stored_file_damaged_after_it_was_verified_is_not_restored_and_is_marked_failed(
        as_, owner, db_addon, stand_in, queued_tasks, settings):
    backup = made(as_, owner, stand_in, queued_tasks)
    (settings.BACKUP_DIR / backup.location).write_bytes(b"DUMP:{}")
    response = as_(owner, "post", f"{API}/db/backups/{backup.id}/restore/", {"confirm": "db"})
    assert response.status_code == 202, response.content
    backups.run_restore(response.json()["id"])
    restore = Restore.objects.get(id=response.json()["id"])
    backup.refresh_from_db()
    assert restore.status == "failed" and "SHA-256 differs" in restore.detail
    assert backup.status == "failed" and stand_in.restored_into == []


def test_restoring_into_the_add_on_needs_its_name_typed_and_an_owner(as_, owner, developer, db_addon, stand_in,
                                                                     queued_tasks):
    backup = made(as_, owner, stand_in, queued_tasks)
    path = f"{API}/db/backups/{backup.id}/restore/"
    assert as_(developer, "post", path, {"confirm": "db"}).status_code == 403
    refused = as_(owner, "post", path, {"confirm": "dbx"})
    assert refused.status_code == 400 and "confirm with its name" in refused.json()["error"]
    assert not Restore.objects.exists()
    response = as_(owner, "post", path, {"confirm": "db"})
    assert response.status_code == 202
    backups.run_restore(response.json()["id"])
    restore = Restore.objects.get()
    assert restore.status == "succeeded", restore.detail
    assert stand_in.restored_into == ["db"] and restore.counts == {"public.notes": 3, "public.users": 1}


def test_a_developer_restores_into_a_new_add_on_once_it_is_ready(as_, developer, db_addon, stand_in, queued_tasks):
    backup = made(as_, developer, stand_in, queued_tasks)
    response = as_(developer, "post", f"{API}/db/backups/{backup.id}/restore/", {"new_addon": "db-copy"})
    assert response.status_code == 202, response.content
    new = AddOn.objects.get(name="db-copy")
    assert new.kind == "postgres" and ("provision_addon", new.id) in queued_tasks
    backups.run_restore(response.json()["id"])
    assert Restore.objects.get().status == "queued"  # waits for its add-on
    AddOn.objects.filter(id=new.id).update(status=AddOn.Status.READY)
    backups.run_restore(response.json()["id"])
    assert Restore.objects.get().status == "succeeded" and stand_in.restored_into == ["db-copy"]


def test_a_viewer_lists_but_makes_downloads_and_restores_nothing(as_, viewer, owner, db_addon, stand_in,
                                                                 queued_tasks):
    backup = made(as_, owner, stand_in, queued_tasks)
    assert as_(viewer, "get", f"{API}/db/backups/").status_code == 200
    assert as_(viewer, "post", f"{API}/db/backups/").status_code == 403
    assert as_(viewer, "get", f"{API}/db/backups/{backup.id}/download/").status_code == 403
    assert as_(viewer, "post", f"{API}/db/backups/{backup.id}/restore/", {"new_addon": "x"}).status_code == 403
    assert as_(viewer, "patch", f"{API}/db/backups/schedule/", {"retention": 2}).status_code == 403


def test_a_developer_downloads_the_verified_file(as_, client, developer, db_addon, stand_in, queued_tasks):
    backup = made(as_, developer, stand_in, queued_tasks)
    response = client.get(f"{API}/db/backups/{backup.id}/download/", **bearer(developer))
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"DUMP:")
    assert "acme-db-" in response["Content-Disposition"]


@pytest.mark.parametrize("method,path,body", [
    ("get", "/db/backups/", None),
    ("post", "/db/backups/", None),
    ("get", "/db/backups/{id}/", None),
    ("get", "/db/backups/{id}/download/", None),
    ("post", "/db/backups/{id}/restore/", {"confirm": "db"}),
    ("post", "/db/backups/{id}/restore/", {"new_addon": "mine"}),
    ("get", "/db/backups/schedule/", None),
    ("patch", "/db/backups/schedule/", {"retention": 1}),
])
def test_another_team_reaches_none_of_the_backups_by_any_way(as_, owner, outsider, db_addon, stand_in, queued_tasks,
                                                               method, path, body):
    backup = made(as_, owner, stand_in, queued_tasks)
    response = as_(outsider, method, API + path.format(id=backup.id), body)
    assert response.status_code == 404
    # Nor through its own team's path with this team's backup number.
    other = AddOn.objects.create(team=outsider.memberships.get().team, name="db", kind="postgres",
                                 status=AddOn.Status.READY, cpu=0.5, memory_mb=256, volume="v", password_encrypted="")
    crossed = as_(outsider, method, f"/api/v1/teams/other/addons{path.format(id=backup.id)}", body)
    if "{id}" in path:
        assert crossed.status_code == 404
    assert not Restore.objects.exists() and not AddOn.objects.filter(name="mine").exists()
    assert Backup.objects.filter(addon=other).count() == (1 if method == "post" and "{id}" not in path else 0)


def test_another_team_reaches_none_of_the_backups_in_the_portal(login, owner, outsider, db_addon, stand_in, as_,
                                                                queued_tasks):
    backup = made(as_, owner, stand_in, queued_tasks)
    portal = login(outsider)
    assert portal.get("/teams/acme/addons/").status_code == 404
    assert portal.get(f"/teams/acme/addons/db/backups/{backup.id}/download/").status_code == 404
    assert portal.post(f"/teams/acme/addons/db/backups/{backup.id}/restore/", {"confirm": "db"}).status_code == 404
    assert portal.post("/teams/acme/addons/db/backups/").status_code == 404
    assert not Restore.objects.exists() and Backup.objects.count() == 1


def test_retention_removes_the_oldest_only_once_a_newer_one_is_verified(as_, owner, db_addon, stand_in,
                                                                        queued_tasks, settings):
    db_addon.backup_retention = 2
    db_addon.save()
    first, second = made(as_, owner, stand_in, queued_tasks), made(as_, owner, stand_in, queued_tasks)
    # Failures never push a good backup out.
    good_dump = stand_in.dump
    stand_in.dump = lambda source, dest: (_ for _ in ()).throw(BackupFailed("dumping it failed: connection refused"))
    failed = [made(as_, owner, stand_in, queued_tasks) for _ in range(3)]
    assert all(b.status == "failed" for b in failed)
    assert set(Backup.objects.filter(status="verified").values_list("id", flat=True)) == {first.id, second.id}
    stand_in.dump = good_dump
    third = made(as_, owner, stand_in, queued_tasks)
    assert set(Backup.objects.filter(status="verified").values_list("id", flat=True)) == {second.id, third.id}
    assert not (settings.BACKUP_DIR / first.location).exists()
    # The failures older than the oldest kept go with it; the newer ones stay to be seen.
    assert Backup.objects.filter(status="failed").count() == 3
    db_addon.backup_retention = 1
    db_addon.save()
    backups.apply_retention(db_addon)
    assert list(Backup.objects.filter(status="verified").values_list("id", flat=True)) == [third.id]


def test_a_retention_of_one_with_every_later_backup_failing_keeps_the_good_one(db_addon, stand_in, queued_tasks):
    db_addon.backup_retention = 1
    db_addon.save()
    good = backups.create_backup(addon=db_addon)
    backups.run_backup(good.id)
    stand_in.check = lambda source, path: (_ for _ in ()).throw(BackupFailed("restoring it failed"))
    for _ in range(3):
        backups.run_backup(backups.create_backup(addon=db_addon).id)
    assert list(Backup.objects.filter(status="verified").values_list("id", flat=True)) == [good.id]
    kept = LocalStore().root / Backup.objects.get(id=good.id).location
    assert kept.read_bytes().startswith(b"DUMP:")


def test_the_schedule_makes_one_backup_per_tick_and_says_when_one_was_missed(db_addon, stand_in, queued_tasks,
                                                                             django_capture_on_commit_callbacks):
    AddOn.objects.filter(id=db_addon.id).update(created_at=datetime(2026, 1, 1, tzinfo=UTC))
    db_addon.refresh_from_db()
    at = datetime(2026, 3, 2, 3, 0, 30, tzinfo=UTC)
    with django_capture_on_commit_callbacks(execute=True):
        first = backups.tick(at)
        again = backups.tick(at + timedelta(seconds=60))
    assert len(first) == 1 and again == []
    assert first[0].scheduled_for == datetime(2026, 3, 2, 3, 0, tzinfo=UTC) and first[0].trigger == "schedule"
    assert ("run_backup", first[0].id) in queued_tasks
    state = backups.schedule_of(db_addon, at + timedelta(hours=1))
    assert state["last_run"] == first[0].scheduled_for and not state["missed"]
    # The next day's tick passes and nothing ran the scheduler.
    state = backups.schedule_of(db_addon, at + timedelta(days=1, minutes=10))
    assert state["missed"] and state["missed_tick"] == datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
    assert backups.needs_attention(db_addon, at + timedelta(days=1, minutes=10)) == "missed"


def test_a_backup_whose_queue_was_lost_is_queued_again_from_the_database(db_addon, stand_in, queued_tasks,
                                                                         django_capture_on_commit_callbacks):
    backup = backups.create_backup(addon=db_addon)
    queued_tasks.clear()
    with django_capture_on_commit_callbacks(execute=True):
        backups.tick(timezone.now() + timedelta(minutes=10))
    assert ("run_backup", backup.id) in queued_tasks
    backups.run_backup(backup.id)
    backups.run_backup(backup.id)  # a duplicate message does nothing twice
    assert Backup.objects.get(id=backup.id).status == "verified"


def test_the_schedule_and_retention_are_set_per_add_on_and_checked(as_, developer, db_addon):
    response = as_(developer, "patch", f"{API}/db/backups/schedule/", {"schedule": "30 1 * * 0", "retention": 3})
    assert response.status_code == 200, response.content
    assert response.json()["schedule"] == "30 1 * * 0" and response.json()["retention"] == 3
    bad = as_(developer, "patch", f"{API}/db/backups/schedule/", {"schedule": "every day"})
    assert bad.status_code == 400 and "not a cron schedule" in bad.json()["error"]
    db_addon.refresh_from_db()
    assert db_addon.backup_schedule == "30 1 * * 0"


def test_an_add_on_that_is_not_ready_is_not_backed_up(as_, owner, db_addon, queued_tasks):
    AddOn.objects.filter(id=db_addon.id).update(status=AddOn.Status.PROVISIONING)
    response = as_(owner, "post", f"{API}/db/backups/")
    assert response.status_code == 400 and "only a ready add-on" in response.json()["error"]
    assert not Backup.objects.exists()


def test_a_team_past_its_disk_quota_makes_no_new_backup_and_its_backups_count_in_it(
    as_, owner, developer, db_addon, stand_in, queued_tasks
):
    from hakobune.platform.governance.disk_quota import team_disk_usage_by_user
    from hakobune.platform.governance.models import TeamPolicy

    backup = made(as_, developer, stand_in, queued_tasks)
    assert team_disk_usage_by_user(db_addon.team)["backups"] == backup.size_bytes
    TeamPolicy.objects.update_or_create(team=db_addon.team, defaults={"max_disk_mb": 0})
    response = as_(owner, "post", f"{API}/db/backups/")
    assert response.status_code == 400 and "disk" in response.json()["error"], response.json()
    assert Backup.objects.count() == 1


def test_a_failed_backup_is_not_restored(as_, owner, db_addon, stand_in, queued_tasks):
    stand_in.check = lambda source, path: (_ for _ in ()).throw(BackupFailed("restoring it failed"))
    backup = made(as_, owner, stand_in, queued_tasks)
    response = as_(owner, "post", f"{API}/db/backups/{backup.id}/restore/", {"confirm": "db"})
    assert response.status_code == 400 and "only a verified backup" in response.json()["error"]


# -- an S3-compatible bucket (moto's server on loopback) ------------------------------------


@pytest.fixture
def bucket(settings):
    from tests.support.s3 import moto_s3

    with moto_s3() as (options, client):
        settings.BACKUP_STORAGE = "s3"
        settings.BACKUP_S3 = options
        yield options, client


def test_a_backup_goes_to_the_bucket_encrypted_by_the_server_and_is_read_back_to_be_verified(
        as_, owner, db_addon, stand_in, queued_tasks, bucket, settings):
    options, client = bucket
    backup = made(as_, owner, stand_in, queued_tasks)
    assert backup.status == "verified", backup.detail
    assert backup.storage == "s3" and backup.bucket == "hakobune-backups"
    head = client.head_object(Bucket="hakobune-backups", Key=f"test/{backup.location}")
    assert head["ContentLength"] == backup.size_bytes and head["ServerSideEncryption"] == "AES256"
    assert not list((settings.BACKUP_DIR).glob("acme/**/*.dump"))  # nothing kept on this host
    assert backups.backup_bytes_of_team(db_addon.team) == 0
    response = as_(owner, "post", f"{API}/db/backups/{backup.id}/restore/", {"confirm": "db"})
    backups.run_restore(response.json()["id"])
    assert Restore.objects.get().status == "succeeded"


def test_an_upload_to_a_bucket_that_does_not_exist_fails_the_backup_in_a_sentence(
        as_, owner, db_addon, stand_in, queued_tasks, bucket, settings):
    settings.BACKUP_S3 = {**bucket[0], "bucket": "no-such-bucket"}
    backup = made(as_, owner, stand_in, queued_tasks)
    assert backup.status == "failed"
    assert backup.detail == ("The upload to the bucket no-such-bucket failed: the bucket no-such-bucket does not "
                             "exist on the storage server.")


def test_an_upload_answered_with_500_fails_the_backup_in_a_sentence(as_, owner, db_addon, stand_in, queued_tasks,
                                                                     settings):
    from tests.support.s3 import failing_s3

    with failing_s3() as options:
        settings.BACKUP_STORAGE, settings.BACKUP_S3 = "s3", options
        backup = made(as_, owner, stand_in, queued_tasks)
    assert backup.status == "failed"
    assert backup.detail.startswith("The upload to the bucket hakobune-backups failed: the storage server answered "
                                    "500 (InternalError"), backup.detail


def test_the_secret_key_may_be_given_encrypted_with_the_platform_key(as_, owner, db_addon, stand_in, queued_tasks,
                                                                      bucket, settings):
    from hakobune.platform.crypto import encrypt

    settings.BACKUP_S3 = {**bucket[0], "secret_access_key": encrypt("testing")}
    assert made(as_, owner, stand_in, queued_tasks).status == "verified"


# -- the CLI, against the API ----------------------------------------------------------------


class ThroughTheApi:
    """The CLI's Api, answered by the portal in this process (the worker's part run at once)."""

    def __init__(self, client, user, capture):
        self.client, self.headers, self.capture = client, bearer(user), capture

    def request(self, method, path, *, expect=(200, 201, 202, 204), json=None, **kwargs):
        from hakobune import cli

        body = {"data": __import__("json").dumps(json), "content_type": "application/json"} if json is not None else {}
        with self.capture(execute=True):
            response = getattr(self.client, method.lower())(f"/api/v1/{path}", **body, **self.headers)
        if response.status_code not in expect:
            raise cli.CliError(response.json().get("error", response.status_code))
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs).json()

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs).json()


def test_the_cli_backs_up_lists_and_restores(client, owner, db_addon, stand_in, monkeypatch, capsys,
                                             django_capture_on_commit_callbacks):
    from hakobune import cli
    from hakobune.platform import queue

    tasks = {"run_backup": backups.run_backup, "restore_backup": backups.run_restore}
    monkeypatch.setattr(queue, "enqueue", lambda name, *args, **kw: tasks.get(name, lambda *a: None)(*args))
    monkeypatch.setattr(cli, "api_from_config", lambda: ThroughTheApi(client, owner, django_capture_on_commit_callbacks))

    def run(*argv):
        args = cli.build_parser().parse_args(["backups", "--team", "acme", *argv])
        return args.func(args), capsys.readouterr().out

    code, said = run("create", "db", "--wait")
    backup = Backup.objects.get()
    assert code == cli.EXIT_OK and f"{backup.id}  verified" in said and "2 tables and 4 rows" in said
    code, said = run("list", "db")
    assert said.startswith(f"{backup.id}  verified")
    with pytest.raises(cli.CliError, match="--confirm db"):
        run("restore", "db", str(backup.id))
    code, said = run("restore", "db", str(backup.id), "--confirm", "db", "--wait")
    assert code == cli.EXIT_OK and "succeeded" in said and stand_in.restored_into == ["db"]
    code, said = run("schedule", "db", "--cron", "15 2 * * *", "--keep", "4")
    assert "15 2 * * *" in said and "keeping 4" in said


def test_the_add_ons_page_shows_backups_in_japanese(login, owner, db_addon, stand_in, queued_tasks):
    backups.run_backup(backups.create_backup(addon=db_addon).id)
    page = login(owner).get("/teams/acme/addons/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "今すぐバックアップ" in page and "db のバックアップ" in page and "検証済み" in page
