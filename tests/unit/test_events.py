"""The events timeline and the audit log as a team lives with them: an owner
deploys, scales, changes a variable and rolls back, and the service's
timeline says each, with who (never a variable's value); a crash and an OOM
kill are recorded once each, with the exit code; members read their
service's timeline, only owners and administrators the team's audit log, and
an outsider finds neither. On the dummy backend; the engine's events the log
collector reads are given as the engine sends them (runtime/exits.py)."""

import json
import logging
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone

from hakobune.platform.accounts.tokens import create_api_token
from hakobune.platform.builds.models import Build, BuildStatus
from hakobune.platform.builds.state import advance
from hakobune.platform.governance.reviews import approve, reject, request_review
from hakobune.platform.observability import events
from hakobune.platform.observability.events import record_instance_exit, sentence_of
from hakobune.platform.observability.models import Event
from hakobune.platform.services import scaling
from hakobune.platform.services.models import Release, Service
from hakobune.platform.services.services import cancel_build, create_service, deploy_service, scale
from hakobune.runtime.base import ObservedInstance, ServiceRef
from hakobune.runtime.dummy import DummyBackend
from hakobune.runtime.exits import ExitWatch
from hakobune.worker import tasks
from tests.conftest import upload_of
from tests.unit.test_waker import SleepyBackend

S = BuildStatus
API = "/api/v1"
SECRET_VALUE = "s3cr3t-do-not-show-me"
# The engine's events below happen this many seconds after the test starts.
STARTED = time.time()


def deployed(service, person):
    """A deploy by `person` through the pipeline's steps, live on the dummy backend."""
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=person)
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING)]:
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(image=f"hakobune/acme/{service.name}:{build.number}")
    tasks.deploy_release(build.id)
    service.refresh_from_db()
    return build


@pytest.fixture
def service(team, owner, dummy_backend, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner)
    deployed(service, owner)
    return service


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user(username="stella", password="x", is_staff=True)


def timeline(service):
    return [(event.kind, event.actor_label, sentence_of(event)) for event in service.events.order_by("id")]


def start_pending(service):
    """What the worker does with the releases a change made (start_release)."""
    for release in service.releases.filter(status=Release.Status.PENDING).order_by("number"):
        tasks.start_release(release.id)


def bearer(user, name="laptop"):
    return {"HTTP_AUTHORIZATION": f"Bearer {create_api_token(user=user, name=name)[1]}"}


def test_an_owners_deploy_scale_env_change_and_rollback_are_on_the_timeline_with_who(
    login, owner, service, queued_tasks, client,
):
    page = login(owner)
    page.post(reverse("services:scale", args=["acme", "hello"]), {"instances": "2"})
    page.post(reverse("services:env", args=["acme", "hello"]), {"key": "API_TOKEN", "value": SECRET_VALUE})
    start_pending(service)
    page.post(reverse("services:rollback", args=["acme", "hello", 1]))
    start_pending(service)

    assert timeline(service) == [
        ("service.created", "olivia", "Created the service."),
        ("deploy.started", "olivia", "Deploy #1 started from flask-hello.tar.gz."),
        ("deploy.live", "Hakobune", "Deploy #1 is live as v1."),
        ("release.scaled", "olivia", "Scaled web=2; v2 runs them."),
        ("env.changed", "olivia", "Changed the environment variables: set API_TOKEN; v3 runs with them."),
        ("release.rollback", "olivia", "Rolled back to v1, as v4."),
    ]
    # The value is nowhere: not in the stored events, the page or the API.
    stored = json.dumps(list(Event.objects.values("params", "actor_label", "kind")))
    assert SECRET_VALUE not in stored
    shown = page.get(reverse("observability:service_events", args=["acme", "hello"])).content.decode()
    assert "Rolled back to v1, as v4." in shown and "olivia" in shown
    assert shown.index("Rolled back to v1") < shown.index("Deploy #1 is live")  # newest first
    assert SECRET_VALUE not in shown
    answer = client.get(f"{API}/teams/acme/services/hello/events/", **bearer(owner)).json()
    assert [e["kind"] for e in answer["events"]][:2] == ["release.rollback", "env.changed"]
    assert answer["events"][0]["actor"] == {"username": "olivia", "label": "olivia", "token": ""}
    assert SECRET_VALUE not in json.dumps(answer)


