"""A team deploys an app and looks under its hood: what the real Docker Engine
and this host's kernel say of its running instance (namespaces of its own, the
service's memory limit, no capabilities, the image's layers with their sizes).
Another team runs the same kind of app on the same host: the first team
learns that some layers are shared, as a count, and nothing else of it; and
the other team's people find nothing of the first team's panel."""

import os
import secrets

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.runtime.base import ServiceRef
from hakobune.runtime.docker_local import LABEL_SERVICE, LABEL_TEAM
from hakobune.runtime.hood import CODE, STACK
from hakobune.runtime.release_config import ReleaseConfig
from tests.conftest import upload_of
from tests.support.infrastructure import remove_team_containers_and_network, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OWN_NAMESPACES = ("pid", "net", "mnt", "uts", "ipc")


@pytest.fixture
def other_team_name(docker_client):
    name = f"it{secrets.token_hex(3)}"
    yield name
    remove_team_containers_and_network(docker_client, name)


def deployed(team, owner, name, app="flask-hello"):
    service = create_service(team=team, name=name, created_by=owner)
    build = wait_for_build(deploy_service(service=service, source_file=upload_of(app), created_by=owner))
    assert build.status == BuildStatus.LIVE, build.failure_text
    service.refresh_from_db()
    return service


def host_namespace(kind: str) -> str:
    """The host's namespace as this test (a process on the host) sees it."""
    try:
        link = os.readlink(f"/proc/1/ns/{kind}")
    except PermissionError:
        link = os.readlink(f"/proc/self/ns/{kind}")
    return link.split("[")[1].rstrip("]")


def test_a_deployed_app_seen_under_the_hood(owner, team_name, other_team_name, worker, docker_client, login):
    team = create_team(name=team_name, owner=owner)
    hello = deployed(team, owner, "hello")
    other_owner = get_user_model().objects.create_user(username="otto", password="x")
    other = create_team(name=other_team_name, owner=other_owner)
    secret = deployed(other, other_owner, "secret-ledger")

    backend = backend_for(hello)
    release = hello.live_release
    view = backend.under_the_hood(ServiceRef(team.name, hello.name), config=ReleaseConfig.from_dict(release.config),
                                  state=release.runtime_state)
    (container,) = docker_client.containers.list(filters={"label": [f"{LABEL_TEAM}={team.name}",
                                                                     f"{LABEL_SERVICE}=hello"]})
    assert view.kind == "container" and view.instance == container.name

    # Namespaces: its own process tree, network, mounts, hostname and IPC, each a number unlike the host's.
    pairs = {pair.kind: pair for pair in view.namespaces}
    for kind in OWN_NAMESPACES:
        assert pairs[kind].container.isdigit() and pairs[kind].host == host_namespace(kind)
        assert not pairs[kind].shared, kind
    # No user remapping on this engine: the user namespace is the host's.
    assert pairs["user"].shared and not view.userns_remapped
    assert view.hostname == "hello"
    network = container.attrs["NetworkSettings"]["Networks"][f"hakobune-team-{team.name}"]
    assert view.address == network["IPAddress"] and view.address

    # Cgroups: the service's memory limit, its CPU limit, the pids limit, and some use of each.
    assert view.cgroups.memory_limit_bytes == hello.memory_mb * 1024 * 1024
    assert 0 < view.cgroups.memory_bytes < view.cgroups.memory_limit_bytes
    assert view.cgroups.cpu_limit_cores == pytest.approx(float(hello.cpu))
    assert view.cgroups.pids_limit == container.attrs["HostConfig"]["PidsLimit"] and view.cgroups.pids >= 1

    # Capabilities: none at all, while root on the host holds every one; no-new-privileges is set.
    assert view.capabilities.effective == () and view.capabilities.bounding == ()
    assert "sys_admin" in view.capabilities.host_root and len(view.capabilities.host_root) >= 38
    assert view.capabilities.no_new_privileges and view.capabilities.uid == "10001"

    # Layers: the stack first, the code last, each with a size; the stack is the other team's too.
    image = docker_client.images.get(container.attrs["Image"])
    assert len(view.layers) == len(image.attrs["RootFS"]["Layers"]) >= 3
    assert view.layers[0].part == STACK and view.layers[-1].part == CODE
    assert all(layer.size_bytes is not None for layer in view.layers)
    assert view.layers[0].size_bytes > 10_000_000
    assert view.layers[0].shared_with >= 1 and view.saved_bytes >= view.layers[0].size_bytes
    assert sum(layer.size_bytes for layer in view.layers) == image.attrs["Size"]
    assert view.host.kernel == os.uname().release and view.host.cpus == os.cpu_count()

    # The page shows it to the team, and nothing of the other team: no name, no address, no hostname.
    page = login(owner).get(reverse("observability:under_the_hood", args=[team.name, "hello"])).content.decode()
    assert f'data-bytes="{hello.memory_mb * 1024 * 1024}"' in page and 'data-count="0"' in page
    assert pairs["net"].container in page
    (theirs,) = docker_client.containers.list(filters={"label": [f"{LABEL_TEAM}={other.name}"]})
    their_address = theirs.attrs["NetworkSettings"]["Networks"][f"hakobune-team-{other.name}"]["IPAddress"]
    for leak in (other.name, secret.name, "otto", their_address, theirs.name, theirs.id[:12], secret.hostname):
        assert leak not in page, leak

    # The other team's owner finds no such panel (the same 404 as a missing service).
    response = login(other_owner).get(reverse("observability:under_the_hood", args=[team.name, "hello"]))
    assert response.status_code == 404
    assert login(owner).get(reverse("observability:under_the_hood", args=[other.name, secret.name])).status_code == 404
