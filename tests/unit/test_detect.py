"""Detection over small file trees written in tmp folders, and over the
fixture apps: which stack, why (the reason text), and the plan."""

import json

import pytest

from hakobune.worker.buildpacks import (
    DETECTORS,
    BuildPlan,
    DetectionError,
    NoStackDetected,
    apply_service_settings,
    detect,
    eject,
)
from hakobune.worker.builders.local_docker import stack_refs
from tests.conftest import APPS_DIR


def tree(root, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


FLASK = "from flask import Flask\napp = Flask(__name__)\n"


# --- the order and the failure ---------------------------------------------------------


def test_detectors_are_ordered_most_specific_first():
    assert [d.KEY for d in DETECTORS] == ["dockerfile", "procfile", "python", "go", "java", "ruby", "php", "static", "node"]
    for detector in DETECTORS:
        assert detector.NAME and detector.LOOKS_FOR


def test_no_match_lists_every_detector_and_what_it_looked_for(tmp_path):
    tree(tmp_path, {"README.md": "hello", "notes.txt": "todo"})
    with pytest.raises(NoStackDetected) as excinfo:
        detect(tmp_path)
    message = str(excinfo.value)
    for detector in DETECTORS:
        assert f"{detector.NAME}: {detector.LOOKS_FOR}" in message
    assert "requirements.txt" in message and "package.json" in message and "go.mod" in message


def test_no_match_at_a_monorepos_root_names_the_subfolders_with_apps():
    with pytest.raises(NoStackDetected) as excinfo:
        detect(APPS_DIR / "monorepo")
    message = str(excinfo.value)
    assert "services/api (Python)" in message
    assert "services/web (Static site)" in message


def test_the_monorepos_app_is_detected_from_its_subfolder():
    detection = detect(APPS_DIR / "monorepo" / "services" / "api")
    assert detection.stack == "python"
    assert detection.reason == "found requirements.txt and app.py creating a Flask app named `app`"


# --- Procfile -------------------------------------------------------------------------


def test_a_procfile_of_workers_only_runs_them_and_routes_nothing():
    detection = detect(APPS_DIR / "procfile-without-web")
    assert detection.plan.web is False
    assert detection.plan.processes == {"worker": "python worker.py"}
    assert "no `web:` line, so nothing is routed to it" in detection.reason


def test_a_procfile_with_no_process_to_run_is_a_user_error_that_says_so(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK, "Procfile": "release: python migrate.py\n"})
    with pytest.raises(DetectionError) as excinfo:
        detect(tmp_path)
    message = str(excinfo.value)
    assert "`release`" in message and "no `web` process" in message and "web: " in message


def test_the_procfiles_other_lines_are_process_types_and_release_is_the_release_phase(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK, "Procfile": (
        "web: gunicorn app:app\nworker: celery -A app worker\nclock: python clock.py\nrelease: python migrate.py\n"
    )})
    plan = detect(tmp_path).plan
    assert plan.web is True and plan.start_command == "gunicorn app:app"
    assert plan.processes == {"worker": "celery -A app worker", "clock": "python clock.py"}
    assert plan.release_command == "python migrate.py"
    assert BuildPlan.from_dict(plan.to_dict()) == plan


def test_a_process_type_with_a_name_that_cannot_name_a_container_is_refused(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK, "Procfile": "web: python app.py\nWork_er: x\n"})
    with pytest.raises(DetectionError, match="lower-case letters"):
        detect(tmp_path)


def test_hakobune_toml_adds_process_types_a_release_command_and_scheduled_jobs(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK, "Procfile": "web: python app.py\n",
                    "hakobune.toml": (
                        'release_command = "python manage.py migrate"\n'
                        '[processes]\nworker = "python worker.py"\n'
                        '[[jobs]]\nschedule = "*/10 * * * *"\ncommand = "python manage.py clearsessions"\n'
                        '[[jobs]]\nname = "report"\nschedule = "0 6 * * 1"\ncommand = "python report.py"\n'
                    )})
    plan = detect(tmp_path).plan
    assert plan.processes == {"worker": "python worker.py"}
    assert plan.release_command == "python manage.py migrate"
    assert plan.jobs == (
        {"name": "clearsessions", "schedule": "*/10 * * * *", "command": "python manage.py clearsessions"},
        {"name": "report", "schedule": "0 6 * * 1", "command": "python report.py"},
    )


