"""Cheap metrics collection: the containers' cgroup files read directly (v1
and v2 layouts, from a fake tree here), CPU percentages from two readings,
one listing call for all the services of the local backend, and a
collection that finds the one before still running skipped and counted."""

import pytest
from django.conf import settings as django_settings

from hakobune.platform.locks import redis_client
from hakobune.platform.observability import collectors
from hakobune.platform.observability.models import MetricPoint
from hakobune.runtime.base import ServiceRef
from hakobune.runtime.cgroups import CgroupReader, CpuRates
from hakobune.runtime.docker_local import (
    LABEL_MANAGED, LABEL_RELEASE, LABEL_SERVICE, LABEL_TEAM, DockerLocalBackend,
)

ID_A = "a" * 64
ID_B = "b" * 64


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v1_container(root, container_id, *, cpu_ns, usage, inactive, limit, pids, cpu_controller="cpuacct"):
    write(root / "memory" / "docker" / container_id / "memory.usage_in_bytes", f"{usage}\n")
    write(root / "memory" / "docker" / container_id / "memory.stat",
          f"cache 4096\nrss 1000\ninactive_file 7\ntotal_cache 4096\ntotal_inactive_file {inactive}\n")
    write(root / "memory" / "docker" / container_id / "memory.limit_in_bytes", f"{limit}\n")
    write(root / cpu_controller / "docker" / container_id / "cpuacct.usage", f"{cpu_ns}\n")
    write(root / "pids" / "docker" / container_id / "pids.current", f"{pids}\n")


def v2_container(folder, *, usage_usec, current, inactive, limit, pids):
    write(folder / "cpu.stat", f"usage_usec {usage_usec}\nuser_usec 10\nsystem_usec 5\n")
    write(folder / "memory.current", f"{current}\n")
    write(folder / "memory.stat", f"anon 100\nfile 200\ninactive_file {inactive}\nactive_file 3\n")
    write(folder / "memory.max", f"{limit}\n")
    write(folder / "pids.current", f"{pids}\n")


def test_cgroup_v1_files_give_cpu_time_memory_less_inactive_cache_the_limit_and_pids(tmp_path):
    v1_container(tmp_path, ID_A, cpu_ns=5_000_000, usage=10_000, inactive=3_000, limit=268_435_456, pids=4)
    reader = CgroupReader(tmp_path)
    assert reader.version == 1
    reading = reader.read(ID_A)
    assert (reading.cpu_ns, reading.memory_bytes, reading.memory_limit_bytes, reading.pids) == (
        5_000_000, 7_000, 268_435_456, 4)


def test_cgroup_v1_without_a_limit_and_with_the_joined_cpu_controller(tmp_path):
    v1_container(tmp_path, ID_A, cpu_ns=1, usage=10, inactive=20, limit=9223372036854771712, pids=1,
                 cpu_controller="cpu,cpuacct")
    reading = CgroupReader(tmp_path).read(ID_A)
    assert (reading.cpu_ns, reading.memory_bytes, reading.memory_limit_bytes) == (1, 0, None)


@pytest.mark.parametrize("where", ["system.slice/docker-{id}.scope", "docker/{id}"])
def test_cgroup_v2_under_either_driver(tmp_path, where):
    write(tmp_path / "cgroup.controllers", "cpu memory pids\n")
    v2_container(tmp_path / where.format(id=ID_A), usage_usec=2_500, current=50_000, inactive=8_000,
                 limit=134_217_728, pids=3)
    reader = CgroupReader(tmp_path)
    assert reader.version == 2
    reading = reader.read(ID_A)
    assert (reading.cpu_ns, reading.memory_bytes, reading.memory_limit_bytes, reading.pids) == (
        2_500_000, 42_000, 134_217_728, 3)


