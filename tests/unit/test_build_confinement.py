"""The confinement of builds without a Docker Engine (worker/builders/
confinement.py): the build network is made the way Hakobune's isolation needs
it and isolated before every build, each build gets a cgroup of its own with
its limits (on a cgroup v1 or v2 tree made in a temporary folder), the watch
stops a build at its time, at the pids limit and past its disk allowance, and
the build API is asked for the network and the cgroup. The same on the real
engine: tests/integration/test_build_confinement.py."""

import docker
import pytest

from hakobune.platform.builds import images
from hakobune.worker import builder
from hakobune.worker.builders import confinement
from hakobune.worker.builders.base import BuildError
from hakobune.worker.builders.confinement import BuildCgroup, BuildWatch
from hakobune.worker.builders.local_docker import LocalDockerBuilder

CONTAINER = "ab" * 32
OTHER_CONTAINER = "cd" * 32


# -- the build network ---------------------------------------------------------------------


class Network:
    def __init__(self, name, options=None, driver="bridge", ipv6=False, network_id="0123456789abcdef" * 4):
        self.name = name
        self.id = network_id
        self.attrs = {"Id": network_id, "Name": name, "Driver": driver, "EnableIPv6": ipv6, "Options": options or {},
                      "Created": "2026-01-01T00:00:00Z"}


class Networks:
    def __init__(self, existing=()):
        self.existing = list(existing)
        self.created = []

    def list(self, names=None, **kwargs):
        return [network for network in self.existing if not names or network.name in names]

    def create(self, name, **kwargs):
        self.created.append((name, kwargs))
        self.existing.append(Network(name, kwargs.get("options")))


class Client:
    def __init__(self, networks=()):
        self.networks = Networks(networks)


class Firewall:
    def __init__(self):
        self.applied = []

    def apply(self, bridge, allow=()):
        self.applied.append(bridge)
        return True


def test_the_build_network_is_made_without_ipv6_and_inter_container_traffic_and_isolated_each_time(tmp_path):
    client, firewall = Client(), Firewall()
    name = confinement.ensure_build_network(client, "hakobune-builds", instance="here", firewall=firewall)
    assert name == "hakobune-builds"
    [(made, options)] = client.networks.created
    assert made == "hakobune-builds" and options["driver"] == "bridge" and options["enable_ipv6"] is False
    assert options["options"] == {"com.docker.network.bridge.enable_icc": "false"}
    assert options["labels"] == {"org.hakobune.managed": "here", "org.hakobune.role": "builds"}
    # Isolated like a team bridge, on Docker's bridge name (so `-o br-+` rules cover it too).
    assert firewall.applied == ["br-0123456789ab"]

    confinement.ensure_build_network(client, "hakobune-builds", instance="here", firewall=firewall)
    assert len(client.networks.created) == 1 and firewall.applied == ["br-0123456789ab"] * 2


@pytest.mark.parametrize("network, problem", [
    (Network("hakobune-builds"), "its containers can reach each other"),
    (Network("hakobune-builds", {"com.docker.network.bridge.enable_icc": "false"}, ipv6=True), "it has IPv6"),
    (Network("hakobune-builds", {"com.docker.network.bridge.enable_icc": "false"}, driver="host"), "driver is host"),
])
def test_a_network_of_that_name_made_otherwise_is_not_built_on(network, problem):
    firewall = Firewall()
    with pytest.raises(BuildError, match=problem) as caught:
        confinement.ensure_build_network(Client([network]), "hakobune-builds", instance="here", firewall=firewall)
    assert not caught.value.user_error and "docker network rm hakobune-builds" in caught.value.message
    assert firewall.applied == []


def test_no_network_at_all_needs_no_network():
    assert confinement.ensure_build_network(Client(), "none", instance="here", firewall=Firewall()) == "none"


# -- the build's cgroup --------------------------------------------------------------------


V1_CONTROLLERS = ("pids", "memory", "cpu", "cpuset", "blkio", "devices", "freezer", "systemd")


@pytest.fixture(autouse=True)
def cgroupfs_rmdir(monkeypatch):
    """On cgroupfs a cgroup's folder goes with its files; in a plain folder they go first."""
    real = confinement._rmdir

    def rmdir(path):
        for entry in path.iterdir() if path.is_dir() else ():
            if entry.is_file():
                entry.unlink()
        real(path)

    monkeypatch.setattr(confinement, "_rmdir", rmdir)