@pytest.mark.parametrize("schedule", ["every ten minutes", "*/10 * * *", "61 * * * *", "* * * * * *"])
def test_a_job_whose_schedule_is_not_cron_is_refused_in_words(tmp_path, schedule):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK,
                    "hakobune.toml": f'[[jobs]]\nschedule = "{schedule}"\ncommand = "python job.py"\n'})
    with pytest.raises(DetectionError, match="cron's five fields"):
        detect(tmp_path)


def test_a_procfile_web_line_sets_the_start_command_of_the_detected_language(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n", "app.py": FLASK, "Procfile": "web: gunicorn -w 4 app:app\n"})
    detection = detect(tmp_path)
    assert detection.stack == "python"
    assert detection.plan.start_command == "gunicorn -w 4 app:app"
    assert detection.plan.sources["start_command"] == "Procfile"
    assert detection.reason.endswith("the Procfile's `web:` line starts it (`gunicorn -w 4 app:app`)")


def test_a_procfile_is_enough_to_start_an_app_hakobune_does_not_recognise_by_itself():
    detection = detect(APPS_DIR / "procfile-custom")
    assert detection.plan.start_command.startswith("gunicorn --bind 0.0.0.0:$PORT --workers 1 'greeter:create_app(")


def test_a_procfile_for_node(tmp_path):
    tree(tmp_path, {"package.json": "{}", "Procfile": "web: node dist/server.js\n"})
    detection = detect(tmp_path)
    assert detection.stack == "node"
    assert detection.plan.start_command == "node dist/server.js"


def test_a_procfile_alone_says_the_language_is_missing(tmp_path):
    tree(tmp_path, {"Procfile": "web: ./run\n"})
    with pytest.raises(NoStackDetected, match=r"The Procfile says how to start the app \(`web: ./run`\)"):
        detect(tmp_path)


# --- Python ---------------------------------------------------------------------------


def test_django_runs_on_its_wsgi_module_and_collects_static_files():
    detection = detect(APPS_DIR / "django-static")
    plan = detection.plan
    assert detection.stack == "python"
    assert "hellosite.wsgi:application" in plan.start_command and plan.start_command.startswith("gunicorn")
    assert plan.build_commands[0].endswith("python manage.py collectstatic --noinput")
    assert "served by WhiteNoise" in detection.reason
    assert plan.notes == ()


def test_django_without_whitenoise_is_told_how_its_static_files_get_served(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "Django==5.2.7\n",
        "manage.py": "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site1.settings')\n",
        "site1/__init__.py": "",
        "site1/settings.py": "STATIC_ROOT = BASE_DIR / 'staticfiles'\n",
        "site1/wsgi.py": "from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n",
    })
    detection = detect(tmp_path)
    assert "site1.wsgi:application" in detection.plan.start_command
    assert "gunicorn==" in detection.plan.install_commands[0]
    assert any("WhiteNoise" in note for note in detection.plan.notes)


def test_django_without_static_root_skips_collectstatic_and_says_why(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "django\ngunicorn\n",
        "manage.py": "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'proj.settings')\n",
        "proj/settings.py": "DEBUG = False\n",
        "proj/wsgi.py": "from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n",
    })
    detection = detect(tmp_path)
    assert detection.plan.build_commands == ()
    assert any("no STATIC_ROOT" in note for note in detection.plan.notes)


def test_fastapi_runs_on_uvicorn():
    detection = detect(APPS_DIR / "fastapi")
    assert detection.reason == (
        "found requirements.txt and main.py creating a FastAPI app named `app` (served by uvicorn)"
    )
    assert detection.plan.start_command == "uvicorn main:app --host 0.0.0.0 --port $PORT"
    assert "uvicorn==" in detection.plan.install_commands[0]


def test_a_uv_project_installs_from_its_lock_with_uv():
    detection = detect(APPS_DIR / "python-uv")
    plan = detection.plan
    assert detection.reason.startswith("found pyproject.toml with uv.lock (uv) and app.py creating a Flask app")
    assert detection.reason.endswith("it asks for Python 3.11 (.python-version)")
    assert plan.dependency_files == ("pyproject.toml", "uv.lock")
    assert "uv sync --frozen --no-dev --no-install-project" in plan.install_commands[0]
    assert plan.env["UV_PROJECT_ENVIRONMENT"] == "/opt/venv"
    assert plan.language_version == "3.11"


