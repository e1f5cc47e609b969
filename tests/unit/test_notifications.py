"""Notifications as a team's owner sets them up and receives them: a failed
deploy, a crash loop, memory near its limit, failing requests and a failed
backup are sent by e-mail (Django's locmem backend here) and to webhooks (a
receiver on loopback, started by the test and named in the guard's test
allow-list). A notification that cannot be sent fails nothing and says why;
an address that is not public is refused before any connection; only owners
change targets, and outsiders find nothing."""

import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.notifications import alerts, channels
from hakobune.platform.notifications.models import Alert, AlertRules, Delivery, NotificationTarget
from hakobune.platform.observability.collectors import collect_all
from hakobune.platform.observability.models import MetricPoint
from hakobune.platform.services import housekeeping
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.worker import netguard, tasks
from tests.support.webhook_receiver import webhook_receiver
from tests.unit.test_api import as_, deployed  # noqa: F401 (as_ is a fixture)
from tests.unit.test_pipeline_tasks import notes_only

MIB = 1024 * 1024
PAGE = "/teams/acme/notifications/"


@pytest.fixture
def receiver():
    with webhook_receiver() as server:
        yield server


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    """The guard's test allow-list: the receiver on loopback, over plain http."""
    settings.NOTIFY_ALLOWED_HOSTS = frozenset({"127.0.0.1"})
    settings.NOTIFY_HTTP_HOSTS = frozenset({"127.0.0.1"})
    settings.PORTAL_URL = "https://hakobune.example.org"


@pytest.fixture
def service(team, owner, dummy_backend):
    return create_service(team=team, name="hello", created_by=owner)


@pytest.fixture
def live(service, owner, queued_tasks):
    deployed(service, owner, "hakobune/acme/hello:one")
    queued_tasks.clear()
    return service


def add_target(client, name, kind, address, language="en"):
    return client.post(f"{PAGE}targets/", {"name": name, "kind": kind, "address": address, "language": language})


def send_queued(queued_tasks):
    """What a housekeeping worker does with the deliveries queued: each task
    run here, its retries at once."""
    for name, *args in [task for task in queued_tasks if task[0] == "deliver_notification"]:
        tasks.deliver_notification.apply(args=args)
    queued_tasks[:] = [task for task in queued_tasks if task[0] != "deliver_notification"]


def failed_deploy(service, owner, capture):
    """A deploy whose detection finds no app: the build fails in the pipeline."""
    build = deploy_service(service=service, source_file=notes_only(), created_by=owner)
    with capture(execute=True):
        tasks.fetch_source(build.id)
        tasks.detect_stack(build.id)
    build.refresh_from_db()
    assert build.status == BuildStatus.FAILED
    return build


# -- a failed deploy -----------------------------------------------------------------------


def test_a_failed_deploy_sends_one_email_and_one_webhook_post(service, owner, login, receiver, mailoutbox,
                                                              queued_tasks, django_capture_on_commit_callbacks):
    client = login(owner)
    assert add_target(client, "ops mail", "email", "ops@acme.example").status_code == 302
    assert add_target(client, "hook", "webhook", receiver.url).status_code == 302

    build = failed_deploy(service, owner, django_capture_on_commit_callbacks)
    send_queued(queued_tasks)

    link = "https://hakobune.example.org/t/acme/hello/builds/1/"
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ops@acme.example"]
    assert mail.subject == "Deploy #1 of hello failed"
    assert "failed while detecting the stack" in mail.body and "requirements.txt" in mail.body and link in mail.body

    assert len(receiver.received) == 1
    post = receiver.received[0]
    assert post["path"] == "/hooks/hakobune?token=s3cret-token"
    body = post["json"]
    assert (body["event"], body["team"], body["service"], body["build"], body["step"]) == (
        "deploy_failed", "acme", "hello", "1", "detecting")
    assert "requirements.txt" in body["reason"] and body["reason"] == build.failure_reason
    assert body["link"] == link
    assert body["title"] == "Deploy #1 of hello failed" and body["type"] == "failure"
    assert link in body["message"]

    assert sorted(Delivery.objects.values_list("target_name", "status", "attempts")) == [
        ("hook", "sent", 1), ("ops mail", "sent", 1)]
    # A delivery handed out twice is sent once.
    for delivery_id in Delivery.objects.values_list("id", flat=True):
        tasks.deliver_notification.apply(args=[delivery_id])
    assert len(mailoutbox) == 1 and len(receiver.received) == 1


