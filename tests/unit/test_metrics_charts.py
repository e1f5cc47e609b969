"""The service page's metrics: what the collector keeps (the same store the API
reads) drawn as charts: CPU and memory of each instance with the memory
limit for a local service; requests by status class, latency percentiles and
instances for a Cloud Run service, from (fake) Cloud Monitoring."""

import re
from datetime import datetime, timedelta, timezone

import pytest

from hakobune.platform.observability.charts import nice_ceiling
from hakobune.platform.observability.collectors import collect_all
from hakobune.platform.observability.models import MetricPoint
from hakobune.platform.services.services import create_service
from tests.unit.cloud_run_fixtures import (  # noqa: F401 (fixtures)
    cloud_monitoring_series,
    cloudrun_target,
    fake_gcp,
    loopback_only,
    run_pipeline,
    storage_emulator,
)
from tests.unit.test_api import bearer
from tests.unit.test_api import service  # noqa: F401 (a local service live on the dummy backend)

MIB = 1024 * 1024


def test_a_local_service_shows_cpu_and_memory_against_its_limit(service, owner, login, dummy_backend):
    # Two readings 20 s apart within one minute (the 1 h chart's step): the last full minute.
    minute = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=1)
    for offset, cpu, memory in ((10, 20.0, 50), (30, 40.0, 60)):
        dummy_backend.options["metrics_at"] = minute + timedelta(seconds=offset)
        dummy_backend.options["metrics"] = {"cpu_percent": cpu, "memory_bytes": memory * MIB, "memory_limit_bytes": 256 * MIB}
        collect_all()

    client = login(owner)
    assert 'id="metrics-charts"' in client.get("/t/acme/hello/").content.decode()
    page = client.get("/t/acme/hello/metrics/").content.decode()

    assert "<strong>CPU</strong>" in page and "<strong>Memory</strong> <span class=\"muted\">(MiB)</span>" in page
    assert page.count("<svg") == 2
    # Each line's latest minute (both readings fall in it: their average), and the limit dashed.
    instance = "hello-2"  # the dummy backend's name for the instance of v2
    assert f'{instance} <span class="muted">30</span>' in page  # CPU %
    assert f'{instance} <span class="muted">55</span>' in page  # MiB
    assert 'class="dashed"></i>limit' in page and 'stroke-dasharray="5 4"' in page
    assert "Requests" not in page


def test_a_cloud_run_service_shows_requests_latency_and_instances(team, owner, login, cloudrun_target, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    run_pipeline(service, owner, queued_tasks)
    # A minute already over: requests are shown per minute over whole steps only.
    minute = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=2)
    cloudrun_target.time_series = cloud_monitoring_series(minute.isoformat().replace("+00:00", "Z"))

    kept = collect_all()
    # Cloud Run answers with the same one-minute point until the next minute: kept once.
    assert collect_all() == 0
    assert kept == 8 == MetricPoint.objects.filter(service=service).count()
    assert set(MetricPoint.objects.filter(name="request_count").values_list("instance", flat=True)) == {
        "response_code_class=2xx", "response_code_class=5xx"
    }

    client = login(owner)
    page = client.get("/t/acme/hello/metrics/").content.decode()
    for title in ("CPU", "Memory", "Requests", "Latency", "Instances"):
        assert f"<strong>{title}</strong>" in page
    assert "<strong>Requests</strong> <span class=\"muted\">(per minute)</span>" in page
    assert "2xx <span class=\"muted\">42</span>" in page and "5xx <span class=\"muted\">3</span>" in page
    assert "p95 <span class=\"muted\">80</span>" in page and "active <span class=\"muted\">2</span>" in page
    longer = client.get("/t/acme/hello/metrics/?range=6h").content.decode()
    assert 'class="link chosen" hx-get="/t/acme/hello/metrics/?range=6h"' in longer


def test_metrics_before_any_reading_and_for_outsiders(service, owner, outsider, login):
    assert "No readings in this range yet" in login(owner).get("/t/acme/hello/metrics/").content.decode()
    assert login(outsider).get("/t/acme/hello/metrics/").status_code == 404


@pytest.mark.parametrize("value, ceiling", [(0, 1), (0.03, 0.05), (0.7, 1), (3, 5), (12.5, 20), (99, 100), (101, 200), (2400, 2500)])
def test_chart_scales_end_on_a_round_number(value, ceiling):
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_axis_labels_of_an_idle_service_are_not_all_zero():
    from hakobune.platform.observability.charts import build_charts

    until = datetime.now(timezone.utc)
    points = [{"timestamp": until - timedelta(minutes=m), "name": "cpu_percent", "value": v, "labels": {"instance": "a"}}
              for m, v in ((3, 0.004), (2, 0.018), (1, 0.0))]
    (chart,) = build_charts(points, until - timedelta(hours=1), until)
    labels = re.findall(r'class="axis">([^<]+)<', chart.plot)
    assert labels[:3] == ["0", "0.01", "0.02"] and labels[-1] == "now"