def test_a_poetry_project_installs_the_locked_versions():
    plan = detect(APPS_DIR / "python-poetry").plan
    assert plan.dependency_files == ("pyproject.toml", "poetry.lock")
    install = plan.install_commands[0]
    assert "flask==3.1.3" in install and "--no-deps" in install


def test_a_poetry_lock_skips_dev_packages_and_keeps_markers(tmp_path):
    tree(tmp_path, {
        "pyproject.toml": "[tool.poetry]\nname='x'\n[tool.poetry.dependencies]\npython='^3.11'\nflask='*'\n",
        "poetry.lock": (
            '[[package]]\nname = "flask"\nversion = "3.1.0"\ngroups = ["main"]\n\n'
            '[[package]]\nname = "colorama"\nversion = "0.4.6"\ngroups = ["main"]\n'
            'markers = "platform_system == \\"Windows\\""\n\n'
            '[[package]]\nname = "pytest"\nversion = "8.0.0"\ngroups = ["dev"]\n'
        ),
        "app.py": FLASK,
    })
    install = detect(tmp_path).plan.install_commands[0]
    assert "flask==3.1.0" in install and "pytest" not in install
    assert "'colorama==0.4.6 ; platform_system == \"Windows\"'" in install


def test_poetry_without_a_lock_runs_poetry(tmp_path):
    tree(tmp_path, {"pyproject.toml": "[tool.poetry.dependencies]\nflask='^3'\n", "app.py": FLASK})
    plan = detect(tmp_path).plan
    assert "poetry install --no-root --only main" in plan.install_commands[0]


def test_a_plain_pep_621_project_installs_its_dependencies(tmp_path):
    tree(tmp_path, {
        "pyproject.toml": '[project]\nname="x"\nrequires-python=">=3.11"\ndependencies=["flask>=3", "gunicorn"]\n',
        "app.py": FLASK,
    })
    detection = detect(tmp_path)
    assert detection.plan.install_commands[0] == "python3 -m venv /opt/venv && pip install 'flask>=3' gunicorn"
    assert detection.plan.language_version == ">=3.11"
    assert "it asks for Python >=3.11 (pyproject.toml)" in detection.reason


def test_a_pipfile_lock_installs_its_pins(tmp_path):
    tree(tmp_path, {
        "Pipfile": '[packages]\nflask = "*"\n[requires]\npython_version = "3.11"\n',
        "Pipfile.lock": json.dumps({"default": {"flask": {"version": "==3.1.0"}, "click": {"version": "==8.1.8"}}}),
        "app.py": FLASK,
    })
    detection = detect(tmp_path)
    assert "pip install click==8.1.8 flask==3.1.0 gunicorn==" in detection.plan.install_commands[0]
    assert detection.plan.dependency_files == ("Pipfile", "Pipfile.lock")
    assert detection.plan.language_version == "3.11"


def test_python_version_file_wins(tmp_path):
    tree(tmp_path, {"requirements.txt": "", "main.py": "print()", ".python-version": "3.12.4\n"})
    assert detect(tmp_path).plan.language_version == "3.12.4"


def test_a_script_is_started_with_python(tmp_path):
    tree(tmp_path, {"requirements.txt": "", "main.py": "print('hi')\n"})
    detection = detect(tmp_path)
    assert detection.plan.start_command == "python main.py"
    assert "0.0.0.0" in detection.reason


def test_requirements_without_any_app_is_not_python(tmp_path):
    tree(tmp_path, {"requirements.txt": "requests\n", "lib/util.py": ""})
    with pytest.raises(NoStackDetected):
        detect(tmp_path)


# --- Node -----------------------------------------------------------------------------


