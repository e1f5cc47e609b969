"""A team's volume on the real Docker Engine: the owner creates it (a worker
makes it and gives it to the app's user), mounts it in the service
(tests/fixtures/apps/volume-notes) at /data, and the note the app writes
there survives a redeploy, a rollback, a restart of the service and a
restart of the instance itself. A deploy of a service with a volume stops
the old instance before the new one starts; the root file system stays
read-only. Another team's deploy that names the volume is refused by the
runtime, the housekeeping measures what the volume holds, and deleting it
(by name) removes it from the engine.

Traffic goes only to the service, through the tests' router."""

import secrets
import time

import docker
import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.backends import get_backend
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.services import create_service, deploy_service, restart_service, rollback
from hakobune.platform.volumes import actions
from hakobune.platform.volumes.models import Volume
from hakobune.runtime.base import DeploySpec, RuntimeBackendError, VolumeMount
from hakobune.runtime.docker_local import LABEL_SERVICE, LABEL_TEAM, team_network_name
from hakobune.runtime.volumes import LABEL_VOLUME_TEAM
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, remove_team_containers, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{what} after {timeout} s")


def wait_until_live(release, timeout=300):
    def live():
        release.refresh_from_db()
        assert release.status != Release.Status.FAILED, release.failure_reason
        return release.status == Release.Status.LIVE

    wait_for(live, timeout, f"release {release.number} is not live")


def latest(service):
    return Release.objects.filter(service=service).order_by("-number").first()


def deployed(service, owner):
    build = wait_for_build(deploy_service(service=service, source_file=upload_of("volume-notes"), created_by=owner),
                           timeout=900)
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    assert build.status == "live", f"{build.failure_reason}\n{log[-3000:]}"
    service.refresh_from_db()
    return service.live_release


def put(hostname, path, body):
    session = requests.Session()
    session.trust_env = False
    response = session.put(f"http://127.0.0.1:{settings.ROUTER_PORT}{path}", data=body,
                           headers={"Host": f"{hostname}:{settings.ROUTER_PORT}"}, timeout=30)
    assert response.status_code == 200, response.text[:500]


def get(hostname, path):
    response = get_through_router(hostname, path, timeout=30)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def instances(docker_client, team, service):
    return docker_client.containers.list(filters={"label": [f"{LABEL_TEAM}={team}", f"{LABEL_SERVICE}={service}"]})


@pytest.fixture
def teams(worker, router, docker_client):
    names = {"home": f"vol{secrets.token_hex(3)}", "other": f"vol{secrets.token_hex(3)}"}
    owner = get_user_model().objects.create_user(username=f"volumes-{names['home']}", password="x")
    made = {key: create_team(name=name, owner=owner) for key, name in names.items()}
    try:
        yield made, owner
    finally:
        for name in names.values():
            remove_team_containers(docker_client, name)
            for volume in docker_client.volumes.list(filters={"label": f"{LABEL_VOLUME_TEAM}={name}"}):
                volume.remove(force=True)
            for network in docker_client.networks.list(names=[team_network_name(name)]):
                network.remove()


def test_the_note_survives_a_redeploy_a_rollback_and_restarts_and_the_switch_stops_first(teams, docker_client):
    made, owner = teams
    home = made["home"]
    service = create_service(team=home, name="notes", created_by=owner)
    first = deployed(service, owner)

    volume = actions.create_volume(team=home, name="data", created_by=owner)
    wait_for(lambda: Volume.objects.get(id=volume.id).status != Volume.Status.PROVISIONING, 600, "still being made")
    volume.refresh_from_db()
    assert volume.status == Volume.Status.READY, volume.status_detail
    engine = docker_client.volumes.get(volume.engine_name)
    assert engine.attrs["Labels"][LABEL_VOLUME_TEAM] == home.name

    release = actions.attach(volume=volume, service=service, path="/data", created_by=owner)
    wait_until_live(release)
    hostname = service.hostname
    checks = get(hostname, "/checks")
    # The app's user owns the volume and writes there; the root stays read-only.
    assert checks["uid"] == 10001 and checks["volume_owner"] == 10001 and checks["volume_writable"]
    assert not checks["root_writable"] and not checks["app_writable"]
    (container,) = instances(docker_client, home.name, "notes")
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert [(m["Name"], m["Destination"], m["RW"]) for m in container.attrs["Mounts"] if m["Type"] == "volume"] == [
        (volume.engine_name, "/data", True)]

    put(hostname, "/note", "kept across everything")
    assert get(hostname, "/note")["value"] == "kept across everything"

    # A redeploy: the old instance stops before the new one starts.
    deployed(service, owner)
    assert get(hostname, "/note")["value"] == "kept across everything"
    events = [line.split()[0] for line in get(hostname, "/events")["events"]]
    assert events[-3:] == ["start", "stop", "start"], events

    # A rollback to the release before the volume was mounted: it mounts it still.
    release = rollback(service=service, to_release=first, created_by=owner)
    wait_until_live(release)
    assert get(hostname, "/note")["value"] == "kept across everything"

    # A restart of the service, then of the instance itself.
    release = restart_service(service=Service.objects.get(id=service.id), created_by=owner)
    wait_until_live(release)
    assert get(hostname, "/note")["value"] == "kept across everything"
    (container,) = instances(docker_client, home.name, "notes")
    container.restart(timeout=10)
    assert wait_for(lambda: get_through_router(hostname, "/note", timeout=10).status_code == 200, 60,
                    "the instance does not answer after its restart")
    # Its address may change with the restart: the reconciler routes it again.
    assert get(hostname, "/note")["value"] == "kept across everything"
    assert len(instances(docker_client, home.name, "notes")) == 1

    # The housekeeping measures it (one megabyte written, at least that much held).
    put(hostname, "/blob", b"x" * 1024 * 1024)
    assert actions.measure_all()[home.name] >= 1024 * 1024
    volume.refresh_from_db()
    assert volume.size_bytes >= 1024 * 1024 and volume.measured_at is not None

    # Deleting it: detached (a release without it), then by name; the engine's volume goes.
    wait_until_live(actions.detach(volume=volume, service=service, created_by=owner))
    actions.delete(volume=volume, confirm="data", deleted_by=owner)
    wait_for(lambda: not Volume.objects.filter(id=volume.id).exists(), 120, "the volume is still there")
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(volume.engine_name)


