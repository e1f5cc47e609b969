"""Every fixture app deployed for real: uploaded as an archive, built by a real
Celery worker on the real Docker Engine, started by the local runtime and
answered through the tests' Caddy. The apps that must fail, fail with their
own reason.

All deploys go to one team and are queued at once (the worker builds two at a
time); the tests then read what each deploy did."""

import secrets
import time
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from hakobune.platform.accounts.services import create_team
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.models import Service
from hakobune.runtime.base import ServiceRef
from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import APPS_DIR, archive_of, upload_of

from tests.support.infrastructure import get_through_router, remove_team_containers_and_network, wait_for_build

# The database mark makes pytest-django create the test database the worker
# shares; each test only reads what the module's deploys recorded.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# fixture app -> what its answer to GET / contains
WORKING = {
    "flask-hello": "Hello from Hakobune!",
    "django-static": "hello from django-static",
    "fastapi": "hello from fastapi",
    "python-uv": "hello from python-uv",
    "python-poetry": "hello from python-poetry",
    "node-express": "hello from node-express",
    "node-pnpm": "hello from node-pnpm",
    "static-site": "hello from static-site",
    "vite-static": "hello from vite-static",
    "go-http": "hello from go-http",
    "dockerfile": "hello from dockerfile",
    "procfile-custom": "hello from procfile-custom",
    "monorepo": "hello from monorepo (services/api)",
}
# deploy -> words its failure reason must contain: the deploy doctor's
# diagnosis of each way a beginner's app fails (platform/diagnoses.py).
FAILING = {
    "no-app": ["could not tell what kind of app this is", "README.md", "Adding index.html", "\"static site\"",
               "requirements.txt", "package.json", "go.mod"],
    "not-an-archive": ["not an archive Hakobune can read"],
    "procfile-empty": ["The Procfile names no process"],
    # It runs, but not where the router looks: the port it did open is named.
    "listens-on-localhost": ["listens on 127.0.0.1 port 8080", "0.0.0.0"],
    "listens-on-other-port": ["listens on port 5000", "port 8080", "$PORT"],
    # It listens: the failure names the answer, not the port.
    "health-check-fails": ["answered its health check (/) with HTTP 500",
                           "jinja2.exceptions.TemplateNotFound: index.html"],
    "exits-at-start": ["stopped while starting", "exit code 3", "DATABASE_URL is not set"],
    "module-missing": ["imports yaml", "PyYAML", "requirements.txt"],
    "out-of-memory": ["ran out of memory while starting", "128 MiB", "Give it 256 MiB"],
    "install-fails": ["Installing your app's dependencies failed", "pip install"],
    # A build step past the memory a build may use: said as such, with the setting that gives more.
    "build-out-of-memory": ["The build ran out of memory", "exit code 137", "BUILD_MEMORY_MB"],
    # Django's tutorial project: the database file it could not write, and why.
    "django-tutorial": ["could not write its SQLite database, db.sqlite3", "unable to open database file",
                        "read-only", "PostgreSQL add-on", "migrate"],
    # The same project with ALLOWED_HOSTS naming another host than its own.
    "django-allowed-hosts": ["refused the address it is served at", "ALLOWED_HOSTS"],
}
# Sizes other than the default, by app.
SIZES = {"out-of-memory": {"memory_mb": 128}}
# Apps of workers only: live, with nothing routed to them.
NOT_ROUTED = {"procfile-without-web": "worker of procfile-without-web started"}
BUILD_TIMEOUT = 1200


@dataclass
class Outcome:
    status: str
    failure_reason: str
    log: str
    hostname: str
    plan: dict
    responses: dict  # path -> (status code, body)
    runtime_log: str = ""  # what its instances printed (the apps not routed)


def _runtime_log(service, expected, timeout=30):
    """The service's runtime log once `expected` is in it (or after `timeout`)."""
    ref = ServiceRef(service.team.name, service.name)
    deadline = time.monotonic() + timeout
    while True:
        lines = backend_for(service).logs(ref)
        text = "\n".join(f"{line.process} {line.instance}: {line.text}" for line in lines)
        if expected in text or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def _upload(app):
    if app == "not-an-archive":
        # Named like an archive, but a page saved from the browser.
        return SimpleUploadedFile("app.zip", b"<!doctype html><title>Download</title>\n" * 20,
                                  content_type="application/zip")
    if app == "django-allowed-hosts":
        settings_py = (APPS_DIR / "django-tutorial" / "mysite" / "settings.py").read_text()
        assert "ALLOWED_HOSTS = ['*']" in settings_py
        # The host name the person meant to serve it at, not the one it is served at. (Left empty, as
        # startproject leaves it, DEBUG lets in *.localhost: the tests' BASE_DOMAIN.)
        extra = {"mysite/settings.py": settings_py.replace("ALLOWED_HOSTS = ['*']", "ALLOWED_HOSTS = ['mysite.example.com']")}
        return SimpleUploadedFile("mysite.zip", archive_of("django-tutorial", "zip", extra=extra, folder="mysite"),
                                  content_type="application/zip")
    if app == "install-fails":
        extra = {"requirements.txt": "flask==3.1.3\nhakobune-no-such-package-anywhere==0.0.1\n"}
        data = archive_of("flask-hello", extra=extra, folder="install-fails")
        return SimpleUploadedFile("install-fails.tar.gz", data, content_type="application/octet-stream")
    return upload_of(app)