def test_an_express_app_with_npm():
    detection = detect(APPS_DIR / "node-express")
    assert detection.stack == "node"
    assert detection.reason == (
        "found package.json installed with npm (package-lock.json), started with the start script "
        "`node server.js`; it asks for Node.js >=18"
    )
    plan = detection.plan
    assert plan.dependency_files == ("package.json", "package-lock.json")
    assert plan.install_commands == ("NODE_ENV=production npm ci --no-audit --no-fund",)
    assert plan.start_command == "node server.js"
    assert plan.env["NODE_ENV"] == "production" and plan.env["NPM_CONFIG_CACHE"].startswith("/tmp")


def test_pnpm_is_installed_at_the_version_package_json_declares():
    plan = detect(APPS_DIR / "node-pnpm").plan
    assert plan.install_commands == ("npm install -g pnpm@9.15.9 && NODE_ENV=production pnpm install --frozen-lockfile",)
    assert plan.dependency_files == ("package.json", "pnpm-lock.yaml")


def test_yarn_with_a_build_script_and_a_complex_start_script(tmp_path):
    tree(tmp_path, {
        "package.json": json.dumps({"scripts": {"build": "tsc", "start": "NODE_OPTIONS=--x node dist/index.js"}}),
        "yarn.lock": "",
    })
    plan = detect(tmp_path).plan
    assert plan.install_commands == (
        "npm install -g yarn@1.22.22 && NODE_ENV=development yarn install --frozen-lockfile --non-interactive",
    )
    assert plan.build_commands == ("yarn run build",)
    assert plan.start_command == "yarn start"


def test_node_without_a_start_script_runs_its_main_file(tmp_path):
    tree(tmp_path, {"package.json": json.dumps({"main": "src/app.js"}), "src/app.js": ""})
    detection = detect(tmp_path)
    assert detection.plan.start_command == "node src/app.js"
    assert "versions are not pinned" in detection.reason
    assert detection.plan.notes


def test_a_vite_site_is_built_with_node_and_served_static():
    detection = detect(APPS_DIR / "vite-static")
    plan = detection.plan
    assert detection.stack == "static"
    assert "(`vite build`) and no start script" in detection.reason
    assert plan.stacks == ("node", "static")
    assert plan.install_commands == ("NODE_ENV=development npm ci --no-audit --no-fund",)
    assert plan.build_commands == ("npm run build",)
    assert plan.artifacts == ("dist",) and plan.env["SITE_ROOT"] == "/app/dist"


def test_a_package_json_with_nothing_to_run_or_build_is_not_an_app(tmp_path):
    tree(tmp_path, {"package.json": json.dumps({"name": "lib"})})
    with pytest.raises(NoStackDetected):
        detect(tmp_path)


# --- static, Go, Dockerfile -----------------------------------------------------------


@pytest.mark.parametrize("folder", ["", "dist", "build", "public"])
def test_a_static_site_is_served_from_where_its_index_is(tmp_path, folder):
    tree(tmp_path, {f"{folder}/index.html" if folder else "index.html": "<h1>hi</h1>"})
    detection = detect(tmp_path)
    assert detection.stack == "static"
    assert detection.plan.env["SITE_ROOT"] == ("/app/" + folder if folder else "/app")
    assert detection.plan.start_command.startswith("lighttpd -D")


def test_public_index_of_a_node_app_is_not_a_static_site(tmp_path):
    tree(tmp_path, {"public/index.html": "", "package.json": json.dumps({"scripts": {"start": "node s.js"}})})
    assert detect(tmp_path).stack == "node"


def test_a_go_module_is_compiled_then_run_from_a_slim_image():
    detection = detect(APPS_DIR / "go-http")
    plan = detection.plan
    assert detection.stack == "go"
    assert detection.reason == (
        "found go.mod (example.com/go-http) with package main at the top; compiled in a build stage and run from a "
        "slim image; it asks for Go 1.21"
    )
    assert plan.stacks == ("go", "static")
    assert plan.dependency_files == ("go.mod",)
    assert plan.artifacts == ("server",) and plan.start_command == "/app/server"
    assert plan.build_env["CGO_ENABLED"] == "0"


def test_a_go_main_package_under_cmd(tmp_path):
    tree(tmp_path, {"go.mod": "module x\n\ngo 1.22\n", "go.sum": "", "cmd/api/main.go": "package main\n",
                    "internal/lib.go": "package internal\n"})
    plan = detect(tmp_path).plan
    assert plan.build_commands[0].endswith(" ./cmd/api")
    assert plan.dependency_files == ("go.mod", "go.sum")