def test_a_change_through_the_api_names_the_token_it_was_made_with(owner, service, client, queued_tasks):
    response = client.patch(f"{API}/teams/acme/services/hello/", json.dumps({"memory_mb": 512}),
                            content_type="application/json", **bearer(owner, "ci"))
    assert response.status_code == 200
    event = service.events.get(kind="settings.changed")
    assert (event.actor_label, event.actor_token) == ("olivia", "ci")
    assert sentence_of(event) == "Changed the settings: Memory (MiB) 256 → 512; v2 runs with them."
    answer = client.get(f"{API}/teams/acme/services/hello/events/?kind=settings", **bearer(owner)).json()
    assert [e["actor"] for e in answer["events"]] == [{"username": "olivia", "label": "olivia", "token": "ci"}]


def test_a_failed_deploy_says_why_and_a_cancel_and_a_newer_deploy_say_who(
    owner, developer, service, dummy_backend, queued_tasks,
):
    dummy_backend.options["fail_deploy"] = True
    failed = deployed(service, owner)
    waiting = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    newer = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=developer)
    cancel_build(build=newer, cancelled_by=developer)

    said = {(kind, who): words for kind, who, words in timeline(service)}
    assert said[("deploy.failed", "Hakobune")].startswith(f"Deploy #{failed.number} failed: ")
    assert "did not answer on $PORT" in said[("deploy.failed", "Hakobune")]
    assert said[("deploy.superseded", "dev")] == (f"Deploy #{waiting.number} was superseded by a newer deploy; "
                                                  "nothing of it went live.")
    assert said[("deploy.cancelled", "dev")] == f"Deploy #{newer.number} was cancelled."
    assert service.events.get(kind="deploy.failed").severity == "error"


def test_a_change_whose_release_does_not_start_says_so_once(owner, service, dummy_backend, queued_tasks):
    dummy_backend.options["fail_deploy"] = True
    scale(service=service, instances=2, created_by=owner)
    start_pending(service)
    [failed] = service.events.filter(kind="release.failed")
    assert failed.actor_label == "Hakobune"
    assert sentence_of(failed).startswith("v2 did not start; the live release serves on: ")
    assert "did not answer on $PORT" in sentence_of(failed)
    # Its release was made without a build: no deploy failed with it.
    assert not service.events.filter(kind="deploy.failed").exists()


def test_an_instance_that_crashes_is_recorded_once_with_its_exit_code(owner, service):
    watch, live = ExitWatch(), service.live_release
    crash = engine_event("die", "c0ffee", live.id, at=100, exitCode="3")
    for _ in range(2):  # the same exit seen twice (a collector resuming, or two collectors)
        exit = watch.see(crash)
        assert exit is not None and exit.exit_code == 3
        record_instance_exit(exit)

    [event] = service.events.filter(kind="instance.crashed")
    assert event.actor_label == "Hakobune" and event.severity == "error"
    assert sentence_of(event) == "The web process exited with code 3 (instance hakobune-acme-hello-v1-web-0)."

    # Again and again (the engine restarts it each time): one event that counts them.
    for at in (101, 103):
        record_instance_exit(watch.see(engine_event("die", "c0ffee", live.id, at=at, exitCode="3")))
    [event] = service.events.filter(kind="instance.crashed")
    assert event.params["times"] == 3
    assert "exited with code 3, 3 times" in sentence_of(event)


def test_an_oom_kill_is_recorded_as_such_with_the_memory_it_had(owner, service):
    watch, live = ExitWatch(), service.live_release
    assert watch.see(engine_event("oom", "beef", live.id, at=200)) is None
    exit = watch.see(engine_event("die", "beef", live.id, at=200.05, exitCode="137"))
    assert exit.oom_killed and exit.exit_code == 137
    record_instance_exit(exit)
    [event] = service.events.filter(kind="instance.oom_killed")
    assert sentence_of(event) == (
        "The web process ran out of its 256 MiB of memory and was killed (exit code 137, instance "
        "hakobune-acme-hello-v1-web-0). Give it more memory, or make it use less.")


