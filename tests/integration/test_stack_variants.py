"""A further stack for apps that ask for a language version the default one
lacks (STACK_VARIANTS): an owner whose app asks for Python 3.13 gets it built
on the stack made from Debian's next release, on the real Docker Engine, and
the image runs that Python. The stack is built with debootstrap the first
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