def test_a_target_is_written_to_in_its_own_language(service, owner, login, mailoutbox, queued_tasks,
                                                    django_capture_on_commit_callbacks):
    add_target(login(owner), "チーム", "email", "team@acme.example", language="ja")
    failed_deploy(service, owner, django_capture_on_commit_callbacks)
    send_queued(queued_tasks)
    assert mailoutbox[0].subject == "hello のデプロイ #1 が失敗しました"
    assert "スタックの判定中に失敗しました" in mailoutbox[0].body


def test_a_receiver_that_answers_500_fails_nothing_and_the_page_says_why(service, owner, login, receiver,
                                                                         queued_tasks, settings,
                                                                         django_capture_on_commit_callbacks):
    receiver.answer = 500
    client = login(owner)
    add_target(client, "hook", "webhook", receiver.url)
    build = failed_deploy(service, owner, django_capture_on_commit_callbacks)
    said = (build.status, build.failure_rule, build.failure_reason, build.failed_step)

    send_queued(queued_tasks)

    build.refresh_from_db()
    assert (build.status, build.failure_rule, build.failure_reason, build.failed_step) == said
    # Tried a few times, then recorded failed with the receiver's answer.
    assert len(receiver.received) == settings.NOTIFY_MAX_ATTEMPTS == 3
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert "500" in delivery.reason and "s3cret" not in delivery.reason

    page = client.get(PAGE).content.decode()
    assert 'class="delivery-failed"' in page
    assert '<span class="bad-text small" lang="en">' in page and "error=500" in page
    assert "1 delivery failed in the last 30 days." in page
    assert "s3cret" not in page


def test_an_alert_that_cannot_be_raised_never_fails_the_deploy(service, owner, login, receiver, queued_tasks,
                                                               monkeypatch, django_capture_on_commit_callbacks):
    add_target(login(owner), "hook", "webhook", receiver.url)
    errors_before = alerts.counts()["errors"]

    def broken(*args, **kwargs):
        raise RuntimeError("the alert store is away")

    monkeypatch.setattr(alerts, "raise_alert", broken)
    build = failed_deploy(service, owner, django_capture_on_commit_callbacks)
    assert "requirements.txt" in build.failure_reason
    assert alerts.counts()["errors"] == errors_before + 1
    assert not Delivery.objects.exists()


# -- the reconciler, the metrics collection, backups ---------------------------------------


def test_a_crash_loop_sends_once_within_the_cooldown(live, owner, login, receiver, dummy_backend, queued_tasks,
                                                     django_capture_on_commit_callbacks):
    add_target(login(owner), "hook", "webhook", receiver.url)
    dummy_backend.options["observed_state"] = "running"
    with django_capture_on_commit_callbacks(execute=True):
        housekeeping.reconcile()
    assert not Alert.objects.exists()

    dummy_backend.options["observed_state"] = "restarting"
    for _ in range(3):  # three passes of the reconciler see it
        with django_capture_on_commit_callbacks(execute=True):
            housekeeping.reconcile()
    send_queued(queued_tasks)
    assert len(receiver.received) == 1
    body = receiver.received[0]["json"]
    assert (body["event"], body["service"]) == ("crash_loop", "hello")
    assert body["link"] == "https://hakobune.example.org/t/acme/hello/"
    assert "keeps crashing" in body["title"]

    # Once the cool-down is over, a crash loop still going is told again.
    Alert.objects.update(created_at=timezone.now() - timedelta(minutes=31))
    with django_capture_on_commit_callbacks(execute=True):
        housekeeping.reconcile()
    send_queued(queued_tasks)
    assert len(receiver.received) == 2


