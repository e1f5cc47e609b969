"""The guided first deploy: a newcomer picks a sample (or uploads their own
folder), reads the plan a worker found before anything is built, picks a
size that fits the team's quota, deploys, and reads the steps and what each
would have been by hand. Outsiders find nothing; viewers only look."""

import tarfile
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from hakobune.platform.builds import plan_check
from hakobune.platform.builds.models import Build, BuildStatus, PlanCheck
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.services import guided
from hakobune.platform.services.guided_views import steps_of
from hakobune.platform.services.models import Service
from hakobune.platform.services.services import create_service
from hakobune.worker.buildpacks import detect
from hakobune.worker.buildpacks.versions import StackOffer
from tests.conftest import upload_of

S = BuildStatus
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


class StacksOfThisHost:
    def stack_offers(self, language):
        return [StackOffer(language, "", "", f"hakobune/stack-{language}:bookworm")]


@pytest.fixture(autouse=True)
def stacks_here(monkeypatch):
    from hakobune.platform.builds import images

    monkeypatch.setattr(images, "builder_for", lambda service: StacksOfThisHost())


def start(client, team="acme", **data):
    return client.post(reverse("services:guided_start", args=[team]), {"name": "first", **data})


@pytest.mark.parametrize("name, stack, start_words", [
    ("flask", "python", "gunicorn"),
    ("fastapi", "python", "uvicorn main:app"),
    ("django", "python", "hellosite.wsgi"),
    ("node-express", "node", "node server.js"),
    ("static", "static", "lighttpd"),
])
def test_each_sample_is_an_app_hakobune_recognises_as_it_is(name, stack, start_words):
    found = guided.sample(name)
    assert found is not None and (SAMPLES / name / "README.md").read_text().strip()
    detection = detect(SAMPLES / name)
    assert detection.stack == stack
    assert start_words in detection.plan.start_command
    # Packed as a person would pack the folder: everything in one folder.
    with tarfile.open(fileobj=BytesIO(guided.pack_sample(found))) as tar:
        names = tar.getnames()
    assert f"{name}/README.md" in names and all(n.startswith(f"{name}/") for n in names)


def test_a_newcomer_reads_the_plan_of_the_flask_sample_before_anything_is_built(
        login, owner, team, dummy_backend, queued_tasks, django_capture_on_commit_callbacks):
    client = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = start(client, source_kind="sample", sample="flask")
    service = Service.objects.get(team=team, name="first")
    check = PlanCheck.objects.get(service=service)
    assert response["Location"] == reverse("services:guided_plan", args=["acme", "first", check.id])
    assert ("check_plan", check.id) in queued_tasks
    # While the worker looks, the page says so and polls.
    page = client.get(response["Location"]).content.decode()
    assert 'id="plan-waiting"' in page and 'hx-trigger="every 1s"' in page

    plan_check.check_plan(check.id)
    check.refresh_from_db()
    assert check.status == PlanCheck.Status.DONE and check.stack == "python"
    assert "Flask" in check.detection_reason
    assert not Build.objects.filter(service=service).exists(), "nothing is built before the person says so"
    page = client.get(response["Location"]).content.decode()
    assert "hx-trigger" not in page
    assert "gunicorn --bind 0.0.0.0:$PORT" in page
    assert "pip install -r requirements.txt" in page
    assert '<strong>8080</strong>' in page
    detail = reverse("services:detail", args=["acme", "first"])
    for setting in ("id_start_command", "id_port", "id_build_command", "id_health_check_path"):
        assert f'href="{detail}#{setting}"' in page
    assert f'{reverse("services:guided_start", args=["acme"])}?service=first' in page
    for size in guided.SIZES:
        assert f'id="size-{size.name}"' in page


def test_the_deploy_of_the_plan_builds_the_same_source_at_the_chosen_size(
        login, owner, team, dummy_backend, queued_tasks, django_capture_on_commit_callbacks):
    client = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        start(client, source_kind="sample", sample="static")
    check = PlanCheck.objects.get(service__name="first")
    plan_check.check_plan(check.id)
    url = reverse("services:guided_plan", args=["acme", "first", check.id])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"size": "small"})
    build = Build.objects.get(service__name="first")
    assert response["Location"] == reverse("services:guided_deploy", args=["acme", "first", build.number])
    assert build.source_archive.name == PlanCheck.objects.get(id=check.id).source_archive.name
    assert build.trigger == "sample" and build.status == S.QUEUED
    assert ("admit_builds",) in queued_tasks
    service = Service.objects.get(name="first")
    assert (float(service.cpu), service.memory_mb) == (0.25, 128)
    # Sent twice (a double click): still one deploy.
    client.post(url, {"size": "small"})
    assert Build.objects.filter(service=service).count() == 1
    page = client.get(response["Location"]).content.decode()
    assert 'id="step-fetch"' in page and 'hx-trigger="every 1s"' in page