def test_cgroup_v2_max_is_no_limit_and_an_unknown_container_has_no_reading(tmp_path):
    write(tmp_path / "cgroup.controllers", "cpu memory pids\n")
    v2_container(tmp_path / "docker" / ID_A, usage_usec=1, current=1, inactive=0, limit="max", pids=1)
    reader = CgroupReader(tmp_path)
    assert reader.read(ID_A).memory_limit_bytes is None
    assert reader.read(ID_B) is None


def test_cpu_percent_needs_two_readings_and_survives_a_restart():
    rates = CpuRates()
    assert rates.percent(ID_A, 1_000_000_000, at=100.0) is None
    # 0.5 s of CPU over 2 s: a quarter of one core.
    assert rates.percent(ID_A, 1_500_000_000, at=102.0) == 25.0
    # Two cores busy for 1 s.
    assert rates.percent(ID_A, 3_500_000_000, at=103.0) == 200.0
    assert rates.percent(ID_A, 10, at=104.0) is None  # the count began again
    rates.keep_only([ID_B])
    assert rates.percent(ID_A, 20, at=105.0) is None


class FakeApi:
    def __init__(self, listed):
        self.listed = listed
        self.calls = []

    def containers(self, **kwargs):
        self.calls.append(("containers", kwargs))
        return self.listed

    def stats(self, container_id, stream):
        self.calls.append(("stats", container_id))
        return {"read": "2026-01-01T00:00:00.5Z",
                "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
                "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
                "memory_stats": {"usage": 900, "limit": 4096, "stats": {"inactive_file": 100}},
                "pids_stats": {"current": 2}}


class FakeClient:
    def __init__(self, listed):
        self.api = FakeApi(listed)


def listed(container_id, team, service, name, release="7"):
    return {"Id": container_id, "Names": [f"/{name}"],
            "Labels": {LABEL_MANAGED: "hakobune", LABEL_TEAM: team, LABEL_SERVICE: service, LABEL_RELEASE: release}}


def local_backend(tmp_path, containers):
    backend = DockerLocalBackend("local", cgroup_root=str(tmp_path), firewall="off")
    backend._client = FakeClient(containers)
    return backend


def test_the_local_backend_reads_every_service_with_one_listing_call_and_no_stats_call(tmp_path):
    v1_container(tmp_path, ID_A, cpu_ns=1_000, usage=5_000, inactive=1_000, limit=1 << 28, pids=2)
    v1_container(tmp_path, ID_B, cpu_ns=1_000, usage=6_000, inactive=0, limit=1 << 28, pids=5)
    backend = local_backend(tmp_path, [listed(ID_A, "acme", "web", "web-1-a"), listed(ID_B, "acme", "api", "api-3-b")])
    first = backend.metrics_all()
    assert [call[0] for call in backend.client.api.calls] == ["containers"]
    assert backend.client.api.calls[0][1]["filters"] == {"label": f"{LABEL_MANAGED}=hakobune", "status": "running"}
    web = {s.name: s.value for s in first[ServiceRef("acme", "web")]}
    assert web == {"memory_bytes": 4_000, "memory_limit_bytes": 1 << 28, "pids": 2}  # no CPU yet: one reading
    assert first[ServiceRef("acme", "api")][0].labels == {"instance": "api-3-b", "release": "7"}
    write(tmp_path / "cpuacct" / "docker" / ID_A / "cpuacct.usage", "2000000000\n")
    second = backend.metrics_all([ServiceRef("acme", "web")])
    assert set(second) == {ServiceRef("acme", "web")}
    cpu = [s.value for s in second[ServiceRef("acme", "web")] if s.name == "cpu_percent"]
    assert len(cpu) == 1 and cpu[0] > 0


def test_a_container_without_a_cgroup_here_is_read_with_the_engines_stats(tmp_path):
    backend = local_backend(tmp_path, [listed(ID_A, "acme", "web", "web-1-a")])
    samples = {s.name: s.value for s in backend.metrics(ServiceRef("acme", "web"))}
    assert samples == {"cpu_percent": 40.0, "memory_bytes": 800.0, "memory_limit_bytes": 4096.0, "pids": 2.0}
    assert ("stats", ID_A) in backend.client.api.calls