def test_memory_near_its_limit_alerts_once_and_per_the_services_rules(live, owner, login, receiver, dummy_backend,
                                                                      queued_tasks,
                                                                      django_capture_on_commit_callbacks):
    client = login(owner)
    add_target(client, "hook", "webhook", receiver.url)
    dummy_backend.options["metrics"] = {"memory_bytes": 200 * MIB, "memory_limit_bytes": 256 * MIB}
    with django_capture_on_commit_callbacks(execute=True):
        collect_all()  # 78 %: under the team's 90 %
    assert not Alert.objects.exists()

    dummy_backend.options["metrics"] = {"memory_bytes": 240 * MIB, "memory_limit_bytes": 256 * MIB}
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            collect_all()
    send_queued(queued_tasks)
    assert len(receiver.received) == 1
    body = receiver.received[0]["json"]
    assert (body["event"], body["percent"], body["threshold"]) == ("memory_high", "94", "90")
    assert "94% of its 256 MiB memory limit" in body["message"]

    # The service's own rules: alert at 98 % only.
    client.post(f"{PAGE}rules/services/", {"service": "hello", "deploy_failed": "on", "crash_loop": "on",
                                           "memory_high": "on", "memory_percent": "98", "error_rate": "on",
                                           "error_rate_percent": "5", "backup_failed": "on"})
    assert AlertRules.objects.get(service=live).memory_percent == 98
    Alert.objects.update(created_at=timezone.now() - timedelta(minutes=31))
    with django_capture_on_commit_callbacks(execute=True):
        collect_all()
    assert Alert.objects.count() == 1


def test_many_failing_requests_alert_from_the_routers_request_counts(live, owner, login, receiver, queued_tasks,
                                                                     django_capture_on_commit_callbacks):
    add_target(login(owner), "hook", "webhook", receiver.url)
    now = timezone.now()

    def requests(ok, failed):
        for code_class, count in (("2xx", ok), ("5xx", failed)):
            MetricPoint.objects.create(service=live, timestamp=now, name="request_count", value=count,
                                       instance=f"response_code_class={code_class}")

    requests(8, 4)  # a third fail, but only 12 requests: too few to say
    with django_capture_on_commit_callbacks(execute=True):
        collect_all()
    assert not Alert.objects.exists()

    requests(72, 16)  # 20 of 100 in the window
    with django_capture_on_commit_callbacks(execute=True):
        collect_all()
    send_queued(queued_tasks)
    body = receiver.received[0]["json"]
    assert (body["event"], body["rate"], body["threshold"]) == ("error_rate", "20.0", "5.0")
    assert "20 of its 100 requests in the last 5 minutes" in body["message"]


def test_a_failed_backup_is_told_once(team, owner, login, receiver, queued_tasks, django_capture_on_commit_callbacks):
    """Backups do not exist yet: this is the call they will make."""
    add_target(login(owner), "hook", "webhook", receiver.url)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            alerts.backup_failed(team_id=team.id, what="the PostgreSQL add-on db", reason="pg_dump exited with 1",
                                 backup_id=7)
    send_queued(queued_tasks)
    assert len(receiver.received) == 1
    body = receiver.received[0]["json"]
    assert (body["event"], body["what"], body["reason"]) == ("backup_failed", "the PostgreSQL add-on db",
                                                             "pg_dump exited with 1")


def test_the_teams_rules_turn_an_event_off_and_a_service_turns_it_back_on(service, owner, login, receiver,
                                                                          queued_tasks,
                                                                          django_capture_on_commit_callbacks):
    client = login(owner)
    add_target(client, "hook", "webhook", receiver.url)
    rules = {"crash_loop": "on", "memory_high": "on", "memory_percent": "90", "error_rate": "on",
             "error_rate_percent": "5", "backup_failed": "on"}  # deploy_failed unticked
    assert client.post(f"{PAGE}rules/", rules).status_code == 302
    failed_deploy(service, owner, django_capture_on_commit_callbacks)
    assert not Alert.objects.exists()

    client.post(f"{PAGE}rules/services/", {**rules, "service": "hello", "deploy_failed": "on"})
    failed_deploy(service, owner, django_capture_on_commit_callbacks)
    send_queued(queued_tasks)
    assert [post["json"]["build"] for post in receiver.received] == ["2"]

    client.post(f"{PAGE}rules/services/hello/remove/")
    assert not AlertRules.objects.filter(service=service).exists()


# -- addresses: the SSRF guard ----------------------------------------------------------------


