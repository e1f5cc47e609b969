"""A further stack for apps that ask for a language version the default one
lacks (STACK_VARIANTS): an owner whose app asks for Python 3.13 gets it built
on the stack made from Debian's next release, on the real Docker Engine, and
the image runs that Python; Ruby and PHP likewise, their apps answering on
the stack of trixie. The stack is built with debootstrap the first
time (a few minutes), re-imported from its cached root filesystem after."""

import secrets
import shutil

import pytest
from django.conf import settings

from hakobune.worker.builders.base import BuildRequest
from hakobune.worker.builders.local_docker import LocalDockerBuilder
from hakobune.worker.buildpacks import detect
from hakobune.worker.buildpacks.versions import VersionsUnavailable, VersionUnavailable, fit_stack
from tests.conftest import APPS_DIR

pytestmark = pytest.mark.integration


@pytest.fixture
def builder():
    options = dict(settings.IMAGE_BUILDERS["local"]["OPTIONS"])
    return LocalDockerBuilder("local", **{**options, "stack_variants": {"python": ["trixie"]}})


def test_an_app_asking_for_a_newer_python_is_built_on_the_stack_that_has_it(builder, docker_client, tmp_path):
    source = tmp_path / "app"
    shutil.copytree(APPS_DIR / "python-stdlib-main", source)
    (source / ".python-version").write_text("3.13\n")
    plan, chosen = fit_stack(detect(source).plan, builder.stack_offers)
    assert plan.stack_variant == "trixie"
    assert chosen.startswith("Python 3.13 is asked for: built on hakobune/stack-python:trixie (Python 3.13")
    lines = []
    team = f"sv{secrets.token_hex(3)}"
    built = builder.build(BuildRequest(team=team, service="py313", source_dir=source, source_digest="py313",
                                       plan=plan, workspace=tmp_path / "workspace"), lines.append)
    try:
        assert "Python 3.13" in built.plan.stack_version
        assert any("hakobune/stack-python:trixie" in line for line in lines)
        output = docker_client.containers.run(built.ref, ["python3", "--version"], remove=True, network_mode="none")
        assert output.decode().startswith("Python 3.13")
    finally:
        docker_client.images.remove(built.ref, force=True)


def test_an_app_asking_for_a_python_no_stack_has_is_refused_before_anything_is_built(builder, tmp_path):
    source = tmp_path / "app"
    shutil.copytree(APPS_DIR / "python-stdlib-main", source)
    (source / ".python-version").write_text("3.99\n")
    with pytest.raises(VersionUnavailable) as excinfo:
        fit_stack(detect(source).plan, builder.stack_offers)
    assert "the stacks here have Python 3.11.2 (hakobune/stack-python:bookworm), Python 3.13" in str(excinfo.value)


def test_an_app_of_two_languages_asking_for_newer_versions_is_planned_on_the_combined_stack_that_has_both(tmp_path):
    # An owner's Flask app whose stylesheet npm builds asks for Node.js 20, which
    # the default python-node stack (bookworm: Node.js 18) lacks; the operator
    # offers python-node=trixie, known before it is built by its Debian suite.
    builder = LocalDockerBuilder("local", **{**dict(settings.IMAGE_BUILDERS["local"]["OPTIONS"]),
                                             "stack_variants": {"python-node": ["trixie"]}})
    offers = builder.stack_offers("python-node")
    assert [offer.variant for offer in offers] == ["", "trixie"]
    default = dict(offers[0].versions)
    assert default["python"].startswith("3.11") and default["node"].startswith("18.")
    source = tmp_path / "app"
    shutil.copytree(APPS_DIR / "python-npm-assets", source)
    package = (source / "package.json").read_text()
    (source / "package.json").write_text(package.replace('"private": true,', '"private": true, "engines": {"node": ">=20"},'))
    plan, chosen = fit_stack(detect(source).plan, builder.stack_offers)
    assert plan.stack_variant == "trixie"
    assert chosen.startswith("Node.js >=20 asked for: built on Python 3.13")
    assert builder.stack_refs(plan)["python-node"] == "hakobune/stack-python-node:trixie"
    # Python 3.11 with Node.js 20: no one stack here has both.
    (source / ".python-version").write_text("3.11\n")
    with pytest.raises(VersionsUnavailable) as excinfo:
        fit_stack(detect(source).plan, builder.stack_offers)
    assert "(hakobune/stack-python-node:bookworm); Python 3.13.5 + Node.js 20.19.2 (hakobune/stack-python-node:trixie)" \
        in str(excinfo.value)