def test_no_line_is_drawn_across_a_time_without_readings():
    from hakobune.platform.observability.charts import build_charts

    until = datetime.now(timezone.utc)
    minutes = (50, 49, 48, 10, 9)  # stopped for 38 minutes in between
    points = [{"timestamp": until - timedelta(minutes=m), "name": "cpu_percent", "value": 5.0, "labels": {"instance": "a"}}
              for m in minutes]
    (chart,) = build_charts(points, until - timedelta(hours=1), until, step=60)
    assert chart.plot.count("<polyline") == 2


def traffic(service, minutes_back: int, *, ok=30, missing=3, failed=0, aborted=0):
    """What the log collector stores from the router's access log: one
    reading per 15 s period with that period's requests, for the whole
    minutes before this one."""
    from hakobune.platform.observability.logcollector import request_points

    this_minute = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    points = []
    for period in range(minutes_back * 4):
        stamp = this_minute - timedelta(seconds=15 * period + 5)
        requests = [(200, 0.012, 2400)] * ok + [(404, 0.004, 150)] * missing + [(500, 0.9, 0)] * failed
        points += request_points(service.id, requests + [(0, 0.5, 0)] * aborted, stamp)
    # and the minute going on, which no chart shows yet: part of its requests
    points += request_points(service.id, [(200, 0.012, 2400)] * 500, this_minute + timedelta(seconds=1))
    MetricPoint.objects.bulk_create(points)


def test_a_local_services_requests_read_per_minute_with_latency_and_data_sent(service, owner, login):
    """The collector stores one reading per 15 s: the chart adds a minute's
    up (30 requests each 15 s are 120 a minute), over whole minutes only."""
    traffic(service, 10, aborted=1)
    client = login(owner)
    page = client.get("/t/acme/hello/metrics/").content.decode()
    assert "<strong>Requests</strong> <span class=\"muted\">(per minute)</span>" in page
    assert '2xx <span class="muted">120</span>' in page and '4xx <span class="muted">12</span>' in page
    assert 'no answer <span class="muted">4</span>' in page
    assert "<strong>Latency</strong> <span class=\"muted\">(ms)</span>" in page
    assert 'p50 <span class="muted">12</span>' in page
    # 30 × 2,400 + 3 × 150 bytes each 15 s: 283 KiB a minute.
    assert "<strong>Data sent</strong> <span class=\"muted\">(KiB per minute)</span>" in page
    assert 'data sent <span class="muted">283</span>' in page

    body = client.get("/api/v1/teams/acme/services/hello/metrics?since=30m&step=300", **bearer(owner)).json()
    per_minute = {s["value"] for s in body["samples"] if s["name"] == "request_count"
                  and s["labels"] == {"response_code_class": "2xx"}}
    assert per_minute <= {120.0, 96.0, 72.0, 48.0, 24.0} and 120.0 in per_minute  # whole 5-minute steps: 120


def test_rolled_up_counts_keep_their_sum(service, owner, login, settings):
    from hakobune.platform.observability.collectors import history, roll_up

    traffic(service, 30)
    settings.METRICS_RAW_HOURS = 0
    settings.METRICS_ROLLUP_SECONDS = 300
    assert roll_up() > 0
    assert MetricPoint.objects.filter(period=300, name="request_count").exists()
    steps = [p for p in history(service, datetime.now(timezone.utc) - timedelta(minutes=20), 600)
             if p["name"] == "request_count" and p["labels"] == {"response_code_class": "2xx"}]
    assert steps and {p["value"] for p in steps} == {120.0}


def test_the_charts_words_in_japanese(service, owner, login):
    traffic(service, 5, aborted=1)
    client = login(owner)
    client.post("/i18n/setlang/", {"language": "ja", "next": "/"})
    page = client.get("/t/acme/hello/metrics/").content.decode()
    assert "<strong>リクエスト</strong> <span class=\"muted\">(毎分)</span>" in page
    assert "<strong>送信データ量</strong> <span class=\"muted\">(KiB/分)</span>" in page
    assert '応答なし <span class="muted">' in page and ">現在</span>" in page and ">now<" not in page
