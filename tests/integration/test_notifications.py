"""Notifications through the real workers: a deploy that fails in the pipeline
worker is told to the team's webhook by the housekeeping worker, and a
receiver that keeps failing leaves the build as it was and its delivery
failed with the reason, after its retries. The receiver listens on loopback
at TEST_NOTIFY_PORT, which scripts/test.sh names in NOTIFY_ALLOWED_HOSTS."""

import os
import time

import pytest
from django.conf import settings

from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.notifications.actions import add_target
from hakobune.platform.notifications.models import Delivery
from hakobune.platform.services.services import create_service, deploy_service
from tests.support.infrastructure import wait_for_build
from tests.support.webhook_receiver import webhook_receiver
from tests.unit.test_pipeline_tasks import notes_only

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver():
    port = int(os.environ.get("TEST_NOTIFY_PORT") or 0)
    if not port or f"127.0.0.1:{port}" not in settings.NOTIFY_ALLOWED_HOSTS:
        pytest.skip("no notification receiver port in the guard's allow-list (run through scripts/test.sh)")
    with webhook_receiver(port) as server:
        yield server


@pytest.fixture
def service(owner, team_name, receiver):
    team = create_team(name=team_name, owner=owner)
    add_target(team=team, name="hook", kind="webhook", address=receiver.url, created_by=owner)
    return create_service(team=team, name="notes", created_by=owner)


def delivery_finished(timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = Delivery.objects.filter(status__in=(Delivery.Status.SENT, Delivery.Status.FAILED)).first()
        if delivery:
            return delivery
        time.sleep(0.25)
    raise AssertionError(f"no delivery finished within {timeout} s: {list(Delivery.objects.values())}")


def test_a_deploy_that_fails_is_told_to_the_teams_webhook(owner, service, receiver, worker):
    build = wait_for_build(deploy_service(service=service, source_file=notes_only(), created_by=owner), timeout=120)
    assert build.status == BuildStatus.FAILED

    delivery = delivery_finished()
    assert (delivery.status, delivery.attempts) == ("sent", 1)
    body = receiver.received[0]["json"]
    assert (body["event"], body["team"], body["service"], body["build"], body["step"]) == (
        "deploy_failed", service.team.name, "notes", "1", "detecting")
    assert body["link"].endswith(f"/t/{service.team.name}/notes/builds/1/")


def test_a_receiver_that_keeps_failing_fails_nothing_else(owner, service, receiver, worker):
    receiver.answer = 500
    build = wait_for_build(deploy_service(service=service, source_file=notes_only(), created_by=owner), timeout=120)
    said = (build.status, build.failure_reason)

    delivery = delivery_finished()
    assert (delivery.status, delivery.attempts) == ("failed", settings.NOTIFY_MAX_ATTEMPTS)
    assert "error=500" in delivery.reason
    assert len(receiver.received) == settings.NOTIFY_MAX_ATTEMPTS
    build.refresh_from_db()
    assert (build.status, build.failure_reason) == said
