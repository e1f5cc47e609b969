"""Backups of a team's PostgreSQL and Redis add-ons on the real Docker Engine:
the owner backs them up (the worker's part, run in the test's process, dumps,
stores and verifies them by a restore into a scratch container), changes the data, restores the backup
into the add-on and into a new one, and finds the same rows and keys. A dump
that does not restore is marked failed, so is a file damaged in storage and
an upload the bucket (moto's S3 server on loopback) refuses; retention never
leaves an add-on without a good backup; another team reaches none of it.

Traffic goes only to what the tests made: the add-ons through containers on
their own team's network, and moto's server on 127.0.0.1."""

import json
import secrets
import time
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from hakobune.platform.accounts.services import create_team
from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.addons import backups
from hakobune.platform.addons.actions import create_addon
from hakobune.platform.addons.models import AddOn, Backup, Restore
from hakobune.platform.crypto import decrypt
from hakobune.platform.services.backends import get_backend
from hakobune.runtime.addons import LocalAddOns
from hakobune.runtime.backups import LABEL_BACKUP, LocalBackups
from hakobune.runtime.docker_local import team_network_name
from hakobune.runtime.firewall import Firewall, bridge_of
from tests.support.infrastructure import remove_team_containers
from tests.support.s3 import moto_s3

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NOTES = 2000


@dataclass
class Place:
    team: str
    other: str
    owner: object
    outsider: object


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} after {timeout} s")


def ready(addon):
    wait_for(lambda: AddOn.objects.get(id=addon.id).status != AddOn.Status.PROVISIONING, 600,
             f"{addon.name} is still provisioning")
    addon.refresh_from_db()
    assert addon.status == AddOn.Status.READY, addon.status_detail
    return addon


@pytest.fixture(autouse=True)
def inline(monkeypatch):
    """The worker's part of what the tests ask for runs here, at once, when
    it is queued (as a worker would take it), not in a worker process: on a
    busy shared host a worker's start alone can take minutes."""
    from hakobune.platform import queue
    from hakobune.platform.addons import actions

    tasks = {"provision_addon": actions.provision, "remove_addon": actions.remove,
             "run_backup": backups.run_backup, "restore_backup": backups.run_restore}
    ran = []

    def run(name, *args, countdown=None, host=None):
        queue.task_name(name)
        ran.append((name, *args))
        if name in tasks:
            tasks[name](*args)

    monkeypatch.setattr(queue, "enqueue", run)
    return ran


@pytest.fixture
def place(transactional_db, docker_client):
    """Two teams of this test's own (the platform's database is emptied after each test)."""
    team, other = f"bak{secrets.token_hex(3)}", f"bak{secrets.token_hex(3)}"
    owner = get_user_model().objects.create_user(username=f"backups-{team}", password="x")
    outsider = get_user_model().objects.create_user(username=f"backups-{other}", password="x")
    create_team(name=team, owner=owner)
    create_team(name=other, owner=outsider)
    try:
        yield Place(team=team, other=other, owner=owner, outsider=outsider)
    finally:
        runtime = LocalAddOns(get_backend("local"))
        for name in (team, other):
            remove_team_containers(docker_client, name)
            for addon in ("db", "cache", "db-copy", "solo"):
                runtime.remove(name, addon, delete_volume=True)
            LocalBackups(get_backend("local")).remove_leftovers(name)
            for network in docker_client.networks.list(names=[team_network_name(name)]):
                bridge = bridge_of(network)
                network.remove()
                Firewall().remove(bridge)


def on_network(docker_client, addon, script, environment=None):
    """Runs `script` in a container of the add-on's image on its team's network
    (confined as instances are); its output, or a failed assertion."""
    password = decrypt(addon.password_encrypted)
    if addon.kind == "postgres":
        environment = {"PGHOST": addon.name, "PGUSER": "app", "PGPASSWORD": password, "PGDATABASE": addon.database,
                       **(environment or {})}
        user = "postgres"
    else:
        environment = {"REDISCLI_AUTH": password, "HOST": addon.name, **(environment or {})}
        user = "redis"
    container = docker_client.containers.run(
        addon.image, ["/bin/sh", "-c", script], detach=True, network=team_network_name(addon.team.name), user=user,
        cap_drop=["ALL"], security_opt=["no-new-privileges"], environment=environment,
        labels={"org.hakobune.team": addon.team.name})
    try:
        result = container.wait(timeout=300)
        output = container.logs().decode(errors="replace")
        assert result["StatusCode"] == 0, output
        return output.strip()
    finally:
        container.remove(force=True)


PSQL = 'exec "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/psql" -X -q -At -v ON_ERROR_STOP=1 -c "$SQL"'


def sql(docker_client, addon, statement):
    return on_network(docker_client, addon, PSQL, {"SQL": statement})


def redis(docker_client, addon, *commands):
    script = " && ".join(f"redis-cli --no-auth-warning -h \"$HOST\" {command}" for command in commands)
    return on_network(docker_client, addon, script)


