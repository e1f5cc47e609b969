from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace

# The uid:gid apps run as; stacks create this user.
APP_USER = "10001:10001"
CA_BUNDLE_IN_IMAGE = "/etc/ssl/certs/ca-certificates.crt"
# Files the builder adds to the build context, beside the person's source.
GENERATED_DIR = ".hakobune"
# The stack name of apps built from their own Dockerfile.
DOCKERFILE_STACK = "dockerfile"
# Environment that points every tool at the CA bundle (HTTPS through a proxy).
CA_ENV = {
    "SSL_CERT_FILE": CA_BUNDLE_IN_IMAGE,
    "PIP_CERT": CA_BUNDLE_IN_IMAGE,
    "REQUESTS_CA_BUNDLE": CA_BUNDLE_IN_IMAGE,
    "NODE_EXTRA_CA_CERTS": CA_BUNDLE_IN_IMAGE,
    "NPM_CONFIG_CAFILE": CA_BUNDLE_IN_IMAGE,
    "GIT_SSL_CAINFO": CA_BUNDLE_IN_IMAGE,
}
_TUPLE_FIELDS = ("dependency_files", "install_commands", "build_commands", "artifacts", "notes", "jobs", "sqlite_files")
_SHELL_LIST = re.compile(r"[;&|\n]")


class NoStackDetected(Exception):
    """No detector recognised the source: a user error."""


class DetectionError(NoStackDetected):
    """The source says something Hakobune cannot follow (a Procfile without
    `web`, a hakobune.toml it cannot read): a user error, with what to change."""