@pytest.fixture
def no_connections(monkeypatch):
    """Any attempt to connect is recorded (and refused): the checks below must
    decide before one is made."""
    attempts = []

    def refuse(sock, address):
        attempts.append(address)
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize("address, why", [
    ("https://169.254.169.254/latest/meta-data/", "the address 169.254.169.254 is a link-local address (cloud metadata "
                                                 "lives there), which Hakobune does not send notifications to."),
    ("https://10.0.0.1/hook", "the address 10.0.0.1 is a private network address, which Hakobune does not send "
                              "notifications to."),
    ("http://10.0.0.1/hook", "http:// addresses are not allowed; Hakobune sends notifications only to https:// "
                             "addresses."),
])
def test_a_private_or_link_local_url_is_refused_when_saved(team, owner, login, no_connections, address, why):
    response = add_target(login(owner), "hook", "webhook", address)
    assert response.status_code == 200
    assert f"Hakobune will not send notifications to this address: {why}" in response.content.decode()
    assert not NotificationTarget.objects.exists()
    assert no_connections == []


def test_a_chat_url_whose_name_points_inside_is_refused(team, owner, login, monkeypatch, no_connections):
    monkeypatch.setattr(channels, "resolver", lambda host, port: ["10.1.2.3"])
    response = add_target(login(owner), "slack", "slack", "https://hooks.slack.com/services/T000/B000/XXXX")
    assert "the address hooks.slack.com (which points to 10.1.2.3) is a private network address" in \
        response.content.decode()
    assert no_connections == []


def test_chat_webhooks_are_read_as_their_services_post_them(team, owner, login, monkeypatch, no_connections):
    monkeypatch.setattr(channels, "resolver", lambda host, port: ["93.184.215.14"])  # public; never reached
    client = login(owner)
    for name, kind, address in (
        ("slack", "slack", "https://hooks.slack.com/services/T000/B000/XXXX"),
        ("discord", "discord", "https://discordapp.com/api/webhooks/123456/abc_DEF-1"),
        ("teams", "teams", "https://prod-00.westus.logic.azure.com:443/workflows/abc123/triggers/manual/paths/"
                           "invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIG"),
    ):
        assert add_target(client, name, kind, address).status_code == 302
    shown = dict(NotificationTarget.objects.values_list("name", "shown"))
    assert shown == {"slack": "https://hooks.slack.com/…", "discord": "https://discord.com/…",
                     "teams": "https://prod-00.westus.logic.azure.com:443/…"}
    target = NotificationTarget.objects.get(name="discord")
    assert target.address == "https://discord.com/api/webhooks/123456/abc_DEF-1"  # where apprise posts
    assert "abc_DEF" not in target.address_encrypted
    # Each is sent by apprise's notifier for its service, following no redirect.
    for target in NotificationTarget.objects.all():
        checked = netguard.check_url(target.address, channels.policy(), channels.resolver)
        sender = channels.notifier(target.kind, target.address, checked, channels.Message("t", "b"), asset=None)
        assert (type(sender).__name__, sender.redirects) == (
            {"slack": "NotifySlack", "discord": "NotifyDiscord", "teams": "NotifyWorkflows"}[target.kind], False)

    response = add_target(client, "wrong", "slack", "https://discord.com/api/webhooks/1/x")
    assert "That is not a Slack webhook address." in response.content.decode()
    assert no_connections == []


def test_a_sending_is_checked_again_and_held_to_the_checked_address(team, owner, login, receiver, settings,
                                                                    queued_tasks, no_connections,
                                                                    django_capture_on_commit_callbacks):
    add_target(login(owner), "hook", "webhook", receiver.url)
    settings.NOTIFY_ALLOWED_HOSTS = frozenset()  # an administrator took loopback off the list since
    with django_capture_on_commit_callbacks(execute=True):
        alerts.send_test(NotificationTarget.objects.get())
    send_queued(queued_tasks)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1)  # not tried again
    assert "the address 127.0.0.1 is a loopback address (this machine)" in delivery.reason
    assert no_connections == [] and receiver.received == []

    # Within a sending, only the checked host's checked addresses are looked up:
    # a redirect or a proxy elsewhere is refused before any packet leaves.
    checked = netguard.check_url("https://hooks.example.org/x", netguard.Policy(),
                                 resolver=lambda host, port: ["93.184.215.14"])
    with netguard.connecting_only_to(checked):
        assert socket.getaddrinfo("hooks.example.org", 443)[0][4][0] == "93.184.215.14"
        for elsewhere in ("169.254.169.254", "metadata.google.internal", "proxy.internal"):
            with pytest.raises(socket.gaierror):
                socket.getaddrinfo(elsewhere, 80)
    assert no_connections == []


