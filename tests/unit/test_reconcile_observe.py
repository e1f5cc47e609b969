"""The reconciler looks at every instance of a backend once, and repairs only
the services that do not look as the database wants them: at 200 live
services a pass is one listing call, not one or two Docker calls per service."""

from types import SimpleNamespace

import pytest

from hakobune.runtime.base import DeploySpec, DesiredService, ObservedInstance, ServiceRef, looks_as_desired
from hakobune.runtime.docker_local import LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM, DockerLocalBackend
from hakobune.runtime.release_config import ReleaseConfig


def desired(state="running", instances=2, release_id=7):
    spec = DeploySpec(team="alpha", service="web", release_id=release_id, release_number=3, image="img",
                      hostname="web.alpha.localhost", config=ReleaseConfig.of(instances=instances))
    return DesiredService(spec, state=state)


def running(release="7", count=1):
    return [ObservedInstance(release_id=release, state="running") for _ in range(count)]


def test_a_service_with_its_instances_running_is_left_alone():
    assert looks_as_desired(desired(instances=2), running(count=2))


@pytest.mark.parametrize("observed, why", [
    (running(count=1), "an instance is missing"),
    ([], "every instance is gone (a dockerd restart)"),
    (running(count=3), "one instance too many"),
    (running(count=1) + [ObservedInstance("7", "exited")], "an instance died"),
    (running(count=2) + running(release="6"), "an instance of an earlier release is left"),
])
def test_a_service_that_differs_is_repaired(observed, why):
    assert not looks_as_desired(desired(instances=2), observed), why


def test_a_stopped_or_sleeping_service_looks_right_with_nothing_running():
    for state in ("stopped", "sleeping"):
        assert looks_as_desired(desired(state=state), [ObservedInstance("7", "exited")])
        assert looks_as_desired(desired(state=state), [])
        assert not looks_as_desired(desired(state=state), running())


class ListingClient:
    """Answers one sparse listing, and refuses the per-container calls that
    the reconciler must no longer make."""

    def __init__(self, containers):
        self.calls = []
        self.containers = SimpleNamespace(list=self.list, get=self.refuse)
        self.listed = containers

    def list(self, **kwargs):
        self.calls.append(kwargs)
        assert kwargs.get("sparse") is True, "a full listing inspects every container"
        return self.listed

    def refuse(self, *args, **kwargs):
        raise AssertionError("the reconciler asked about one container")


def sparse(team, service, release, state):
    return SimpleNamespace(attrs={"Labels": {LABEL_TEAM: team, LABEL_SERVICE: service, LABEL_RELEASE: release},
                                  "State": state})


def test_the_local_backend_observes_every_instance_in_one_listing():
    client = ListingClient([
        sparse("alpha", "web", "7", "running"), sparse("alpha", "web", "7", "exited"),
        sparse("beta", "api", "9", "running"),
    ])
    backend = DockerLocalBackend("local", instance="hakobune-unit")
    backend._client = client
    observed = backend.observe()
    assert len(client.calls) == 1
    assert client.calls[0]["filters"] == {"label": "org.hakobune.managed=hakobune-unit"}
    assert observed == {
        ServiceRef("alpha", "web"): [ObservedInstance("7", "running"), ObservedInstance("7", "exited")],
        ServiceRef("beta", "api"): [ObservedInstance("9", "running")],
    }