@pytest.fixture
def v1(tmp_path):
    """A cgroup v1 tree: one hierarchy per controller."""
    root = tmp_path / "cgroup"
    for controller in V1_CONTROLLERS:
        (root / controller).mkdir(parents=True)
    return root


@pytest.fixture
def v2(tmp_path):
    """A cgroup v2 tree: one hierarchy; controllers handed down by subtree_control."""
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("cpu\n")
    return root


def fake_kernel_files(directory, **files):
    for name, text in files.items():
        (directory / name).write_text(text)


def test_each_build_gets_a_cgroup_of_its_own_with_its_pids_and_memory_limits_v1(v1):
    cgroup = BuildCgroup.for_build("/hakobune-builds", "acme", fs_root=v1)
    assert cgroup.path.startswith("/hakobune-builds/acme-") and len(cgroup.path) == len("/hakobune-builds/acme-") + 8
    cgroup.create(pids_max=128, memory_bytes=512 << 20)

    pids, memory = cgroup.dir("pids"), cgroup.dir("memory")
    assert (pids / "pids.max").read_text() == "128"
    assert (memory / "memory.limit_in_bytes").read_text() == str(512 << 20)
    # The engine makes a cgroup for each step's container inside the build's.
    for controller in V1_CONTROLLERS:
        (cgroup.dir(controller) / CONTAINER).mkdir(parents=True)
    assert cgroup.container_ids() == [CONTAINER]
    fake_kernel_files(pids, **{"pids.events": "max 0\n", "pids.peak": "12\n"})
    fake_kernel_files(pids / CONTAINER, **{"pids.events": "max 0\n"})
    assert not cgroup.pids_limit_met()
    fake_kernel_files(pids / CONTAINER, **{"pids.events": "max 31\n"})  # forks refused in the step
    assert cgroup.pids_limit_met()

    cgroup.remove()
    for controller in V1_CONTROLLERS:
        assert not cgroup.dir(controller).exists()
        assert (v1 / controller / "hakobune-builds").exists() or controller not in ("pids", "memory")


def test_each_build_gets_a_cgroup_of_its_own_with_its_limits_v2(v2):
    cgroup = BuildCgroup("/hakobune-builds", "acme-1", fs_root=v2)
    assert cgroup.unified
    cgroup.create(pids_max=64, memory_bytes=256 << 20)
    own = v2 / "hakobune-builds" / "acme-1"
    assert (own / "pids.max").read_text() == "64" and (own / "memory.max").read_text() == str(256 << 20)
    # Each level hands pids and memory down (the fake file keeps the last write).
    assert (v2 / "cgroup.subtree_control").read_text() == "+memory"
    assert (v2 / "hakobune-builds" / "cgroup.subtree_control").exists() is False  # a plain folder here
    fake_kernel_files(own, **{"pids.events": "max 0\n", "pids.peak": "64\n"})
    assert cgroup.pids_limit_met()  # it held as many processes as it may
    cgroup.remove()
    assert not own.exists()


def test_a_cgroup_that_cannot_be_made_is_the_platforms_fault_in_words(tmp_path):
    cgroup = BuildCgroup("/hakobune-builds", "acme-1", fs_root=tmp_path / "no-cgroups-here")
    with pytest.raises(BuildError) as caught:
        cgroup.create(pids_max=64, memory_bytes=0)
    assert not caught.value.user_error and "BUILD_CGROUP_PARENT" in caught.value.message


@pytest.mark.parametrize("parent", ["hakobune-builds", "/a/../b", "/a b", ""])
def test_the_cgroup_parent_is_an_absolute_path(parent):
    with pytest.raises(BuildError, match="must be an absolute cgroup path"):
        BuildCgroup(parent, "x")


def test_cgroups_of_builds_that_ended_without_removing_theirs_are_pruned_when_old(v1):
    import os

    old, recent = BuildCgroup("/hakobune-builds", "old-1", fs_root=v1), BuildCgroup("/hakobune-builds", "new-1",
                                                                                     fs_root=v1)
    old.create(pids_max=8, memory_bytes=0)
    recent.create(pids_max=8, memory_bytes=0)
    os.utime(old.dir("pids"), (0, 0))
    BuildCgroup("/hakobune-builds", "this-1", fs_root=v1).prune_stale(max_age=3600)
    assert not old.dir("pids").exists() and recent.dir("pids").exists()