def test_apprise_reaches_a_webhook_only_through_the_checked_address(team, owner, login, receiver, settings,
                                                                    monkeypatch, queued_tasks,
                                                                    django_capture_on_commit_callbacks):
    """hooks.hakobune-test has no DNS entry: the sending reaches the receiver
    only because apprise's lookup (in apprise's own thread) is answered with
    the address the guard checked."""
    settings.NOTIFY_ALLOWED_HOSTS = frozenset({"hooks.hakobune-test"})
    settings.NOTIFY_HTTP_HOSTS = frozenset({"hooks.hakobune-test"})
    monkeypatch.setattr(channels, "resolver", lambda host, port: ["127.0.0.1"])
    url = receiver.url.replace("127.0.0.1", "hooks.hakobune-test")
    assert add_target(login(owner), "hook", "webhook", url).status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        alerts.send_test(NotificationTarget.objects.get())
    send_queued(queued_tasks)
    assert Delivery.objects.get().status == "sent"
    assert receiver.received[0]["json"]["event"] == "test"


# -- who may --------------------------------------------------------------------------------


def test_an_owner_sends_a_test_and_sees_it_sent(team, owner, login, receiver, queued_tasks,
                                                django_capture_on_commit_callbacks):
    client = login(owner)
    add_target(client, "hook", "webhook", receiver.url)
    target = NotificationTarget.objects.get()
    assert target.shown == f"http://127.0.0.1:{receiver.server_address[1]}/…"
    assert "s3cret" not in client.get(PAGE).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"{PAGE}targets/{target.id}/test/").status_code == 302
    send_queued(queued_tasks)
    assert receiver.received[0]["json"]["event"] == "test"
    page = client.get(PAGE).content.decode()
    assert 'class="delivery-sent"' in page and "Test notification" in page

    client.post(f"{PAGE}targets/{target.id}/remove/")
    assert not NotificationTarget.objects.exists()
    assert Delivery.objects.get().target_name == "hook"  # the record stays


def test_a_member_who_is_not_an_owner_cannot_change_targets(team, owner, developer, viewer, login, receiver):
    add_target(login(owner), "hook", "webhook", receiver.url)
    target = NotificationTarget.objects.get()
    for member in (developer, viewer):
        client = login(member)
        assert client.get(PAGE).status_code == 403
        assert add_target(client, "mine", "email", "me@acme.example").status_code == 403
        assert client.post(f"{PAGE}targets/{target.id}/remove/").status_code == 403
        assert client.post(f"{PAGE}rules/", {"memory_percent": "50", "error_rate_percent": "1"}).status_code == 403
    assert list(NotificationTarget.objects.values_list("name", flat=True)) == ["hook"]
    assert not AlertRules.objects.exists()


def test_an_outsider_finds_nothing(team, owner, outsider, login, receiver):
    add_target(login(owner), "hook", "webhook", receiver.url)
    target = NotificationTarget.objects.get()
    client = login(outsider)
    assert client.get(PAGE).status_code == 404
    assert add_target(client, "mine", "email", "me@other.example").status_code == 404
    assert client.post(f"{PAGE}targets/{target.id}/test/").status_code == 404
    assert client.post(f"{PAGE}targets/{target.id}/remove/").status_code == 404
    # Their own team's page does not reach another team's target either.
    assert client.post(f"/teams/other/notifications/targets/{target.id}/remove/").status_code == 404
    assert NotificationTarget.objects.count() == 1


