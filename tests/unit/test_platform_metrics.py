"""The platform's own metrics at /metrics, as a Prometheus server scrapes
them: only with the token, in the text format its parser reads, with values
that are the database's and Redis's at the time of the scrape."""

import json
import time
import uuid
from datetime import timedelta

import pytest
import redis
from celery import current_app
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from hakobune.platform.builds.models import Build
from hakobune.platform.builds.state import advance, fail
from hakobune.platform.diagnoses import Diagnosis
from hakobune.platform.locks import redis_client
from hakobune.platform.notifications import alerts
from hakobune.platform.notifications.models import NotificationTarget
from hakobune.platform.observability.logcollector import Collector, health_key
from hakobune.platform.services.models import DesiredState, Service
from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import upload_of
from tests.unit.test_api import S, deployed
from tests.unit.test_notifications import send_queued

pytestmark = pytest.mark.django_db(databases=["default", "logs"])

TOKEN = "scrape-" + "x" * 24


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def redis_at(settings, url):
    """The platform's Redis (the broker, and the keys of locks.redis_client,
    which keeps its first client) moved to `url`."""
    settings.CELERY_BROKER_URL = url
    settings.REDIS_URL = url
    redis_client.cache_clear()


@pytest.fixture
def own_redis(settings):
    """A Redis database and queue prefix of this test's own (db 11, which no
    run of the suite uses), emptied of what the test put there."""
    url = "redis://127.0.0.1:6379/11"
    redis_at(settings, url)
    settings.CELERY_TASK_DEFAULT_QUEUE = f"metrics-test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(url)
    yield client
    for key in client.scan_iter(match=f"*{settings.CELERY_TASK_DEFAULT_QUEUE}*"):
        client.delete(key)
    client.close()
    redis_client.cache_clear()