ROWS = "SELECT count(*) || ':' || md5(string_agg(id || '=' || body, ',' ORDER BY id)) FROM notes"


def backed_up(addon, owner) -> Backup:
    backup = backups.create_backup(addon=addon, created_by=owner)
    wait_for(lambda: Backup.objects.get(id=backup.id).status != Backup.Status.RUNNING, 600,
             f"backup {backup.id} of {addon.name} is still running")
    backup.refresh_from_db()
    return backup


def restored(made: Restore, timeout=600) -> Restore:
    wait_for(lambda: Restore.objects.get(id=made.id).status in (Restore.Status.SUCCEEDED, Restore.Status.FAILED),
             timeout, f"restore {made.id} has not ended")
    made.refresh_from_db()
    return made


def team_of(place):
    return place.owner.memberships.get().team


@pytest.fixture
def db(place, docker_client):
    addon = ready(create_addon(team=team_of(place), kind="postgres", name="db", created_by=place.owner))
    sql(docker_client, addon,
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL); "
        f"INSERT INTO notes SELECT g, 'note ' || md5(g::text) FROM generate_series(1, {NOTES}) g; "
        "CREATE SCHEMA audit; CREATE TABLE audit.log (at timestamptz DEFAULT now(), what text); "
        "INSERT INTO audit.log (what) VALUES ('created'), ('filled'), ('checked');")
    return addon


@pytest.fixture
def cache(place, docker_client):
    addon = ready(create_addon(team=team_of(place), kind="redis", name="cache", created_by=place.owner))
    redis(docker_client, addon, *(f"set key:{n} value-{n}" for n in range(1, 41)),
          "-n 2 set elsewhere in-db-2", "hset profile name Hana city Kyoto", "rpush queue a b c")
    return addon


def test_a_postgres_backup_restores_the_same_rows_into_the_add_on_and_into_a_new_one(place, db, docker_client):
    before = sql(docker_client, db, ROWS)
    backup = backed_up(db, place.owner)
    assert backup.status == "verified", backup.detail
    assert backup.counts == {"public.notes": NOTES, "audit.log": 3}
    assert backup.checked["found"] == backup.counts and backup.checked["passed"]
    assert backup.size_bytes > 0 and backup.location.endswith(".dump")

    sql(docker_client, db, "DELETE FROM notes WHERE id % 2 = 0; UPDATE notes SET body = 'changed'; "
                           "DROP TABLE audit.log; CREATE TABLE extra (x int);")
    assert sql(docker_client, db, ROWS) != before
    made = restored(backups.restore(backup=backup, confirm="db", created_by=place.owner))
    assert made.status == "succeeded", made.detail
    assert sql(docker_client, db, ROWS) == before
    assert sql(docker_client, db, "SELECT count(*) FROM audit.log") == "3"

    copy = restored(backups.restore(backup=backup, new_addon="db-copy", created_by=place.owner))
    assert copy.status == "succeeded", copy.detail
    assert sql(docker_client, AddOn.objects.get(team=db.team, name="db-copy"), ROWS) == before
    # Nothing of the backups' scratch containers is left.
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_BACKUP}.team={place.team}"})


def test_a_redis_backup_restores_the_same_keys_and_they_outlive_a_restart(place, cache, docker_client):
    keys = "--scan --pattern '*'"
    before = sorted(redis(docker_client, cache, keys).split())
    backup = backed_up(cache, place.owner)
    assert backup.status == "verified", backup.detail
    assert backup.counts == {"keys-before": 43, "keys-after": 43} and backup.checked["found"] == {"keys": 43}

    redis(docker_client, cache, "flushall", "set intruder 1")
    made = restored(backups.restore(backup=backup, confirm="cache", created_by=place.owner))
    assert made.status == "succeeded", made.detail
    assert sorted(redis(docker_client, cache, keys).split()) == before
    LocalAddOns(get_backend("local")).restart(place.team, "cache", "redis", decrypt(cache.password_encrypted))
    assert redis(docker_client, cache, "get key:7", "-n 2 get elsewhere", "hget profile city").split() == [
        "value-7", "in-db-2", "Kyoto"]


def test_a_corrupted_dump_is_detected_and_marked_bad(place, db, cache, monkeypatch):
    # The dump comes out damaged (its SHA-256 is of the damaged file): only the restore can tell.
    real_dump = LocalBackups.dump

    def damaged(self, source, dest):
        dumped = real_dump(self, source, dest)
        data = bytearray(dest.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 64] = secrets.token_bytes(64)
        dest.write_bytes(bytes(data[: len(data) - 16]))
        from hakobune.runtime.backups import Dumped, file_digest

        return Dumped(dest, dest.stat().st_size, file_digest(dest), dumped.counts)

    monkeypatch.setattr(LocalBackups, "dump", damaged)
    for addon in (db, cache):
        backup = backups.create_backup(addon=addon, created_by=place.owner)
        backup.refresh_from_db()
        assert backup.status == "failed", addon.name
        assert backup.detail.startswith("Restoring it into a scratch container failed"), backup.detail
        assert backup.location == ""
        assert backups.needs_attention(addon) == "failed"