def test_the_api_lets_owners_manage_targets_and_no_one_else(team, owner, developer, outsider, as_, receiver,
                                                             queued_tasks, django_capture_on_commit_callbacks):
    path = "/api/v1/teams/acme/notifications/targets/"
    refused = as_(owner, "post", path, {"name": "meta", "kind": "webhook", "address": "https://169.254.169.254/"})
    assert refused.status_code == 400
    assert "link-local address" in refused.json()["fields"]["address"][0]

    created = as_(owner, "post", path, {"name": "hook", "kind": "webhook", "address": receiver.url})
    assert created.status_code == 201
    target = created.json()
    assert target["shown"].startswith("http://127.0.0.1:") and "address" not in target
    assert as_(owner, "get", path).json()[0]["name"] == "hook"

    assert as_(developer, "get", path).status_code == 403
    assert as_(developer, "post", path, {"name": "x", "kind": "email", "address": "x@acme.example"}).status_code == 403
    assert as_(developer, "delete", f"{path}{target['id']}/").status_code == 403
    assert as_(outsider, "get", path).status_code == 404
    assert as_(outsider, "delete", f"{path}{target['id']}/").status_code == 404

    with django_capture_on_commit_callbacks(execute=True):
        tested = as_(owner, "post", f"{path}{target['id']}/test/")
    assert tested.status_code == 202 and tested.json()["status"] == "pending"
    send_queued(queued_tasks)
    deliveries = as_(owner, "get", "/api/v1/teams/acme/notifications/deliveries/").json()
    assert [(d["event"], d["target"], d["status"]) for d in deliveries] == [("test", "hook", "sent")]

    assert as_(owner, "delete", f"{path}{target['id']}/").status_code == 204
    assert as_(owner, "get", path).json() == []


# -- a worker that died while sending ------------------------------------------------------


def _stranded(receiver_url, owner, login, queued_tasks, django_capture_on_commit_callbacks, *, attempts):
    """A test notification whose worker took it (attempt `attempts` claimed)
    and died before writing how it went: the row is pending, its lease over."""
    add_target(login(owner), "hook", "webhook", receiver_url)
    target = NotificationTarget.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        delivery = alerts.send_test(target)
    queued_tasks.clear()  # the task went with the worker (and Redis kept nothing)
    past = timezone.now() - timedelta(minutes=5)
    Delivery.objects.filter(id=delivery.id).update(attempts=attempts, leased_until=past, next_attempt_at=past,
                                                   created_at=past)
    return delivery


def test_a_delivery_whose_worker_died_is_sent_by_the_housekeeping_pass(team, owner, login, receiver, queued_tasks,
                                                                       django_capture_on_commit_callbacks):
    delivery = _stranded(receiver.url, owner, login, queued_tasks, django_capture_on_commit_callbacks, attempts=1)
    assert receiver.received == []

    tasks.recover_notifications()
    assert [task[0] for task in queued_tasks] == ["deliver_notification"]
    delivery.refresh_from_db()
    assert "cut short" in delivery.reason and delivery.status == "pending"
    send_queued(queued_tasks)

    assert [post["json"]["event"] for post in receiver.received] == ["test"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.leased_until) == ("sent", 2, None)
    # The pass finds nothing more to do, and a late copy of the lost task sends nothing twice.
    tasks.recover_notifications()
    assert queued_tasks == []
    tasks.deliver_notification.apply(args=[delivery.id])
    assert len(receiver.received) == 1


def test_a_delivery_being_sent_is_left_to_its_worker(team, owner, login, receiver, queued_tasks,
                                                     django_capture_on_commit_callbacks):
    delivery = _stranded(receiver.url, owner, login, queued_tasks, django_capture_on_commit_callbacks, attempts=1)
    Delivery.objects.filter(id=delivery.id).update(leased_until=timezone.now() + timedelta(seconds=60))
    tasks.recover_notifications()
    assert queued_tasks == []
    # A copy of its task finds it held, and sends nothing.
    tasks.deliver_notification.apply(args=[delivery.id])
    assert receiver.received == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 1)


def test_a_delivery_whose_task_was_lost_is_queued_again(team, owner, login, receiver, queued_tasks,
                                                        django_capture_on_commit_callbacks):
    delivery = _stranded(receiver.url, owner, login, queued_tasks, django_capture_on_commit_callbacks, attempts=0)
    Delivery.objects.filter(id=delivery.id).update(leased_until=None)  # never taken: Redis lost its task
    tasks.recover_notifications()
    send_queued(queued_tasks)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 1)
    assert len(receiver.received) == 1


def test_a_delivery_that_used_its_attempts_up_is_shown_failed(team, owner, login, receiver, queued_tasks, settings,
                                                              django_capture_on_commit_callbacks):
    delivery = _stranded(receiver.url, owner, login, queued_tasks, django_capture_on_commit_callbacks,
                         attempts=settings.NOTIFY_MAX_ATTEMPTS)
    failed_before = alerts.counts()["failed"]
    tasks.recover_notifications()
    assert queued_tasks == []
    assert receiver.received == []
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.finished_at is not None
    assert "attempt 3 of 3" in delivery.reason and "the worker sending it stopped" in delivery.reason
    assert alerts.counts()["failed"] == failed_before + 1
    page = login(owner).get(PAGE).content.decode()
    assert 'class="delivery-failed"' in page and "the worker sending it stopped" in page