def test_a_size_the_team_quota_cannot_hold_is_refused(login, owner, team, dummy_backend, queued_tasks,
                                                        django_capture_on_commit_callbacks):
    TeamPolicy.objects.create(team=team, max_memory_mb=300, max_cpu=2)
    client = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        start(client, source_kind="sample", sample="flask")
    check = PlanCheck.objects.get(service__name="first")
    plan_check.check_plan(check.id)
    url = reverse("services:guided_plan", args=["acme", "first", check.id])
    page = client.get(url).content.decode()
    assert 'id="size-large" disabled' in page and 'id="size-medium" checked aria' in page
    assert "Too big for what is left of your team" in page
    response = client.post(url, {"size": "large"})
    assert response.status_code == 400
    assert "300 MiB of memory" in response.content.decode()
    assert not Build.objects.exists()


def test_an_upload_that_holds_no_app_gets_a_plan_that_says_why(
        login, owner, team, dummy_backend, queued_tasks, django_capture_on_commit_callbacks):
    client = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        start(client, source_kind="archive", source=upload_of("no-app"))
    check = PlanCheck.objects.get(service__name="first")
    assert check.source_kind == "archive"
    plan_check.check_plan(check.id)
    check.refresh_from_db()
    assert check.status == PlanCheck.Status.FAILED and check.failure_rule == "detect.unrecognized"
    page = client.get(reverse("services:guided_plan", args=["acme", "first", check.id])).content.decode()
    assert 'id="plan-failed"' in page and 'id="deploy-plan"' not in page
    assert client.post(reverse("services:guided_plan", args=["acme", "first", check.id]),
                       {"size": "small"}).status_code == 400


def test_a_check_delivered_twice_looks_once(owner, team, dummy_backend, queued_tasks):
    service = create_service(team=team, name="first", created_by=owner)
    check = guided.check_plan(service=service, created_by=owner, sample_name="flask")
    plan_check.check_plan(check.id)
    PlanCheck.objects.filter(id=check.id).update(stack="seen")
    plan_check.check_plan(check.id)
    assert PlanCheck.objects.get(id=check.id).stack == "seen"


def test_an_outsider_finds_nothing_and_a_viewer_only_looks(
        login, owner, team, viewer, outsider, dummy_backend, queued_tasks):
    service = create_service(team=team, name="first", created_by=owner)
    check = guided.check_plan(service=service, created_by=owner, sample_name="flask")
    plan_check.check_plan(check.id)
    plan = reverse("services:guided_plan", args=["acme", "first", check.id])
    again = reverse("services:guided_recheck", args=["acme", "first", check.id])
    stranger = login(outsider)
    assert stranger.get(plan).status_code == 404
    assert stranger.post(plan, {"size": "small"}).status_code == 404
    assert stranger.post(again).status_code == 404
    assert stranger.get(reverse("services:guided_start", args=["acme"])).status_code == 404
    # Their own team's start page does not reach acme's service either.
    assert stranger.get(reverse("services:guided_start", args=["other"]) + "?service=first").status_code == 404
    # A check of another service is not found through this one.
    theirs = create_service(team=outsider.memberships.get().team, name="theirs", created_by=outsider)
    other_check = guided.check_plan(service=theirs, created_by=outsider, sample_name="static")
    assert login(owner).get(reverse("services:guided_plan", args=["acme", "first", other_check.id])).status_code == 404
    looker = login(viewer)
    assert looker.get(plan).status_code == 200
    assert looker.post(plan, {"size": "small"}).status_code == 403
    assert looker.get(reverse("services:guided_start", args=["acme"])).status_code == 403
    assert not Build.objects.exists()


def test_looking_again_after_a_change_uses_the_same_source(login, owner, team, dummy_backend, queued_tasks,
                                                           django_capture_on_commit_callbacks):
    service = create_service(team=team, name="first", created_by=owner)
    check = guided.check_plan(service=service, created_by=owner, sample_name="flask")
    plan_check.check_plan(check.id)
    Service.objects.filter(id=service.id).update(start_command="gunicorn app:app --bind 0.0.0.0:$PORT -w 1")
    with django_capture_on_commit_callbacks(execute=True):
        response = login(owner).post(reverse("services:guided_recheck", args=["acme", "first", check.id]))
    again = PlanCheck.objects.exclude(id=check.id).get()
    assert response["Location"] == reverse("services:guided_plan", args=["acme", "first", again.id])
    plan_check.check_plan(again.id)
    again.refresh_from_db()
    assert again.source_archive.name == check.source_archive.name
    assert again.plan["start_command"] == "gunicorn app:app --bind 0.0.0.0:$PORT -w 1"


def test_the_steps_light_up_with_their_timings(owner, team, dummy_backend, queued_tasks):
    service = create_service(team=team, name="first", created_by=owner)
    now = timezone.now()
    build = Build.objects.create(service=service, number=1, status=S.BUILDING, started_at=now,
                                 milestones={"fetched": (now + timedelta(seconds=1)).isoformat(),
                                             "detected": (now + timedelta(seconds=1.5)).isoformat()})
    steps = steps_of(build)
    assert [s["state"] for s in steps] == ["done", "done", "current", "waiting", "waiting", "waiting"]
    assert [s["seconds"] for s in steps[:2]] == [1.0, 0.5]
    Build.objects.filter(id=build.id).update(status=S.FAILED, failed_step=S.DEPLOYING, milestones={
        **build.milestones, "built": (now + timedelta(seconds=9)).isoformat(),
        "started": (now + timedelta(seconds=10)).isoformat()})
    build.refresh_from_db()
    assert [s["state"] for s in steps_of(build)] == ["done", "done", "done", "done", "failed", "waiting"]