# -- the watch ----------------------------------------------------------------------------


class WatchedAPI:
    def __init__(self, sizes=None):
        self.sizes = sizes or {}
        self.killed = []

    def containers(self, all=False, size=False, filters=None):
        assert size and all
        return [{"Id": cid, "SizeRw": self.sizes.get(cid, 0)} for cid in filters["id"]]

    def kill(self, container):
        self.killed.append(container)


class WatchedEngine:
    def __init__(self, sizes=None):
        self.api = WatchedAPI(sizes)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def running(v1):
    """A build's cgroup with one step running in it."""
    cgroup = BuildCgroup("/hakobune-builds", "acme-1", fs_root=v1)
    cgroup.create(pids_max=100, memory_bytes=0)
    (cgroup.dir("pids") / CONTAINER).mkdir()
    fake_kernel_files(cgroup.dir("pids"), **{"pids.events": "max 0\n", "pids.peak": "3\n"})
    return cgroup


def test_the_watch_stops_a_build_that_outlives_its_time(running):
    engine, clock = WatchedEngine(), Clock()
    watch = BuildWatch(engine, running, timeout=60, clock=clock)
    watch.check()
    assert watch.reason is None and engine.api.killed == []
    clock.now += 61
    watch.check()
    assert engine.api.killed == [CONTAINER]
    assert watch.why_stopped().startswith("The build took longer than 60 s, the time a build may take")


def test_a_build_left_early_stops_its_running_step(running):
    # Its task's time limit (SoftTimeLimitExceeded), or any failure that leaves the build.
    engine = WatchedEngine()
    with pytest.raises(RuntimeError), BuildWatch(engine, running, timeout=600, poll=60):
        raise RuntimeError("the step's time limit")
    assert engine.api.killed == [CONTAINER]


def test_a_resumed_build_first_ends_what_its_dead_attempt_left(running, v1, tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / confinement.CGROUP_NOTE).write_text(running.path)  # the dead attempt's
    engine = WatchedEngine()
    resumed = BuildCgroup("/hakobune-builds", "acme-2", fs_root=v1)

    confinement.end_earlier_attempt(engine, resumed, workspace)

    assert engine.api.killed == [CONTAINER]
    assert not running.dir("pids").exists()
    assert (workspace / confinement.CGROUP_NOTE).read_text() == resumed.path
    # A note that names anything else is not acted on.
    (workspace / confinement.CGROUP_NOTE).write_text("/elsewhere/acme-1")
    confinement.end_earlier_attempt(engine, resumed, workspace)
    assert engine.api.killed == [CONTAINER]


def test_the_watch_stops_a_build_at_its_pids_limit(running):
    engine = WatchedEngine()
    watch = BuildWatch(engine, running, timeout=60)
    fake_kernel_files(running.dir("pids") / CONTAINER, **{"pids.events": "max 5\n"})
    watch.check()
    assert engine.api.killed == [CONTAINER]
    assert watch.why_stopped().startswith("A step of your build started more processes than a build may have at "
                                          "once (100), so Hakobune stopped it.")


def test_the_watch_stops_a_build_that_writes_more_than_it_may(running):
    engine = WatchedEngine({CONTAINER: 30 << 20})
    watch = BuildWatch(engine, running, timeout=60, disk_mb=50)
    watch.check()
    assert watch.reason is None
    # The step ends (its layer is kept), the next one writes more: together past the allowance.
    (running.dir("pids") / CONTAINER).rmdir()
    (running.dir("pids") / OTHER_CONTAINER).mkdir()
    engine.api.sizes[OTHER_CONTAINER] = 25 << 20
    watch.check()
    assert engine.api.killed == [OTHER_CONTAINER]
    assert watch.why_stopped().startswith("Your build wrote more than 50 MiB to disk")


def test_after_a_failed_build_the_watch_tells_a_refused_fork_even_if_it_did_not_see_it(running):
    watch = BuildWatch(WatchedEngine(), running, timeout=60)
    assert watch.why_stopped() is None
    fake_kernel_files(running.dir("pids"), **{"pids.peak": "100\n"})
    assert "more processes than a build may have at once (100)" in watch.why_stopped()