# -- alert rules through the API -----------------------------------------------------------

ALERTS = "/api/v1/teams/acme/alerts/"


def test_an_owner_sets_team_and_service_rules_through_the_api(service, owner, as_, receiver, queued_tasks,
                                                               django_capture_on_commit_callbacks):
    assert as_(owner, "get", ALERTS).json() == []
    team_rules = as_(owner, "post", ALERTS, {"memory_percent": 80, "error_rate_percent": 2.5})
    assert team_rules.status_code == 201
    body = team_rules.json()
    assert (body["service"], body["memory_percent"], body["error_rate_percent"], body["deploy_failed"],
            body["targets"], body["updated_by"]) == (None, 80, 2.5, True, [], "olivia")
    again = as_(owner, "post", ALERTS, {})
    assert again.status_code == 409 and f"/alerts/{body['id']}/" in again.json()["error"]

    # A service's rules, sent to a webhook added with them (through the address checks).
    created = as_(owner, "post", ALERTS, {
        "service": "hello", "crash_loop": False,
        "new_targets": [{"name": "hook", "kind": "webhook", "address": receiver.url}]})
    assert created.status_code == 201, created.json()
    rules = created.json()
    assert (rules["service"], rules["crash_loop"], rules["targets"]) == ("hello", False, ["hook"])
    assert NotificationTarget.objects.get().shown.startswith("http://127.0.0.1:")
    assert [r["service"] for r in as_(owner, "get", ALERTS).json()] == [None, "hello"]

    changed = as_(owner, "patch", f"{ALERTS}{rules['id']}/", {"crash_loop": True, "memory_percent": 95})
    assert changed.status_code == 200
    assert (changed.json()["crash_loop"], changed.json()["memory_percent"], changed.json()["targets"]) == (
        True, 95, ["hook"])
    assert as_(owner, "get", f"{ALERTS}{rules['id']}/").json()["memory_percent"] == 95

    assert as_(owner, "delete", f"{ALERTS}{rules['id']}/").status_code == 204
    assert not AlertRules.objects.filter(service__isnull=False).exists()
    assert as_(owner, "get", f"{ALERTS}{rules['id']}/").status_code == 404


def test_bad_alert_rules_are_refused_in_words_and_change_nothing(service, owner, as_, no_connections):
    cases = [
        ({"memory_percent": 20}, "memory_percent"),
        ({"error_rate_percent": 0}, "error_rate_percent"),
        ({"service": "nope"}, "service"),
        ({"targets": ["nobody"]}, "targets"),
        ({"new_targets": [{"name": "meta", "kind": "webhook", "address": "https://169.254.169.254/"}]},
         "new_targets[0].address"),
        ({"new_targets": [{"name": "inside", "kind": "slack", "address": "https://10.0.0.1/services/x"}]},
         "new_targets[0].address"),
        ({"sms": True}, "sms"),
    ]
    for body, field in cases:
        answer = as_(owner, "post", ALERTS, body)
        assert answer.status_code == 400, (body, answer.json())
        assert field in answer.json()["fields"], (body, answer.json())
    assert not AlertRules.objects.exists() and not NotificationTarget.objects.exists()
    assert no_connections == []
    rules = as_(owner, "post", ALERTS, {}).json()
    assert as_(owner, "patch", f"{ALERTS}{rules['id']}/", {"service": "hello"}).status_code == 400


def test_alerts_go_to_the_targets_their_rules_name(live, owner, login, as_, receiver, mailoutbox, dummy_backend,
                                                   queued_tasks, django_capture_on_commit_callbacks):
    client = login(owner)
    add_target(client, "hook", "webhook", receiver.url)
    add_target(client, "ops mail", "email", "ops@acme.example")
    as_(owner, "post", ALERTS, {"service": "hello", "targets": ["ops mail"]})
    dummy_backend.options["observed_state"] = "restarting"
    with django_capture_on_commit_callbacks(execute=True):
        housekeeping.reconcile()
    send_queued(queued_tasks)
    assert receiver.received == []
    assert [mail.subject for mail in mailoutbox] == ["hello keeps crashing"]
    # The page says where the service's alerts go.
    assert "only to ops mail" in client.get(PAGE).content.decode()
    as_(owner, "post", ALERTS, {"targets": ["hook"]})
    assert "alerts go only to hook (chosen through the API" in client.get(PAGE).content.decode()