def test_a_stop_hakobune_asked_for_and_a_release_not_live_are_no_crash(owner, service):
    watch, live = ExitWatch(), service.live_release
    # Stopped, slept or retired: the engine says kill before the die.
    assert watch.see(engine_event("kill", "aa", live.id, at=300, signal="15")) is None
    assert watch.see(engine_event("die", "aa", live.id, at=305, exitCode="143")) is None
    # A one-off (a release command, a job) says its own outcome.
    assert watch.see(engine_event("die", "bb", live.id, at=306, exitCode="1", **{"org.hakobune.oneoff": "job"})) is None
    # A new release that dies while it starts is its deploy's failure, not a crash.
    record_instance_exit(watch.see(engine_event("die", "cc", live.id + 1, at=307, exitCode="1")))
    assert not service.events.filter(kind__startswith="instance.").exists()


def test_the_reconciler_records_what_it_started_again_once_and_counts_its_repeats(settings, team, owner, queued_tasks):
    from hakobune.platform.services.housekeeping import reconcile

    settings.RUNTIME_BACKENDS = {"local": {"BACKEND": "tests.unit.test_events.ObservedBackend", "OPTIONS": {}}}
    service = create_service(team=team, name="hello", created_by=owner)
    deployed(service, owner)
    live, old = str(service.live_release_id), "0"
    # Its instance found stopped: started again, twice (the same repair counts).
    ObservedBackend.seen = [ObservedInstance(release_id=live, state="exited")]
    reconcile()
    reconcile()
    # Only an instance of a replaced release, taken away: no repair of the service.
    ObservedBackend.seen = [ObservedInstance(release_id=live, state="running"),
                            ObservedInstance(release_id=old, state="exited")]
    reconcile()
    [event] = service.events.filter(kind="service.repaired")
    assert event.actor_label == "Hakobune" and event.params["times"] == 2
    assert sentence_of(event).startswith("Hakobune found the service not running as it should and repaired it, 2 times")


class ObservedBackend(DummyBackend):
    """The dummy backend, showing the reconciler the instances of `seen`."""

    seen: list = []

    def observe(self):
        return {ServiceRef("acme", "hello"): list(self.seen)}

    def reconcile_service(self, desired):
        live = str(desired.spec.release_id)
        return ["started its instance again" if instance.release_id == live
                else "removed an instance of a release that is no longer live"
                for instance in self.seen if instance.state != "running"]


def test_sleep_and_wake_are_the_platforms(settings, team, owner, queued_tasks):
    settings.RUNTIME_BACKENDS = {"local": {"BACKEND": "tests.unit.test_events.NappingBackend",
                                           "OPTIONS": {"upstream": "127.0.0.1:9"}}}
    service = create_service(team=team, name="napper", created_by=owner)
    deployed(service, owner)
    Service.objects.filter(id=service.id).update(idle_minutes=5)
    service.refresh_from_db()
    scaling.put_to_sleep(service)
    scaling.put_to_sleep(service)  # asleep already: nothing new
    assert scaling.wake_sleeping(service.id, lock_wait=5).upstreams
    said = [(kind, who, words) for kind, who, words in timeline(service) if kind.startswith("service.")]
    assert said[1:] == [("service.slept", "Hakobune", "Put to sleep after 5 minutes without a request."),
                        ("service.woke", "Hakobune", "Woken by a request.")]


class NappingBackend(SleepyBackend):
    def sleep(self, ref, hostname, aliases=(), redirects=()):
        self.calls.append(("sleep", ref))


def test_a_member_reads_the_timeline_but_not_the_team_audit_log(login, developer, viewer, service, client):
    for member in (developer, viewer):
        page = login(member)
        assert page.get(reverse("observability:service_events", args=["acme", "hello"])).status_code == 200
        assert page.get(reverse("observability:team_events", args=["acme"])).status_code == 403
        assert page.get(reverse("observability:all_events")).status_code == 403
        client.logout()
        assert client.get(f"{API}/teams/acme/services/hello/events/", **bearer(member)).status_code == 200
        refused = client.get(f"{API}/teams/acme/events/", **bearer(member))
        assert refused.status_code == 403
        assert "Only owners of acme can read the team's audit log." in refused.json()["error"]


def test_an_outsider_finds_neither_page_nor_api(login, outsider, service, client):
    page = login(outsider)
    assert page.get(reverse("observability:service_events", args=["acme", "hello"])).status_code == 404
    assert page.get(reverse("observability:team_events", args=["acme"])).status_code == 404
    client.logout()
    assert client.get(f"{API}/teams/acme/services/hello/events/", **bearer(outsider)).status_code == 404
    assert client.get(f"{API}/teams/acme/events/", **bearer(outsider)).status_code == 404