def test_a_build_stopped_by_the_watch_fails_with_the_watchs_sentence(running):
    class Stopped:
        reason = "Your build wrote more than 50 MiB to disk, what a build may write."

        def why_stopped(self):
            return self.reason

    class API:
        def build(self, **kwargs):
            return iter([{"stream": "Step 2/3 : RUN make\n"},
                         {"error": "The command '/bin/sh -c make' returned a non-zero code: 137"}])

    class Engine:
        api = API()

        class images:
            @staticmethod
            def get(ref):
                raise docker.errors.ImageNotFound(ref)

    with pytest.raises(BuildError) as caught:
        builder.build_image(Engine(), "/nonexistent", "Dockerfile", "t", log=lambda line: None, watch=Stopped())
    assert caught.value.message == Stopped.reason and caught.value.user_error


# -- the build API --------------------------------------------------------------------------


def test_the_build_request_names_the_network_and_the_cgroup(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    sent = {}

    def post(url, **kwargs):
        sent.update(url=url, params=kwargs["params"])
        raise RuntimeError("sent")

    api._post = post
    with pytest.raises(RuntimeError, match="sent"):
        confinement.build_stream(api, cgroup_parent="/hakobune-builds/acme-1", path=str(tmp_path),
                                 network_mode="hakobune-builds", container_limits={"memory": 1 << 30})
    assert sent["url"].endswith("/build")
    assert sent["params"]["cgroupparent"] == "/hakobune-builds/acme-1"
    assert sent["params"]["networkmode"] == "hakobune-builds" and sent["params"]["memory"] == 1 << 30


def test_the_platforms_builder_is_confined_as_the_settings_say(settings):
    settings.IMAGE_BUILDERS = {"local": {"BACKEND": "hakobune.worker.builders.local_docker.LocalDockerBuilder",
                                         "OPTIONS": dict(settings.IMAGE_BUILDERS["local"]["OPTIONS"],
                                                         pids_limit=99, disk_mb=77)}}
    local = images.local_builder()
    assert local.network == settings.BUILD_NETWORK == "hakobune-builds" and local.firewall is not None
    assert local.cgroup_parent == settings.BUILD_CGROUP_PARENT == "/hakobune-builds"
    assert (local.pids_limit, local.disk_mb) == (99, 77)


# -- a cancelled build ---------------------------------------------------------------------


def test_the_watch_stops_a_build_that_was_cancelled(running):
    engine, asked = WatchedEngine(), []

    def should_stop():
        asked.append(True)
        return len(asked) > 1

    watch = BuildWatch(engine, running, timeout=60, should_stop=should_stop)
    watch.check()
    assert engine.api.killed == [] and watch.reason is None
    watch.check()
    assert engine.api.killed == [CONTAINER]
    assert "cancelled or superseded" in watch.why_stopped()


def test_a_builds_cgroups_are_found_by_its_id_from_another_process(v1):
    mine = BuildCgroup.for_build("/hakobune-builds", "acme", build_id=42, fs_root=v1)
    other = BuildCgroup.for_build("/hakobune-builds", "acme", build_id=421, fs_root=v1)
    for cgroup in (mine, other):
        cgroup.create(pids_max=10, memory_bytes=0)
        (cgroup.dir("pids") / CONTAINER).mkdir()
    assert mine.path.startswith("/hakobune-builds/acme-b42-")
    found = BuildCgroup.of_build("/hakobune-builds", "acme", 42, fs_root=v1)
    assert [cgroup.path for cgroup in found] == [mine.path]
    assert found[0].container_ids() == [CONTAINER]
    assert BuildCgroup.of_build("/hakobune-builds", "acme", 7, fs_root=v1) == []


def test_the_builder_kills_the_running_steps_of_a_build_by_its_id(v1):
    cgroup = BuildCgroup.for_build("/hakobune-builds", "acme", build_id=9, fs_root=v1)
    cgroup.create(pids_max=10, memory_bytes=0)
    (cgroup.dir("pids") / CONTAINER).mkdir()
    builder = LocalDockerBuilder("local", cgroup_parent="/hakobune-builds", cgroup_fs=str(v1), firewall="off")
    builder._client = WatchedEngine()
    assert builder.stop("acme", 9) == 1 and builder._client.api.killed == [CONTAINER]
    assert builder.stop("acme", 10) == 0
    assert LocalDockerBuilder("local", cgroup_parent="", firewall="off").stop("acme", 9) == 0
