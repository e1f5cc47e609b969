"""A Rails app as an owner brings it, deployed for real: its Gemfile names no
gem source, so Bundler takes Rails, the PostgreSQL driver and Puma from the
Ruby stack, which has them from Debian's packages (`bundle install --local`,
nothing fetched). The build precompiles its assets; the release phase runs its
migrations (`rails db:migrate`) against the team's PostgreSQL add-on before
the release starts; the page then reads the row the migration wrote, and the
precompiled stylesheet is served, both through the router.

The owner sets SECRET_KEY_BASE as the service's variable, as Rails asks."""

import re
import secrets
import time

import pytest
from django.contrib.auth import get_user_model

from hakobune.platform.accounts.services import create_team
from hakobune.platform.addons.actions import attach, create_addon
from hakobune.platform.addons.models import AddOn
from hakobune.platform.services.backends import get_backend
from hakobune.platform.services.services import create_service, deploy_service, set_env
from hakobune.runtime.addons import LocalAddOns
from tests.conftest import upload_of
from tests.support.infrastructure import get_through_router, remove_team_containers_and_network, wait_for_build

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait_until_ready(addon, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        addon.refresh_from_db()
        if addon.status != AddOn.Status.PROVISIONING:
            break
        time.sleep(0.5)
    assert addon.status == AddOn.Status.READY, addon.status_detail


@pytest.fixture(scope="module")
def rails(django_db_blocker, worker, router, docker_client):
    team_name = f"rl{secrets.token_hex(3)}"
    username = f"owner-{team_name}"
    try:
        with django_db_blocker.unblock():
            owner = get_user_model().objects.create_user(username=username, password="x")
            team = create_team(name=team_name, owner=owner)
            service = create_service(team=team, name="shop", created_by=owner)
            set_env(service=service, values={"SECRET_KEY_BASE": secrets.token_hex(64)}, unset=[], created_by=owner)
            database = create_addon(team=team, kind="postgres", name="db", created_by=owner)
            _wait_until_ready(database)
            attach(addon=database, service=service, created_by=owner)
            build = wait_for_build(deploy_service(service=service, source_file=upload_of("ruby-rails"),
                                                  created_by=owner), timeout=1200)
            log = "\n".join(build.log_lines.values_list("text", flat=True))
            service.refresh_from_db()
            page = get_through_router(service.hostname, "/", timeout=30) if build.status == "live" else None
            yield {"build": build, "log": log, "service": service, "page": page}
    finally:
        LocalAddOns(get_backend("local")).remove(team_name, "db", delete_volume=True)
        remove_team_containers_and_network(docker_client, team_name)
        with django_db_blocker.unblock():
            get_user_model().objects.filter(username=username).delete()


def test_a_rails_app_of_debians_gems_answers_with_the_row_its_release_phase_migrated_in(rails):
    build, page = rails["build"], rails["page"]
    assert build.status == "live", f"{build.failure_reason}\n{rails['log'][-4000:]}"
    assert page.status_code == 200, page.text[:2000]
    assert "hello from ruby-rails (Rails 6.1." in page.text
    assert "from the database: a row the release phase migrated in" in page.text


def test_its_gems_came_from_the_stack_and_nothing_was_fetched(rails, docker_client):
    log = rails["log"]
    assert "bundle install --local" in log
    # Bundler says "Fetching gem metadata from …" and "Fetching rails 7.1.3" when it downloads.
    assert not re.search(r"Fetching (gem metadata|source index|[\w.-]+ \d)", log), log[-3000:]
    # The image's bundle: Debian's gems, where Debian installs them.
    listed = docker_client.containers.run(rails["build"].image, ["bundle", "info", "rails", "--path"],
                                          remove=True, network_mode="none").decode()
    assert listed.strip().startswith("/usr/share/rubygems-integration/all/gems/rails-6.1."), listed


def test_its_assets_were_precompiled_in_the_build_and_are_served(rails):
    log, page = rails["log"], rails["page"]
    assert "rails assets:precompile" in log
    stylesheet = re.search(r'href="(/assets/application-[0-9a-f]{64}\.css)"', page.text)
    assert stylesheet, page.text[:2000]
    answer = get_through_router(rails["service"].hostname, stylesheet[1], timeout=30)
    assert answer.status_code == 200 and "the stylesheet of ruby-rails, precompiled at build time" in answer.text


def test_the_migrations_ran_in_the_release_phase_before_the_release(rails):
    log = rails["log"]
    assert "Release phase: `bundle exec rails db:migrate`" in log
    after = log.split("Release phase:", 1)[1]
    assert "CreateGreetings: migrated" in after, after[:3000]
