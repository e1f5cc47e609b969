"""The service settings that runtimes which scale by themselves need (min and
max instances, public or private), and metrics history through the API."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from hakobune.platform.observability.collectors import collect_all, history
from hakobune.platform.observability.models import MetricPoint
from hakobune.platform.services.models import Service
from tests.unit.test_api import API, SVC, bearer
from tests.unit.test_api import service  # noqa: F401


def call(client, user, method, path, body=None):
    kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body is not None else {}
    return getattr(client, method)(path, **kwargs, **bearer(user))


def test_a_service_is_created_with_scaling_bounds_and_as_private(client, owner, team, dummy_backend, queued_tasks):
    created = call(client, owner, "post", f"{API}/teams/acme/services/",
                   {"name": "worker", "min_instances": 1, "max_instances": 5, "public": False})
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["min_instances"], body["max_instances"], body["public"]) == (1, 5, False)
    refused = call(client, owner, "post", f"{API}/teams/acme/services/",
                   {"name": "odd", "min_instances": 6, "max_instances": 2})
    assert refused.status_code == 400
    assert "cannot be more than the most" in json.dumps(refused.json())
    assert not Service.objects.filter(name="odd").exists()


def test_changing_them_makes_a_release_that_carries_them_to_the_runtime(client, owner, service, dummy_backend,
                                                                          queued_tasks):
    from hakobune.worker import tasks

    changed = call(client, owner, "patch", f"{SVC}/", {"public": False, "max_instances": 3})
    assert changed.status_code == 200, changed.content
    release = changed.json()["release"]
    tasks.start_release(service.releases.get(number=release).id)
    spec = dummy_backend.calls[-1][1]
    assert (spec.public, spec.max_instances, spec.min_instances) == (False, 3, None)


def test_metrics_history_is_collected_and_averaged_per_step(client, owner, viewer, outsider, service, settings,
                                                            dummy_backend):
    dummy_backend.options["metrics"] = {"cpu_percent": 12.5, "memory_bytes": 50_000_000}
    assert collect_all() == 2
    dummy_backend.options["metrics"] = {"cpu_percent": 37.5, "memory_bytes": 70_000_000}
    assert collect_all() == 2
    points = history(service, timezone.now() - timedelta(minutes=5), 3600)
    cpu = [p for p in points if p["name"] == "cpu_percent"]
    assert len(cpu) in (1, 2) and sum(p["value"] for p in cpu) / len(cpu) == pytest.approx(25.0)

    answer = call(client, viewer, "get", f"{SVC}/metrics?since=10m&step=3600")
    assert answer.status_code == 200
    assert answer.json()["history"] is True
    names = {sample["name"] for sample in answer.json()["samples"]}
    assert names == {"cpu_percent", "memory_bytes"}
    assert call(client, outsider, "get", f"{SVC}/metrics").status_code == 404


def test_old_readings_are_dropped(service, dummy_backend, settings):
    settings.METRICS_RETENTION_HOURS = 1
    MetricPoint.objects.create(service=service, timestamp=timezone.now() - timedelta(hours=2), name="cpu_percent",
                               value=1.0)
    dummy_backend.options["metrics"] = {"cpu_percent": 5.0}
    collect_all()
    assert list(MetricPoint.objects.values_list("value", flat=True)) == [5.0]


def test_readings_older_than_two_hours_become_five_minute_averages(service, settings):
    from hakobune.platform.observability.collectors import roll_up

    now = timezone.now()
    stamps = [now - timedelta(seconds=15 * index) for index in range(3 * 240)]  # 3 hours, every 15 s
    MetricPoint.objects.bulk_create(
        MetricPoint(service=service, timestamp=stamp, epoch=int(stamp.timestamp()), name="cpu_percent",
                    value=float(index % 13), instance="hello-2")
        for index, stamp in enumerate(stamps)
    )
    since = now - timedelta(hours=3, minutes=5)
    before = history(service, since, 300)

    replaced = roll_up(now)

    cutoff = int((now - timedelta(hours=2)).timestamp()) // 300 * 300
    assert replaced == sum(1 for stamp in stamps if int(stamp.timestamp()) < cutoff) > 200
    rolled = MetricPoint.objects.filter(period=300)
    assert rolled.count() == len({int(s.timestamp()) // 300 for s in stamps if int(s.timestamp()) < cutoff})
    # Five-minute averages are what they were; each reading of the last two hours is still there.
    after = history(service, since, 300)
    assert [(row["timestamp"], row["labels"]) for row in after] == [(row["timestamp"], row["labels"]) for row in before]
    assert [row["value"] for row in after] == pytest.approx([row["value"] for row in before])
    assert MetricPoint.objects.filter(period=0).count() == len(stamps) - replaced
    assert roll_up(now) == 0
