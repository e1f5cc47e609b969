from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# The uid:gid apps run as; stacks create this user.
APP_USER = "10001:10001"
CA_BUNDLE_IN_IMAGE = "/etc/ssl/certs/ca-certificates.crt"
# Files the builder adds to the build context, beside the person's source.
GENERATED_DIR = ".hakobune"


class NoStackDetected(Exception):
    """No detector recognised the source: a user error."""


@dataclass(frozen=True)
class BuildPlan:
    """The container recipe for an app, in a form a person can read."""

    stack: str  # "python"
    start_command: str
    port: int = 8080
    stack_version: str = ""
    # Files copied before the install step, so that the dependency layer is
    # rebuilt only when they change.
    dependency_files: tuple[str, ...] = ()
    install_commands: tuple[str, ...] = ()
    build_commands: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["dependency_files"] = list(self.dependency_files)
        data["install_commands"] = list(self.install_commands)
        data["build_commands"] = list(self.build_commands)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> BuildPlan:
        return cls(
            **{
                **data,
                "dependency_files": tuple(data.get("dependency_files", ())),
                "install_commands": tuple(data.get("install_commands", ())),
                "build_commands": tuple(data.get("build_commands", ())),
            }
        )

    def dockerfile(self, base_image: str, *, with_ca_bundle: bool = False) -> str:
        """The equivalent Dockerfile: stack, dependencies, code, in that order
        of layers, so that a code-only change reuses the dependency layer."""
        lines = [f"FROM {base_image}"]
        env = {"PORT": str(self.port), **self.env}
        if with_ca_bundle:
            lines.append(f"COPY {GENERATED_DIR}/ca-certificates.crt {CA_BUNDLE_IN_IMAGE}")
            env.update(
                SSL_CERT_FILE=CA_BUNDLE_IN_IMAGE, PIP_CERT=CA_BUNDLE_IN_IMAGE, REQUESTS_CA_BUNDLE=CA_BUNDLE_IN_IMAGE
            )
        lines.append("ENV " + " ".join(f"{key}={_env_value(value)}" for key, value in env.items()))
        lines.append("WORKDIR /app")
        if self.dependency_files:
            lines.append(f"COPY {' '.join(self.dependency_files)} ./")
        for command in self.install_commands:
            lines.append(f"RUN {command}")
        lines.append("COPY . .")
        for command in self.build_commands:
            lines.append(f"RUN {command}")
        lines.append(f"USER {APP_USER}")
        lines.append(f"EXPOSE {self.port}")
        lines.append(f"CMD {json.dumps(['/bin/sh', '-c', 'exec ' + self.start_command])}")
        return "\n".join(lines) + "\n"


def _env_value(value: str) -> str:
    return json.dumps(value) if any(ch in value for ch in ' "\'$\\') else value


@dataclass(frozen=True)
class Detection:
    stack: str
    reason: str
    plan: BuildPlan
