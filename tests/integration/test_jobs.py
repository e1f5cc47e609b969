"""Scheduled jobs on the real Docker Engine: a team's [[jobs]] in
hakobune.toml run as one-off containers of the live release with its
environment, one at a time per job (a tick that comes while the previous run
still runs is skipped, never run beside it), and their history, exit codes
and output are in the portal and the API. The scheduler's passes are called
here with the time they would run at."""

import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services import jobs
from hakobune.platform.services.models import JobRun
from hakobune.platform.services.services import create_service, deploy_service, set_env
from hakobune.runtime.docker_local import LABEL_ONEOFF, LABEL_SERVICE, LABEL_TEAM
from tests.conftest import archive_of

from tests.support.infrastructure import wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

JOB = """import os, sys, time
print(f"tidying for {os.environ.get('SHARED')}", flush=True)
time.sleep(float(os.environ.get("JOB_SECONDS", "6")))
print("tidy done", flush=True)
sys.exit(int(os.environ.get("JOB_EXIT", "0")))
"""
TOML = '[[jobs]]\nname = "tidy"\nschedule = "* * * * *"\ncommand = "python job.py"\n'


@pytest.fixture
def team(owner, team_name):
    return create_team(name=team_name, owner=owner)


def one_offs(docker_client, team):
    return docker_client.containers.list(
        all=True, filters={"label": [f"{LABEL_TEAM}={team.name}", f"{LABEL_SERVICE}=app", LABEL_ONEOFF]}
    )


def until_ended(run, now, timeout=90):
    """Scheduler passes at `now` until the run has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs.finish(now)
        run.refresh_from_db()
        if run.status != JobRun.Status.RUNNING:
            return run
        time.sleep(0.5)
    raise AssertionError(f"{run} did not end in {timeout} s")


def test_a_scheduled_job_runs_one_at_a_time_with_its_history_in_the_portal_and_the_api(
    login, owner, team, worker, docker_client
):
    service = create_service(team=team, name="app", created_by=owner)
    set_env(service=service, values={"SHARED": "the team's app"}, unset=[])
    upload = SimpleUploadedFile("app.tar.gz", archive_of("flask-hello", extra={"hakobune.toml": TOML, "job.py": JOB}))
    build = wait_for_build(deploy_service(service=service, source_file=upload, created_by=owner))
    assert build.status == "live", build.failure_reason
    service.refresh_from_db()

    minute = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    (first,) = jobs.start_due(minute + timedelta(seconds=1))
    assert first.status == "running" and first.scheduled_for == minute and first.job == "tidy"
    assert first.release_id == service.live_release_id
    assert len(one_offs(docker_client, team)) == 1
    # Nothing more for the same tick, however many passes look at it.
    assert jobs.start_due(minute + timedelta(seconds=20)) == []

    # The next tick comes while the first run still runs: skipped, not run beside it.
    (second,) = jobs.start_due(minute + timedelta(seconds=61))
    assert second.status == "skipped" and second.detail == "its previous run was still running"
    assert len(one_offs(docker_client, team)) == 1

    first = until_ended(first, minute + timedelta(seconds=62))
    assert first.status == "succeeded" and first.exit_code == 0
    assert "tidying for the team's app" in first.log and "tidy done" in first.log
    assert first.started_at < first.ended_at
    assert one_offs(docker_client, team) == []

    (third,) = jobs.start_due(minute + timedelta(seconds=121))
    third = until_ended(third, minute + timedelta(seconds=122))
    assert third.status == "succeeded"
    assert first.ended_at <= third.started_at  # the runs of one job never overlap

    # A run that fails keeps its exit code and its output.
    set_env(service=service, values={"JOB_EXIT": "3", "JOB_SECONDS": "0"}, unset=[])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        service.refresh_from_db()
        if service.live_release.number == 2:
            break
        time.sleep(0.25)
    assert service.live_release.number == 2
    (fourth,) = jobs.start_due(minute + timedelta(seconds=181))
    fourth = until_ended(fourth, minute + timedelta(seconds=182))
    assert fourth.status == "failed" and fourth.exit_code == 3 and fourth.detail == "it exited with code 3"
    assert "tidy done" in fourth.log

    client = login(owner)
    answer = client.get(f"/api/v1/teams/{team.name}/services/app/jobs/").json()
    (job,) = answer["jobs"]
    assert (job["name"], job["schedule"], job["command"]) == ("tidy", "* * * * *", "python job.py")
    assert [(r["status"], r["exit_code"]) for r in job["runs"]] == [
        ("failed", 3), ("succeeded", 0), ("skipped", None), ("succeeded", 0)
    ]
    assert "tidying for the team's app" in job["runs"][1]["log"]
    page = client.get(reverse("services:detail", args=[team.name, "app"])).content.decode()
    assert "Scheduled jobs" in page and "tidy" in page and "its previous run was still running" in page
    assert "it exited with code 3" in page


def test_a_job_past_its_time_limit_is_stopped_and_fails(owner, team, worker, docker_client, settings):
    service = create_service(team=team, name="app", created_by=owner)
    set_env(service=service, values={"JOB_SECONDS": "120"}, unset=[])
    upload = SimpleUploadedFile("app.tar.gz", archive_of("flask-hello", extra={"hakobune.toml": TOML, "job.py": JOB}))
    assert wait_for_build(deploy_service(service=service, source_file=upload, created_by=owner)).status == "live"
    settings.JOB_TIMEOUT = 5
    minute = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    (run,) = jobs.start_due(minute)
    assert len(one_offs(docker_client, team)) == 1
    run = until_ended(run, minute + timedelta(seconds=6))
    assert run.status == "failed" and run.exit_code is None
    assert run.detail == "it ran longer than 5 s and was stopped"
    assert one_offs(docker_client, team) == []
