"""The app shapes people have beside the usual ones: Python of the standard
library alone, Go from before modules, Node without package.json; what each
is detected as, and what each detector says when it does not match."""

import pytest

from hakobune.worker.buildpacks import NoStackDetected, detect, go, node, python
from tests.conftest import APPS_DIR
from tests.unit.test_detect import tree

HTTP_SERVER = "from http.server import HTTPServer, BaseHTTPRequestHandler\n"


# --- Python without a dependency file -------------------------------------------------


def test_a_procfile_that_runs_a_python_file_needs_no_dependency_file():
    detection = detect(APPS_DIR / "python-stdlib-procfile")
    plan = detection.plan
    assert detection.stack == "python"
    assert plan.start_command == "python3 -u web.py"
    assert plan.install_commands == ("python3 -m venv /opt/venv",)
    assert plan.dependency_files == ()
    assert detection.reason.startswith("found no dependency file (the standard library only) and a start command")
    assert any("nothing is installed" in note for note in plan.notes)


def test_a_main_py_that_serves_http_needs_no_dependency_file():
    detection = detect(APPS_DIR / "python-stdlib-main")
    assert detection.stack == "python"
    assert detection.plan.start_command == "python main.py"
    assert "main.py serving HTTP with the standard library" in detection.reason


def test_an_app_py_that_serves_http_is_found_too(tmp_path):
    tree(tmp_path, {"app.py": "import socketserver\n", "helpers.py": ""})
    assert detect(tmp_path).plan.start_command == "python app.py"


@pytest.mark.parametrize("command", ["python web.py", "PYTHONPATH=. python3 -m web", "web.py --port $PORT",
                                     "/usr/bin/python3.11 -u web.py"])
def test_a_procfile_command_runs_python(tmp_path, command):
    tree(tmp_path, {"web.py": "print()\n", "Procfile": f"web: {command}\n"})
    detection = detect(tmp_path)
    assert detection.stack == "python" and detection.plan.start_command == command


def test_python_without_a_dependency_file_says_what_it_looks_for_when_nothing_matches(tmp_path):
    # A script that serves nothing, and a Procfile that does not run Python.
    tree(tmp_path, {"main.py": "print('hello')\n", "tool.py": HTTP_SERVER})
    assert python.detect(tmp_path) is None
    assert python.detect(tmp_path, start_command="./run") is None
    with pytest.raises(NoStackDetected) as excinfo:
        detect(tmp_path)
    message = str(excinfo.value)
    assert f"{python.NAME}: {python.LOOKS_FOR}" in message
    assert "a main.py or app.py that serves HTTP with the standard library" in message
    assert "a Procfile whose `web:` line starts a .py file" in message


def test_a_stray_python_file_does_not_make_a_node_apps_procfile_python(tmp_path):
    tree(tmp_path, {"package.json": "{}", "scripts/seed.py": HTTP_SERVER, "tool.py": "",
                    "Procfile": "web: node server.js\n", "server.js": ""})
    assert detect(tmp_path).stack == "node"


def test_runtime_txt_asks_for_a_python_version(tmp_path):
    tree(tmp_path, {"main.py": HTTP_SERVER, "runtime.txt": "python-3.12.4\n"})
    detection = detect(tmp_path)
    assert detection.plan.language_version == "3.12.4"
    assert detection.reason.endswith("it asks for Python 3.12.4 (runtime.txt)")


# --- Go without modules -----------------------------------------------------------------


def test_a_godir_app_is_built_in_gopath_mode_with_its_vendored_dependencies():
    detection = detect(APPS_DIR / "go-godir")
    plan = detection.plan
    assert detection.stack == "go"
    assert (plan.build_stack, plan.stack) == ("go", "static")
    assert plan.build_env["GO111MODULE"] == "off"
    assert "ln -s /app /tmp/gopath/src/github.com/acme/web" in plan.build_commands[0]
    assert plan.build_commands[0].endswith("-o /app/bin/web .")
    assert plan.artifacts == ("bin",)
    # The Procfile's `web: web` finds the binary on PATH.
    assert plan.start_command == "web"
    assert plan.env["PATH"].startswith("/app/bin:")
    assert "import path github.com/acme/web (from .godir), dependencies in vendor/" in detection.reason