def test_the_owner_reads_the_teams_audit_log_with_its_members_and_reviews(
    login, owner, developer, outsider, staff, service, client, settings,
):
    response = client.post(f"{API}/teams/acme/members/", json.dumps({"user": "oscar", "role": "viewer"}),
                           content_type="application/json", **bearer(owner))
    assert response.status_code == 201
    client.post(f"{API}/teams/acme/members/", json.dumps({"user": "oscar", "role": "developer"}),
                content_type="application/json", **bearer(owner))
    assert client.delete(f"{API}/teams/acme/members/oscar/", **bearer(outsider)).status_code == 204
    request_review(service)
    reject(service=service, by=staff, note="Say what it stores first.")
    approve(service=service, by=staff)

    answer = client.get(f"{API}/teams/acme/events/?kind=member,review", **bearer(owner)).json()
    assert [(e["kind"], e["actor"]["label"], e["message"]) for e in reversed(answer["events"])] == [
        ("member.added", "olivia", "Added oscar to the team as a viewer."),
        ("member.role_changed", "olivia", "Made oscar a developer (was a viewer)."),
        ("member.removed", "oscar", "Left the team."),
        ("review.rejected", "stella", "An administrator did not approve the service: Say what it stores first."),
        ("review.approved", "stella", "An administrator approved the service."),
    ]
    assert {e["service"] for e in answer["events"]} == {None, "hello"}
    page = login(owner).get(reverse("observability:team_events", args=["acme"]))
    assert page.status_code == 200 and b"Left the team." in page.content and b"Deploy #1 is live as v1." in page.content


def test_staff_read_every_teams_events_filtered_by_team_kind_and_time(login, owner, outsider, staff, service):
    other = create_service(team=outsider.teams.get(), name="elsewhere", created_by=outsider)
    Event.objects.filter(service=other).update(created_at=timezone.now() - timedelta(days=40))
    page = login(staff)
    everything = page.get(reverse("observability:all_events")).content.decode()
    assert "elsewhere" in everything and "hello" in everything
    only_acme = page.get(reverse("observability:all_events") + "?team=acme").content.decode()
    assert "elsewhere" not in only_acme and "Deploy #1 is live as v1." in only_acme
    deploys = page.get(reverse("observability:all_events") + "?kind=deploy").content.decode()
    assert "Deploy #1 started" in deploys and "Created the service." not in deploys
    recent = page.get(reverse("observability:all_events") + "?since=30d").content.decode()
    assert "elsewhere" not in recent
    # A team they are not in, too.
    assert page.get(reverse("observability:team_events", args=["other"])).status_code == 200
    assert page.get(reverse("observability:team_events", args=["nobody"])).status_code == 404


