"""The code's structure holds by itself (docs/architecture.md): the
import-linter contracts in pyproject.toml are kept, a library that imports
Django breaks them, no module imports itself back through another, and every
task the platform sends by name exists."""

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from django.conf import settings

from hakobune.platform import queue

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(project / "pyproject.toml")],
        cwd=project, env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )


def test_the_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("hakobune/worker/source.py", "import django.conf", "Libraries (source intake"),
    ("hakobune/runtime/docker_local.py", "from hakobune.platform.services import models", "Libraries (source intake"),
    ("hakobune/platform/services/services.py", "from hakobune.worker import tasks", "Tasks on top"),
    ("hakobune/cli.py", "from hakobune.platform import queue", "The CLI talks to the portal"),
])
def test_a_deliberate_violation_breaks_a_contract(tmp_path, module, line, broken):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    shutil.copytree(ROOT / "hakobune", project / "hakobune", ignore=shutil.ignore_patterns("__pycache__", "static"))
    target = project / module
    target.write_text(target.read_text() + f"\n{line}  # the violation\n")
    result = lint_imports(project)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_back_through_another():
    # Imports inside functions count too: they are no way around a loop.
    assert _cycles(grimp.build_graph("hakobune")) == []


def test_every_task_the_platform_sends_exists():
    from hakobune.worker import tasks

    for name in sorted(queue.TASKS):
        assert hasattr(getattr(tasks, name), "delay"), name
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        module, _, name = entry["task"].rpartition(".")
        assert module == queue.TASK_MODULE and hasattr(tasks, name), entry["task"]
