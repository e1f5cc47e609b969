"""Volumes as a team's members use them, through the API, the portal and the
actions: creating one (a worker makes it), mounting it in a service at a
path (a new release whose spec mounts it), the one-instance rule and its
stop-then-start deploys unless an owner marks it safe to share, deleting
only by name, never by deleting the service, the disk quota, and every way
another team could reach a team's volume."""


import pytest

from hakobune.platform.accounts.models import Team
from hakobune.platform.addons.actions import create_addon
from hakobune.platform.addons.actions import attach as attach_addon
from hakobune.platform.governance import disk_quota
from hakobune.platform.governance.disk_quota import (
    MIB,
    check_disk_quota,
    register_disk_user,
    team_disk_usage,
)
from hakobune.platform.governance.forms import TeamPolicyForm
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.governance.quotas import QuotaExceeded
from hakobune.platform.services.housekeeping import destroy_service
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.releases import deploy_spec
from hakobune.platform.services.services import ServiceActionError, create_service, scale, scale_processes
from hakobune.platform.volumes import actions
from hakobune.platform.volumes.actions import VolumeError, validate_mount_path
from hakobune.platform.volumes.models import Volume
from hakobune.runtime.base import VolumeMount
from hakobune.runtime.volumes import LocalVolumes
from tests.unit.test_api import deployed

API = "/api/v1/teams/acme"


@pytest.fixture
def web(team, owner, dummy_backend, queued_tasks):
    service = create_service(team=team, name="web", created_by=owner)
    deployed(service, owner, "hakobune/acme/web:one")
    service.refresh_from_db()
    return service


def made(as_, user, name="data"):
    response = as_(user, "post", f"{API}/volumes/", {"name": name})
    assert response.status_code == 201, response.content
    volume = Volume.objects.get(team__name="acme", name=name)
    Volume.objects.filter(id=volume.id).update(status=Volume.Status.READY)  # the worker's part
    volume.refresh_from_db()
    return volume


def mounted(as_, user, volume="data", path="/data", service="web"):
    return as_(user, "post", f"{API}/services/{service}/volumes/", {"volume": volume, "path": path})


def latest(service):
    return Release.objects.filter(service=service).order_by("-number").first()


# -- making, attaching, the spec ---------------------------------------------------------

