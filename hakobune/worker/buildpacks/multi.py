"""Apps built with more than one language: hakobune.toml's
`languages = ["node", "python"]`, or Heroku's `.buildpacks` file, whose lines
name buildpacks by URL. Each language's install and build steps run in the
order given (the installs first, on the dependency files alone, then the
builds, on the code), on a stack that has them all; the last language starts
the app (or the Procfile's `web:` line does).

Only buildpacks Hakobune knows are followed, as its own languages: a
buildpack's code is never fetched or run."""

from __future__ import annotations

import re
from pathlib import Path

from . import node, procfile, python
from ._files import is_file, read_text
from .plan import BuildPlan, Detection, DetectionError, NoStackDetected

FILENAME = ".buildpacks"
# The stacks of more than one language, and their languages (the order versions are told in).
COMBINED = {"python-node": ("python", "node")}
# The stack of each set of languages that can be combined.
STACKS = {frozenset(languages): stack for stack, languages in COMBINED.items()}
DETECTORS = {"node": node, "python": python}
NAMES = {"node": "Node.js", "python": "Python", "go": "Go", "java": "Java"}
# Heroku's buildpacks, by the names and URLs people write in .buildpacks
# (a #ref or .git at the end is left out).
KNOWN = {"nodejs": "node", "python": "python", "go": "go", "java": "java"}
BUILDPACK = re.compile(
    r"^(?:heroku/(?P<short>[a-z]+)"
    r"|https?://github\.com/heroku/heroku-buildpack-(?P<repo>[a-z]+)(?:\.git)?/?"
    r"|https?://buildpack-registry\.s3\.amazonaws\.com/buildpacks/heroku/(?P<tarball>[a-z]+)\.tgz)"
    r"(?:#[\w.\-/]+)?$"
)


def read_buildpacks(src: Path) -> list[str] | None:
    """The languages .buildpacks names, in order; None without the file.
    Raises DetectionError for a line naming a buildpack Hakobune does not know."""
    if not is_file(src, FILENAME):
        return None
    languages = []
    for number, line in enumerate(read_text(src, FILENAME).splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        match = BUILDPACK.match(entry)
        name = next((g for g in match.groups() if g), "") if match else ""
        if name not in KNOWN:
            raise DetectionError(
                f"{FILENAME} line {number} names {entry[:200]}, a buildpack Hakobune does not know. Hakobune builds "
                "with its own languages and never downloads a buildpack; it follows heroku/nodejs, heroku/python, "
                "heroku/go and heroku/java (or their GitHub URLs). Remove that line, or say how to build the app in "
                "hakobune.toml."
            )
        if KNOWN[name] not in languages:
            languages.append(KNOWN[name])
    if not languages:
        raise DetectionError(f"{FILENAME} names no buildpack. Name the languages the app is built with "
                             "(heroku/nodejs, heroku/python), or remove the file.")
    return languages


def detect(src: Path, languages: list[str], said_by: str, *, start_command: str = "",
           runtime_version: str = "") -> Detection:
    """The plan of an app built with `languages` (two or more), in that order;
    `said_by` is where they were named (".buildpacks", "hakobune.toml").
    `start_command` (GOOGLE_ENTRYPOINT) starts it over the Procfile's;
    `runtime_version` (GOOGLE_RUNTIME_VERSION) is the version of the language
    that starts it. The version each language asks for is in the plan's
    `language_versions`, for the stack's variant that has them all."""
    stack = STACKS.get(frozenset(languages))
    if stack is None:
        names = " and ".join(NAMES.get(language, language) for language in languages)
        raise DetectionError(
            f"{said_by} asks for {names} together; Hakobune has a stack with more than one language only for "
            "Node.js and Python. Build the app in one language, or bring a Dockerfile."
        )
    runner = languages[-1]
    web = (procfile.processes(src) or {}).get("web", "")
    procfile_starts = bool(web) and not start_command
    web = start_command or web
    parts: list[tuple[str, BuildPlan]] = []
    words = []
    for language in languages:
        detector = DETECTORS[language]
        if language == runner:
            detection = detector.detect(src, start_command=web) if web else detector.detect(src)
            if detection is None or detection.plan.build_stack:
                raise NoStackDetected(
                    f"{said_by} names {detector.NAME} last, so it starts the app, but Hakobune did not find what "
                    f"it needs: {detector.LOOKS_FOR}."
                )
            words.append(f"{detector.NAME}: {detection.reason}, which starts the app")
            parts.append((language, detection.plan))
        else:
            found = detector.build_steps(src)
            if found is None:
                raise NoStackDetected(
                    f"{said_by} names {detector.NAME}, but Hakobune did not find what it needs: "
                    f"{detector.BUILD_LOOKS_FOR}."
                )
            plan, reason = found
            words.append(f"{detector.NAME}: {reason}")
            parts.append((language, plan))
    run = parts[-1][1]
    if runtime_version:
        run = run.with_changes(language_version=runtime_version,
                               sources={**run.sources, "language_version": "GOOGLE_RUNTIME_VERSION"})
        parts[-1] = (runner, run)
    asked = {language: plan for language, plan in parts if plan.language_version}
    env: dict[str, str] = {}
    for _, plan in parts:
        env.update(plan.env)
    env.update(run.env)  # the app's own language wins (PATH with its venv)
    plan = run.with_changes(
        stack=stack,
        dependency_files=tuple(dict.fromkeys(f for _, p in parts for f in p.dependency_files)),
        install_commands=tuple(c for _, p in parts for c in p.install_commands),
        build_commands=tuple(c for _, p in parts for c in p.build_commands),
        env=env,
        notes=tuple(dict.fromkeys(n for _, p in parts for n in p.notes)),
        language_version="",
        language_versions={language: plan.language_version for language, plan in asked.items()},
        sources={**{key: value for key, value in run.sources.items() if key != "language_version"},
                 **{f"language_version.{language}": plan.sources.get("language_version", "")
                    for language, plan in asked.items()},
                 **({"start_command": "Procfile"} if procfile_starts else {})},
    )
    if web:
        plan = plan.with_changes(start_command=web)
    order = ", then ".join(NAMES[language] for language in languages)
    reason = f"{said_by} asks for {order}, built in that order on the {stack} stack. " + "; ".join(words)
    if procfile_starts:
        reason += f"; the Procfile's `web:` line starts it (`{web}`)"
    return Detection(stack=stack, reason=reason, plan=plan)