@pytest.fixture
def ruby_php_builder():
    options = dict(settings.IMAGE_BUILDERS["local"]["OPTIONS"])
    return LocalDockerBuilder("local", **{**options, "stack_variants": {"ruby": ["trixie"], "php": ["trixie"]}})


def _build(builder, plan, source, tmp_path, name):
    lines = []
    built = builder.build(BuildRequest(team=f"sv{secrets.token_hex(3)}", service=name, source_dir=source,
                                       source_digest=name, plan=plan, workspace=tmp_path / "workspace"), lines.append)
    return built, lines


def _answer(docker_client, ref, port, path="/"):
    """Starts the image as the runtime would (its own command, $PORT) and asks
    it for `path` from a container on a network of its own."""
    network = docker_client.networks.create(f"hakobune-sv-{secrets.token_hex(3)}", internal=True)
    app = docker_client.containers.run(ref, detach=True, network=network.name, environment={"PORT": str(port)},
                                       user="10001:10001", read_only=True, tmpfs={"/tmp": "rw,size=64m"})
    try:
        ip = ""
        for _ in range(60):
            app.reload()
            ip = app.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
            if ip:
                break
        script = ("for i in $(seq 1 60); do ruby -rnet/http -e \"print Net::HTTP.get(URI('http://%s:%d%s'))\" "
                  "2>/dev/null && exit 0; sleep 0.5; done; exit 1" % (ip, port, path))
        if "php" in ref:
            script = ("for i in $(seq 1 60); do php -r \"\\$b = @file_get_contents('http://%s:%d%s'); "
                      "if (\\$b === false) exit(1); echo \\$b;\" && exit 0; sleep 0.5; done; exit 1" % (ip, port, path))
        output = docker_client.containers.run(ref, ["/bin/sh", "-c", script], remove=True, network=network.name)
        return output.decode()
    finally:
        app.remove(force=True)
        network.remove()


@pytest.mark.parametrize("app, language, asked, version, answer", [
    ("ruby-next-release", "Ruby", "3.3", "Ruby 3.3", "hello from ruby-next-release (Ruby 3.3."),
    ("php-next-release", "PHP", "^8.4", "PHP 8.4", "hello from php-next-release (PHP 8.4."),
])
def test_an_app_asking_for_the_ruby_or_php_of_debians_next_release_is_built_on_its_stack_and_answers(
        ruby_php_builder, docker_client, tmp_path, app, language, asked, version, answer):
    # The owner's .ruby-version (composer.json's php) asks for what trixie carries and bookworm does not.
    source = tmp_path / "app"
    shutil.copytree(APPS_DIR / app, source)
    plan, chosen = fit_stack(detect(source).plan, ruby_php_builder.stack_offers)
    stack = app.split("-")[0]
    assert plan.stack_variant == "trixie"
    assert chosen.startswith(f"{language} {asked} is asked for: built on hakobune/stack-{stack}:trixie ({version}")
    built, lines = _build(ruby_php_builder, plan, source, tmp_path, app)
    try:
        assert built.plan.stack_version.startswith("Debian trixie") and version in built.plan.stack_version
        assert any(f"hakobune/stack-{stack}:trixie" in line for line in lines)
        assert answer in _answer(docker_client, built.ref, plan.port)
    finally:
        docker_client.images.remove(built.ref, force=True)


@pytest.mark.parametrize("app, files, words", [
    ("ruby-next-release", {".ruby-version": "3.99\n"},
     "The app asks for Ruby 3.99 (.ruby-version), but the stacks here have Ruby 3.1.2 (hakobune/stack-ruby:bookworm), "
     "Ruby 3.3"),
    ("php-next-release", {"composer.json": '{"require": {"php": "^9.0"}}'},
     "The app asks for PHP ^9.0 (composer.json require.php), but the stacks here have PHP 8.2"),
])
def test_a_ruby_or_php_no_stack_has_is_refused_naming_the_versions_there_are(ruby_php_builder, tmp_path, app, files,
                                                                            words):
    source = tmp_path / "app"
    shutil.copytree(APPS_DIR / app, source)
    for name, text in files.items():
        (source / name).write_text(text)
    with pytest.raises(VersionUnavailable) as excinfo:
        fit_stack(detect(source).plan, ruby_php_builder.stack_offers)
    assert words in str(excinfo.value)
    assert "(hakobune/stack-" in str(excinfo.value) and ":trixie)" in str(excinfo.value)