def scrape(client, token=TOKEN):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def value(families, name, **labels):
    """The value of the one sample `name` with these labels (a family's own
    name, or one of a histogram's _bucket, _count, _sum)."""
    found = [sample.value for family in families.values() for sample in family.samples
             if sample.name == name and all(sample.labels.get(key) == wanted for key, wanted in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def took(build, seconds):
    """The build as if it had taken this long from its admission to its end."""
    started = timezone.now() - timedelta(hours=1)
    Build.objects.filter(id=build.id).update(started_at=started, finished_at=started + timedelta(seconds=seconds),
                                             duration_seconds=seconds)


@pytest.fixture
def three_builds(team, owner, dummy_backend, queued_tasks):
    """Two live deploys of hello (45 s and 200 s) and one of api that failed
    while detecting (5 s); api never went live."""
    hello = create_service(team=team, name="hello", created_by=owner)
    first = deployed(hello, owner, "hakobune/acme/hello:one").build
    second = deployed(hello, owner, "hakobune/acme/hello:two").build
    api = create_service(team=team, name="api", created_by=owner)
    failed = deploy_service(service=api, source_file=upload_of("flask-hello"), created_by=owner)
    advance(failed.id, S.QUEUED, S.FETCHING)
    advance(failed.id, S.FETCHING, S.DETECTING)
    fail(failed.id, Diagnosis("detect.no_app", {"detail": "no app found"}))
    took(first, 45)
    took(second, 200)
    took(failed, 5)
    return hello, api


def test_a_builds_duration_is_stored_when_it_ends(team, owner, dummy_backend, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner)
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    advance(build.id, S.QUEUED, S.FETCHING)
    Build.objects.filter(id=build.id).update(started_at=timezone.now() - timedelta(seconds=90))
    assert Build.objects.get(id=build.id).duration_seconds is None
    fail(build.id, Diagnosis("detect.no_app", {"detail": "no app found"}))
    assert Build.objects.get(id=build.id).duration_seconds == pytest.approx(90, abs=5)
    # One that ends before its admission (superseded while queued) has none.
    queued = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    assert Build.objects.get(id=queued.id).status == "superseded"
    assert Build.objects.get(id=queued.id).duration_seconds is None


# -- who may scrape ----------------------------------------------------------------------------


def test_without_a_token_configured_there_is_nothing_at_metrics(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_a_scraper_without_the_token_or_with_a_wrong_one_is_refused(client, token, login, owner):
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {token}").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 403 and b"hakobune_" not in wrong.content
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}x").status_code == 403
    # Being logged in to the portal is not the token, not even for staff.
    owner.is_staff = True
    owner.save()
    assert login(owner).get("/metrics").status_code == 401


# -- what it says ------------------------------------------------------------------------------


def test_the_scrape_parses_and_counts_builds_deploys_and_services_as_the_database_has_them(
    client, token, three_builds, own_redis,
):
    families = scrape(client)
    assert value(families, "hakobune_builds", status="live") == 2
    assert value(families, "hakobune_builds", status="failed") == 1
    assert value(families, "hakobune_builds_failed_by_step", step="detecting") == 1
    # The durations, from admission to the end, per status.
    assert families["hakobune_build_duration_seconds"].type == "histogram"
    assert value(families, "hakobune_build_duration_seconds_count", status="live") == 2
    assert value(families, "hakobune_build_duration_seconds_sum", status="live") == pytest.approx(245, abs=0.01)
    assert value(families, "hakobune_build_duration_seconds_bucket", status="live", le="30.0") == 0
    assert value(families, "hakobune_build_duration_seconds_bucket", status="live", le="60.0") == 1
    assert value(families, "hakobune_build_duration_seconds_bucket", status="live", le="300.0") == 2
    assert value(families, "hakobune_build_duration_seconds_bucket", status="live", le="+Inf") == 2
    assert value(families, "hakobune_build_duration_seconds_bucket", status="failed", le="10.0") == 1
    # hello's first release was replaced by its second.
    assert value(families, "hakobune_deploys", outcome="live") == 1
    assert value(families, "hakobune_deploys", outcome="superseded") == 1
    assert value(families, "hakobune_services_live", backend="local") == 1
    assert value(families, "hakobune_services", backend="local", desired_state="running") == 2
    assert all(sample.value == 1 for sample in families["hakobune_scrape_source_ok"].samples)

    # A new failed build shows at the next scrape, in every worker alike: nothing is kept in the process.
    hello, _ = three_builds
    Service.objects.filter(id=hello.id).update(desired_state=DesiredState.STOPPED)
    build = deploy_service(service=hello, source_file=upload_of("flask-hello"), created_by=hello.created_by)
    advance(build.id, S.QUEUED, S.FETCHING)
    fail(build.id, Diagnosis("detect.no_app", {"detail": "no app found"}))
    families = scrape(client)
    assert value(families, "hakobune_builds", status="failed") == 2
    assert value(families, "hakobune_builds_failed_by_step", step="fetching") == 1
    assert value(families, "hakobune_services_live", backend="local") == 0
    assert value(families, "hakobune_services", backend="local", desired_state="stopped") == 1


def test_queue_depth_is_what_waits_in_each_queue(client, token, own_redis, settings):
    prefix = settings.CELERY_TASK_DEFAULT_QUEUE
    families = scrape(client)
    assert value(families, "hakobune_queue_depth", queue=f"{prefix}.housekeeping", purpose="housekeeping") == 0
    # Tasks put on the queues as the platform sends them, to this test's Redis database.
    with current_app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
        for _ in range(3):
            current_app.send_task("hakobune.worker.tasks.reconcile", connection=connection)
        current_app.send_task("hakobune.worker.tasks.admit_builds", connection=connection)
    families = scrape(client)
    assert value(families, "hakobune_queue_depth", queue=f"{prefix}.housekeeping", purpose="housekeeping") == 3
    assert value(families, "hakobune_queue_depth", queue=f"{prefix}.pipeline", purpose="pipeline") == 1
    assert value(families, "hakobune_queue_depth", queue=f"{prefix}.builds", purpose="builds") == 0
    # A worker takes one.
    assert own_redis.rpop(f"{prefix}.housekeeping") is not None
    assert value(scrape(client), "hakobune_queue_depth", queue=f"{prefix}.housekeeping", purpose="housekeeping") == 2


def test_redis_away_leaves_its_families_out_and_says_so(client, token, three_builds, settings):
    redis_at(settings, "redis://127.0.0.1:1/0")  # nothing listens there
    try:
        families = scrape(client)
    finally:
        redis_client.cache_clear()
    assert value(families, "hakobune_scrape_source_ok", source="queues") == 0
    assert value(families, "hakobune_scrape_source_ok", source="metrics_collection") == 0
    assert value(families, "hakobune_scrape_source_ok", source="builds") == 1
    assert "hakobune_queue_depth" not in families
    assert value(families, "hakobune_builds", status="live") == 2


def test_the_collectors_lag_and_duration_are_shown(client, token, own_redis):
    from hakobune.platform.observability import collectors

    own_redis.set(collectors._key("last"), json.dumps({"at": (timezone.now() - timedelta(seconds=20)).isoformat(),
                                                       "seconds": 0.42, "points": 600}))
    own_redis.set(collectors._key("skipped"), 2)
    # The log collector of this host reports how far behind it stored a line it read late.
    log_collector = Collector(client=object(), access_log="")
    log_collector.lag, log_collector.flush_seconds = 3.5, 0.02
    log_collector.report()
    families = scrape(client)
    assert value(families, "hakobune_metrics_collection_duration_seconds") == 0.42
    assert value(families, "hakobune_metrics_collection_points") == 600
    assert 20 <= value(families, "hakobune_metrics_collection_age_seconds") < 60
    assert value(families, "hakobune_metrics_collections_skipped_total") == 2
    host = next(iter(own_redis.hkeys(health_key()))).decode()
    assert value(families, "hakobune_log_collector_lag_seconds", host=host) == 3.5
    assert value(families, "hakobune_log_collector_flush_duration_seconds", host=host) == 0.02
    assert value(families, "hakobune_log_collector_report_age_seconds", host=host) < 30
    # The report's lag is the worst of its period: the next starts at 0.
    assert log_collector.lag == 0


def test_notification_failures_are_the_failed_deliveries(client, token, own_redis, team, owner, login, settings,
                                                        queued_tasks, django_capture_on_commit_callbacks):
    assert "hakobune_notification_deliveries" in scrape(client)
    settings.NOTIFY_ALLOWED_HOSTS = settings.NOTIFY_HTTP_HOSTS = frozenset({"127.0.0.1"})
    login(owner).post("/teams/acme/notifications/targets/",
                      {"name": "hook", "kind": "webhook", "address": "http://127.0.0.1:9/hook", "language": "en"})
    # An administrator takes loopback off the list: the sending is refused before it connects, and fails.
    settings.NOTIFY_ALLOWED_HOSTS = settings.NOTIFY_HTTP_HOSTS = frozenset()
    with django_capture_on_commit_callbacks(execute=True):
        alerts.send_test(NotificationTarget.objects.get())
    send_queued(queued_tasks)
    assert value(scrape(client), "hakobune_notification_deliveries", status="failed", channel="webhook") == 1


def test_the_log_collectors_flush_measures_how_late_it_stored_a_line(settings):
    from hakobune.platform.observability.logcollector import Origin
    from hakobune.runtime.logfollow import RawLine

    collector = Collector(client=object(), access_log="")
    printed = time.time() - 2
    collector.lines.put(("c1", Origin(1, 1, "i", "web", 1), RawLine("stdout", int(printed * 1e9), "hi"), "hi"))
    assert collector.flush() == 1
    assert 2 <= collector.lag < 10