def test_a_developer_creates_a_volume_and_a_worker_is_asked_to_make_it(as_, developer, web, queued_tasks):
    response = as_(developer, "post", f"{API}/volumes/", {"name": "data"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "provisioning" and body["service"] is None and body["shared"] is False
    volume = Volume.objects.get(name="data")
    assert ("provision_volume", volume.id) in queued_tasks
    assert volume.engine_name == "hakobune.vol.acme.data"


def test_mounting_a_volume_makes_a_release_whose_every_container_mounts_it_one_at_a_time(as_, developer, web):
    made(as_, developer)
    before = latest(web).number
    response = mounted(as_, developer, path="/app/uploads/")
    assert response.status_code == 200, response.content
    assert response.json()["mount_path"] == "/app/uploads" and response.json()["release"] == before + 1
    spec = deploy_spec(web, latest(web))
    assert spec.volumes == (VolumeMount(volume="hakobune.vol.acme.data", path="/app/uploads", shared=False),)
    assert spec.stop_then_start


def test_a_rollback_still_mounts_the_volume(as_, owner, web):
    first = web.live_release
    made(as_, owner)
    assert mounted(as_, owner).status_code == 200
    release = latest(web)
    Release.objects.filter(id=web.live_release_id).update(status=Release.Status.SUPERSEDED)
    Release.objects.filter(id=release.id).update(status=Release.Status.LIVE)
    Service.objects.filter(id=web.id).update(live_release=release)
    response = as_(owner, "post", f"{API}/services/web/rollback/", {"release": first.number})
    assert response.status_code in (200, 202), response.content
    assert [m.path for m in deploy_spec(web, latest(web)).volumes] == ["/data"]


def test_a_volume_marked_safe_to_share_deploys_rolling_and_may_scale(as_, owner, web):
    made(as_, owner)
    mounted(as_, owner)
    with pytest.raises(ServiceActionError, match="only one instance may use at a time"):
        scale(service=web, instances=2, created_by=owner)
    response = as_(owner, "patch", f"{API}/volumes/data/", {"shared": True})
    assert response.status_code == 200, response.content
    assert not deploy_spec(web, latest(web)).stop_then_start
    scale(service=web, instances=2, created_by=owner)
    web.refresh_from_db()
    assert web.instances == 2
    # Back to one at a time: refused while it runs two.
    response = as_(owner, "patch", f"{API}/volumes/data/", {"shared": False})
    assert response.status_code == 400 and "Scale to 1" in response.json()["error"]
    assert Volume.objects.get(name="data").shared


def test_scaling_past_one_is_refused_in_a_sentence_through_the_api_too(as_, owner, web):
    made(as_, owner)
    mounted(as_, owner)
    response = as_(owner, "patch", f"{API}/services/web/", {"instances": 3})
    assert response.status_code == 400
    assert "mounts the volume data, which only one instance may use at a time" in response.json()["error"]
    assert Service.objects.get(id=web.id).instances == 1


def test_other_process_types_are_held_to_one_instance_as_well(owner, web):
    Service.objects.filter(id=web.id).update(processes={"worker": {"instances": 1}})
    web.refresh_from_db()
    volume = actions.create_volume(team=web.team, name="data", created_by=owner)
    Volume.objects.filter(id=volume.id).update(status=Volume.Status.READY)
    volume.refresh_from_db()
    actions.attach(volume=volume, service=web, path="/data", created_by=owner)
    with pytest.raises(ServiceActionError, match="worker=2"):
        scale_processes(service=web, counts={"worker": 2}, created_by=owner)


def test_a_service_running_two_instances_cannot_mount_a_volume_not_shared(as_, owner, web):
    Service.objects.filter(id=web.id).update(instances=2)
    made(as_, owner)
    response = mounted(as_, owner)
    assert response.status_code == 400 and "Scale to 1" in response.json()["error"]
    assert Volume.objects.get(name="data").service is None


def test_a_cloud_run_service_is_refused_in_a_sentence(as_, owner, web):
    made(as_, owner)
    Service.objects.filter(id=web.id).update(target="cloudrun")
    response = mounted(as_, owner)
    assert response.status_code == 400
    assert "runs on cloudrun, which cannot mount it" in response.json()["error"]
    assert Volume.objects.get(name="data").service is None


def test_a_volume_is_mounted_by_one_service_and_two_volumes_never_overlap(as_, owner, web):
    create_service(team=web.team, name="api", created_by=owner)
    made(as_, owner)
    made(as_, owner, "more")
    assert mounted(as_, owner).status_code == 200
    response = mounted(as_, owner, service="api")
    assert response.status_code == 400 and "mounted by web already" in response.json()["error"]
    response = mounted(as_, owner, volume="more", path="/data/more")
    assert response.status_code == 400 and "a path of its own" in response.json()["error"]


def test_detaching_makes_a_release_without_it_and_keeps_the_data(as_, developer, web, queued_tasks):
    made(as_, developer)
    mounted(as_, developer)
    response = as_(developer, "delete", f"{API}/services/web/volumes/data/")
    assert response.status_code == 200, response.content
    assert deploy_spec(web, latest(web)).volumes == ()
    assert Volume.objects.get(name="data").status == Volume.Status.READY
    assert not [task for task in queued_tasks if task[0] == "remove_volume"]


# -- who may ------------------------------------------------------------------------------

def test_viewers_read_but_do_not_change_and_only_owners_share_or_delete(as_, viewer, developer, owner, web):
    made(as_, owner)
    assert as_(viewer, "get", f"{API}/volumes/").status_code == 200
    assert as_(viewer, "post", f"{API}/volumes/", {"name": "more"}).status_code == 403
    assert mounted(as_, viewer).status_code == 403
    assert as_(developer, "patch", f"{API}/volumes/data/", {"shared": True}).status_code == 403
    assert as_(developer, "delete", f"{API}/volumes/data/", {"confirm": "data"}).status_code == 403
    assert Volume.objects.get(name="data").status == Volume.Status.READY


# -- another team, every way in ---------------------------------------------------------

def test_two_teams_may_use_one_name_and_get_distinct_volumes(as_, owner, outsider, web):
    made(as_, owner)
    response = as_(outsider, "post", "/api/v1/teams/other/volumes/", {"name": "data"})
    assert response.status_code == 201, response.content
    names = set(Volume.objects.filter(name="data").values_list("engine_name", flat=True))
    assert names == {"hakobune.vol.acme.data", "hakobune.vol.other.data"}


def test_an_outsider_cannot_see_list_change_or_delete_a_teams_volume(as_, owner, outsider, web):
    made(as_, owner)
    assert as_(outsider, "get", f"{API}/volumes/").status_code == 404
    assert as_(outsider, "get", f"{API}/volumes/data/").status_code == 404
    assert as_(outsider, "patch", f"{API}/volumes/data/", {"shared": True}).status_code == 404
    assert as_(outsider, "delete", f"{API}/volumes/data/", {"confirm": "data"}).status_code == 404
    assert as_(outsider, "get", f"{API}/disk/").status_code == 404
    assert as_(outsider, "get", "/api/v1/teams/other/volumes/").json() == []


def test_another_teams_volume_name_mounts_nothing_of_theirs(as_, owner, outsider, web):
    """The outsider names acme's volume from their own team: their team has no
    volume of that name, so nothing is found, and nothing of acme's is mounted."""
    made(as_, owner)
    theirs = create_service(team=Team.objects.get(name="other"), name="app", created_by=outsider)
    response = as_(outsider, "post", "/api/v1/teams/other/services/app/volumes/", {"volume": "data", "path": "/data"})
    assert response.status_code == 404
    # And the action itself refuses another team's volume outright.
    with pytest.raises(VolumeError, match="another team"):
        actions.attach(volume=Volume.objects.get(name="data"), service=theirs, path="/data")
    assert Volume.objects.get(name="data").service is None


def test_the_runtime_refuses_a_volume_that_is_not_the_teams(monkeypatch):
    class FakeVolume:
        def __init__(self, labels):
            self.attrs = {"Labels": labels}

    class Volumes:
        def get(self, name):
            return FakeVolume({"org.hakobune.volume": "hakobune", "org.hakobune.volume.team": "acme"})

    class Backend:
        instance, options = "hakobune", {}
        client = type("Client", (), {"volumes": Volumes()})()

    runtime = LocalVolumes(Backend())
    assert runtime.owned("acme", "hakobune.vol.acme.data")
    with pytest.raises(Exception, match="not a volume of team other"):
        runtime.owned("other", "hakobune.vol.acme.data")


@pytest.mark.parametrize("path,words", [
    ("/", "on / (the whole file system)"),
    ("/data/../etc", "not a plain path"),
    ("/../data", "not a plain path"),
    ("/data/./x", "not a plain path"),
    ("//data", "not a plain path"),
    ("/proc", "belongs to the system"),
    ("/proc/self", "belongs to the system"),
    ("/sys/fs", "belongs to the system"),
    ("/dev/shm", "belongs to the system"),
    ("/etc", "belongs to the system"),
    ("/usr/local/lib", "belongs to the system"),
    ("/tmp/cache", "belongs to the system"),
    ("/var/run/docker.sock", "belongs to the system"),
    ("/app", "holds your app's code"),
    ("data", "cannot be a volume's mount path"),
    ("", "may not be blank"),
    ("/data dir", "cannot be a volume's mount path"),
    ("/data\n/etc", "cannot be a volume's mount path"),
    ("/" + "a" * 250, "no more than 200 characters"),
])
def test_path_tricks_are_refused_in_words_and_nothing_is_mounted(as_, owner, web, path, words):
    made(as_, owner)
    response = mounted(as_, owner, path=path)
    assert response.status_code == 400, response.content
    assert words in response.json()["error"]
    assert Volume.objects.get(name="data").service is None


@pytest.mark.parametrize("path", ["/data", "/app/uploads", "/var/lib/app", "/srv/files", "/home/app/media"])
def test_plain_paths_of_the_apps_own_are_taken(path):
    assert validate_mount_path(path) == path


# -- deleting ------------------------------------------------------------------------------

def test_deleting_a_volume_needs_its_name_typed_and_no_service_mounting_it(as_, owner, web, queued_tasks):
    volume = made(as_, owner)
    mounted(as_, owner)
    response = as_(owner, "delete", f"{API}/volumes/data/", {"confirm": "data"})
    assert response.status_code == 400 and "detach it first" in response.json()["error"]
    as_(owner, "delete", f"{API}/services/web/volumes/data/")
    for wrong in ({}, {"confirm": ""}, {"confirm": "Data"}, {"confirm": "other"}):
        response = as_(owner, "delete", f"{API}/volumes/data/", wrong)
        assert response.status_code == 400 and "confirm with its name" in response.json()["error"], wrong
    assert not [task for task in queued_tasks if task[0] == "remove_volume"]
    response = as_(owner, "delete", f"{API}/volumes/data/", {"confirm": "data"})
    assert response.status_code == 202 and response.json()["status"] == "deleting"
    assert ("remove_volume", volume.id) in queued_tasks


def test_deleting_a_service_needs_its_name_and_keeps_its_volumes_and_add_ons(as_, owner, web, queued_tasks):
    made(as_, owner)
    mounted(as_, owner)
    addon = create_addon(team=web.team, kind="redis", name="cache", created_by=owner)
    attach_addon(addon=addon, service=web, created_by=owner)
    response = as_(owner, "delete", f"{API}/services/web/")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "Type the service's name, web" in error and "volumes (data) and add-ons (cache) stay" in error
    assert Service.objects.get(id=web.id).desired_state != "deleted"
    response = as_(owner, "delete", f"{API}/services/web/", {"confirm": "web"})
    assert response.status_code == 202, response.content
    destroy_service(web.id)
    volume = Volume.objects.get(name="data")
    assert volume.service is None and volume.mount_path == "" and volume.status == Volume.Status.READY
    assert addon.__class__.objects.filter(id=addon.id).exists()
    assert not [task for task in queued_tasks if task[0] in ("remove_volume", "remove_addon")]


def test_the_portal_deletes_a_service_only_with_its_name_and_says_what_stays(client, owner, web):
    client.force_login(owner)
    actions.create_volume(team=web.team, name="data", created_by=owner)
    Volume.objects.filter(name="data").update(status=Volume.Status.READY)
    actions.attach(volume=Volume.objects.get(name="data"), service=web, path="/data")
    page = client.get("/t/acme/web/").content.decode()
    assert "Its volumes (data) and add-ons (—) are not deleted" in page
    client.post("/t/acme/web/delete/", {"confirm": "wrong"})
    assert Service.objects.get(id=web.id).desired_state != "deleted"
    client.post("/t/acme/web/delete/", {"confirm": "web"})
    assert Service.objects.get(id=web.id).desired_state == "deleted"


# -- the disk quota ----------------------------------------------------------------------------

@pytest.fixture
def backups_registry():
    saved = dict(disk_quota._DISK_USERS)
    yield
    disk_quota._DISK_USERS.clear()
    disk_quota._DISK_USERS.update(saved)


def test_the_disk_use_sums_volumes_and_every_registered_disk_user(owner, team, backups_registry):
    volume = actions.create_volume(team=team, name="data", created_by=owner)
    Volume.objects.filter(id=volume.id).update(size_bytes=3 * MIB)
    assert team_disk_usage(team) == 3 * MIB
    register_disk_user("backups", lambda t: 2 * MIB if t.name == "acme" else 0)
    assert team_disk_usage(team) == 5 * MIB


def test_new_volumes_and_backups_are_refused_past_the_quota_in_a_sentence(as_, owner, team, web, backups_registry):
    TeamPolicy.objects.create(team=team, max_disk_mb=10)
    volume = made(as_, owner)
    Volume.objects.filter(id=volume.id).update(size_bytes=8 * MIB)
    check_disk_quota(team, adding_bytes=2 * MIB)  # exactly at the quota afterwards: fine
    with pytest.raises(QuotaExceeded, match=r"may keep 10 MiB on disk .* holds 8 MiB \(this needs 3 MiB more\)"):
        check_disk_quota(team, adding_bytes=3 * MIB)
    register_disk_user("backups", lambda t: 2 * MIB)
    response = as_(owner, "post", f"{API}/volumes/", {"name": "more"})
    assert response.status_code == 400
    assert "may keep 10 MiB on disk (volumes and backups), and holds 10 MiB" in response.json()["error"]
    assert not Volume.objects.filter(name="more").exists()
    body = as_(owner, "get", f"{API}/disk/").json()
    assert body == {"used_bytes": 10 * MIB, "limit_bytes": 10 * MIB, "by_user": {"volumes": 8 * MIB, "backups": 2 * MIB}}


def test_the_quota_is_on_the_team_policy_admins_edit(team):
    form = TeamPolicyForm({"max_disk_mb": "2048", "review": ""}, instance=TeamPolicy(team=team))
    assert form.is_valid(), form.errors
    form.save()
    assert disk_quota.disk_limit_mb(team) == 2048
    assert not TeamPolicyForm({"max_disk_mb": "0", "review": ""}, instance=TeamPolicy(team=team)).is_valid()


def test_the_housekeeping_measure_keeps_each_volumes_size(owner, team, monkeypatch, dummy_backend):
    volume = actions.create_volume(team=team, name="data", created_by=owner)
    Volume.objects.filter(id=volume.id).update(status=Volume.Status.READY)
    asked = []

    def measure(self, team_name, volumes, *, helper_image):
        asked.append((team_name, volumes))
        return {volumes[0]: 12345}

    monkeypatch.setattr(LocalVolumes, "measure", measure)
    monkeypatch.setattr(actions, "helper_image", lambda: "helper:latest")
    assert actions.measure_all() == {"acme": 12345}
    assert asked == [("acme", ["hakobune.vol.acme.data"])]
    volume.refresh_from_db()
    assert volume.size_bytes == 12345 and volume.measured_at is not None


# -- pages -------------------------------------------------------------------------------------

def test_the_volumes_page_shows_the_disk_and_is_a_404_for_an_outsider(client, owner, outsider, web):
    actions.create_volume(team=web.team, name="data", created_by=owner)
    client.force_login(owner)
    page = client.get("/teams/acme/volumes/").content.decode()
    assert 'id="volume-data"' in page and "MiB of 10240 MiB used" in page and "Mark safe to share" in page
    client.force_login(outsider)
    assert client.get("/teams/acme/volumes/").status_code == 404
    assert client.post("/teams/acme/volumes/data/delete/", {"confirm": "data"}).status_code == 404
    assert Volume.objects.get(name="data").status != Volume.Status.DELETING


def test_the_service_page_says_it_runs_one_instance_with_a_short_gap(client, owner, web):
    volume = actions.create_volume(team=web.team, name="data", created_by=owner)
    Volume.objects.filter(id=volume.id).update(status=Volume.Status.READY)
    client.force_login(owner)
    page = client.post("/teams/acme/volumes/attach/", {"volume": "data", "service": "web", "path": "/data",
                                                       "next": "/t/acme/web/#volumes"}, follow=True)
    text = page.content.decode()
    assert "data is mounted in web at /data" in text
    assert 'id="volume-single"' in text and "short gap" in text


# -- the CLI -------------------------------------------------------------------------------------

def hakobune(client, user, capture, *argv):
    from hakobune import cli
    from tests.unit.test_addons import _PortalSession

    api = cli.Api("http://portal.test")
    api.session = _PortalSession(client, user, capture)
    args = cli.build_parser().parse_args(argv)
    original = cli.api_from_config
    cli.api_from_config = lambda: api
    try:
        return args.func(args)
    finally:
        cli.api_from_config = original


def test_the_cli_creates_mounts_lists_shares_detaches_and_deletes(client, owner, web, capsys, monkeypatch,
                                                                   django_capture_on_commit_callbacks):
    from hakobune import cli

    run = lambda *argv: hakobune(client, owner, django_capture_on_commit_callbacks, *argv)  # noqa: E731
    assert run("volumes", "--team", "acme", "create", "data") == cli.EXIT_OK
    assert "Created the volume data" in capsys.readouterr().out
    Volume.objects.filter(name="data").update(status=Volume.Status.READY)
    run("volumes", "--team", "acme", "attach", "data", "/data", "--service", "web")
    assert "Mounted data in web at /data; v2 applies it." in capsys.readouterr().out
    run("volumes", "--team", "acme", "list")
    listed = capsys.readouterr().out
    assert "data  ready  0.0 MiB  web:/data  one instance" in listed and "Disk: 0.0 MiB of 10240.0 MiB" in listed
    with pytest.raises(cli.CliError, match="Scale to 1"):
        run("scale", "--team", "acme", "--service", "web", "web=2")
    run("volumes", "--team", "acme", "share", "data")
    assert "marked safe to share" in capsys.readouterr().out
    run("volumes", "--team", "acme", "detach", "data", "--service", "web")
    assert "Detached data from web; its data stays" in capsys.readouterr().out
    # Without a terminal and without --confirm, the portal refuses and says why.
    with pytest.raises(cli.CliError, match="confirm with its name"):
        run("volumes", "--team", "acme", "delete", "data")
    # At a terminal, it asks; a wrong answer deletes nothing.
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True, raising=False)
    answers = iter(["dta", "data"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    with pytest.raises(cli.CliError, match="confirm with its name"):
        run("volumes", "--team", "acme", "delete", "data")
    assert Volume.objects.get(name="data").status == Volume.Status.READY
    run("volumes", "--team", "acme", "delete", "data")
    assert "data is being deleted" in capsys.readouterr().out
    assert Volume.objects.get(name="data").status == Volume.Status.DELETING


def test_the_cli_asks_for_the_services_name_before_destroying_it(client, owner, web, capsys, monkeypatch,
                                                                  django_capture_on_commit_callbacks):
    from hakobune import cli

    run = lambda *argv: hakobune(client, owner, django_capture_on_commit_callbacks, *argv)  # noqa: E731
    monkeypatch.setattr(cli.sys.stdin, "isatty", lambda: True, raising=False)
    asked = []
    answers = iter(["nope", "web"])
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or next(answers))
    with pytest.raises(cli.CliError, match="Type the service's name, web"):
        run("destroy", "--team", "acme", "--service", "web")
    assert Service.objects.get(id=web.id).desired_state != "deleted"
    run("destroy", "--team", "acme", "--service", "web")
    said = capsys.readouterr().out
    assert "web is being deleted" in said and "Its volumes and add-ons stay." in said
    assert asked[0] == "Type web to delete the service web: "
    assert Service.objects.get(id=web.id).desired_state == "deleted"
