"""hakobune.toml: what the person says about their app, over what detection
found. Every key is optional:

    stack = "node"                  # python, node, go, java, ruby, php, static or dockerfile
    languages = ["node", "python"]  # more than one: each one's install and build steps, in order
    install_command = "npm ci"
    build_command = "npm run build" # a string, or a list of commands
    start_command = "node dist/server.js"
    port = 3000
    health_check_path = "/healthz"
    dockerfile = "deploy/Dockerfile"  # the dockerfile stack only
    release_command = "python manage.py migrate"   # once per new release
    [build_args]                      # the dockerfile stack only
    BASE_IMAGE = "hakobune/stack-python:bookworm"
    [build_env]                       # Google Cloud's buildpack settings (google.py)
    GOOGLE_ENTRYPOINT = "python3 -u web.py"
    GOOGLE_RUNTIME_VERSION = "3.11"
    GOOGLE_BUILDABLE = "./cmd/web"
    [processes]                       # besides the Procfile's: name = command
    worker = "celery -A app worker"
    [[jobs]]                          # scheduled, in cron's five fields (UTC)
    name = "clearsessions"            # optional: the command's first word
    schedule = "*/10 * * * *"
    command = "python manage.py clearsessions"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from croniter import croniter

from ._files import is_file, read_text
from .plan import BuildPlan, DetectionError
from .procfile import check_process_name

FILENAME = "hakobune.toml"
STACKS = ("python", "node", "go", "java", "ruby", "php", "static", "dockerfile")
# Languages that can be combined (`languages`), on a stack that has them all.
LANGUAGES = ("node", "python")
BUILD_ENV_NAMES = ("GOOGLE_ENTRYPOINT", "GOOGLE_RUNTIME_VERSION", "GOOGLE_BUILDABLE")
KEYS = {"stack", "languages", "build_env", "install_command", "build_command", "start_command", "port", "health_check_path", "dockerfile",
        "build_args", "release_command", "processes", "jobs"}
JOB_KEYS = {"name", "schedule", "command"}
JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class ProjectConfig:
    stack: str = ""
    languages: tuple[str, ...] = ()
    install_commands: tuple[str, ...] | None = None
    build_commands: tuple[str, ...] | None = None
    start_command: str = ""
    port: int | None = None
    health_check_path: str = ""
    dockerfile: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    build_env: dict[str, str] = field(default_factory=dict)
    release_command: str = ""
    processes: dict[str, str] = field(default_factory=dict)
    jobs: tuple[dict, ...] = ()

    @property
    def empty(self) -> bool:
        return self == ProjectConfig()

    def apply(self, plan: BuildPlan) -> tuple[BuildPlan, list[str]]:
        """The plan with this file's settings; and what changed, in words."""
        changes, said = {}, []
        sources = dict(plan.sources)
        if self.install_commands is not None and not plan.uses_own_dockerfile:
            changes["install_commands"] = self.install_commands
            sources["install_commands"] = FILENAME
            said.append("install command")
        if self.build_commands is not None and not plan.uses_own_dockerfile:
            changes["build_commands"] = self.build_commands
            sources["build_commands"] = FILENAME
            said.append("build command")
        if self.start_command and not plan.uses_own_dockerfile:
            changes["start_command"] = self.start_command
            sources["start_command"] = FILENAME
            said.append(f"start command (`{self.start_command}`)")
        if self.port is not None:
            changes["port"] = self.port
            sources["port"] = FILENAME
            said.append(f"port {self.port}")
        if self.health_check_path:
            changes["health_check_path"] = self.health_check_path
            sources["health_check_path"] = FILENAME
            said.append(f"health check {self.health_check_path}")
        if self.build_args and plan.uses_own_dockerfile:
            changes["build_args"] = dict(self.build_args)
            said.append("build arguments " + ", ".join(sorted(self.build_args)))
        if self.release_command:
            changes["release_command"] = self.release_command
            sources["release_command"] = FILENAME
            said.append(f"release command (`{self.release_command}`)")
        if self.processes:
            changes["processes"] = {**plan.processes, **self.processes}
            sources["processes"] = FILENAME
            said.append("process types " + ", ".join(sorted(self.processes)))
        if self.jobs:
            changes["jobs"] = self.jobs
            sources["jobs"] = FILENAME
            said.append(f"{len(self.jobs)} scheduled job{'s' if len(self.jobs) != 1 else ''}")
        if changes:
            changes["sources"] = sources
        return (plan.with_changes(**changes) if changes else plan), said


