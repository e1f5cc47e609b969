"""Ruby and PHP apps, each deployed for real as an owner uploads it (built by a
real Celery worker on the real Docker Engine, on the Ruby and PHP stacks built
from Debian's packages, started by the local runtime and answered through the
tests' Caddy): a config.ru served by the stack's Rack and Puma, a plain Ruby
server named by a Procfile, a Sinatra app whose gems are Debian's (its Gemfile
names no gem source, so Bundler takes them from the stack), a PHP app with a composer.json of PHP and its
extensions only (served by PHP-FPM behind lighttpd from public/), a plain
folder of .php files.

This host reaches neither rubygems.org nor Packagist: an app whose Gemfile or
composer.json needs their packages fails with the sentence that names the
source and the setting an administrator changes. A host whose mirror does not
answer is told the same of its mirror.

All deploys go to one team and are queued at once; the tests then read what
each deploy did."""

import secrets
import shutil
from functools import partial

import pytest
from django.conf import settings

from hakobune.worker.builders.base import BuildRequest
from hakobune.worker.builders.local_docker import LocalDockerBuilder
from hakobune.worker.buildpacks import detect
from hakobune.worker.package_sources import PackageSourceUnreachable
from tests.conftest import APPS_DIR, upload_of
from tests.support.deploys import deploy_all

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# deploy -> {path: what its answer contains}
WORKING = {
    "ruby-rack": {"/": "hello from ruby-rack (Ruby 3.", "/env": '"rack_env":"production","server":"puma'},
    "ruby-webrick-procfile": {"/": "hello from ruby-webrick-procfile"},
    # A Gemfile of no gem source: Sinatra and Puma from Debian, `bundle install --local`.
    "ruby-sinatra": {"/": "hello from ruby-sinatra (Sinatra 3.", "/hello/owner": '"greeting":"hello, owner","server":"puma'},
    "php-hello": {"/": "hello from php-hello (PHP 8.", "/some/route": "PATH /some/route)",
                  "/style.css": "the stylesheet of php-hello, served by lighttpd", "/sqlite": "sqlite 3."},
    "php-plain": {"/": "hello from php-plain", "/about.php": "about php-plain"},
}
# deploy -> words its failure reason must contain
FAILING = {
    "ruby-gems-unreachable": ["Installing the app's dependencies failed: Bundler could not reach index.rubygems.org",
                              "the package source this host gives it (RUBYGEMS_SOURCE)",
                              "an administrator sets RUBYGEMS_SOURCE to a mirror this host can reach"],
    "ruby-gem-not-in-stack": ["The Gemfile names no gem source, so its gems come from the Ruby stack (Debian's "
                              "packages), and the stack has no sinatra (~> 9.0)."],
    "php-packages-unreachable": ["Installing the app's dependencies failed: Composer could not reach "
                                 "https://repo.packagist.org", "(COMPOSER_REPOSITORY)",
                                 "an administrator sets COMPOSER_REPOSITORY to a mirror this host can reach"],
}
BUILD_TIMEOUT = 1200


@pytest.fixture(scope="module")
def outcomes(django_db_blocker, worker, router, docker_client):
    deploys = [*WORKING, *FAILING]
    yield from deploy_all(django_db_blocker, docker_client, f"rp{secrets.token_hex(3)}",
                          uploads={deploy: partial(upload_of, deploy) for deploy in deploys},
                          paths={deploy: [*WORKING[deploy], "/index.php", "/composer.json"] for deploy in WORKING},
                          timeout=BUILD_TIMEOUT)


@pytest.mark.parametrize("deploy", list(WORKING))
def test_a_ruby_or_php_app_answers_through_the_router(outcomes, deploy):
    outcome = outcomes[deploy]
    assert outcome.status == "live", f"{outcome.failure_reason}\n{outcome.log[-4000:]}"
    for path, words in WORKING[deploy].items():
        status, body = outcome.responses[path]
        assert status == 200, f"{path}: {body[:500]}"
        assert words in body, f"{path}: {body[:500]}"


@pytest.mark.parametrize("deploy, stack", [("ruby-rack", "Ruby 3."), ("php-hello", "PHP 8.")])
def test_the_app_was_built_on_its_stack_from_debian(outcomes, deploy, stack):
    plan = outcomes[deploy].plan
    assert plan["stack"] == deploy.split("-")[0]
    assert plan["stack_version"].startswith("Debian bookworm") and stack in plan["stack_version"]


def test_php_source_and_manifests_are_never_served_as_files(outcomes):
    for deploy in ("php-hello", "php-plain"):
        for path in ("/index.php", "/composer.json"):
            status, body = outcomes[deploy].responses[path]
            assert "<?php" not in body and '"require"' not in body, (deploy, path, body[:200])
    status, body = outcomes["php-plain"].responses["/composer.json"]
    assert status in (403, 404)


@pytest.mark.parametrize("deploy", list(FAILING))
def test_an_app_whose_packages_cannot_be_had_here_fails_naming_the_package_or_the_source(outcomes, deploy):
    outcome = outcomes[deploy]
    assert outcome.status == "failed", outcome.log[-2000:]
    for words in FAILING[deploy]:
        assert words in outcome.failure_reason, outcome.failure_reason


@pytest.mark.parametrize("app, source, mirror, words", [
    ("ruby-gems-unreachable", "rubygems", "https://gems.mirror.invalid",
     "Bundler could not reach gems.mirror.invalid, the package source this host gives it (RUBYGEMS_SOURCE)"),
    ("php-packages-unreachable", "composer", "https://packagist.mirror.invalid",
     "Composer could not reach https://packagist.mirror.invalid, the package source this host gives it "
     "(COMPOSER_REPOSITORY)"),
])
def test_a_host_whose_mirror_does_not_answer_is_told_its_mirror(docker_client, tmp_path, app, source, mirror, words):
    options = dict(settings.IMAGE_BUILDERS["local"]["OPTIONS"])
    builder = LocalDockerBuilder("local", **{**options, "package_sources": {source: mirror}})
    folder = tmp_path / "app"
    shutil.copytree(APPS_DIR / app, folder)
    lines = []
    request = BuildRequest(team=f"ms{secrets.token_hex(3)}", service=app, source_dir=folder, source_digest=app,
                           plan=detect(folder).plan, workspace=tmp_path / "workspace")
    with pytest.raises(PackageSourceUnreachable) as failed:
        builder.build(request, lines.append)
    assert words in failed.value.message
    assert not failed.value.user_error, "the host's own source: an administrator's setting"
