"""The language version an app asks for, and the stack that has it: an owner
whose app asks for a version the stacks have builds on it (a further stack
when the default lacks it), and one whose app asks for a version no stack
has is told so at detection, with the versions there are."""

import pytest

from hakobune.platform.diagnoses import diagnose
from hakobune.worker.buildpacks import detect
from hakobune.worker.buildpacks.plan import BuildPlan
from hakobune.worker.buildpacks.versions import StackOffer, VersionUnavailable, fit_stack, satisfies
from hakobune.worker.stacks import SUITE_VERSIONS, language_version
from tests.conftest import APPS_DIR
from tests.unit.test_detect import tree

BOOKWORM = StackOffer("python", "", "3.11.2", "hakobune/stack-python:bookworm")
TRIXIE = StackOffer("python", "trixie", "3.13.5", "hakobune/stack-python:trixie")
HTTP = "import http.server\n"


@pytest.mark.parametrize("language, asked, have, expected", [
    ("python", "3.11", "3.11.2", True),
    ("python", "3.11.9", "3.11.2", True),  # the 3.11 line: the stack has Debian's release of it
    ("python", "3.12", "3.11.2", False),
    ("python", ">=3.11", "3.11.2", True),
    ("python", ">=3.12", "3.11.2", False),
    ("python", ">=3.10,<3.12", "3.11.2", True),
    ("python", ">=3.10, <3.11", "3.11.2", False),
    ("python", "~=3.11", "3.13.5", True),
    ("python", "~=3.11.4", "3.11.2", False),
    ("python", "==3.11.*", "3.11.2", True),
    ("python", "!=3.11.*", "3.11.2", False),
    ("node", ">=18", "18.19.0", True),
    ("node", "^20", "18.19.0", False),
    ("node", "^20.1", "20.19.2", True),
    ("node", "20.x", "20.19.2", True),
    ("node", "~18.19", "18.19.0", True),
    ("node", "~18.20", "18.19.0", False),
    ("node", ">=18 <20", "20.19.2", False),
    ("node", "16 || 18", "18.19.0", True),
    ("node", "16 - 17", "18.19.0", False),
    ("node", ">18", "18.19.0", False),
    ("node", "<=18", "18.19.0", True),
    ("node", "*", "18.19.0", True),
    ("go", "1.21", "1.23.1", True),
    ("go", "1.24", "1.23.1", False),
    ("go", "1.23.0", "1.23", True),
])
def test_whether_a_version_gives_what_is_asked(language, asked, have, expected):
    assert satisfies(language, asked, have) is expected


@pytest.mark.parametrize("asked, have", [("lts/hydrogen", "18.19.0"), (">=3.11", ""), ("latest-ish", "3.11.2")])
def test_what_cannot_be_read_is_not_refused(asked, have):
    assert satisfies("node" if "lts" in asked else "python", asked, have) in (None, True)


def plan_asking(version, source=".python-version"):
    return BuildPlan(stack="python", start_command="python main.py", language_version=version,
                     sources={"language_version": source})


def test_an_app_asking_for_what_the_default_stack_has_stays_on_it():
    plan, chosen = fit_stack(plan_asking("3.11"), lambda language: [BOOKWORM, TRIXIE])
    assert plan.stack_variant == "" and chosen == ""


def test_an_app_asking_for_a_newer_python_builds_on_the_stack_that_has_it():
    plan, chosen = fit_stack(plan_asking("3.13"), lambda language: [BOOKWORM, TRIXIE])
    assert plan.stack_variant == "trixie"
    assert chosen == "Python 3.13 is asked for: built on hakobune/stack-python:trixie (Python 3.13.5)"


def test_an_app_asking_for_a_version_no_stack_has_is_refused_naming_the_versions_there_are():
    with pytest.raises(VersionUnavailable) as excinfo:
        fit_stack(plan_asking("3.14"), lambda language: [BOOKWORM, TRIXIE])
    diagnosis = diagnose(excinfo.value)
    assert diagnosis.rule == "detect.version_unavailable"
    words = diagnosis.in_english()
    assert words.startswith("The app asks for Python 3.14 (.python-version), but the stacks here have "
                            "Python 3.11.2 (hakobune/stack-python:bookworm), Python 3.13.5 "
                            "(hakobune/stack-python:trixie).")
    assert "STACK_VARIANTS" in words
    assert diagnosis.kind.value == "user"


