"""Buildpack-style detection: each detector looks at a source tree and either
recognises it, saying why in words and returning a BuildPlan, or passes.
DETECTORS is ordered most specific first.

`detect(src)` takes the folder the app is in (already the chosen subfolder of
a monorepo); nothing here assumes it is the root of the upload."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

from . import config, dockerfile, go, google, java, multi, node, procfile, python, static
from . import doctor, php, ruby
from .plan import BuildPlan, Detection, DetectionError, NoStackDetected

DETECTORS = [dockerfile, procfile, python, go, java, ruby, php, static, node]
# The detectors that tell the language (the Procfile only gives a hint).
LANGUAGE_DETECTORS = [python, go, java, ruby, php, static, node]
# The detectors that take a start command (a Procfile's `web:` line), which
# then needs only the dependency files.
TAKE_START_COMMAND = (python, node, java, ruby, php)


def detect(src: Path, *, build_env: dict[str, str] | None = None) -> Detection:
    """The app's stack, the reason in words and the plan, with hakobune.toml's
    settings applied. `build_env` holds the service's own build settings
    (Google Cloud's GOOGLE_* names; see google.py). Raises NoStackDetected (a
    user error) with what was tried."""
    src = Path(src)
    settings = config.read(src)
    gcp = google.read(src, settings.build_env, build_env)
    entry = gcp.entrypoint
    languages, said_by = list(settings.languages), config.FILENAME
    if not languages and not settings.stack and not settings.dockerfile and dockerfile.detect(src) is None:
        # Heroku's .buildpacks; a Dockerfile wins over it, as over everything detected.
        languages, said_by = multi.read_buildpacks(src) or [], multi.FILENAME
    if len(languages) == 1:
        settings = replace(settings, stack=languages[0])
    only = partial(detect_language, stack=settings.stack or None, buildable=gcp.buildable)
    if len(languages) > 1:
        detection = multi.detect(src, languages, said_by, start_command=entry, runtime_version=gcp.runtime_version)
    elif settings.stack == dockerfile.KEY or settings.dockerfile:
        detection = dockerfile.detect(src, settings.dockerfile or None)
        if detection is None:
            raise DetectionError(
                f"hakobune.toml asks for a Dockerfile build, but {settings.dockerfile or 'Dockerfile'} "
                "is not in the app's folder."
            )
    elif entry:
        # GOOGLE_ENTRYPOINT starts the app, as a Procfile's `web:` line would (and over it).
        detection = (None if settings.stack else dockerfile.detect(src)) or only(src, start_command=entry)
    elif settings.stack:
        detection = procfile.detect(src, detect_language=only) or only(src)
    else:
        detection = _first(src, DETECTORS, buildable=gcp.buildable)
    detection = _with_google_settings(detection, gcp)
    sqlite = doctor.sqlite_files(src)
    if sqlite:
        detection = Detection(detection.stack, detection.reason, detection.plan.with_changes(
            sqlite_files=tuple(sqlite), notes=detection.plan.notes + (doctor.sqlite_note(sqlite),)))
    if not settings.empty:
        plan, said = settings.apply(detection.plan)
        if said:
            detection = Detection(
                stack=detection.stack,
                reason=f"{detection.reason}; hakobune.toml sets the {', '.join(said)}",
                plan=plan,
            )
    return detection


def _with_google_settings(detection: Detection, gcp: google.GoogleSettings) -> Detection:
    """GOOGLE_ENTRYPOINT and GOOGLE_RUNTIME_VERSION over what detection found."""
    plan, reason = detection.plan, detection.reason
    if plan.uses_own_dockerfile:
        if gcp.said:
            plan = plan.with_changes(notes=plan.notes + (
                f"{', '.join(gcp.said)} ({', '.join(sorted(set(gcp.said.values())))}) is not used: the Dockerfile "
                "says how the app is built and started.",))
        return Detection(detection.stack, reason, plan)
    sources = dict(plan.sources)
    if gcp.entrypoint:
        plan = plan.with_changes(start_command=gcp.entrypoint)
        sources["start_command"] = google.ENTRYPOINT
        reason += f"; {google.ENTRYPOINT} ({gcp.said[google.ENTRYPOINT]}) starts it (`{gcp.entrypoint}`)"
    if gcp.runtime_version:
        plan = plan.with_changes(language_version=gcp.runtime_version)
        sources["language_version"] = google.RUNTIME_VERSION
        reason += f"; {google.RUNTIME_VERSION} ({gcp.said[google.RUNTIME_VERSION]}) asks for {gcp.runtime_version}"
    if gcp.buildable and (plan.build_stack or plan.stack) not in ("go", "java"):
        plan = plan.with_changes(notes=plan.notes + (
            f"{google.BUILDABLE} names the Go package or Maven module to build; this is not a Go or Java app, so it "
            "is not used.",))
    return Detection(detection.stack, reason, plan.with_changes(sources=sources))


def detect_language(src: Path, *, start_command: str = "", stack: str | None = None,
                    buildable: str = "") -> Detection:
    """The language detectors alone (what a Procfile's `web:` line applies to),
    or only the one `stack` (else hakobune.toml) names. With `start_command`,
    detectors that can take it need only the dependency files."""
    settings = config.read(src)
    if stack is not None:
        settings = replace(settings, stack=stack)
    detectors = LANGUAGE_DETECTORS
    if settings.stack:
        detectors = [d for d in LANGUAGE_DETECTORS if d.KEY == settings.stack]
        detection = _first(src, detectors, raise_error=False, start_command=start_command, buildable=buildable)
        if detection is None and settings.stack == "static":
            return Detection("static", "hakobune.toml asks for a static site; serving the whole folder",
                             static.serve_plan(""))
        if detection is None:
            detector = detectors[0]
            raise NoStackDetected(
                f"hakobune.toml asks for the {detector.NAME} stack, but Hakobune did not find what it needs: "
                f"{detector.LOOKS_FOR}."
            )
        return detection
    return _first(src, detectors, start_command=start_command, buildable=buildable)


def _first(src: Path, detectors, *, raise_error: bool = True, start_command: str = "",
           buildable: str = "") -> Detection | None:
    for detector in detectors:
        if detector is procfile:
            detection = procfile.detect(src, detect_language=partial(detect_language, buildable=buildable))
        elif detector is go and buildable:
            detection = go.detect(src, buildable=buildable)
        elif detector is java and buildable:
            detection = java.detect(src, buildable=buildable, start_command=start_command)
        elif start_command and detector in TAKE_START_COMMAND:
            detection = detector.detect(src, start_command=start_command)
        else:
            detection = detector.detect(src)
        if detection is not None:
            return detection
    if not raise_error:
        return None
    error = NoStackDetected(no_match_message(detectors, src))
    if detectors is DETECTORS and not apps_in_subfolders(src):
        # Nothing here nor below: what would make it an app, and the nearest sample.
        error.params = doctor.nearest_sample(src)
        error.rule = "detect.unrecognized" if error.params["found"] else "detect.unrecognized_empty"
    raise error


def no_match_message(detectors=None, src: Path | None = None) -> str:
    detectors = DETECTORS if detectors is None else detectors
    tried = "\n".join(f"  • {detector.NAME}: {detector.LOOKS_FOR}" for detector in detectors)
    message = (
        "Hakobune could not tell what kind of app this is. It looked for:\n"
        f"{tried}\n"
        "Add the file your language expects at the top of the app's folder (or name the folder the app is in, "
        "if it is in a subfolder), or say how to build it in hakobune.toml."
    )
    found = apps_in_subfolders(src) if src is not None else []
    if found:
        listed = ", ".join(f"{folder} ({name})" for folder, name in found)
        message += f" It did find apps in subfolders: {listed}; set the service's folder to the one to deploy."
    return message


def apps_in_subfolders(src: Path, *, max_depth: int = 3, limit: int = 10) -> list[tuple[str, str]]:
    """(folder relative to src, detector name) of apps below `src`, shallowest
    first: what a monorepo's root holds. Skips node_modules and dot-folders."""
    found: list[tuple[str, str]] = []
    frontier = [(Path(src), 0)]
    while frontier and len(found) < limit:
        folder, depth = frontier.pop(0)
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            continue
        for child in children:
            if child.name.startswith(".") or child.name in ("node_modules", "venv", "__pycache__", "vendor"):
                continue
            for detector in [dockerfile, *LANGUAGE_DETECTORS]:
                try:
                    hit = detector.detect(child)
                except Exception:  # noqa: BLE001 - a hint only
                    hit = None
                if hit is not None:
                    found.append((child.relative_to(src).as_posix(), detector.NAME))
                    break
            else:
                if depth + 1 < max_depth:
                    frontier.append((child, depth + 1))
    return found


def apply_service_settings(
    plan: BuildPlan,
    *,
    port: int | None = None,
    health_check_path: str | None = None,
    start_command: str | None = None,
    build_command: str | None = None,
) -> BuildPlan:
    """The service's settings in the portal over the detected plan (and over
    hakobune.toml). None (or empty) means "not set: keep the plan's"."""
    changes, sources = {}, dict(plan.sources)
    if port:
        changes["port"] = int(port)
        if port != plan.port:
            sources["port"] = "service settings"
    if health_check_path:
        changes["health_check_path"] = health_check_path
        sources["health_check_path"] = "service settings"
    if start_command and not plan.uses_own_dockerfile:
        changes["start_command"] = start_command
        sources["start_command"] = "service settings"
    if build_command is not None and build_command.strip() and not plan.uses_own_dockerfile:
        changes["build_commands"] = (build_command.strip(),)
        sources["build_commands"] = "service settings"
    if not changes:
        return plan
    return plan.with_changes(**changes, sources=sources)


def eject(plan: BuildPlan, stack_refs: dict[str, str]) -> str:
    """The Dockerfile a person can download to build this plan themselves
    ("eject"). `stack_refs` maps each stack to the image its FROM line names;
    the caller says which (the builder that would build it knows: for this
    host's, LocalDockerBuilder.stack_refs()). Detection knows no images."""

    def image(stack: str) -> str:
        ref = (stack_refs.get(stack) or "").strip()
        if not ref:
            raise ValueError(f"no image given for the {stack} stack")
        return ref

    build_image = image(plan.build_stack) if plan.build_stack else None
    return plan.dockerfile(image(plan.stack) if not plan.uses_own_dockerfile else "", build_image=build_image)


__all__ = [
    "BuildPlan",
    "Detection",
    "DetectionError",
    "NoStackDetected",
    "DETECTORS",
    "LANGUAGE_DETECTORS",
    "apply_service_settings",
    "apps_in_subfolders",
    "detect",
    "detect_language",
    "eject",
    "no_match_message",
]