def test_a_dockerfile_is_used_as_it_is_with_its_build_arguments():
    detection = detect(APPS_DIR / "dockerfile")
    plan = detection.plan
    assert detection.stack == "dockerfile"
    assert plan.uses_own_dockerfile and plan.dockerfile_path == "Dockerfile"
    assert plan.build_args == {"BASE_IMAGE": "hakobune/stack-python:bookworm"}
    assert plan.stacks == ()
    assert "its own Dockerfile" in plan.dockerfile("")


def test_a_dockerfile_wins_over_everything_else(tmp_path):
    tree(tmp_path, {"Dockerfile": "FROM x\n", "requirements.txt": "", "app.py": FLASK, "package.json": "{}"})
    assert detect(tmp_path).stack == "dockerfile"


# --- hakobune.toml --------------------------------------------------------------------


def test_hakobune_toml_overrides_commands_port_and_health_check(tmp_path):
    tree(tmp_path, {
        "requirements.txt": "flask\n",
        "app.py": FLASK,
        "hakobune.toml": (
            'build_command = ["python -m compileall .", "echo done"]\n'
            'start_command = "gunicorn -b 0.0.0.0:$PORT app:app"\nport = 5000\nhealth_check_path = "/healthz"\n'
        ),
    })
    detection = detect(tmp_path)
    plan = detection.plan
    assert plan.build_commands == ("python -m compileall .", "echo done")
    assert plan.start_command == "gunicorn -b 0.0.0.0:$PORT app:app"
    assert plan.port == 5000 and plan.health_check_path == "/healthz"
    assert plan.sources["port"] == "hakobune.toml"
    assert "hakobune.toml sets the build command, start command" in detection.reason


def test_hakobune_toml_chooses_the_stack(tmp_path):
    tree(tmp_path, {"requirements.txt": "", "main.py": "", "index.html": "", "hakobune.toml": 'stack = "static"\n'})
    assert detect(tmp_path).stack == "static"


def test_hakobune_toml_asking_for_a_stack_it_cannot_find(tmp_path):
    tree(tmp_path, {"index.html": "", "hakobune.toml": 'stack = "go"\n'})
    with pytest.raises(NoStackDetected, match="asks for the Go stack.*go.mod"):
        detect(tmp_path)


@pytest.mark.parametrize("text, error", [
    ("stack = [", "not valid TOML"),
    ('stack = "cobol"\n', "asks for the stack 'cobol'"),
    ("port = 0\n", "port must be a number"),
    ('health_check_path = "healthz"\n', "must be a path starting with /"),
    ("colour = 'blue'\n", "keys Hakobune does not know: colour"),
])
def test_a_broken_hakobune_toml_is_a_user_error(tmp_path, text, error):
    tree(tmp_path, {"index.html": "", "hakobune.toml": text})
    with pytest.raises(DetectionError, match=error):
        detect(tmp_path)


def test_the_services_settings_win_over_the_plan():
    plan = detect(APPS_DIR / "flask-hello").plan
    changed = apply_service_settings(plan, port=9000, health_check_path="/healthz", start_command="python app.py")
    assert (changed.port, changed.health_check_path, changed.start_command) == (9000, "/healthz", "python app.py")
    assert changed.sources["port"] == "service settings"
    assert apply_service_settings(plan) == plan


# --- eject ----------------------------------------------------------------------------


def test_eject_gives_a_dockerfile_on_the_configured_images():
    images = {"python": "python:3.12-slim", "node": "node:22-slim", "go": "golang:1.23", "static": ""}
    refs = stack_refs(images, "bookworm")  # a stack without a registry image: Hakobune's own
    python = eject(detect(APPS_DIR / "flask-hello").plan, refs)
    assert python.startswith("FROM python:3.12-slim\n")
    go = eject(detect(APPS_DIR / "go-http").plan, refs).splitlines()
    assert go[0] == "FROM golang:1.23 AS build"
    assert "FROM hakobune/stack-static:bookworm" in go
    assert "COPY --from=build /app/server /app/server" in go
    assert BuildPlan.from_dict(detect(APPS_DIR / "go-http").plan.to_dict()) == detect(APPS_DIR / "go-http").plan