def test_a_stack_whose_version_is_not_known_before_the_build_refuses_nothing():
    unknown = StackOffer("python", "", "", "python:3.12-slim")
    plan, chosen = fit_stack(plan_asking("3.14"), lambda language: [unknown])
    assert plan.stack_variant == "" and chosen == ""


def test_the_stacks_are_asked_only_when_the_app_asks_for_a_version():
    def offers(language):
        raise AssertionError("not asked")

    plan = BuildPlan(stack="python", start_command="python main.py")
    assert fit_stack(plan, offers) == (plan, "")


def test_node_and_go_ask_through_their_build_stage(tmp_path):
    go_app = tree(tmp_path / "go", {"go.mod": "module x\n\ngo 1.25\n", "main.go": "package main\n"})
    asked = []

    def offers(language):
        asked.append(language)
        return [StackOffer(language, "", SUITE_VERSIONS["bookworm"][language], f"hakobune/stack-{language}:bookworm")]

    with pytest.raises(VersionUnavailable, match=r"asks for Go 1.25 \(go.mod\), but the stacks here have Go 1.23"):
        fit_stack(detect(go_app).plan, offers)
    node_app = tree(tmp_path / "node", {"package.json": '{"engines": {"node": "^22"}, "scripts": {"build": "x"}}'})
    with pytest.raises(VersionUnavailable, match=r"Node.js \^22 \(package.json engines.node\)"):
        fit_stack(detect(node_app).plan, offers)
    assert asked == ["go", "node"]


def test_the_fixture_apps_ask_for_versions_the_default_stacks_have():
    def offers(language):
        return [StackOffer(language, "", SUITE_VERSIONS["bookworm"][language], "default")]

    for app in ("python-uv", "go-http", "node-express", "node-pnpm"):
        plan, chosen = fit_stack(detect(APPS_DIR / app).plan, offers)
        assert plan.stack_variant == "" and chosen == "", app


@pytest.mark.parametrize("description, language, version", [
    ("Debian bookworm (12.15), Python 3.11.2", "python", "3.11.2"),
    ("Debian bookworm (12.15), Node.js 18.19.0, npm 9.2.0", "node", "18.19.0"),
    ("Debian bookworm (12.15), Go 1.23.1", "go", "1.23.1"),
    ("Python 3.12.5 (python:3.12-slim)", "python", "3.12.5"),
    ("python:3.12-slim (image 1234)", "python", ""),
])
def test_a_stacks_language_version_is_read_from_its_description(description, language, version):
    assert language_version(description, language) == version


def test_each_python_version_file_is_read(tmp_path):
    tree(tmp_path / "a", {"main.py": HTTP, "runtime.txt": "python-3.13.1\n"})
    tree(tmp_path / "b", {"main.py": HTTP, ".python-version": "3.12\n", "runtime.txt": "python-3.13.1\n"})
    assert detect(tmp_path / "a").plan.sources["language_version"] == "runtime.txt"
    assert detect(tmp_path / "b").plan.language_version == "3.12"


def test_the_recipe_of_a_plan_built_on_a_variant_starts_from_that_stack():
    from hakobune.worker.builders.local_docker import LocalDockerBuilder
    from hakobune.worker.buildpacks import eject

    builder = LocalDockerBuilder("local", stack_images={"python": ""}, network="none",
                                 stack_variants={"python": ["trixie", "python:3.14-slim"]})
    plan = BuildPlan(stack="python", start_command="python main.py", language_version="3.13")
    assert eject(plan, builder.stack_refs(plan)).startswith("FROM hakobune/stack-python:bookworm\n")
    on_trixie = plan.with_changes(stack_variant="trixie")
    assert eject(on_trixie, builder.stack_refs(on_trixie)).startswith("FROM hakobune/stack-python:trixie\n")
    on_image = plan.with_changes(stack_variant="python:3.14-slim")
    assert eject(on_image, builder.stack_refs(on_image)).startswith("FROM python:3.14-slim\n")
