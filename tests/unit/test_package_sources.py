"""Where builds install packages from, and the sentence an owner reads when
an install failed because its package source did not answer. The tools'
output here was captured by running them in the stacks on a host that
reaches neither rubygems.org nor Packagist (and, for pip and npm, pointed at
a mirror under .invalid, which resolves nowhere): real failures, as a build
prints them (tests/fixtures/tool-output)."""

from pathlib import Path

import pytest
from django.utils.translation import override

from hakobune.platform.diagnoses import RULES, diagnose
from hakobune.platform.failures import FailureKind, classify
from hakobune.worker.package_sources import PackageSourceUnreachable, build_env, unreachable

OUTPUT = Path(__file__).resolve().parent.parent / "fixtures" / "tool-output"


def lines_of(name: str) -> list[str]:
    return (OUTPUT / name).read_text().splitlines()


@pytest.mark.parametrize("output, configured, tool, source, package, setting", [
    ("bundler-rubygems-unreachable.txt", {}, "Bundler", "index.rubygems.org", "", "RUBYGEMS_SOURCE"),
    ("bundler-mirror-unreachable.txt", {"rubygems": "https://gems.mirror.invalid"}, "Bundler", "gems.mirror.invalid",
     "", "RUBYGEMS_SOURCE"),
    ("composer-packagist-unreachable.txt", {}, "Composer", "https://repo.packagist.org", "", "COMPOSER_REPOSITORY"),
    ("composer-packagist-unreachable-wrapped.txt", {}, "Composer", "https://repo.packagist.org", "",
     "COMPOSER_REPOSITORY"),
    ("composer-mirror-unreachable.txt", {"composer": "https://packagist.mirror.invalid"}, "Composer",
     "https://packagist.mirror.invalid", "", "COMPOSER_REPOSITORY"),
    ("pip-index-unreachable.txt", {"pip": "https://pypi.mirror.invalid/simple"}, "pip",
     "https://pypi.mirror.invalid/simple", "flask==3.1.3", "PIP_INDEX_URL"),
    ("npm-registry-unreachable.txt", {"npm": "https://npm.mirror.invalid/"}, "npm", "https://npm.mirror.invalid",
     "express", "NPM_REGISTRY"),
])
def test_a_tool_that_could_not_reach_the_hosts_source_is_read_from_its_output(output, configured, tool, source,
                                                                               package, setting):
    found = unreachable(lines_of(output), configured)
    assert found is not None and found.hosts
    assert (found.params["tool"], found.params["source"], found.params["package"], found.params["setting"]) == (
        tool, source, package, setting)


def test_the_owner_reads_one_sentence_naming_the_source_and_the_setting_to_change():
    error = PackageSourceUnreachable(unreachable(lines_of("bundler-rubygems-unreachable.txt")))
    diagnosis = diagnose(error)
    assert diagnosis.rule == "build.source_unreachable"
    assert diagnosis.in_english() == (
        "Installing the app's dependencies failed: Bundler could not reach index.rubygems.org, the package source "
        "this host gives it (RUBYGEMS_SOURCE). This is not your app: an administrator sets RUBYGEMS_SOURCE to a mirror this "
        "host can reach; then deploy again.")
    assert error.message == diagnosis.in_english(), "the build log says what the portal says"
    assert classify(error) == FailureKind.PLATFORM == diagnosis.kind, "the host's setting, not the app"


def test_the_sentence_names_the_package_when_the_tool_does():
    error = PackageSourceUnreachable(unreachable(lines_of("npm-registry-unreachable.txt"),
                                                 {"npm": "https://npm.mirror.invalid/"}))
    diagnosis = diagnose(error)
    assert diagnosis.rule == "build.source_unreachable_package"
    assert diagnosis.in_english().startswith(
        "Installing the app's dependencies failed: npm could not reach https://npm.mirror.invalid to fetch express, "
        "the package source this host gives it (NPM_REGISTRY).")
    assert error.message == diagnosis.in_english()


def test_the_sentence_is_in_japanese_for_a_japanese_reader():
    diagnosis = diagnose(PackageSourceUnreachable(unreachable(lines_of("composer-packagist-unreachable.txt"))))
    with override("ja"):
        words = diagnosis.in_words()
    assert "https://repo.packagist.org" in words and "COMPOSER_REPOSITORY" in words
    assert words != diagnosis.in_english()


def test_a_source_the_app_names_itself_is_the_apps_to_fix():
    lines = ["Could not reach host gems.example-corp.invalid. Check your network connection and try", "again."]
    error = PackageSourceUnreachable(unreachable(lines, {}))
    diagnosis = diagnose(error)
    assert diagnosis.rule == "build.app_source_unreachable"
    assert diagnosis.in_english().startswith(
        "Installing the app's dependencies failed: Bundler could not reach gems.example-corp.invalid, a package "
        "source the app's own files name (not this host's, which RUBYGEMS_SOURCE sets).")
    assert classify(error) == FailureKind.USER == diagnosis.kind


@pytest.mark.parametrize("lines", [
    # A package that does not exist, on a source that answered: the app's own mistake, said as before.
    ["ERROR: Could not find a version that satisfies the requirement hakobune-no-such-package-anywhere==0.0.1 "
     "(from versions: none)", "ERROR: No matching distribution found for hakobune-no-such-package-anywhere==0.0.1"],
    ["Could not find gem 'hakobune-nothing' in rubygems repository https://rubygems.org/ or installed locally."],
    ["  Root composer.json requires hakobune/nothing, it could not be found in any version, there may be a typo in "
     "the package name."],
    [],
])
def test_other_install_failures_are_not_taken_for_an_unreachable_source(lines):
    assert unreachable(lines) is None


def test_every_rule_an_unreachable_source_names_is_registered():
    for output in OUTPUT.iterdir():
        found = unreachable(output.read_text().splitlines())
        assert found is not None, output.name
        assert found.rule in RULES


def test_the_mirrors_that_are_set_reach_the_tools_in_the_build_environment():
    assert build_env({}) == {} and build_env({"pip": "", "rubygems": " "}) == {}, "the public sources: nothing added"
    assert build_env({"pip": "https://pypi.corp.example/simple", "npm": "https://npm.corp.example/",
                      "rubygems": "https://gems.corp.example", "composer": "https://packagist.corp.example"}) == {
        "PIP_INDEX_URL": "https://pypi.corp.example/simple", "UV_DEFAULT_INDEX": "https://pypi.corp.example/simple",
        "NPM_CONFIG_REGISTRY": "https://npm.corp.example/", "YARN_REGISTRY": "https://npm.corp.example/",
        "RUBYGEMS_SOURCE": "https://gems.corp.example", "COMPOSER_REPOSITORY": "https://packagist.corp.example",
    }