def test_a_file_damaged_in_storage_is_marked_bad_and_not_restored(place, cache, settings):
    backup = backed_up(cache, place.owner)
    assert backup.status == "verified", backup.detail
    stored = settings.BACKUP_DIR / backup.location
    stored.write_bytes(stored.read_bytes()[:-1] + b"\0")
    assert backups.verify(backup)["passed"] is False
    made = restored(backups.restore(backup=backup, confirm="cache", created_by=place.owner))
    backup.refresh_from_db()
    assert made.status == "failed" and "SHA-256 differs" in made.detail
    assert backup.status == "failed"


def test_backups_go_to_an_s3_bucket_and_an_upload_refused_fails_the_backup(place, cache, settings, monkeypatch):
    with moto_s3() as (options, client):
        settings.BACKUP_STORAGE, settings.BACKUP_S3 = "s3", options
        good = backups.create_backup(addon=cache, created_by=place.owner)
        good.refresh_from_db()
        assert good.status == "verified", good.detail
        assert client.head_object(Bucket=options["bucket"], Key=f"test/{good.location}")["ContentLength"] == \
            good.size_bytes

        settings.BACKUP_S3 = {**options, "bucket": "no-such-bucket"}
        refused = backups.create_backup(addon=cache, created_by=place.owner)
        refused.refresh_from_db()
        assert refused.status == "failed"
        assert refused.detail == ("The upload to the bucket no-such-bucket failed: the bucket no-such-bucket does "
                                  "not exist on the storage server.")


def test_retention_removes_the_oldest_only_after_a_newer_one_is_verified(place, docker_client, settings,
                                                                         monkeypatch):
    solo = ready(create_addon(team=team_of(place), kind="redis", name="solo", created_by=place.owner))
    redis(docker_client, solo, "set one 1")
    backups.set_schedule(addon=solo, retention=1)
    first = backed_up(solo, place.owner)
    assert first.status == "verified", first.detail

    real_check = LocalBackups.check
    monkeypatch.setattr(LocalBackups, "check", lambda self, source, path: {"keys": 999})
    failing = backups.create_backup(addon=solo, created_by=place.owner)
    assert Backup.objects.get(id=failing.id).status == "failed"
    assert Backup.objects.filter(id=first.id, status="verified").exists()
    assert (settings.BACKUP_DIR / first.location).is_file()

    monkeypatch.setattr(LocalBackups, "check", real_check)
    newer = backups.create_backup(addon=solo, created_by=place.owner)
    newer.refresh_from_db()
    assert newer.status == "verified", newer.detail
    assert list(solo.backups.filter(status="verified").values_list("id", flat=True)) == [newer.id]
    assert not (settings.BACKUP_DIR / first.location).exists()
    assert not Backup.objects.filter(id=failing.id).exists()


def test_another_team_cannot_list_restore_or_download_the_backups(place, cache):
    backup = backed_up(cache, place.owner)
    assert backup.status == "verified", backup.detail
    stranger = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {create_api_token(user=place.outsider, name='probe')[1]}"}
    base = f"/api/v1/teams/{place.team}/addons/cache/backups"
    answers = {
        "list": stranger.get(f"{base}/", **headers),
        "one": stranger.get(f"{base}/{backup.id}/", **headers),
        "download": stranger.get(f"{base}/{backup.id}/download/", **headers),
        "restore": stranger.post(f"{base}/{backup.id}/restore/", json.dumps({"confirm": "cache"}),
                                 content_type="application/json", **headers),
        "restore-new": stranger.post(f"{base}/{backup.id}/restore/", json.dumps({"new_addon": "mine"}),
                                     content_type="application/json", **headers),
        "own-path": stranger.get(f"/api/v1/teams/{place.other}/addons/cache/backups/{backup.id}/download/", **headers),
    }
    assert {way: answer.status_code for way, answer in answers.items()} == {way: 404 for way in answers}
    assert not Restore.objects.filter(backup=backup, created_by=place.outsider).exists()
    assert not AddOn.objects.filter(name="mine").exists()


def test_leftovers_of_a_dead_worker_go_once_older_than_any_step_but_not_before(place, docker_client):
    runtime = LocalBackups(get_backend("local"))
    labels = {LABEL_BACKUP: get_backend("local").instance, f"{LABEL_BACKUP}.team": place.team}
    left = docker_client.containers.create("hakobune/stack-redis:bookworm", ["true"], labels=labels,
                                           network_mode="none")
    volume = docker_client.volumes.create(name=f"hakobune-{place.team}-backup-check-left", labels=labels)
    assert runtime.remove_leftovers(place.team, older_than=3600) == 0
    left.reload()
    time.sleep(1.5)
    assert runtime.remove_leftovers(place.team, older_than=1) == 2
    assert not docker_client.containers.list(all=True, filters={"id": left.id})
    assert not docker_client.volumes.list(filters={"name": volume.name})
