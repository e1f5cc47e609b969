"""Process types, the release phase and scheduled jobs as the platform sees
them (a runtime that records its calls): what a release carries to the
runtime, who may scale what, the team's quota, the reconciler's view, the
CLI's words; a release command's success and failure; when a job is due."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from hakobune.cli import main as cli
from hakobune.platform.builds.log import BuildLog
from hakobune.platform.builds.models import Build, BuildStatus as S
from hakobune.platform.builds.state import advance
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.services import jobs
from hakobune.platform.services.models import JobRun, Release
from hakobune.platform.services.releases import ReleaseRefused, run_release_phase
from hakobune.platform.services.services import create_service, deploy_service, rollback
from hakobune.runtime.base import DesiredService, DeploySpec, ObservedInstance, looks_as_desired
from hakobune.runtime.release_config import ReleaseConfig
from hakobune.worker import tasks
from tests.conftest import upload_of
from tests.unit.test_api import API, bearer

SVC = f"{API}/teams/acme/services/app"
PLAN = {"stack": "python", "start_command": "gunicorn app:app", "port": 8080, "web": True,
        "processes": {"worker": "celery -A app worker"}}


def deployed(service, owner, plan, image="hakobune/acme/app:one"):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING)]:
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(image=image, plan=plan)
    tasks.deploy_release(build.id)
    service.refresh_from_db()
    build.refresh_from_db()
    return build


@pytest.fixture
def service(team, owner, dummy_backend, queued_tasks):
    return create_service(team=team, name="app", created_by=owner)


def call(client, user, method, path, body=None):
    kwargs = {"data": json.dumps(body), "content_type": "application/json"} if body is not None else {}
    return getattr(client, method)(path, **kwargs, **bearer(user))


def test_a_release_carries_its_process_types_and_their_commands_to_the_runtime(service, owner, dummy_backend):
    assert deployed(service, owner, PLAN).status == S.LIVE
    assert service.processes == {"worker": {"instances": 1}} and service.serves_web
    spec = dummy_backend.calls[-1][1]
    assert spec.web is True and spec.processes == {"worker": "celery -A app worker"}
    assert spec.process_counts() == {"web": 1, "worker": 1}
    assert spec.config.sizes("worker")["memory_mb"] == spec.memory_mb


def test_the_team_scales_a_worker_through_the_api_and_viewers_may_not(client, service, owner, viewer, outsider,
                                                                       dummy_backend):
    deployed(service, owner, PLAN)
    listed = call(client, viewer, "get", f"{SVC}/processes/").json()["processes"]
    assert [(p["name"], p["instances"], p["routed"], p["command"]) for p in listed] == [
        ("web", 1, True, "gunicorn app:app"), ("worker", 1, False, "celery -A app worker")
    ]
    assert call(client, viewer, "patch", f"{SVC}/processes/", {"worker": 2}).status_code == 403
    assert call(client, outsider, "patch", f"{SVC}/processes/", {"worker": 2}).status_code == 404

    answer = call(client, owner, "patch", f"{SVC}/processes/", {"worker": 2})
    assert answer.status_code == 200, answer.content
    release = Release.objects.get(service=service, number=answer.json()["release"])
    assert release.description == "Scaled worker=2"
    tasks.start_release(release.id)
    spec = dummy_backend.calls[-1][1]
    assert spec.process_counts() == {"web": 1, "worker": 2}
    assert spec.processes == {"worker": "celery -A app worker"}


@pytest.mark.parametrize("body, words", [
    ({"clock": 1}, "has no process type clock; its process types: web, worker"),
    ({"web": 0}, "web: the number of instances is from 1 to 10"),
    ({"worker": 11}, "worker: the number of instances is from 0 to 10"),
    ({"worker": "two"}, "a whole number, like worker=2"),
    ({}, "Say which process types to scale"),
])
def test_a_scale_the_service_cannot_take_is_refused_in_words(client, service, owner, body, words):
    deployed(service, owner, PLAN)
    answer = call(client, owner, "patch", f"{SVC}/processes/", body)
    assert answer.status_code == 400 and words in answer.json()["error"], answer.content


def test_workers_count_in_the_teams_quota(client, service, owner, team):
    deployed(service, owner, PLAN)
    TeamPolicy.objects.update_or_create(team=team, defaults={"max_cpu": 1.5, "max_memory_mb": 8192})
    assert call(client, owner, "patch", f"{SVC}/processes/", {"worker": 2}).status_code == 200
    refused = call(client, owner, "patch", f"{SVC}/processes/", {"worker": 3})
    assert refused.status_code == 400 and "1.5 CPU cores" in refused.json()["error"]
    # Scaling down always passes.
    assert call(client, owner, "patch", f"{SVC}/processes/", {"worker": 0}).status_code == 200


def test_a_deploy_whose_new_workers_would_pass_the_quota_fails_in_words(service, owner, team):
    TeamPolicy.objects.update_or_create(team=team, defaults={"max_cpu": 0.5, "max_memory_mb": 8192})
    build = deployed(service, owner, PLAN)
    assert build.status == S.FAILED and "0.5 CPU cores" in build.failure_reason


def test_a_service_of_workers_only_has_no_web_instance_and_is_not_counted_for_one(service, owner, dummy_backend):
    deployed(service, owner, {**PLAN, "web": False})
    assert not service.serves_web
    spec = dummy_backend.calls[-1][1]
    assert spec.web is False and spec.process_counts() == {"web": 0, "worker": 1}
    from hakobune.platform.governance.quotas import reservation

    assert reservation(service) == (0.5, 256)


def test_the_reconciler_sees_each_process_types_count():
    spec = DeploySpec(team="acme", service="app", release_id=7, release_number=3, image="i", hostname="h",
                      config=ReleaseConfig.from_dict({"processes": {"worker": {"instances": 2}}}),
                      processes={"worker": "python worker.py"})
    desired = DesiredService(spec)
    web, worker = ObservedInstance("7", "running"), ObservedInstance("7", "running", process="worker")
    assert looks_as_desired(desired, [web, worker, worker])
    assert not looks_as_desired(desired, [web, worker])
    assert not looks_as_desired(desired, [web, web, worker])
    assert not looks_as_desired(desired, [web, worker, ObservedInstance("7", "running", process="clock")])


class _ScaleApi:
    """Records what `hakobune scale` asks the portal."""

    def __init__(self):
        self.sent = []

    def request(self, method, path, **kwargs):
        self.sent.append((method, path, kwargs.get("json")))
        return self

    def json(self):
        return {"processes": [{"name": "web", "instances": 1, "cpu": 0.5, "memory_mb": 256, "routed": True,
                               "command": "gunicorn app:app"},
                              {"name": "worker", "instances": 2, "cpu": 0.5, "memory_mb": 256, "routed": False,
                               "command": "celery -A app worker"}], "release": 4}


def test_the_cli_scales_a_process_type(monkeypatch, capsys):
    from hakobune import cli as hakobune_cli

    api = _ScaleApi()
    monkeypatch.setattr(hakobune_cli, "api_from_config", lambda: api)
    assert cli(["scale", "--team", "acme", "--service", "app", "worker=2"]) == 0
    assert api.sent == [("PATCH", "teams/acme/services/app/processes/", {"worker": 2})]
    out = capsys.readouterr().out
    assert "Scaled app: worker=2; v4 applies it." in out
    assert "worker        2 × (0.5 CPU, 256 MiB)  not routed  celery -A app worker" in out
    assert cli(["scale", "--team", "acme", "--service", "app", "worker=two"]) == hakobune_cli.EXIT_USAGE
    assert "write PROCESS=COUNT, like worker=2" in capsys.readouterr().err


# -- the release phase ---------------------------------------------------------------------


def test_a_release_command_that_succeeds_runs_before_the_instances_and_is_logged(service, owner, dummy_backend):
    dummy_backend.options["one_off_output"] = ["Applying shop.0001_initial... OK"]
    build = deployed(service, owner, {**PLAN, "release_command": "python manage.py migrate"})
    assert build.status == S.LIVE
    kinds = [kind for kind, _ in dummy_backend.calls]
    assert kinds.index("run_once") < kinds.index("deploy")
    spec, command, purpose = dummy_backend.calls[kinds.index("run_once")][1]
    assert (command, purpose) == ("python manage.py migrate", "release") and spec.release_number == 1
    log = "\n".join(build.log_lines.values_list("text", flat=True))
    assert "Applying shop.0001_initial... OK" in log and "Release phase done" in log


def test_a_failing_release_command_fails_the_deploy_with_its_last_lines_and_keeps_the_old_release(
    service, owner, dummy_backend
):
    first = deployed(service, owner, {**PLAN, "release_command": "python manage.py migrate"})
    deployed(service, owner, {**PLAN, "release_command": "python manage.py migrate"}, "hakobune/acme/app:two")
    live = service.live_release
    dummy_backend.options.update(one_off_exit=1, one_off_output=["Traceback", "OperationalError: no such table"])
    dummy_backend.calls.clear()
    second = deployed(service, owner, {**PLAN, "release_command": "python manage.py migrate"}, "hakobune/acme/app:3")
    assert second.status == S.FAILED
    assert "The release command (`python manage.py migrate`) failed with exit code 1" in second.failure_reason
    assert "OperationalError: no such table" in second.failure_reason
    assert [kind for kind, _ in dummy_backend.calls] == ["run_once"]
    assert service.live_release == live
    # A rollback (to the first release) does not run it again.
    dummy_backend.calls.clear()
    release = rollback(service=service, to_release=first.releases.get())
    tasks.start_release(release.id)
    assert [kind for kind, _ in dummy_backend.calls] == ["deploy"]


def test_a_resumed_deploy_does_not_run_the_release_phase_again(service, owner, dummy_backend):
    from hakobune.platform.services.releases import release_for_build

    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    Build.objects.filter(id=build.id).update(image="hakobune/acme/app:one",
                                             plan={**PLAN, "release_command": "python manage.py migrate"})
    build.refresh_from_db()
    release = release_for_build(build)
    run_release_phase(release, [].append)
    # The deploy step's worker died here; the step is resumed and finds its release.
    again = release_for_build(build)
    assert again == release
    dummy_backend.calls.clear()
    lines = []
    run_release_phase(again, lines.append)
    assert dummy_backend.calls == [] and lines == ["Release phase of v1: it ran already"]


def test_a_runtime_without_one_off_containers_refuses_a_release_command(service, owner, dummy_backend, monkeypatch):
    monkeypatch.setattr(type(dummy_backend), "capabilities", frozenset({"logs", "routing"}))
    build = deployed(service, owner, {**PLAN, "processes": {}, "release_command": "python manage.py migrate"})
    assert build.status == S.FAILED and "cannot run one-off containers" in build.failure_reason


# -- scheduled jobs ------------------------------------------------------------------------


def test_a_jobs_latest_tick_is_its_due_time():
    now = datetime(2026, 11, 30, 10, 17, 30, tzinfo=timezone.utc)
    assert jobs.last_tick("*/10 * * * *", now) == datetime(2026, 11, 30, 10, 10, tzinfo=timezone.utc)
    assert jobs.last_tick("17 * * * *", now) == datetime(2026, 11, 30, 10, 17, tzinfo=timezone.utc)
    assert jobs.next_tick("*/10 * * * *", now) == datetime(2026, 11, 30, 10, 20, tzinfo=timezone.utc)


def test_a_tick_long_past_is_not_caught_up_and_a_stopped_service_runs_no_job(service, owner, dummy_backend,
                                                                              monkeypatch):
    started = []
    monkeypatch.setattr(type(dummy_backend), "start_one_off",
                        lambda self, spec, command, purpose: started.append(command) or "c1", raising=False)
    deployed(service, owner, {**PLAN, "jobs": [{"name": "tidy", "schedule": "0 3 * * *", "command": "python t.py"}]})
    at_three = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)
    assert jobs.start_due(at_three + timedelta(minutes=30)) == []
    service.desired_state = "stopped"
    service.save(update_fields=["desired_state"])
    assert jobs.start_due(at_three + timedelta(seconds=5)) == []
    service.desired_state = "running"
    service.save(update_fields=["desired_state"])
    (run,) = jobs.start_due(at_three + timedelta(seconds=5))
    assert run.status == JobRun.Status.RUNNING and started == ["python t.py"]
    assert JobRun.objects.get().handle == "c1"


def test_the_service_page_shows_the_processes_to_everyone_and_the_scale_form_to_who_may_deploy(
    client, service, owner, viewer, dummy_backend
):
    from django.urls import reverse

    deployed(service, owner, {**PLAN, "jobs": [{"name": "tidy", "schedule": "*/10 * * * *", "command": "python t.py"}]})
    JobRun.objects.create(service=service, job="tidy", command="python t.py", schedule="*/10 * * * *",
                          scheduled_for=datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc), status="failed",
                          exit_code=3, detail="it exited with code 3", log="no such table: sessions")
    page = reverse("services:detail", args=["acme", "app"])
    client.force_login(viewer)
    seen = client.get(page).content.decode()
    assert "celery -A app worker" in seen and 'name="count_worker"' not in seen
    assert "Scheduled jobs" in seen and "it exited with code 3" in seen and "no such table: sessions" in seen
    assert client.post(reverse("services:processes", args=["acme", "app"]), {"count_worker": "3"}).status_code in (302, 403)
    assert service.releases.count() == 1

    client.force_login(owner)
    assert 'name="count_worker"' in client.get(page).content.decode()
    response = client.post(reverse("services:processes", args=["acme", "app"]), {"count_web": "1", "count_worker": "3"})
    assert response.status_code == 302
    assert service.releases.order_by("-number").first().description == "Scaled worker=3"