@dataclass(frozen=True)
class BuildPlan:
    """The container recipe for an app, in a form a person can read.

    Stored as JSON on Build.plan: `to_dict()`/`from_dict()` round-trip, and
    `from_dict` reads plans written by older versions (fewer keys) and ignores
    keys it does not know."""

    stack: str  # the run stage's stack: "python", "node", "static", or "dockerfile"
    start_command: str
    port: int = 8080
    stack_version: str = ""
    # Files copied before the install step, so that the dependency layer is
    # rebuilt only when they change.
    dependency_files: tuple[str, ...] = ()
    install_commands: tuple[str, ...] = ()
    build_commands: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    # Two-stage builds: dependencies and build commands run on `build_stack`,
    # and only `artifacts` (paths relative to /app) are copied into the run image
    # on `stack`. Empty: one stage.
    build_stack: str = ""
    build_stack_version: str = ""
    artifacts: tuple[str, ...] = ()
    # Environment of the build steps only (not of the running app).
    build_env: dict[str, str] = field(default_factory=dict)
    # The language version the app asks for (.python-version, engines.node, go.mod),
    # and the variant of the stack chosen for it ("": the default stack; see versions.py).
    language_version: str = ""
    stack_variant: str = ""
    # A stack of more than one language (python-node): the version each asks
    # for, {"python": "3.13", "node": "^20"}, where from in sources["language_version.<language>"].
    language_versions: dict[str, str] = field(default_factory=dict)
    # "" means: the service's own setting.
    health_check_path: str = ""
    # The dockerfile stack: the person's Dockerfile (relative to the source) and
    # its build arguments.
    dockerfile_path: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    # Advice shown with the plan ("add whitenoise so static files are served").
    notes: tuple[str, ...] = ()
    # Where the settings came from, e.g. {"start_command": "Procfile", "port": "hakobune.toml"}.
    sources: dict[str, str] = field(default_factory=dict)
    # Whether a web process serves requests (a Procfile of workers only has none).
    web: bool = True
    # Process types besides web (the Procfile's other lines, hakobune.toml's
    # [processes]): name: command. They run the same image, not routed.
    processes: dict[str, str] = field(default_factory=dict)
    # The release phase: run once per new release before its instances start.
    release_command: str = ""
    # Scheduled jobs (hakobune.toml's [[jobs]]): {"name", "schedule", "command"}.
    jobs: tuple[dict, ...] = ()
    # SQLite files the app keeps beside its code (Django's default database):
    # a container's files are read-only, so the portal says what keeps the data.
    sqlite_files: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in _TUPLE_FIELDS:
            data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> BuildPlan:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for name in _TUPLE_FIELDS:
            values[name] = tuple(data.get(name) or ())
        values["jobs"] = tuple(dict(job) for job in values["jobs"] if isinstance(job, dict))
        values["web"] = bool(data.get("web", True))
        values["release_command"] = str(data.get("release_command") or "")
        for name in ("env", "build_env", "build_args", "sources", "processes", "language_versions"):
            values[name] = dict(data.get(name) or {})
        values["port"] = int(values.get("port") or 8080)
        return cls(**values)

    def with_changes(self, **changes) -> BuildPlan:
        return replace(self, **changes)

    @property
    def uses_own_dockerfile(self) -> bool:
        return self.stack == DOCKERFILE_STACK

    @property
    def stacks(self) -> tuple[str, ...]:
        """Every stack this plan builds on: the build stage's first."""
        if self.uses_own_dockerfile:
            return ()
        return tuple(s for s in (self.build_stack, self.stack) if s)

    def steps(self) -> list[tuple[str, str]]:
        """The plan as (phase, command) pairs, in order: "install", "build", "start"."""
        return (
            [("install", c) for c in self.install_commands]
            + [("build", c) for c in self.build_commands]
            + [("start", self.start_command)]
        )

    def dockerfile(self, base_image: str, *, build_image: str | None = None, with_ca_bundle: bool = False) -> str:
        """The equivalent Dockerfile: stack, dependencies, code, build, in that
        order of layers, so that a code-only change reuses the dependency layer.
        `base_image` is the run stage's image, `build_image` the build stage's
        (two-stage plans only)."""
        if self.uses_own_dockerfile:
            return (
                f"# This app is built from its own Dockerfile ({self.dockerfile_path or 'Dockerfile'}),\n"
                "# used as it is; Hakobune adds nothing to it.\n"
            )
        two_stage = bool(self.build_stack)
        if two_stage and not build_image:
            raise ValueError(f"this plan builds on {self.build_stack} first: give build_image")
        lines = [f"FROM {build_image} AS build" if two_stage else f"FROM {base_image}"]
        env = {} if two_stage else {"PORT": str(self.port), **self.env}
        env.update(self.build_env)
        if with_ca_bundle:
            lines.append(f"COPY {GENERATED_DIR}/ca-certificates.crt {CA_BUNDLE_IN_IMAGE}")
            env.update(CA_ENV)
        if env:
            lines.append(_env_line(env))
        lines.append("WORKDIR /app")
        lines.append("# Dependencies: this layer is reused until these files change.")
        if self.dependency_files:
            lines.append(f"COPY {' '.join(self.dependency_files)} ./")
        for command in self.install_commands:
            lines.append(f"RUN {command}")
        # How the app starts, before the code: each of these is a step of its own,
        # and before the code layer they come from the cache on a code-only change.
        run_settings = [
            f"EXPOSE {self.port}",
            f"CMD {json.dumps(['/bin/sh', '-c', shell_command(self.start_command)])}",
        ]
        if two_stage:
            lines.append("# Your code, built.")
            lines.append("COPY . .")
            for command in self.build_commands:
                lines.append(f"RUN {command}")
            lines.append("")
            lines.append(f"FROM {base_image}")
            lines.append(_env_line({"PORT": str(self.port), **self.env}))
            lines.append("WORKDIR /app")
            lines += run_settings
            lines.append(f"USER {APP_USER}")
            lines.append("# Only what the build made; no compiler, no sources.")
            for artifact in self.artifacts:
                path = artifact.strip("/")
                lines.append(f"COPY --from=build /app/{path} /app/{path}")
        else:
            lines += run_settings
            if not self.build_commands:
                lines.append(f"USER {APP_USER}")
            lines.append("# Your code.")
            lines.append("COPY . .")
            for command in self.build_commands:
                lines.append(f"RUN {command}")
            if self.build_commands:
                # The build commands run as root (they write in /app); the app does not.
                lines.append(f"USER {APP_USER}")
        return "\n".join(lines) + "\n"


def shell_command(command: str) -> str:
    """`exec` a simple command so the app is PID 1 and gets the stop signal;
    leave a command list (`a && b`) to the shell."""
    command = command.strip()
    if _SHELL_LIST.search(command) or command.startswith("exec "):
        return command
    return "exec " + command


def _env_line(env: dict[str, str]) -> str:
    return "ENV " + " ".join(f"{key}={_env_value(value)}" for key, value in env.items())


def _env_value(value: str) -> str:
    return json.dumps(value) if any(ch in value for ch in ' "\'$\\') or value == "" else value


@dataclass(frozen=True)
class Detection:
    stack: str
    reason: str
    plan: BuildPlan
