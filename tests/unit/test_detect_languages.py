"""Apps built with more than one language: Heroku's .buildpacks or
hakobune.toml's `languages`. Each language's install and build steps run in
the order given, on a stack that has them all; a buildpack Hakobune does not
know is refused in a sentence and never fetched."""

import socket

import pytest

from hakobune.worker.buildpacks import DetectionError, NoStackDetected, detect
from tests.conftest import APPS_DIR
from tests.unit.test_detect import FLASK, tree

PACKAGE = '{"scripts": {"build": "node build.js"}}'


@pytest.fixture
def no_network(monkeypatch):
    """Detection that tries to reach anywhere fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("detection tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_a_python_app_with_assets_built_by_npm_runs_both_in_order(no_network):
    detection = detect(APPS_DIR / "python-npm-assets")
    plan = detection.plan
    assert detection.stack == plan.stack == "python-node"
    assert plan.build_stack == ""
    assert plan.dependency_files == ("package.json", "package-lock.json", "requirements.txt")
    assert plan.install_commands[0] == "NODE_ENV=development npm ci --no-audit --no-fund"
    assert plan.install_commands[1].startswith("python3 -m venv /opt/venv && pip install -r requirements.txt")
    assert plan.build_commands == ("npm run build",)
    assert plan.start_command.startswith("gunicorn") and plan.start_command.endswith("app:app")
    assert plan.env["PATH"].startswith("/opt/venv/bin:")
    assert detection.reason.startswith(
        ".buildpacks asks for Node.js, then Python, built in that order on the python-node stack. "
        "Node.js: found package.json installed with npm (package-lock.json) and its build script "
        "(`node build-css.js`); Python: found requirements.txt and app.py")


def test_hakobune_toml_names_the_languages_and_the_last_one_starts_the_app(tmp_path):
    tree(tmp_path, {"hakobune.toml": 'languages = ["python", "node"]\n', "requirements.txt": "",
                    "package.json": '{"scripts": {"start": "node server.js"}}', "server.js": ""})
    detection = detect(tmp_path)
    assert detection.stack == "python-node"
    assert detection.plan.install_commands[0].startswith("python3 -m venv /opt/venv && pip install -r")
    # Node starts the app and has no build script: its production dependencies only.
    assert detection.plan.install_commands[1] == "NODE_ENV=production npm install --no-audit --no-fund"
    assert detection.plan.start_command == "node server.js"
    assert detection.reason.startswith("hakobune.toml asks for Python, then Node.js")


def test_a_procfile_starts_an_app_of_two_languages(tmp_path):
    tree(tmp_path, {".buildpacks": "heroku/nodejs\nheroku/python\n", "package.json": PACKAGE,
                    "requirements.txt": "flask\n", "app.py": FLASK, "Procfile": "web: gunicorn -w 1 app:app\n"})
    detection = detect(tmp_path)
    assert detection.plan.start_command == "gunicorn -w 1 app:app"
    assert detection.plan.sources["start_command"] == "Procfile"


@pytest.mark.parametrize("line", [
    "https://github.com/heroku/heroku-buildpack-ruby",
    "https://github.com/someone/heroku-buildpack-nodejs",
    "https://example.com/heroku/heroku-buildpack-python.tgz",
    "git@github.com:heroku/heroku-buildpack-python.git",
])
def test_a_buildpack_hakobune_does_not_know_is_refused_and_never_fetched(tmp_path, no_network, line):
    tree(tmp_path, {".buildpacks": f"heroku/nodejs\n{line}\n", "package.json": PACKAGE,
                    "requirements.txt": "", "app.py": FLASK})
    with pytest.raises(DetectionError) as excinfo:
        detect(tmp_path)
    message = str(excinfo.value)
    assert message.startswith(f".buildpacks line 2 names {line}, a buildpack Hakobune does not know.")
    assert "never downloads a buildpack" in message and "heroku/python" in message


@pytest.mark.parametrize("line", [
    "heroku/python",
    "https://github.com/heroku/heroku-buildpack-python",
    "https://github.com/heroku/heroku-buildpack-python.git#v270",
    "https://buildpack-registry.s3.amazonaws.com/buildpacks/heroku/python.tgz",
])
def test_a_buildpacks_file_of_one_language_builds_that_language(tmp_path, line):
    tree(tmp_path, {".buildpacks": f"# the app\n{line}\n", "requirements.txt": "flask\n", "app.py": FLASK,
                    "index.html": ""})
    assert detect(tmp_path).stack == "python"


def test_languages_without_a_stack_that_has_them_all_are_refused(tmp_path):
    tree(tmp_path, {".buildpacks": "heroku/go\nheroku/python\n", "main.go": "package main\n",
                    "requirements.txt": "", "app.py": FLASK})
    with pytest.raises(DetectionError, match="asks for Go and Python together; Hakobune has a stack with more than "
                                             "one language only for Node.js and Python"):
        detect(tmp_path)


def test_a_language_whose_files_are_missing_says_what_it_needs(tmp_path):
    tree(tmp_path, {"hakobune.toml": 'languages = ["node", "python"]\n', "requirements.txt": "", "app.py": FLASK})
    with pytest.raises(NoStackDetected, match=r"hakobune.toml names Node.js, but Hakobune did not find what it "
                                              r"needs: package.json"):
        detect(tmp_path)
    other = tree(tmp_path / "other", {"hakobune.toml": 'languages = ["node", "python"]\n', "package.json": PACKAGE,
                                      "requirements.txt": "", "lib/util.py": ""})
    with pytest.raises(NoStackDetected, match="names Python last, so it starts the app, but Hakobune did not find"):
        detect(other)


@pytest.mark.parametrize("text, error", [
    ('languages = ["node", "ruby"]', "languages names ruby; Hakobune can combine node and python"),
    ('languages = "node"', "languages must be a list of names"),
    ('languages = ["node", "python"]\nstack = "python"', "set either languages or stack"),
])
def test_hakobune_toml_languages_it_cannot_follow(tmp_path, text, error):
    tree(tmp_path, {"hakobune.toml": text, "requirements.txt": "", "app.py": FLASK})
    with pytest.raises(DetectionError, match=error):
        detect(tmp_path)


def test_hakobune_toml_wins_over_buildpacks(tmp_path):
    tree(tmp_path, {"hakobune.toml": 'stack = "python"\n', ".buildpacks": "https://example.com/unknown\n",
                    "requirements.txt": "", "app.py": FLASK})
    assert detect(tmp_path).stack == "python"


def test_a_dockerfile_wins_over_buildpacks(tmp_path):
    tree(tmp_path, {".buildpacks": "https://example.com/unknown\n", "Dockerfile": "FROM scratch\n"})
    assert detect(tmp_path).stack == "dockerfile"
