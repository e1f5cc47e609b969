"""The REST API: every endpoint as an owner, a developer, a viewer and an
outsider (404, never 403, for other teams' objects), then what each does."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from hakobune.platform.accounts.models import ApiToken, Membership
from hakobune.platform.accounts.tokens import create_api_token, revoke_api_token
from hakobune.platform.builds.models import Build, BuildLogLine, BuildStatus
from hakobune.platform.builds.state import advance
from hakobune.platform.crypto import decrypt
from hakobune.platform.services.models import EnvVar, Release, Service
from hakobune.platform.services.services import create_service, deploy_service, set_env
from hakobune.worker import tasks
from tests.conftest import read_stream, upload_of

S = BuildStatus
API = "/api/v1"
SVC = f"{API}/teams/acme/services/hello"


@pytest.fixture(autouse=True)
def _quick_streams(settings):
    settings.API_STREAM_MAX_SECONDS = 1
    settings.API_STREAM_POLL_SECONDS = 0.01


def deployed(service, owner, image):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    for current, following in [(S.QUEUED, S.FETCHING), (S.FETCHING, S.DETECTING), (S.DETECTING, S.BUILDING),
                               (S.BUILDING, S.DEPLOYING)]:
        advance(build.id, current, following)
    Build.objects.filter(id=build.id).update(image=image)
    BuildLogLine.objects.create(build=build, text=f"building {image}")
    tasks.deploy_release(build.id)
    service.refresh_from_db()
    return service.live_release


@pytest.fixture
def service(team, owner, dummy_backend, queued_tasks):
    service = create_service(team=team, name="hello", created_by=owner)
    deployed(service, owner, "hakobune/acme/hello:one")
    deployed(service, owner, "hakobune/acme/hello:two")
    set_env(service=service, values={"GREETING": "hi"}, unset=[])
    return service


def bearer(user):
    return {"HTTP_AUTHORIZATION": f"Bearer {create_api_token(user=user, name='test')[1]}"}


@pytest.fixture
def as_(client):
    def call(user, method, path, body=None, **extra):
        headers = bearer(user) if user else {}
        kwargs = {}
        if body is not None:
            kwargs = {"data": json.dumps(body), "content_type": "application/json"}
        return getattr(client, method)(path, **kwargs, **headers, **extra)

    return call


def build_id():
    return Build.objects.filter(service__name="hello").order_by("number").first().id


# (method, path, body, {role: status}); "-" marks the same answer for every team member.
READ = {"owner": 200, "developer": 200, "viewer": 200, "outsider": 404}
WRITE = {"owner": None, "developer": None, "viewer": 403, "outsider": 404}
OWNER_ONLY = {"owner": None, "developer": 403, "viewer": 403, "outsider": 404}

CASES = [
    ("get", f"{API}/teams/acme/members/", None, READ),
    ("post", f"{API}/teams/acme/members/", {"user": "nobody-else", "role": "viewer"}, {**OWNER_ONLY, "owner": 400}),
    ("delete", f"{API}/teams/acme/members/dev/", None, {**OWNER_ONLY, "owner": 204, "developer": 204}),
    ("get", f"{API}/teams/acme/services/", None, READ),
    ("post", f"{API}/teams/acme/services/", {"name": "second"}, {**WRITE, "owner": 201, "developer": 201}),
    ("get", f"{SVC}/", None, READ),
    ("patch", f"{SVC}/", {"instances": 2}, {**WRITE, "owner": 200, "developer": 200}),
    ("delete", f"{SVC}/", {"confirm": "hello"}, {**OWNER_ONLY, "owner": 202}),
    ("get", f"{API}/teams/acme/volumes/", None, READ),
    ("post", f"{API}/teams/acme/volumes/", {"name": "files"}, {**WRITE, "owner": 201, "developer": 201}),
    ("get", f"{API}/teams/acme/disk/", None, READ),
    ("get", f"{SVC}/volumes/", None, READ),
    ("post", f"{SVC}/deploys/", {"ref": "main"}, {**WRITE, "owner": 400, "developer": 400}),
    # Deploy #1 is long finished: members who may deploy hear why it cannot be cancelled.
    ("post", f"{SVC}/builds/1/cancel/", None, {**WRITE, "owner": 409, "developer": 409}),
    ("get", f"{SVC}/releases/", None, READ),
    ("post", f"{SVC}/rollback/", {"release": 1}, {**WRITE, "owner": 202, "developer": 202}),
    ("get", f"{SVC}/env/", None, READ),
    ("put", f"{SVC}/env/", {"set": {"A": "1"}}, {**WRITE, "owner": 200, "developer": 200}),
    ("get", f"{SVC}/processes/", None, READ),
    ("patch", f"{SVC}/processes/", {"web": 2}, {**WRITE, "owner": 200, "developer": 200}),
    ("get", f"{SVC}/jobs/", None, READ),
    ("get", f"{SVC}/logs", None, READ),
    ("get", f"{SVC}/metrics", None, READ),
    ("get", f"{SVC}/events/", None, READ),
    ("get", f"{API}/teams/acme/events/", None, {**OWNER_ONLY, "owner": 200}),
    ("get", f"{API}/builds/{{build}}/", None, READ),
    ("get", f"{API}/builds/{{build}}/log", None, READ),
]


@pytest.mark.parametrize("role", ["owner", "developer", "viewer", "outsider"])
@pytest.mark.parametrize("method,path,body,expected", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_every_endpoint_for_every_role(request, as_, service, developer, viewer, outsider, role, method, path, body,
                                       expected):
    user = request.getfixturevalue(role)
    response = as_(user, method, path.format(build=build_id()), body)
    assert response.status_code == expected[role], response.content[:500]
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["error"]
    if response.status_code == 404:
        assert "team you are not in" in response.json()["error"]


@pytest.mark.parametrize("method,path", [(m, p) for m, p, _, _ in CASES] + [("get", f"{API}/teams/"), ("get", f"{API}/me/")])
def test_without_a_token_nothing_is_answered(as_, service, method, path):
    response = as_(None, method, path.format(build=build_id()), None if method == "get" else {})
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"] and response["WWW-Authenticate"].startswith("Bearer")


# -- tokens ----------------------------------------------------------------------------------


def test_a_token_from_username_and_password(client, owner, team):
    response = client.post(f"{API}/auth/token", {"username": "olivia", "password": "correct horse battery",
                                                 "expires_in_days": 30}, content_type="application/json")
    assert response.status_code == 201
    token = response.json()["token"]
    record = ApiToken.objects.get(user=owner)
    assert token.startswith("hkb_") and token not in record.token_hash and record.prefix == token[:12]
    assert record.expires_at > timezone.now() + timedelta(days=29)
    me = client.get(f"{API}/me/", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert me["username"] == "olivia" and me["teams"] == [{"team": "acme", "role": "owner"}]


def test_a_wrong_password_gets_no_token(client, owner):
    response = client.post(f"{API}/auth/token", {"username": "olivia", "password": "nope"}, content_type="application/json")
    assert response.status_code == 401 and "Wrong username or password" in response.json()["error"]
    assert not ApiToken.objects.exists()


def test_revoked_and_expired_tokens_stop_working(client, owner, team):
    record, token = create_api_token(user=owner, name="laptop")
    assert client.get(f"{API}/teams/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    revoke_api_token(token=record)
    response = client.get(f"{API}/teams/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401 and "revoked" in response.json()["error"]
    record, token = create_api_token(user=owner, name="ci", expires_in_days=1)
    ApiToken.objects.filter(id=record.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(f"{API}/teams/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401 and "expired" in response.json()["error"]
    assert client.get(f"{API}/teams/", HTTP_AUTHORIZATION="Bearer hkb_made-up").status_code == 401


def test_the_portal_page_shows_a_new_token_once_and_revokes_it(login, owner):
    client = login(owner)
    page = client.post("/account/tokens/", {"name": "laptop", "expires_in_days": "30"}).content.decode()
    record = ApiToken.objects.get(user=owner)
    shown = page.split('<code class="token">')[1].split("</code>")[0]
    assert shown.startswith(record.prefix) and len(shown) > 30
    again = client.get("/account/tokens/").content.decode()
    assert shown not in again and record.prefix in again and "laptop" in again
    client.post(f"/account/tokens/{record.id}/revoke/")
    record.refresh_from_db()
    assert record.revoked_at is not None
    assert "API tokens" in client.get("/").content.decode()


def test_nobody_revokes_another_persons_token(login, owner, outsider):
    record, _ = create_api_token(user=outsider, name="theirs")
    assert login(owner).post(f"/account/tokens/{record.id}/revoke/").status_code == 404
    record.refresh_from_db()
    assert record.revoked_at is None


# -- teams and members --------------------------------------------------------------------------


def test_creating_a_team_makes_the_caller_its_owner(as_, outsider, team):
    response = as_(outsider, "post", f"{API}/teams/", {"name": "newco"})
    assert response.status_code == 201 and response.json()["role"] == "owner"
    assert [t["name"] for t in as_(outsider, "get", f"{API}/teams/").json()] == ["newco", "other"]
    taken = as_(outsider, "post", f"{API}/teams/", {"name": "acme"})
    assert taken.status_code == 400 and "taken" in taken.json()["error"]
    bad = as_(outsider, "post", f"{API}/teams/", {"name": "Not OK"})
    assert bad.status_code == 400 and bad.json()["fields"]["name"]


def test_owners_add_members_by_username_or_email_and_the_last_owner_stays(as_, owner, team, outsider, developer):
    outsider.email = "oscar@example.org"
    outsider.save()
    response = as_(owner, "post", f"{API}/teams/acme/members/", {"user": "OSCAR@example.org", "role": "viewer"})
    assert response.status_code == 201 and response.json() == {**response.json(), "username": "oscar", "role": "viewer"}
    assert Membership.objects.get(team=team, user=outsider).role == "viewer"
    response = as_(owner, "delete", f"{API}/teams/acme/members/olivia/")
    assert response.status_code == 400 and "at least one owner" in response.json()["error"]
    assert as_(owner, "delete", f"{API}/teams/acme/members/oscar/").status_code == 204
    assert as_(developer, "delete", f"{API}/teams/acme/members/dev/").status_code == 204  # leaving
    assert list(Membership.objects.filter(team=team).values_list("user__username", flat=True)) == ["olivia"]


# -- services, deploys, builds ----------------------------------------------------------------


def test_a_service_is_created_and_its_settings_changed_through_the_actions(as_, owner, team, dummy_backend, queued_tasks):
    response = as_(owner, "post", f"{API}/teams/acme/services/", {"name": "api", "memory_mb": 512, "port": 9000, "subdir": "web"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "new" and body["memory_mb"] == 512 and body["source"]["subdir"] == "web"
    assert body["url"].startswith("http://api.acme.")
    again = as_(owner, "post", f"{API}/teams/acme/services/", {"name": "api"})
    assert again.status_code == 400 and "already has a service called api" in again.json()["error"]
    wrong = as_(owner, "post", f"{API}/teams/acme/services/", {"name": "x2", "target": "mars"})
    assert wrong.status_code == 400 and "no target called 'mars'" in wrong.json()["error"]
    changed = as_(owner, "patch", f"{API}/teams/acme/services/api/", {"cpu": "1.5", "instances": 3})
    assert changed.status_code == 200 and changed.json()["cpu"] == 1.5 and changed.json()["instances"] == 3
    assert changed.json()["release"] is None  # not live: nothing to restart


def test_patching_a_live_service_makes_a_release(as_, owner, service):
    response = as_(owner, "patch", f"{SVC}/", {"memory_mb": 512, "instances": 2})
    assert response.status_code == 200
    release = Release.objects.get(service=service, number=response.json()["release"])
    assert release.config["memory_mb"] == 512 and release.config["instances"] == 2
    assert release.image == "hakobune/acme/hello:two"


def test_an_archive_deploy_answers_202_with_the_build(as_, client, developer, service, queued_tasks,
                                                      django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{SVC}/deploys/", {"source": upload_of("flask-hello")}, **bearer(developer))
    assert response.status_code == 202, response.content
    body = response.json()
    build = Build.objects.get(id=body["id"])
    assert body["number"] == 3 and body["status"] == "queued" and build.trigger == "api"
    assert body["log_url"].endswith(f"/api/v1/builds/{build.id}/log")
    assert ("admit_builds",) in queued_tasks


def test_a_deploy_that_is_not_an_archive_is_refused_with_words(client, owner, service):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(f"{SVC}/deploys/", {"source": SimpleUploadedFile("app.exe", b"MZ")}, **bearer(owner))
    assert response.status_code == 400 and "not an archive Hakobune takes" in response.json()["error"]


def test_a_git_deploy_points_the_service_at_the_repository(as_, owner, service, settings, queued_tasks):
    settings.SOURCE_HTTP_HOSTS = frozenset({"127.0.0.1:18418"})
    settings.SOURCE_ALLOWED_HOSTS = frozenset({"127.0.0.1:18418"})
    response = as_(owner, "post", f"{SVC}/deploys/", {"git_url": "http://127.0.0.1:18418/app.git", "ref": "dev", "subdir": "api"})
    assert response.status_code == 202, response.json()
    service.refresh_from_db()
    assert (service.source_kind, service.git_url, service.git_ref, service.source_subdir) == (
        "git", "http://127.0.0.1:18418/app.git", "dev", "api")
    build = Build.objects.get(id=response.json()["id"])
    assert build.git_ref == "dev" and build.source_subdir == "api"
    refused = as_(owner, "post", f"{SVC}/deploys/", {"git_url": "http://10.0.0.1/app.git"})
    assert refused.status_code == 400 and refused.json()["error"]


def test_a_build_and_its_log(as_, client, owner, service):
    build = Build.objects.get(service=service, number=1)
    body = as_(owner, "get", f"{API}/builds/{build.id}/").json()
    assert body["status"] == "live" and body["image"] == "hakobune/acme/hello:one" and body["service"] == "hello"
    text = as_(owner, "get", f"{API}/builds/{build.id}/log")
    assert text["Content-Type"].startswith("text/plain") and "building hakobune/acme/hello:one\n" in text.content.decode()


def test_following_a_build_log_streams_events_until_it_ends(as_, owner, service):
    build = Build.objects.get(service=service, number=1)
    response = as_(owner, "get", f"{API}/builds/{build.id}/log?follow=1", HTTP_ACCEPT="text/event-stream")
    assert response["Content-Type"].startswith("text/event-stream")
    stream = read_stream(response)
    line = build.log_lines.get(text__startswith="building")
    assert f"id: {line.id}\ndata: building hakobune/acme/hello:one\n\n" in stream
    assert stream.rstrip().endswith('event: end\ndata: {"status": "live", "reason": ""}')


def test_following_a_running_build_stops_at_the_time_limit(as_, owner, service):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    stream = read_stream(as_(owner, "get", f"{API}/builds/{build.id}/log?follow=1"))
    assert "event: timeout" in stream


def test_another_teams_build_is_not_found(as_, outsider, service):
    assert as_(outsider, "get", f"{API}/builds/{build_id()}/").status_code == 404
    assert as_(outsider, "get", f"{API}/builds/{build_id()}/log?follow=1").status_code == 404


# -- releases, env, logs, metrics ----------------------------------------------------------------


def test_releases_and_a_rollback(as_, developer, service):
    releases = as_(developer, "get", f"{SVC}/releases/").json()
    assert [(r["number"], r["status"]) for r in releases][-2:] == [(2, "superseded"), (1, "superseded")] or \
        [r["number"] for r in releases] == [3, 2, 1]
    response = as_(developer, "post", f"{SVC}/rollback/", {"release": 1})
    assert response.status_code == 202 and response.json()["image"] == "hakobune/acme/hello:one"
    missing = as_(developer, "post", f"{SVC}/rollback/", {"release": 99})
    assert missing.status_code == 400 and "no release v99" in missing.json()["error"]


def test_env_values_are_write_only_and_a_change_makes_a_release(as_, developer, service, dummy_backend):
    body = as_(developer, "get", f"{SVC}/env/").json()
    assert body["env"][0]["key"] == "GREETING" and body["env"][0]["value"] != "hi"
    response = as_(developer, "put", f"{SVC}/env/", {"set": {"DATABASE_URL": "postgres://x"}, "unset": ["GREETING"]})
    assert response.status_code == 200
    assert [v["key"] for v in response.json()["env"]] == ["DATABASE_URL"]
    assert "postgres://x" not in response.content.decode()
    stored = EnvVar.objects.get(service=service, key="DATABASE_URL")
    assert stored.value_encrypted != "postgres://x" and decrypt(stored.value_encrypted) == "postgres://x"
    release = Release.objects.get(service=service, number=response.json()["release"])
    tasks.start_release(release.id)
    spec = [call for name, call in dummy_backend.calls if name == "deploy"][-1]
    assert spec.env == {"DATABASE_URL": "postgres://x"}
    reserved = as_(developer, "put", f"{SVC}/env/", {"set": {"PORT": "1"}})
    assert reserved.status_code == 400 and "PORT" in reserved.json()["error"]
    bad = as_(developer, "put", f"{SVC}/env/", {"set": {"1X": "1"}})
    assert bad.status_code == 400 and "do not start with a digit" in bad.json()["error"]


def test_logs_with_since_and_follow(as_, viewer, service):
    body = as_(viewer, "get", f"{SVC}/logs").json()
    assert body["lines"] == [{"timestamp": None, "instance": "dummy", "text": "hello is running"}]
    # The dummy backend's lines have no time, so none is after a given time.
    assert as_(viewer, "get", f"{SVC}/logs?since=10m").json()["lines"] == []
    bad = as_(viewer, "get", f"{SVC}/logs?since=yesterday")
    assert bad.status_code == 400 and "duration like 10m" in bad.json()["error"]
    stream = read_stream(as_(viewer, "get", f"{SVC}/logs?follow=1"))
    assert stream.startswith('data: {"timestamp": null, "instance": "dummy", "text": "hello is running"}\n\n')
    assert stream.count("hello is running") == 1 and "event: timeout" in stream


def test_metrics_are_the_backends_current_sample(as_, viewer, service, dummy_backend):
    dummy_backend.options["metrics"] = {"cpu_percent": 12.5, "memory_bytes": 1048576}
    body = as_(viewer, "get", f"{SVC}/metrics?since=1h&step=5m").json()
    assert body["history"] is False and body["step"] == 300
    assert {(m["name"], m["value"]) for m in body["samples"]} == {("cpu_percent", 12.5), ("memory_bytes", 1048576.0)}
    assert as_(viewer, "get", f"{SVC}/metrics?step=0").status_code == 400


def test_logs_of_a_service_never_deployed_say_so(as_, owner, team, dummy_backend):
    create_service(team=team, name="fresh", created_by=owner)
    response = as_(owner, "get", f"{API}/teams/acme/services/fresh/logs")
    assert response.status_code == 409 and "Deploy it first" in response.json()["error"]


def test_an_unknown_api_address_is_a_json_404(as_, owner):
    response = as_(owner, "get", f"{API}/nothing/here")
    assert response.status_code == 404 and "/api/v1/docs/" in response.json()["error"]


def test_the_docs_page_serves_its_assets_itself(client):
    page = client.get(f"{API}/docs/").content.decode()
    assert "swagger-ui" in page and "cdn" not in page.lower() and "//unpkg" not in page
    assert client.get(f"{API}/schema/").status_code == 200


def test_the_env_card_on_the_service_page(login, owner, viewer, service):
    client = login(owner)
    client.post("/t/acme/hello/env/", {"key": "SECRET", "value": "s3cret"})
    page = client.get("/t/acme/hello/").content.decode()
    assert "SECRET" in page and "s3cret" not in page
    assert decrypt(EnvVar.objects.get(key="SECRET").value_encrypted) == "s3cret"
    client.post("/t/acme/hello/env/", {"unset": "SECRET"})
    assert not EnvVar.objects.filter(key="SECRET").exists()
    assert login(viewer).post("/t/acme/hello/env/", {"key": "X", "value": "1"}).status_code == 403


def test_a_member_reads_why_the_router_left_the_services_route_out(as_, owner, viewer, outsider, service):
    from hakobune.platform.services.housekeeping import _note_route_problems

    assert as_(viewer, "get", f"{SVC}/").json()["route_problem"] == ""
    # The reconciler's last look: the router refused this service's route.
    problem = "The host name www.example.com is served by another service."
    _note_route_problems(service.target, [service], {service.hostname: problem})
    assert as_(viewer, "get", f"{SVC}/").json()["route_problem"] == problem
    (listed,) = as_(owner, "get", f"{API}/teams/acme/services/").json()
    assert listed["route_problem"] == problem
    assert as_(outsider, "get", f"{SVC}/").status_code == 404
    # Routed again at the next look: the problem is gone.
    _note_route_problems(service.target, [Service.objects.get(id=service.id)], {})
    assert as_(owner, "get", f"{SVC}/").json()["route_problem"] == ""


# -- what a newcomer sends ----------------------------------------------------------------------


def test_env_values_keep_their_spaces_and_newlines_byte_for_byte(as_, developer, service, login, owner):
    values = {"TRAILING": "ends in a space ", "LEADING": "  two before", "NEWLINE": "line\n", "PEM": "-----BEGIN-----\nabc\n-----END-----\n"}
    response = as_(developer, "put", f"{SVC}/env/", {"set": values})
    assert response.status_code == 200
    for key, value in values.items():
        assert decrypt(EnvVar.objects.get(service=service, key=key).value_encrypted) == value
    # The portal's form keeps them too.
    login(owner).post("/t/acme/hello/env/", {"key": "FROM_PORTAL", "value": " spaced out \n"})
    assert decrypt(EnvVar.objects.get(service=service, key="FROM_PORTAL").value_encrypted) == " spaced out \n"


def test_a_field_the_endpoint_does_not_take_is_refused_by_name(as_, developer, owner, service):
    before = {v.key: v.value_encrypted for v in EnvVar.objects.filter(service=service)}
    response = as_(developer, "put", f"{SVC}/env/", {"HELLO": "x"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and list(body["fields"]) == ["HELLO"]
    assert "'HELLO'" in body["error"] and "set, unset, secrets" in body["error"]
    assert {v.key: v.value_encrypted for v in EnvVar.objects.filter(service=service)} == before
    # The same on every writable endpoint, and nothing is done.
    for method, path, body in [
        ("patch", f"{SVC}/", {"instances": 2, "replicas": 3}),
        ("post", f"{API}/teams/acme/services/", {"name": "second", "replicas": 2}),
        ("post", f"{SVC}/rollback/", {"release": 1, "to": 1}),
        ("put", f"{SVC}/traffic/", {"percent": {"1": 100}}),
        ("post", f"{API}/teams/", {"name": "beta", "owner": "olivia"}),
        ("post", f"{API}/teams/acme/members/", {"user": "dev", "role": "viewer", "admin": True}),
        ("post", f"{SVC}/deploys/", {"git": "https://example.org/app.git"}),
    ]:
        refused = as_(owner, method, path, body)
        assert refused.status_code == 400, (path, refused.content)
        assert "does not take the field" in refused.json()["error"], path
    service.refresh_from_db()
    assert service.instances != 2
    assert not service.team.services.filter(name="second").exists()


def test_an_endpoint_that_takes_no_body_refuses_one_with_fields(as_, owner, service):
    build = deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner)
    number = build.number
    for method, path, takes in [
        ("post", f"{SVC}/builds/{number}/cancel/", "no fields"),
        ("delete", f"{API}/teams/acme/log-drain/", "no fields"),
        # Deleting a service takes one field: its name, typed to confirm.
        ("delete", f"{SVC}/", "confirm"),
    ]:
        refused = as_(owner, method, path, {"reason": "typo", "force": True})
        assert refused.status_code == 400, (path, refused.content)
        body = refused.json()
        assert sorted(body["fields"]) == ["force", "reason"]
        assert f"does not take the field 'force'; it takes: {takes}." in body["error"], path
    # Nothing was done: the deploy is not cancelled, the service is not being deleted.
    service.refresh_from_db()
    build.refresh_from_db()
    assert build.status != BuildStatus.CANCELLED
    assert Service.objects.get(id=service.id).desired_state != "deleted"


def test_an_upload_named_like_an_archive_that_is_not_one_is_refused_in_words(client, owner, service):
    page = b"<!doctype html><title>Download</title>\n" * 20
    from django.core.files.uploadedfile import SimpleUploadedFile

    builds = service.builds.count()
    response = client.post(f"{SVC}/deploys/", {"source": SimpleUploadedFile("app.zip", page)}, **bearer(owner))
    assert response.status_code == 400, response.content
    assert "app.zip is named like an archive, but it is not one" in response.json()["error"]
    assert service.builds.count() == builds
