"""Google Cloud's buildpack settings (GOOGLE_ENTRYPOINT, GOOGLE_RUNTIME_VERSION,
GOOGLE_BUILDABLE), read from project.toml, hakobune.toml's [build_env] and
the service's own variables, so that an app moved from Cloud Run builds here
the same way."""

import pytest

from hakobune.worker.buildpacks import DetectionError, detect
from tests.conftest import APPS_DIR
from tests.unit.test_detect import FLASK, tree

SERVE = "import http.server\n"


def test_project_toml_sets_the_entrypoint_and_the_runtime_version():
    detection = detect(APPS_DIR / "google-python")
    plan = detection.plan
    assert detection.stack == "python"
    assert plan.start_command == "python3 -u serve.py --greeting 'hello from google-python'"
    assert plan.language_version == "3.11"
    assert plan.sources == {"start_command": "GOOGLE_ENTRYPOINT", "language_version": "GOOGLE_RUNTIME_VERSION"}
    assert "GOOGLE_ENTRYPOINT (project.toml) starts it" in detection.reason
    assert "GOOGLE_RUNTIME_VERSION (project.toml) asks for 3.11" in detection.reason


def test_the_services_own_setting_wins_over_the_apps_files():
    detection = detect(APPS_DIR / "google-python", build_env={"GOOGLE_ENTRYPOINT": "python3 serve.py",
                                                              "DATABASE_URL": "not a build setting"})
    assert detection.plan.start_command == "python3 serve.py"
    assert "GOOGLE_ENTRYPOINT (the service's settings) starts it" in detection.reason


def test_hakobune_toml_build_env_wins_over_project_toml(tmp_path):
    tree(tmp_path, {"serve.py": SERVE,
                    "project.toml": '[[build.env]]\nname = "GOOGLE_ENTRYPOINT"\nvalue = "python3 a.py"\n',
                    "hakobune.toml": '[build_env]\nGOOGLE_ENTRYPOINT = "python3 serve.py"\n'})
    detection = detect(tmp_path)
    assert detection.plan.start_command == "python3 serve.py"
    assert "GOOGLE_ENTRYPOINT (hakobune.toml)" in detection.reason


def test_the_entrypoint_wins_over_the_procfile(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK, "Procfile": "web: gunicorn app:app\n"})
    detection = detect(tmp_path, build_env={"GOOGLE_ENTRYPOINT": "gunicorn -w 3 app:app"})
    assert detection.plan.start_command == "gunicorn -w 3 app:app"
    assert "Procfile" not in detection.reason


def test_buildable_chooses_the_go_package_to_build():
    detection = detect(APPS_DIR / "go-buildable")
    assert detection.plan.build_commands == ('go build -trimpath -ldflags="-s -w" -o /app/server ./cmd/web',)
    assert "package main in ./cmd/web (GOOGLE_BUILDABLE)" in detection.reason


def test_without_buildable_the_first_command_would_be_built(tmp_path):
    tree(tmp_path, {"go.mod": "module x\n", "cmd/tool/main.go": "package main\n", "cmd/web/main.go": "package main\n"})
    assert detect(tmp_path).plan.build_commands[0].endswith(" ./cmd/tool")
    plan = detect(tmp_path, build_env={"GOOGLE_BUILDABLE": "cmd/web"}).plan
    assert plan.build_commands[0].endswith(" ./cmd/web")


def test_buildable_in_gopath_mode(tmp_path):
    tree(tmp_path, {".godir": "github.com/acme/api", "main.go": "package main\n", "cmd/web/main.go": "package main\n"})
    plan = detect(tmp_path, build_env={"GOOGLE_BUILDABLE": "./cmd/web"}).plan
    assert plan.build_commands[0].endswith("-o /app/bin/api ./cmd/web")


def test_buildable_on_an_app_that_is_not_go_is_not_used_and_says_so(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK})
    detection = detect(tmp_path, build_env={"GOOGLE_BUILDABLE": "./cmd/web"})
    assert detection.stack == "python"
    assert any("GOOGLE_BUILDABLE" in note and "not used" in note for note in detection.plan.notes)


def test_a_dockerfile_app_is_told_the_settings_are_not_used():
    detection = detect(APPS_DIR / "dockerfile", build_env={"GOOGLE_ENTRYPOINT": "python3 x.py"})
    assert detection.stack == "dockerfile"
    assert any("GOOGLE_ENTRYPOINT" in note and "not used" in note for note in detection.plan.notes)


@pytest.mark.parametrize("build_env, error", [
    ({"GOOGLE_RUNTIME_VERSION": "3.12; rm -rf /"}, "GOOGLE_RUNTIME_VERSION (the service's settings) must be a version"),
    ({"GOOGLE_BUILDABLE": "../../etc"}, "GOOGLE_BUILDABLE (the service's settings) must be a Go package or a Maven module inside"),
    ({"GOOGLE_BUILDABLE": "./cmd/web && curl x"}, "must be a Go package or a Maven module inside"),
])
def test_settings_hakobune_cannot_use_are_refused_in_a_sentence(tmp_path, build_env, error):
    tree(tmp_path, {"go.mod": "module x\n", "main.go": "package main\n"})
    with pytest.raises(DetectionError, match=error.replace("(", r"\(").replace(")", r"\)")):
        detect(tmp_path, build_env=build_env)


def test_hakobune_toml_build_env_takes_only_googles_names(tmp_path):
    tree(tmp_path, {"serve.py": SERVE, "hakobune.toml": '[build_env]\nNODE_OPTIONS = "--max-old-space-size=1"\n'})
    with pytest.raises(DetectionError, match=r"\[build_env\] has NODE_OPTIONS; it takes GOOGLE_ENTRYPOINT"):
        detect(tmp_path)


def test_the_entrypoint_starts_an_app_of_two_languages(tmp_path):
    tree(tmp_path, {".buildpacks": "heroku/nodejs\nheroku/python\n", "package.json": "{}",
                    "requirements.txt": "flask\n", "app.py": FLASK})
    detection = detect(tmp_path, build_env={"GOOGLE_ENTRYPOINT": "gunicorn -w 1 app:app"})
    assert detection.plan.start_command == "gunicorn -w 1 app:app"
    assert detection.plan.sources["start_command"] == "GOOGLE_ENTRYPOINT"