@pytest.fixture(scope="module")
def outcomes(django_db_blocker, worker, router, docker_client):
    team_name = f"fx{secrets.token_hex(3)}"
    apps = list(WORKING) + list(FAILING) + list(NOT_ROUTED)
    results: dict[str, Outcome] = {}
    with django_db_blocker.unblock():
        owner = get_user_model().objects.create_user(username=f"deployer-{team_name}", password="x")
        team = create_team(name=team_name, owner=owner)
        # One team holds an app of every stack at once: more than a default quota.
        TeamPolicy.objects.create(team=team, max_services=len(apps), max_cpu=len(apps), max_memory_mb=len(apps) * 1024)
        builds = {}
        for app in apps:
            settings = dict(SIZES.get(app, {}))
            if app == "monorepo" and hasattr(Service, "source_subdir"):
                settings["source_subdir"] = "services/api"
            service = create_service(team=team, name=app, created_by=owner, **settings)
            upload = _upload(app)
            if app == "monorepo" and "source_subdir" not in settings:
                # No folder setting on this version of the portal: upload the subfolder.
                data = archive_of("monorepo/services/api", folder="api")
                upload = SimpleUploadedFile("api.tar.gz", data, content_type="application/octet-stream")
            builds[app] = deploy_service(service=service, source_file=upload, created_by=owner)
        for app, build in builds.items():
            build = wait_for_build(build, timeout=BUILD_TIMEOUT)
            service = build.service
            responses, runtime_log = {}, ""
            if build.status == "live" and app in NOT_ROUTED:
                response = get_through_router(service.hostname, "/")
                responses["/"] = (response.status_code, response.text)
                runtime_log = _runtime_log(service, NOT_ROUTED[app])
            elif build.status == "live":
                for path in ("/", "/static/hello.css") if app == "django-static" else ("/",):
                    response = get_through_router(service.hostname, path)
                    responses[path] = (response.status_code, response.text)
            results[app] = Outcome(
                status=build.status,
                failure_reason=build.failure_reason,
                log="\n".join(build.log_lines.values_list("text", flat=True)),
                hostname=service.hostname,
                plan=build.plan or {},
                responses=responses,
                runtime_log=runtime_log,
            )
    yield results
    remove_team_containers_and_network(docker_client, team_name)
    with django_db_blocker.unblock():
        get_user_model().objects.filter(username=f"deployer-{team_name}").delete()


@pytest.mark.parametrize("app", list(WORKING))
def test_a_working_fixture_app_answers_through_the_router(outcomes, app):
    outcome = outcomes[app]
    assert outcome.status == "live", f"{outcome.failure_reason}\n{outcome.log[-4000:]}"
    status, body = outcome.responses["/"]
    assert status == 200, body[:500]
    assert WORKING[app] in body


def test_django_static_files_are_collected_and_served(outcomes):
    status, body = outcomes["django-static"].responses["/static/hello.css"]
    assert status == 200 and "hello from django-static's stylesheet" in body


@pytest.mark.parametrize("app, stacks", [
    ("go-http", {"stack": "static", "build_stack": "go"}),
    ("vite-static", {"stack": "static", "build_stack": "node"}),
    ("node-express", {"stack": "node", "build_stack": ""}),
])
def test_the_stack_versions_are_recorded_on_the_build(outcomes, app, stacks):
    plan = outcomes[app].plan
    for key, value in stacks.items():
        assert plan[key] == value
    assert plan["stack_version"]
    if stacks["build_stack"]:
        assert plan["build_stack_version"]


def test_a_procfile_of_workers_only_runs_its_worker_and_routes_nothing(outcomes):
    outcome = outcomes["procfile-without-web"]
    assert outcome.status == "live", f"{outcome.failure_reason}\n{outcome.log[-4000:]}"
    status, body = outcome.responses["/"]
    assert status != 200 and "hello from procfile-without-web" not in body
    assert "worker hakobune-" in outcome.runtime_log
    assert NOT_ROUTED["procfile-without-web"] in outcome.runtime_log


def test_the_release_phase_runs_before_the_release_and_its_output_is_in_the_deploy_log(outcomes):
    log = outcomes["procfile-custom"].log
    assert "Release phase: `echo \"the release phase of procfile-custom ran\"`" in log
    assert "the release phase of procfile-custom ran" in log.split("Release phase:", 1)[1]
    assert log.index("Release phase done") < log.index("Starting v1")


@pytest.mark.parametrize("app", list(FAILING))
def test_a_failing_fixture_app_fails_with_its_reason(outcomes, app):
    outcome = outcomes[app]
    assert outcome.status == "failed", outcome.log[-2000:]
    for words in FAILING[app]:
        assert words in outcome.failure_reason, outcome.failure_reason


def test_the_plan_of_a_project_with_a_sqlite_file_says_where_its_data_would_go(outcomes):
    outcome = outcomes["django-tutorial"]
    assert outcome.plan["sqlite_files"] == ["db.sqlite3"]
    assert "note: This app keeps its data in a SQLite file (db.sqlite3)" in outcome.log
    assert "PostgreSQL add-on" in outcome.log.split("keeps its data in a SQLite file", 1)[1]


def test_django_refusing_its_own_address_is_told_the_hostname_to_allow(outcomes):
    outcome = outcomes["django-allowed-hosts"]
    assert f'ALLOWED_HOSTS = ["{outcome.hostname}"]' in outcome.failure_reason


def test_a_procfile_of_workers_only_is_said_to_run_without_a_url(outcomes):
    assert "no `web` process: the app runs without a URL" in outcomes["procfile-without-web"].log