def test_what_just_happened_uses_this_deploys_values(owner, team, dummy_backend, queued_tasks):
    service = create_service(team=team, name="first", created_by=owner)
    Service.objects.filter(id=service.id).update(cpu=0.25, memory_mb=128)
    service.refresh_from_db()
    build = Build.objects.create(
        service=service, number=3, status=S.LIVE, source_filename="flask.tar.gz", image="hakobune/acme/first:abc123",
        plan={"port": 8080, "start_command": "gunicorn app:app"})
    commands = {entry.step: entry.command for entry in guided.by_hand(build)}
    assert list(commands) == ["fetch", "detect", "build", "start", "health", "route"]
    assert "tar -xzf flask.tar.gz" in commands["fetch"]
    assert commands["build"] == "docker build -f Dockerfile.hakobune -t hakobune/acme/first:abc123 ."
    assert "--memory 128m" in commands["start"] and "--cpus 0.25" in commands["start"]
    assert "--cap-drop ALL" in commands["start"] and "-e PORT=8080" in commands["start"]
    assert commands["start"].endswith("hakobune/acme/first:abc123")
    assert service.hostname in commands["route"]


def test_the_dashboard_offers_the_guided_deploy_to_a_team_without_services(login, owner, team, dummy_backend):
    client = login(owner)
    page = client.get(reverse("services:dashboard")).content.decode()
    assert 'id="start-guided"' in page
    create_service(team=team, name="first", created_by=owner)
    page = client.get(reverse("services:dashboard")).content.decode()
    assert 'id="start-guided"' not in page
    assert reverse("services:guided_start", args=["acme"]) in page


def test_a_look_whose_task_was_lost_is_sent_again_and_one_whose_worker_died_fails(
        owner, team, dummy_backend, queued_tasks, monkeypatch):
    from hakobune.platform.builds import sweeper

    monkeypatch.setattr(sweeper, "broker_forgot", lambda: False)
    service = create_service(team=team, name="first", created_by=owner)
    lost = guided.check_plan(service=service, created_by=owner, sample_name="flask")
    fresh = guided.check_plan(service=service, created_by=owner, sample_name="static")
    dead = guided.check_plan(service=service, created_by=owner, sample_name="django")
    long_ago = timezone.now() - timedelta(hours=1)
    PlanCheck.objects.filter(id=lost.id).update(sent_at=long_ago)
    PlanCheck.objects.filter(id=dead.id).update(status=PlanCheck.Status.CHECKING, claimed_at=long_ago)
    queued_tasks.clear()
    swept = sweeper.sweep()
    assert queued_tasks == [("check_plan", lost.id)]
    assert swept.requeued == 1 and swept.failed == 1
    assert PlanCheck.objects.get(id=fresh.id).status == PlanCheck.Status.QUEUED
    dead.refresh_from_db()
    assert dead.status == PlanCheck.Status.FAILED and dead.failure_rule == "pipeline.stalled"
    # Sent again once, not at every sweep.
    queued_tasks.clear()
    sweeper.sweep()
    assert queued_tasks == []


def test_an_app_with_its_own_dockerfile_is_built_by_hand_from_it(owner, team, dummy_backend, queued_tasks):
    service = create_service(team=team, name="first", created_by=owner)
    build = Build.objects.create(service=service, number=1, status=S.LIVE, source_filename="app.zip",
                                 image="hakobune/acme/first:abc", plan={"stack": "dockerfile", "port": 8080,
                                                                        "dockerfile_path": "docker/Dockerfile"})
    commands = {entry.step: entry.command for entry in guided.by_hand(build)}
    assert commands["fetch"].startswith("unzip app.zip -d first")
    assert commands["build"] == "docker build -f docker/Dockerfile -t hakobune/acme/first:abc ."
    assert "Dockerfile.hakobune" not in " ".join(commands.values())


def test_the_plan_of_an_app_with_its_own_dockerfile_says_it_is_built_as_it_is(
        login, owner, team, dummy_backend, queued_tasks, django_capture_on_commit_callbacks):
    client = login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        start(client, source_kind="archive", source=upload_of("dockerfile", "zip"))
    check = PlanCheck.objects.get(service__name="first")
    plan_check.check_plan(check.id)
    check.refresh_from_db()
    assert check.status == PlanCheck.Status.DONE and check.stack == "dockerfile", check.failure_reason
    page = client.get(reverse("services:guided_plan", args=["acme", "first", check.id])).content.decode()
    assert "As your <code>Dockerfile</code> says" in page
    assert "Nothing to install" not in page