def read(src: Path) -> ProjectConfig:
    if not is_file(src, FILENAME):
        return ProjectConfig()
    try:
        data = tomllib.loads(read_text(src, FILENAME))
    except tomllib.TOMLDecodeError as exc:
        raise DetectionError(f"{FILENAME} is not valid TOML: {exc}. Fix it or remove it.") from None
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise DetectionError(
            f"{FILENAME} has keys Hakobune does not know: {', '.join(unknown)}. "
            f"It understands: {', '.join(sorted(KEYS))}."
        )
    stack = data.get("stack", "")
    if stack and stack not in STACKS:
        raise DetectionError(f"{FILENAME} asks for the stack {stack!r}; Hakobune has: {', '.join(STACKS)}.")
    languages = data.get("languages", [])
    if not isinstance(languages, list) or not all(isinstance(v, str) for v in languages):
        raise DetectionError(f"{FILENAME}: languages must be a list of names, like [\"node\", \"python\"].")
    unknown_languages = [v for v in languages if v not in LANGUAGES]
    if unknown_languages:
        raise DetectionError(
            f"{FILENAME}: languages names {', '.join(unknown_languages)}; Hakobune can combine "
            f"{' and '.join(LANGUAGES)}."
        )
    if languages and (stack or data.get("dockerfile")):
        raise DetectionError(f"{FILENAME}: set either languages or stack (or dockerfile), not both.")
    port = data.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535):
        raise DetectionError(f"{FILENAME}: port must be a number between 1 and 65535, not {port!r}.")
    health = data.get("health_check_path", "")
    if health and (not isinstance(health, str) or not health.startswith("/")):
        raise DetectionError(f"{FILENAME}: health_check_path must be a path starting with /, like \"/healthz\".")
    build_args = data.get("build_args") or {}
    if not isinstance(build_args, dict) or not all(isinstance(v, (str, int, float)) for v in build_args.values()):
        raise DetectionError(f"{FILENAME}: [build_args] must be a table of names to text values.")
    build_env = data.get("build_env") or {}
    if not isinstance(build_env, dict) or not all(isinstance(v, str) for v in build_env.values()):
        raise DetectionError(f"{FILENAME}: [build_env] must be a table of names to text values.")
    unknown_env = sorted(set(build_env) - set(BUILD_ENV_NAMES))
    if unknown_env:
        raise DetectionError(f"{FILENAME}: [build_env] has {', '.join(unknown_env)}; it takes "
                             f"{', '.join(BUILD_ENV_NAMES)}.")
    dockerfile = data.get("dockerfile", "")
    if dockerfile and (not isinstance(dockerfile, str) or dockerfile.startswith("/") or ".." in Path(dockerfile).parts):
        raise DetectionError(f"{FILENAME}: dockerfile must be a path inside the app's folder.")
    start = data.get("start_command", "")
    if not isinstance(start, str):
        raise DetectionError(f"{FILENAME}: start_command must be text.")
    release = data.get("release_command", "")
    if not isinstance(release, str):
        raise DetectionError(f"{FILENAME}: release_command must be text.")
    return ProjectConfig(
        release_command=release.strip(),
        processes=_processes(data),
        jobs=_jobs(data),
        stack=stack,
        languages=tuple(dict.fromkeys(languages)),
        install_commands=_commands(data, "install_command"),
        build_commands=_commands(data, "build_command"),
        start_command=start.strip(),
        port=port,
        health_check_path=health,
        dockerfile=dockerfile,
        build_args={str(k): str(v) for k, v in build_args.items()},
        build_env=dict(build_env),
    )


def _commands(data: dict, key: str) -> tuple[str, ...] | None:
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, str):
        return (value.strip(),) if value.strip() else ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise DetectionError(f"{FILENAME}: {key} must be a command or a list of commands.")


def _processes(data: dict) -> dict[str, str]:
    table = data.get("processes") or {}
    if not isinstance(table, dict) or not all(isinstance(v, str) and v.strip() for v in table.values()):
        raise DetectionError(f"{FILENAME}: [processes] must be a table of names to commands, like worker = \"...\".")
    for name in table:
        if name in ("web", "release"):
            raise DetectionError(
                f"{FILENAME}: [processes] is for process types besides web; use start_command for web and "
                "release_command for the release phase."
            )
        check_process_name(name, FILENAME)
    return {name: command.strip() for name, command in table.items()}


def _jobs(data: dict) -> tuple[dict, ...]:
    entries = data.get("jobs") or []
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise DetectionError(f"{FILENAME}: jobs are [[jobs]] tables, each with a schedule and a command.")
    jobs, names = [], set()
    for entry in entries:
        unknown = sorted(set(entry) - JOB_KEYS)
        if unknown:
            raise DetectionError(f"{FILENAME}: a job has keys Hakobune does not know: {', '.join(unknown)}.")
        schedule, command = entry.get("schedule"), entry.get("command")
        if not isinstance(command, str) or not command.strip():
            raise DetectionError(f"{FILENAME}: every [[jobs]] needs a command.")
        if not isinstance(schedule, str) or len(schedule.split()) != 5 or not croniter.is_valid(schedule):
            raise DetectionError(
                f"{FILENAME}: the job `{command.strip()}` has the schedule {schedule!r}; a schedule is cron's five "
                "fields (minute hour day month weekday), like \"*/10 * * * *\" for every ten minutes."
            )
        name = entry.get("name")
        if name is None:  # from the command's last word: "python manage.py clearsessions" is clearsessions
            name = re.sub(r"[^a-z0-9_-]+", "-", command.split()[-1].rsplit("/", 1)[-1].lower()).strip("-_")[:40]
            name = name if name and name not in names else f"job-{len(jobs) + 1}"
        name = str(name).lower()
        if not JOB_NAME.match(name):
            raise DetectionError(
                f"{FILENAME}: a job's name is lower-case letters, digits, dashes and underscores; {name!r} is not."
            )
        if name in names:
            raise DetectionError(f"{FILENAME}: two jobs are called {name!r}; give each a name of its own.")
        names.add(name)
        jobs.append({"name": name, "schedule": schedule.strip(), "command": command.strip()})
    return tuple(jobs)
