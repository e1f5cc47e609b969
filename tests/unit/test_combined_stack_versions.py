"""An app built with two languages (Node.js builds its assets, Python serves
it) asks for a version of each: the owner gets the variant of the combined
stack that has both, or is told at detection which versions the stacks have."""

import shutil

import pytest

from hakobune.platform.diagnoses import diagnose
from hakobune.worker.buildpacks import BuildPlan, detect
from hakobune.worker.buildpacks.versions import StackOffer, VersionsUnavailable, fit_stack
from tests.conftest import APPS_DIR

BOOKWORM = StackOffer("python-node", "", "", "hakobune/stack-python-node:bookworm",
                      versions=(("python", "3.11.2"), ("node", "18.20.4")))
TRIXIE = StackOffer("python-node", "trixie", "", "hakobune/stack-python-node:trixie",
                    versions=(("python", "3.13.5"), ("node", "20.19.2")))


def offers(language):
    assert language == "python-node"
    return [BOOKWORM, TRIXIE]


@pytest.fixture
def app(tmp_path):
    """The python-npm-assets fixture app (.buildpacks: Node.js, then Python),
    asking for the versions a test writes."""
    source = tmp_path / "app"
    shutil.copytree(APPS_DIR / "python-npm-assets", source)

    def asking(python: str = "", node: str = ""):
        if python:
            (source / ".python-version").write_text(f"{python}\n")
        if node:
            package = (source / "package.json").read_text()
            (source / "package.json").write_text(package.replace('"private": true,', f'"private": true, "engines": {{"node": "{node}"}},'))
        return source

    return asking


def test_the_version_each_language_asks_for_is_in_the_plan(app):
    detection = detect(app(python="3.13", node=">=20"))
    plan = detection.plan
    assert plan.language_versions == {"node": ">=20", "python": "3.13"}
    assert plan.sources["language_version.python"] == ".python-version"
    assert plan.sources["language_version.node"] == "package.json engines.node"
    assert plan.language_version == ""
    assert "it asks for Node.js >=20" in detection.reason and "it asks for Python 3.13 (.python-version)" in detection.reason
    assert BuildPlan.from_dict(plan.to_dict()) == plan


def test_versions_the_default_combined_stack_has_keep_it(app):
    plan, chosen = fit_stack(detect(app(python="3.11", node="18")).plan, offers)
    assert plan.stack_variant == "" and chosen == ""


def test_versions_only_a_newer_variant_has_choose_it(app):
    plan, chosen = fit_stack(detect(app(python="3.13", node=">=20")).plan, offers)
    assert plan.stack_variant == "trixie"
    assert chosen == ("Node.js >=20 and Python 3.13 asked for: built on Python 3.13.5 + Node.js 20.19.2 "
                      "(hakobune/stack-python-node:trixie)")


def test_one_language_asking_is_enough_to_choose_the_variant(app):
    plan, _ = fit_stack(detect(app(node="^20")).plan, offers)
    assert plan.stack_variant == "trixie"


def test_versions_no_variant_has_together_are_refused_naming_what_each_has(app):
    # Python 3.11 is on bookworm, Node.js 20 on trixie: no one stack has both.
    with pytest.raises(VersionsUnavailable) as excinfo:
        fit_stack(detect(app(python="3.11", node="^20")).plan, offers)
    diagnosis = diagnose(excinfo.value)
    assert diagnosis.rule == "detect.versions_unavailable"
    assert diagnosis.kind.value == "user"
    assert diagnosis.in_english() == (
        "The app asks for Node.js ^20 (package.json engines.node), Python 3.11 (.python-version), but the stacks here "
        "have Python 3.11.2 + Node.js 18.20.4 (hakobune/stack-python-node:bookworm); Python 3.13.5 + Node.js 20.19.2 "
        "(hakobune/stack-python-node:trixie). Ask for versions one of these stacks has (or remove the versions the "
        "app asks for), or ask your operator to add a stack that has them (STACK_VARIANTS)."
    )


def test_a_combined_stack_whose_versions_are_not_known_before_the_build_refuses_nothing(app):
    unknown = StackOffer("python-node", "", "", "registry/python-node:latest", versions=(("python", ""), ("node", "")))
    plan, chosen = fit_stack(detect(app(python="3.99")).plan, lambda language: [unknown])
    assert plan.stack_variant == "" and chosen == ""


def test_google_runtime_version_is_the_version_of_the_language_that_starts_the_app(app):
    plan = detect(app(node="18"), build_env={"GOOGLE_RUNTIME_VERSION": "3.13"}).plan
    assert plan.language_versions == {"node": "18", "python": "3.13"}
    assert plan.sources["language_version.python"] == "GOOGLE_RUNTIME_VERSION"
    with pytest.raises(VersionsUnavailable, match=r"Python 3.13 \(GOOGLE_RUNTIME_VERSION\)"):
        fit_stack(plan, offers)


def test_an_app_asking_for_nothing_does_not_ask_the_stacks(app):
    def refuse(language):
        raise AssertionError("not asked")

    plan = detect(app()).plan
    assert plan.language_versions == {}
    assert fit_stack(plan, refuse) == (plan, "")