# -- the collector ------------------------------------------------------------------


@pytest.fixture
def own_keys(settings):
    """A queue prefix (and so Redis keys) of this test's own."""
    import secrets

    settings.CELERY_TASK_DEFAULT_QUEUE = f"hakobune-unit-{secrets.token_hex(4)}"
    yield
    client = redis_client()
    for name in ("collecting", "skipped", "last"):
        client.delete(collectors._key(name))


def test_a_collection_that_finds_the_one_before_running_is_skipped_and_counted(db, own_keys, monkeypatch):
    ran = []
    monkeypatch.setattr(collectors, "collect_all", lambda: ran.append(1) or 3)
    held = redis_client().lock(collectors._key("collecting"), timeout=django_settings.METRICS_SECONDS)
    assert held.acquire(blocking=False)
    try:
        assert collectors.collect_on_schedule() is None
        assert collectors.collect_on_schedule() is None
    finally:
        held.release()
    assert ran == []
    assert collectors.collection_health()["skipped"] == 2
    assert collectors.collect_on_schedule() == 3
    health = collectors.collection_health()
    assert ran == [1] and health["skipped"] == 2 and health["last"]["points"] == 3
    # The lock went with the collection: the next one runs.
    assert collectors.collect_on_schedule() == 3


def test_the_lock_lasts_at_most_one_period(db, own_keys, monkeypatch, settings):
    settings.METRICS_SECONDS = 15
    seen = []
    monkeypatch.setattr(collectors, "collect_all",
                        lambda: seen.append(redis_client().pttl(collectors._key("collecting"))) or 0)
    collectors.collect_on_schedule()
    assert 0 < seen[0] <= 15_000


def test_a_collection_expired_in_the_queue_is_counted(own_keys):
    from hakobune.platform.celery import count_stale_collections
    from hakobune.worker import tasks

    count_stale_collections(sender=tasks.collect_metrics, expired=True)
    count_stale_collections(sender=tasks.reconcile, expired=True)
    count_stale_collections(sender=tasks.collect_metrics, expired=False)
    assert collectors.collection_health()["skipped"] == 1


def test_the_collector_stores_the_local_backends_readings_in_one_go(db, owner, tmp_path, settings,
                                                                     django_assert_max_num_queries):
    from hakobune.platform.accounts.services import create_team
    from hakobune.platform.builds.models import Build
    from hakobune.platform.services import backends
    from hakobune.platform.services.models import DesiredState, Release, Service

    settings.RUNTIME_BACKENDS = {"local": {"BACKEND": "hakobune.runtime.docker_local.DockerLocalBackend",
                                           "OPTIONS": {"cgroup_root": str(tmp_path), "firewall": "off"}}}
    team = create_team(name="acme", owner=owner)
    containers = []
    for number in range(30):
        service = Service.objects.create(team=team, name=f"s{number}", target="local",
                                         desired_state=DesiredState.RUNNING)
        build = Build.objects.create(service=service, number=1, status="live", image="x")
        release = Release.objects.create(service=service, build=build, number=1, status=Release.Status.LIVE, image="x")
        Service.objects.filter(id=service.id).update(live_release=release)
        container_id = f"{number:064x}"
        v1_container(tmp_path, container_id, cpu_ns=1, usage=1000 + number, inactive=0, limit=1 << 28, pids=1)
        containers.append(listed(container_id, "acme", service.name, f"{service.name}-1-x"))
    containers.append(listed(ID_A, "acme", "not-a-service", "stray"))
    backends.get_backend("local")._client = FakeClient(containers)
    # (One of them asks which teams want alerts: hakobune/platform/notifications/alerts.py.)
    with django_assert_max_num_queries(5):
        kept = collectors.collect_all()
    assert kept == 30 * 3  # memory, its limit and pids: no CPU from a first reading
    assert MetricPoint.objects.filter(name="memory_bytes").count() == 30
    assert MetricPoint.objects.get(service__name="s7", name="memory_bytes").value == 1007