def test_only_owners_reach_alert_rules_and_outsiders_find_none(team, owner, developer, viewer, outsider, as_):
    rules = as_(owner, "post", ALERTS, {"memory_percent": 70}).json()
    one = f"{ALERTS}{rules['id']}/"
    for member in (developer, viewer):
        assert as_(member, "get", ALERTS).status_code == 403
        assert as_(member, "post", ALERTS, {}).status_code == 403
        assert as_(member, "get", one).status_code == 403
        assert as_(member, "patch", one, {"memory_percent": 99}).status_code == 403
        assert as_(member, "delete", one).status_code == 403
    assert as_(outsider, "get", ALERTS).status_code == 404
    assert as_(outsider, "post", ALERTS, {}).status_code == 404
    assert as_(outsider, "patch", one, {"memory_percent": 99}).status_code == 404
    # The outsider owns team "other": through its address, these rules are not found either.
    other = f"/api/v1/teams/other/alerts/{rules['id']}/"
    assert as_(outsider, "get", other).status_code == 404
    assert as_(outsider, "patch", other, {"memory_percent": 99}).status_code == 404
    assert as_(outsider, "delete", other).status_code == 404
    assert as_(outsider, "post", "/api/v1/teams/other/alerts/", {"service": "hello"}).status_code == 400
    assert AlertRules.objects.get().memory_percent == 70


@pytest.mark.django_db(transaction=True)
def test_the_cli_lists_creates_and_deletes_alert_rules(live_server, team, owner, developer, dummy_backend, receiver,
                                                       monkeypatch, capsys, tmp_path):
    from hakobune import cli
    from hakobune.platform.accounts.tokens import create_api_token

    create_service(team=team, name="hello", created_by=owner)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HAKOBUNE_URL", live_server.url)
    monkeypatch.setenv("HAKOBUNE_TOKEN", create_api_token(user=owner, name="cli")[1])

    assert cli.main(["alerts", "-t", "acme", "list"]) == 0
    assert "has no alert rules of its own" in capsys.readouterr().out
    assert cli.main(["alerts", "-t", "acme", "create", "--on", "deploy-failed,crash_loop", "--memory", "85",
                     "--email", "ops@acme.example"]) == 0
    said = capsys.readouterr().out
    assert "set for the whole team acme" in said
    assert "events: deploy_failed, crash_loop; memory at 85 %; errors at 5.0 %; to ops@acme.example" in said
    assert cli.main(["alerts", "-t", "acme", "create", "-s", "hello", "--error-rate", "10",
                     "--webhook", receiver.url]) == 0
    capsys.readouterr()
    rules = AlertRules.objects.get(service__name="hello")
    assert rules.error_rate_percent == 10 and [t.kind for t in rules.targets.all()] == ["webhook"]

    assert cli.main(["alerts", "-t", "acme"]) == 0
    listed = capsys.readouterr().out
    assert "the whole team acme" in listed and f"{rules.id:>4}  hello" in listed

    # Refusals come back in words: a target inside the network, an unknown event.
    assert cli.main(["alerts", "-t", "acme", "create", "-s", "hello", "--slack", "https://127.0.0.2/x"]) == 1
    assert "hakobune: " in capsys.readouterr().err
    assert cli.main(["alerts", "-t", "acme", "create", "--on", "sms"]) == 2
    assert "sms: not an event" in capsys.readouterr().err

    assert cli.main(["alerts", "-t", "acme", "delete", "hello"]) == 0
    assert f"Removed alert rules {rules.id}." in capsys.readouterr().out
    assert not AlertRules.objects.filter(service__isnull=False).exists()

    monkeypatch.setenv("HAKOBUNE_TOKEN", create_api_token(user=developer, name="cli")[1])
    assert cli.main(["alerts", "-t", "acme", "list"]) == 1
    assert cli.main(["alerts", "-t", "acme", "delete", str(AlertRules.objects.get().id)]) == 1
    assert AlertRules.objects.count() == 1