def test_a_gopath_of_its_own_is_built_by_import_path():
    detection = detect(APPS_DIR / "go-gopath")
    assert detection.plan.build_commands[0].startswith("GOPATH=/app go build")
    assert detection.plan.build_commands[0].endswith("-o /app/bin/hello example.com/hello")
    assert detection.plan.start_command == "/app/bin/hello"
    assert "src/example.com/hello" in detection.reason


def test_godeps_names_the_import_path(tmp_path):
    tree(tmp_path, {"main.go": "package main\n", "Godeps/Godeps.json": '{"ImportPath": "github.com/acme/api"}'})
    detection = detect(tmp_path)
    assert detection.plan.start_command == "/app/bin/api"
    assert "(from Godeps/Godeps.json)" in detection.reason


def test_go_without_an_import_path_is_called_app(tmp_path):
    tree(tmp_path, {"main.go": "package main\n"})
    assert detect(tmp_path).plan.start_command == "/app/bin/app"


@pytest.mark.parametrize("godir", ["../../etc", "/abs/path", "a b", "github.com/x; touch /tmp/owned", "$(id)"])
def test_a_godir_that_is_not_an_import_path_is_not_followed(tmp_path, godir):
    tree(tmp_path, {"main.go": "package main\n", ".godir": godir})
    assert detect(tmp_path).plan.start_command == "/app/bin/app"


def test_go_says_what_it_looks_for_when_nothing_matches(tmp_path):
    # A library, not a program: no package main anywhere.
    tree(tmp_path, {"lib.go": "package lib\n", "src/example.com/lib/lib.go": "package lib\n"})
    assert go.detect(tmp_path) is None
    with pytest.raises(NoStackDetected) as excinfo:
        detect(tmp_path)
    assert f"{go.NAME}: {go.LOOKS_FOR}" in str(excinfo.value)
    assert "without modules" in go.LOOKS_FOR


# --- Node without package.json ---------------------------------------------------------


def test_a_server_js_of_nodes_own_modules_needs_no_package_json():
    detection = detect(APPS_DIR / "node-no-package")
    plan = detection.plan
    assert detection.stack == "node"
    assert plan.start_command == "node server.js"
    assert plan.install_commands == () and plan.dependency_files == ()
    assert "no package.json (nothing to install)" in detection.reason


def test_an_index_js_with_es_modules_is_found(tmp_path):
    tree(tmp_path, {"index.js": "import { createServer } from 'node:http';\n"})
    assert detect(tmp_path).plan.start_command == "node index.js"


def test_a_procfile_that_runs_node_needs_no_package_json(tmp_path):
    tree(tmp_path, {"web/main.js": "", "Procfile": "web: node web/main.js\n"})
    assert detect(tmp_path).plan.start_command == "node web/main.js"


def test_node_says_what_it_looks_for_when_nothing_matches(tmp_path):
    # A script that serves nothing, and a Procfile that names no file of the app.
    tree(tmp_path, {"index.js": "console.log('hi')\n"})
    assert node.detect(tmp_path) is None
    assert node.detect(tmp_path, start_command="node missing.js") is None
    with pytest.raises(NoStackDetected) as excinfo:
        detect(tmp_path)
    assert f"{node.NAME}: {node.LOOKS_FOR}" in str(excinfo.value)
    assert "without package.json, a server.js or index.js that serves HTTP" in node.LOOKS_FOR


def test_a_package_json_without_a_start_script_runs_its_main_file():
    detection = detect(APPS_DIR / "node-no-start")
    assert detection.stack == "node"
    assert detection.plan.start_command == "node index.js"
    assert detection.plan.install_commands == ("NODE_ENV=production npm ci --no-audit --no-fund",)
    assert "started with index.js" in detection.reason
