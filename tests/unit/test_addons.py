"""Add-ons through the API, as the team's members use them: creating one (a
worker starts it), who may, the quota, attaching it to a service (a new
release whose environment has the URL, never the service's stored
variables), and the password never shown."""

import json
from json import dumps

import pytest

from hakobune.platform.addons.models import MASK, AddOn
from hakobune.platform.crypto import decrypt
from hakobune.platform.governance.models import TeamPolicy
from hakobune.platform.services.models import EnvVar, Release, Service
from hakobune.platform.services.releases import deploy_spec
from hakobune.platform.services.services import create_service, set_env
from tests.unit.test_api import bearer, deployed

API = "/api/v1/teams/acme"


@pytest.fixture
def web(team, owner, dummy_backend, queued_tasks):
    service = create_service(team=team, name="web", created_by=owner)
    deployed(service, owner, "hakobune/acme/web:one")
    return service


def created(as_, user, kind="postgres", name="db"):
    response = as_(user, "post", f"{API}/addons/", {"kind": kind, "name": name})
    assert response.status_code == 201, response.content
    return AddOn.objects.get(team__name="acme", name=name)


def test_a_developer_creates_a_postgres_add_on_and_a_worker_is_asked_to_start_it(as_, developer, web, queued_tasks):
    response = as_(developer, "post", f"{API}/addons/", {"kind": "postgres", "name": "db"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "provisioning" and body["env_key"] == "DATABASE_URL"
    assert body["url"] == f"postgres://app:{MASK}@db:5432/db"
    assert body["volume"] == "hakobune-acme-addon-db"
    addon = AddOn.objects.get(name="db")
    assert ("provision_addon", addon.id) in queued_tasks
    password = decrypt(addon.password_encrypted)
    assert len(password) >= 24 and password not in addon.password_encrypted


def test_the_name_defaults_to_the_kind_and_redis_gets_redis_url(as_, owner, web):
    response = as_(owner, "post", f"{API}/addons/", {"kind": "redis"})
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "redis"
    assert response.json()["url"] == f"redis://:{MASK}@redis:6379/0"


@pytest.mark.parametrize("body,words", [
    ({"kind": "mysql", "name": "db"}, "kind"),
    ({"kind": "postgres", "name": "Bad_Name"}, "cannot name an add-on"),
    ({"kind": "postgres", "name": "web"}, "has a service called web"),
    ({"kind": "postgres", "name": "db", "size": "huge"}, "size"),
])
def test_bad_requests_are_refused_in_words_and_nothing_is_made(as_, owner, web, body, words):
    response = as_(owner, "post", f"{API}/addons/", body)
    assert response.status_code == 400, response.content
    assert words in response.json()["error"]
    assert not AddOn.objects.exists()


def test_a_second_add_on_of_the_same_name_is_refused(as_, owner, web):
    created(as_, owner)
    response = as_(owner, "post", f"{API}/addons/", {"kind": "redis", "name": "db"})
    assert response.status_code == 400
    assert "already has an add-on called db" in response.json()["error"]


def test_a_service_cannot_take_an_add_ons_name(as_, owner, web):
    created(as_, owner)
    refused = as_(owner, "post", "/api/v1/teams/acme/services/", {"name": "db"})
    assert refused.status_code == 400 and "has an add-on called db" in refused.json()["error"]


def test_viewers_read_but_cannot_create_and_outsiders_see_nothing(as_, owner, viewer, outsider, web):
    created(as_, owner)
    assert as_(viewer, "get", f"{API}/addons/").json()[0]["name"] == "db"
    assert as_(viewer, "get", f"{API}/addons/db/").status_code == 200
    refused = as_(viewer, "post", f"{API}/addons/", {"kind": "redis", "name": "cache"})
    assert refused.status_code == 403 and "Viewers cannot create add-ons" in refused.json()["error"]
    assert as_(viewer, "post", f"{API}/services/web/addons/", {"addon": "db"}).status_code == 403
    for method, path in [("get", f"{API}/addons/"), ("get", f"{API}/addons/db/"),
                         ("post", f"{API}/services/web/addons/"), ("delete", f"{API}/addons/db/")]:
        assert as_(outsider, method, path, {"addon": "db"} if method == "post" else None).status_code == 404


def test_add_ons_count_in_the_quota_and_a_full_team_is_refused_with_a_sentence(as_, owner, team, web, settings):
    settings.ADDON_MEMORY_MB = 256
    used = as_(owner, "get", "/api/v1/teams/").json()[0]["quota"]["memory_mb"]["used"]
    created(as_, owner)
    after = as_(owner, "get", "/api/v1/teams/").json()[0]["quota"]["memory_mb"]["used"]
    assert after == used + 256
    TeamPolicy.objects.update_or_create(team=team, defaults={"max_memory_mb": after + 100})
    refused = as_(owner, "post", f"{API}/addons/", {"kind": "redis", "name": "cache"})
    assert refused.status_code == 400
    assert "MiB of memory at once" in refused.json()["error"] and "the add-on needs 256" in refused.json()["error"]
    assert not AddOn.objects.filter(name="cache").exists()


def test_attaching_makes_a_release_whose_environment_has_the_url_not_the_stored_variables(as_, developer, web):
    addon = created(as_, developer)
    before = web.live_release.number
    response = as_(developer, "post", f"{API}/services/web/addons/", {"addon": "db"})
    assert response.status_code == 200, response.content
    assert response.json()["services"] == ["web"]
    release = Release.objects.get(service=web, number=response.json()["release"])
    assert release.number == before + 1 and "Attach db" in release.description
    password = decrypt(addon.password_encrypted)
    env = deploy_spec(web, release).env
    assert env["DATABASE_URL"] == f"postgres://app:{password}@db:5432/db"
    assert not EnvVar.objects.filter(service=web).exists()
    for path in (f"{API}/addons/", f"{API}/addons/db/", f"{API}/services/web/env/"):
        assert password not in as_(developer, "get", path).content.decode()

    detached = as_(developer, "delete", f"{API}/services/web/addons/db/")
    assert detached.status_code == 200 and detached.json()["services"] == []
    release = Release.objects.get(service=web, number=detached.json()["release"])
    assert "DATABASE_URL" not in deploy_spec(web, release).env


def test_attaching_is_refused_when_the_service_sets_the_variable_or_runs_elsewhere(as_, owner, web):
    created(as_, owner)
    set_env(service=web, values={"DATABASE_URL": "postgres://elsewhere/db"}, unset=[])
    refused = as_(owner, "post", f"{API}/services/web/addons/", {"addon": "db"})
    assert refused.status_code == 400 and "sets DATABASE_URL itself" in refused.json()["error"]
    set_env(service=web, values={}, unset=["DATABASE_URL"])
    Service.objects.filter(id=web.id).update(target="cloudrun")
    refused = as_(owner, "post", f"{API}/services/web/addons/", {"addon": "db"})
    assert refused.status_code == 400
    assert "runs on this host only" in refused.json()["error"] and "administrator" in refused.json()["error"]


def test_deleting_needs_no_service_attached_and_a_confirmation_by_name(as_, owner, developer, web, queued_tasks):
    addon = created(as_, owner)
    as_(owner, "post", f"{API}/services/web/addons/", {"addon": "db"})
    assert as_(developer, "delete", f"{API}/addons/db/", {"confirm": "db"}).status_code == 403
    refused = as_(owner, "delete", f"{API}/addons/db/", {"confirm": "db"})
    assert refused.status_code == 400 and "attached to web; detach it first" in refused.json()["error"]
    as_(owner, "delete", f"{API}/services/web/addons/db/")
    unconfirmed = as_(owner, "delete", f"{API}/addons/db/")
    assert unconfirmed.status_code == 400 and "deletes its data for good" in unconfirmed.json()["error"]
    assert as_(owner, "delete", f"{API}/addons/db/", {"confirm": "other"}).status_code == 400
    assert ("remove_addon", addon.id) not in queued_tasks
    accepted = as_(owner, "delete", f"{API}/addons/db/", {"confirm": "db"})
    assert accepted.status_code == 202 and accepted.json()["status"] == "deleting"
    assert ("remove_addon", addon.id) in queued_tasks

    # Each step is on the team's audit log, with who did it.
    from hakobune.platform.observability.models import Event

    done = list(Event.objects.filter(team__name="acme", kind__startswith="addon.").order_by("id")
                .values_list("kind", "service_name", "actor_label"))
    assert done == [("addon.created", "", owner.username), ("addon.attached", "web", owner.username),
                    ("addon.detached", "web", owner.username), ("addon.deleted", "", owner.username)]


class _PortalSession:
    """The CLI's HTTP session, answered by this test's portal (Django's test client)."""

    def __init__(self, client, user, capture):
        self.client, self.headers, self.capture = client, bearer(user), capture

    def request(self, method, address, json=None, timeout=None, **kwargs):
        path = address.split("://", 1)[1].split("/", 1)[1]
        body = {} if json is None else {"data": dumps(json), "content_type": "application/json"}
        with self.capture(execute=True):
            return self.client.generic(method, f"/{path}", **body, **self.headers)


def hakobune(client, user, capture, *argv):
    from hakobune import cli

    api = cli.Api("http://portal.test")
    api.session = _PortalSession(client, user, capture)
    args = cli.build_parser().parse_args(["addons", "--team", "acme", *argv])
    original = cli.api_from_config
    cli.api_from_config = lambda: api
    try:
        return args.func(args)
    finally:
        cli.api_from_config = original


def test_the_cli_creates_attaches_lists_detaches_and_deletes(client, owner, web, capsys,
                                                              django_capture_on_commit_callbacks):
    from hakobune import cli

    run = lambda *argv: hakobune(client, owner, django_capture_on_commit_callbacks, *argv)  # noqa: E731
    assert run("create", "postgres", "--name", "db", "--service", "web") == cli.EXIT_OK
    said = capsys.readouterr().out
    assert f"postgres://app:{MASK}@db:5432/db" in said and "Attached db to web as DATABASE_URL; v2" in said
    run("list")
    listed = capsys.readouterr().out
    assert "db  postgres  provisioning" in listed and "DATABASE_URL → web" in listed
    with pytest.raises(cli.CliError, match="attached to web; detach it first"):
        run("delete", "db", "--confirm", "db")
    run("detach", "db", "--service", "web")
    assert "Detached db from web; v3" in capsys.readouterr().out
    with pytest.raises(cli.CliError, match="deletes its data for good"):
        run("delete", "db")
    run("delete", "db", "--confirm", "db")
    assert "db is being deleted" in capsys.readouterr().out
    assert AddOn.objects.get(name="db").status == AddOn.Status.DELETING
    password = decrypt(AddOn.objects.get(name="db").password_encrypted)
    assert password not in said


def test_the_portal_page_lists_add_ons_and_lets_each_role_do_what_it_may(login, client, owner, viewer, outsider, web,
                                                                          django_capture_on_commit_callbacks):
    login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/teams/acme/addons/new/", {"kind": "redis", "name": "cache"})
        client.post("/teams/acme/addons/cache/attach/", {"service": "web"})
    page = client.get("/teams/acme/addons/").content.decode()
    assert "cache" in page and "Redis" in page and f"redis://:{MASK}@cache:6379/0" in page
    assert "REDIS_URL" in page and "Delete with its data" in page
    password = decrypt(AddOn.objects.get(name="cache").password_encrypted)
    assert password not in page
    refused = client.post("/teams/acme/addons/cache/delete/", {"confirm": "cache"}, follow=True).content.decode()
    assert "attached to web; detach it first" in refused
    client.post("/teams/acme/addons/cache/detach/web/")
    client.post("/teams/acme/addons/cache/delete/", {"confirm": "cache"})
    assert AddOn.objects.get(name="cache").status == AddOn.Status.DELETING

    login(viewer)
    page = client.get("/teams/acme/addons/").content.decode()
    assert "cache" in page and "Create an add-on" not in page and "Delete with its data" not in page
    assert client.post("/teams/acme/addons/new/", {"kind": "postgres", "name": "db"}).status_code == 403
    assert not AddOn.objects.filter(name="db").exists()

    login(outsider)
    assert client.get("/teams/acme/addons/").status_code == 404
    assert client.post("/teams/acme/addons/cache/delete/", {"confirm": "cache"}).status_code == 404


def test_an_add_on_whose_team_network_block_is_held_on_the_engine_takes_another(team, owner, monkeypatch):
    # The add-on is the team's first thing on this engine, and another network there
    # (another Hakobune sharing the range) holds the team's block: it takes another, as a release does.
    import ipaddress
    from types import SimpleNamespace

    from hakobune.platform.accounts import networks
    from hakobune.platform.addons import actions
    from hakobune.runtime.base import RuntimeBackendError

    addon = AddOn.objects.create(team=team, kind="postgres", name="db", password_encrypted="x", volume="v",
                                 cpu=0.25, memory_mb=256, status=AddOn.Status.PROVISIONING)
    first = networks.subnet_of(team) or networks.claim(team)
    tried = []

    class Runtime:
        def provision(self, spec, ready_timeout):
            tried.append(spec.network_subnet)
            if len(tried) == 1:
                error = RuntimeBackendError("the Docker Engine could not make the team network: Pool overlaps")
                # The engine lists the block the other network holds.
                error.subnet_taken = spec.network_subnet
                error.engine_subnets = [ipaddress.ip_network(spec.network_subnet)]
                raise error
            return SimpleNamespace(container_id="c0ffee")

    monkeypatch.setattr(actions, "_runtime", Runtime)
    monkeypatch.setattr(actions, "decrypt", lambda value: "secret")
    monkeypatch.setattr("hakobune.platform.builds.images.local_builder", lambda: SimpleNamespace(
        ensure_stack=lambda kind, log: SimpleNamespace(ref="hakobune/stack-postgres:bookworm", version="15")))
    actions.provision(addon.id)
    addon.refresh_from_db()
    assert addon.status == AddOn.Status.READY, addon.status_detail
    assert tried[0] == str(first) and tried[1] != tried[0] and tried[1] == networks.subnet_of(team)


EXTERNAL = "postgres://app:s3cret-pass@10.20.0.5:5432/shop?sslmode=require"


@pytest.fixture
def staff(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="sam", password="x", is_staff=True)


def test_staff_enter_an_external_database_that_a_cloud_run_service_gets_as_its_url(
    login, client, staff, owner, developer, web, as_, queued_tasks
):
    # Only staff may enter one, on the team's Quotas page.
    login(developer)
    assert client.post("/quotas/t/acme/external-addons/", {"kind": "postgres", "name": "shop",
                                                           "url": EXTERNAL}).status_code == 403
    login(staff)
    page = client.get("/quotas/t/acme/").content.decode()
    assert "External databases" in page and "Hakobune does not create them" in page
    for bad in ("mysql://u:p@host/db", "postgres:///nohost", "redis://u:p@host/0", "not a url"):
        said = client.post("/quotas/t/acme/external-addons/", {"kind": "postgres", "name": "shop", "url": bad},
                           follow=True).content.decode()
        assert "is given by its URL" in said
    assert not AddOn.objects.exists()
    client.post("/quotas/t/acme/external-addons/", {"kind": "postgres", "name": "shop", "url": EXTERNAL})
    shop = AddOn.objects.get(name="shop")
    assert shop.external and shop.status == AddOn.Status.READY and shop.memory_mb == 0
    assert ("provision_addon", shop.id) not in queued_tasks  # nothing of it runs here
    assert EXTERNAL not in shop.external_url_encrypted
    page = client.get("/quotas/t/acme/").content.decode()
    assert f"postgres://app:{MASK}@10.20.0.5:5432/shop" in page and "s3cret-pass" not in page

    # The team sees it as External, with the password masked, and attaches it to its service on Cloud Run.
    Service.objects.filter(id=web.id).update(target="cloudrun")
    web.refresh_from_db()
    listed = as_(developer, "get", f"{API}/addons/").json()
    assert [(a["name"], a["external"], a["cpu"], a["memory_mb"]) for a in listed] == [("shop", True, 0.0, 0)]
    assert "s3cret-pass" not in json.dumps(listed)
    attached = as_(developer, "post", f"{API}/services/web/addons/", {"addon": "shop"})
    assert attached.status_code == 200, attached.content
    from hakobune.platform.services.releases import env_of

    assert env_of(web)["DATABASE_URL"] == EXTERNAL
    login(developer)
    page = client.get("/teams/acme/addons/").content.decode()
    assert "External" in page and "not on this host" in page and "s3cret-pass" not in page
    assert "Hakobune does not create Cloud SQL databases" in page

    # An add-on of this host is still refused there, saying where the external one comes from.
    created(as_, owner, kind="redis", name="cache")
    refused = as_(owner, "post", f"{API}/services/web/addons/", {"addon": "cache"})
    assert refused.status_code == 400 and "enters an external database's URL for the team" in refused.json()["error"]

    # Removing it forgets the URL only, once detached and confirmed by name; the reconciler never looks for it.
    as_(developer, "delete", f"{API}/services/web/addons/shop/")
    unconfirmed = as_(owner, "delete", f"{API}/addons/shop/")
    assert unconfirmed.status_code == 400 and "the database itself is not touched" in unconfirmed.json()["error"]
    removed = as_(owner, "delete", f"{API}/addons/shop/", {"confirm": "shop"})
    assert removed.status_code == 202 and removed.json()["external"] is True
    assert not AddOn.objects.filter(name="shop").exists()
    assert ("remove_addon", shop.id) not in queued_tasks


def test_a_deploy_waits_for_its_add_ons_still_starting_before_its_release_phase(as_, owner, web, settings):
    from hakobune.platform.services.releases import wait_for_addons

    db = created(as_, owner)
    cache = created(as_, owner, kind="redis", name="cache")
    for name in ("db", "cache"):
        as_(owner, "post", f"{API}/services/web/addons/", {"addon": name})
    said = []

    def log(line):
        said.append(line)
        if len(said) == 2:  # the worker has started them meanwhile; one failed
            AddOn.objects.filter(id=db.id).update(status=AddOn.Status.READY)
            AddOn.objects.filter(id=cache.id).update(status=AddOn.Status.FAILED, status_detail="no room")

    wait_for_addons(web, log, poll=0.01)
    assert said == ["Waiting for the add-on cache (Redis) to start…", "Waiting for the add-on db (PostgreSQL) to start…",
                    "! The add-on cache failed to start (no room); REDIS_URL points to it all the same.",
                    "✓ The add-on db is ready"]
    # Ready ones: not a word; and one that never starts is waited for at most ADDON_WAIT_SECONDS.
    said.clear()
    AddOn.objects.filter(id=cache.id).update(status=AddOn.Status.READY)
    wait_for_addons(web, said.append)
    assert said == []
    AddOn.objects.filter(id=db.id).update(status=AddOn.Status.PROVISIONING)
    settings.ADDON_WAIT_SECONDS = 0
    wait_for_addons(web, said.append, poll=0.01)
    assert said[-1] == "! db still starting after 0 s; deploying all the same."


def test_the_reconciler_leaves_add_ons_alone_on_a_runtime_that_does_not_run_them(as_, owner, web):
    from hakobune.platform.addons.actions import reconcile

    db = created(as_, owner)
    AddOn.objects.filter(id=db.id).update(status=AddOn.Status.READY)
    assert reconcile() == []  # the dummy runtime has no "addons" capability: no Docker call is made


def test_a_new_service_gets_the_add_ons_ticked_on_its_form_before_its_first_deploy(
    login, client, owner, team, as_, dummy_backend, queued_tasks
):
    created(as_, owner)
    created(as_, owner, kind="redis", name="cache")
    login(owner)
    form = client.get("/t/acme/services/new/").content.decode()
    assert 'id="new-service-addons"' in form and "db (PostgreSQL)" in form and "cache (Redis)" in form
    from tests.conftest import upload_of

    answer = client.post("/t/acme/services/new/", {"name": "notes", "source": upload_of("django-celery"),
                                                       "addons": ["db"]})
    assert answer.status_code == 302, answer.content.decode()[-2000:]
    notes = Service.objects.get(name="notes")
    assert list(notes.addons.values_list("name", flat=True)) == ["db"]
    assert notes.builds.count() == 1


def test_cli_deploy_attaches_the_add_ons_it_names_once(client, owner, web, capsys, django_capture_on_commit_callbacks):
    from hakobune import cli

    hakobune(client, owner, django_capture_on_commit_callbacks, "create", "postgres", "--name", "db")
    api = cli.Api("http://portal.test")
    api.session = _PortalSession(client, owner, django_capture_on_commit_callbacks)
    cli._attach_before_deploy(api, "acme", "web", ["db"])
    assert "Attached db to web as DATABASE_URL" in capsys.readouterr().out
    cli._attach_before_deploy(api, "acme", "web", ["db"])  # attached already: nothing to do
    assert capsys.readouterr().out == ""
    with pytest.raises(cli.CliError, match="has no add-on called cache"):
        cli._attach_before_deploy(api, "acme", "web", ["cache"])


def test_the_audit_log_names_an_add_ons_kind_as_its_product_is_called(as_, owner, web, staff):
    from hakobune.platform.addons.actions import add_external
    from hakobune.platform.observability.events import sentence_of
    from hakobune.platform.observability.models import Event

    created(as_, owner, kind="redis", name="cache")
    add_external(team=web.team, kind="postgres", name="shop", url=EXTERNAL, created_by=staff)
    said = [sentence_of(event) for event in Event.objects.filter(kind__startswith="addon.").order_by("id")]
    assert said == ["Created the add-on cache (Redis).",
                    "An administrator entered the external database shop (PostgreSQL) for the team."]