def test_pages_go_back_in_time_page_by_page(login, owner, service, queued_tasks, client):
    for count in range(1, 8):
        scale(service=service, instances=1 + count % 2, created_by=owner)
    answer = client.get(f"{API}/teams/acme/services/hello/events/?limit=4", **bearer(owner)).json()
    assert len(answer["events"]) == 4
    rest = client.get(f"{API}/teams/acme/services/hello/events/?limit=50&before={answer['next_before']}",
                      **bearer(owner)).json()
    assert rest["next_before"] is None
    ids = [e["id"] for e in answer["events"] + rest["events"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == service.events.count()
    refused = client.get(f"{API}/teams/acme/services/hello/events/?kind=nonsense", **bearer(owner))
    assert refused.status_code == 400 and "not a kind of event" in refused.content.decode()

    older = login(owner).get(reverse("observability:service_events", args=["acme", "hello"]) + f"?before={ids[4]}")
    assert older.content.count(b'class="event ') == len(ids) - 5


def test_the_timeline_speaks_japanese_to_a_japanese_reader(login, owner, service):
    shown = login(owner).get(reverse("observability:service_events", args=["acme", "hello"]),
                             HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "デプロイ #1" in shown
    assert "Deploy #1 is live" not in shown


def test_an_event_that_cannot_be_stored_does_not_stop_the_action(owner, service, queued_tasks, monkeypatch, caplog):
    def broken(**fields):
        raise DatabaseError("the events table is away")

    monkeypatch.setattr(Event.objects, "create", broken)
    with caplog.at_level(logging.ERROR):
        release = scale(service=service, instances=3, created_by=owner)
    assert release.number == 2
    assert Service.objects.get(id=service.id).instances == 3
    assert "could not record the event release.scaled" in caplog.text


def test_events_older_than_the_retention_go_with_the_housekeepings_prune(owner, service, settings):
    settings.EVENT_RETENTION_DAYS = 30
    old = service.events.first()
    Event.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=31))
    assert events.prune() == 1
    assert not Event.objects.filter(id=old.id).exists()
    assert service.events.exists()


def test_the_timeline_outlives_the_service(owner, service, queued_tasks):
    from hakobune.platform.services.housekeeping import destroy_service
    from hakobune.platform.services.services import delete_service

    delete_service(service=service, confirm=service.name, created_by=owner)
    destroy_service(service.id)
    kinds = list(Event.objects.filter(team_name="acme", service_name="hello").values_list("kind", flat=True))
    assert kinds[0] == "service.deleted" and "deploy.live" in kinds


def engine_event(action, container, release_id, *, at, **attributes):
    """An event of a container of service acme/hello, as the engine's
    events stream sends it."""
    return {
        "status": action, "id": container, "Type": "container", "Action": action,
        "Actor": {"ID": container, "Attributes": {
            "name": "hakobune-acme-hello-v1-web-0", "org.hakobune.managed": "hakobune", "org.hakobune.team": "acme",
            "org.hakobune.service": "hello", "org.hakobune.release": str(release_id),
            "org.hakobune.process": "web", **attributes,
        }},
        "scope": "local", "time": int(STARTED + at), "timeNano": int((STARTED + at) * 1_000_000_000),
    }


@pytest.mark.parametrize("language", ["en", "ja"])
def test_every_kind_is_put_into_words_even_without_its_params_and_offered_in_the_filters(language):
    from django.utils import translation

    with translation.override(language):
        for name, kind in events.KINDS.items():
            assert name.split(".")[0] in events.FAMILIES, name
            said = sentence_of(Event(kind=name, params={}))
            assert said and "%(" not in said, (name, said)
            if language == "ja":
                assert all(translation.gettext(text) != text for text in kind.sentences), name


@pytest.mark.django_db(transaction=True)
def test_the_cli_prints_the_services_events_the_teams_audit_log_and_follows_new_ones(
        live_server, owner, developer, service, monkeypatch, capsys, tmp_path):
    from hakobune import cli

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HAKOBUNE_URL", live_server.url)
    monkeypatch.setenv("HAKOBUNE_TOKEN", create_api_token(user=owner, name="cli")[1])
    scale(service=service, instances=2, created_by=owner)

    assert cli.main(["events", "-t", "acme", "-s", "hello"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1] for line in lines] == [kind for kind, *_ in timeline(service)]
    assert lines[-1].endswith("release.scaled  olivia: Scaled web=2; v2 runs them.")
    assert cli.main(["events", "-t", "acme", "-s", "hello", "--kind", "release.scaled"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1

    assert cli.main(["events", "-t", "acme", "--all"]) == 0
    team_log = capsys.readouterr().out
    assert "  hello  release.scaled  olivia: Scaled web=2; v2 runs them." in team_log
    assert "  —  team.created  olivia: " in team_log

    # Following: what happens after the first page is printed as it comes.
    looks = []

    def wait(seconds):
        looks.append(seconds)
        if len(looks) == 1:
            scale(service=service, instances=3, created_by=owner)
        elif len(looks) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", wait)
    assert cli.main(["events", "-t", "acme", "-s", "hello", "-n", "1", "--follow"]) == 130
    followed = capsys.readouterr().out.splitlines()
    assert [line.split("olivia: ")[1] for line in followed] == ["Scaled web=2; v2 runs them.",
                                                               "Scaled web=3; v3 runs them."]

    # A developer reads the service's events, not the team's audit log.
    monkeypatch.setenv("HAKOBUNE_TOKEN", create_api_token(user=developer, name="cli")[1])
    assert cli.main(["events", "-t", "acme", "-s", "hello", "-n", "1"]) == 0
    assert cli.main(["events", "-t", "acme", "--all"]) == 1
    assert capsys.readouterr().err.startswith("hakobune: ")