def test_another_teams_deploy_naming_the_volume_is_refused_by_the_runtime(teams, docker_client):
    made, owner = teams
    home, other = made["home"], made["other"]
    volume = actions.create_volume(team=home, name="data", created_by=owner)
    theirs = actions.create_volume(team=other, name="data", created_by=owner)
    for made_volume in (volume, theirs):
        wait_for(lambda: Volume.objects.get(id=made_volume.id).status == Volume.Status.READY, 600, "not made")
        made_volume.refresh_from_db()
    # One name, two teams: two volumes of the engine, each labelled with its team.
    assert volume.engine_name != theirs.engine_name
    assert docker_client.volumes.get(theirs.engine_name).attrs["Labels"][LABEL_VOLUME_TEAM] == other.name

    backend = get_backend("local")
    image = docker_client.images.list(name="hakobune/stack-python")[0].tags[0]
    spec = DeploySpec(team=other.name, service="thief", release_id=999999, release_number=1, image=image,
                      hostname=f"thief-{other.name}.localhost",
                      volumes=(VolumeMount(volume=volume.engine_name, path="/data"),))
    with pytest.raises(RuntimeBackendError, match=f"not a volume of team {other.name}"):
        backend.deploy(spec)
    with pytest.raises(RuntimeBackendError, match=f"not a volume of team {other.name}"):
        backend.run_once(spec, "ls /data", purpose="steal", timeout=30)
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_TEAM}={other.name}"})
    # A volume the engine does not have is not made on the fly either.
    missing = DeploySpec(team=other.name, service="thief", release_id=999999, release_number=1, image=image,
                         hostname=f"thief-{other.name}.localhost",
                         volumes=(VolumeMount(volume=f"{theirs.engine_name}-nope", path="/data"),))
    with pytest.raises(RuntimeBackendError, match="does not exist"):
        backend.deploy(missing)
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(f"{theirs.engine_name}-nope")


def test_a_release_that_does_not_come_up_gives_the_volume_back_to_the_old_one(teams, docker_client):
    """Stop-then-start: the old instance is stopped for the switch; when the
    new release crashes at start, the old one starts again, routed, with its data."""
    made, owner = teams
    home = made["home"]
    service = create_service(team=home, name="notes", created_by=owner)
    deployed(service, owner)
    volume = actions.create_volume(team=home, name="data", created_by=owner)
    wait_for(lambda: Volume.objects.get(id=volume.id).status == Volume.Status.READY, 600, "the volume is not made")
    volume.refresh_from_db()
    wait_until_live(actions.attach(volume=volume, service=service, path="/data", created_by=owner))
    service.refresh_from_db()
    live = service.live_release
    put(service.hostname, "/note", "still here")

    build = wait_for_build(deploy_service(service=service, source_file=upload_of("exits-at-start"), created_by=owner),
                           timeout=900)
    assert build.status == "failed", build.status
    service.refresh_from_db()
    assert service.live_release_id == live.id
    assert get(service.hostname, "/note")["value"] == "still here"
    (container,) = instances(docker_client, home.name, "notes")
    assert container.labels["org.hakobune.release"] == str(live.id)
    events = [line.split()[0] for line in get(service.hostname, "/events")["events"]]
    # Stopped for the switch, started again when the new release failed.
    assert events[-2:] == ["stop", "start"], events
