"""Scale to zero's bookkeeping: the router's access log tells when a service
was last asked for, and only services idle longer than their setting sleep."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from hakobune.platform.services import scaling
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.services import create_service


@pytest.fixture
def services(team, owner, dummy_backend):
    made = {}
    for name in ("api", "my-app"):
        made[name] = create_service(team=team, name=name, created_by=owner)
    return made


def test_hostnames_with_hyphens_find_their_service(services, team, owner):
    from hakobune.platform.accounts.services import create_team

    other = create_team(name="app-acme", owner=owner)
    mine = create_service(team=other, name="my", created_by=owner)
    assert scaling.service_for_hostname("my-app.acme.localhost") == services["my-app"]
    assert scaling.service_for_hostname("my.app-acme.localhost") == mine
    assert scaling.service_for_hostname("api.acme.localhost") == services["api"]
    assert scaling.service_for_hostname("API.acme.localhost.") == services["api"]
    assert scaling.service_for_hostname("nothing.here.localhost") is None
    assert scaling.service_for_hostname("api.acme.example.com") is None


def test_the_access_log_records_each_services_latest_request(services, tmp_path, settings):
    settings.REDIS_URL = settings.REDIS_URL  # the offset lives in Redis
    log = tmp_path / "access.log"
    now = timezone.now().timestamp()
    lines = [
        {"ts": now - 50, "request": {"host": "api.acme.localhost:8080"}},
        {"ts": now - 10, "request": {"host": "api.acme.localhost:8080"}},
        {"ts": now - 30, "request": {"host": "unknown.acme.localhost"}},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"ts": 1, "request": {"host": "my-a')
    assert scaling.note_traffic(str(log)) == 3
    api = Service.objects.get(id=services["api"].id)
    assert abs(api.last_request_at.timestamp() - (now - 10)) < 0.01
    assert Service.objects.get(id=services["my-app"].id).last_request_at is None
    # The half-written last line is read once it is whole.
    with open(log, "a") as handle:
        handle.write('pp.acme.localhost"}}\n')
    assert scaling.note_traffic(str(log)) == 1
    assert Service.objects.get(id=services["my-app"].id).last_request_at is not None


def _live(service, owner, minutes_ago):
    from hakobune.platform.builds.models import Build

    build = Build.objects.create(service=service, number=1, source_archive="x.tar.gz", status="live")
    release = Release.objects.create(service=service, build=build, number=1, image="i", status="live",
                                     live_at=timezone.now() - timedelta(minutes=minutes_ago))
    Service.objects.filter(id=service.id).update(live_release=release, scale_to_zero=True, idle_minutes=10)


def test_only_services_idle_past_their_minutes_are_put_to_sleep(services, owner):
    _live(services["api"], owner, minutes_ago=30)
    _live(services["my-app"], owner, minutes_ago=30)
    Service.objects.filter(id=services["my-app"].id).update(last_request_at=timezone.now() - timedelta(minutes=2))
    assert [service.name for service in scaling.idle_services()] == ["api"]
    Service.objects.filter(id=services["api"].id).update(scale_to_zero=False)
    assert list(scaling.idle_services()) == []
