"""What a person's own Dockerfile may ask of this host's Docker Engine.

A Dockerfile is built as it is, but some of its instructions are carried out
by the Docker Engine itself, on the host, outside the build's confined
network: `ADD <URL>` is downloaded by the engine (from the host's loopback
too: Caddy's admin API, services published on 127.0.0.1), and `FROM` and
`COPY --from=` take any image the engine holds, by name or by an id prefix,
other teams' images included. So before a build, `check()` reads the
Dockerfile and refuses, each time with a sentence saying which line, why, and
what to write instead:

- `FROM` and `COPY --from=` naming anything but: an earlier stage of the same
  Dockerfile (its name or number), `scratch`, Hakobune's stacks (the
  configured images and hakobune/stack-*), the team's own images
  (hakobune/<team>/...), or images an administrator allows (patterns such as
  `python:*` or `docker.io/library/*`). Another team's images are refused even
  when a pattern would match them. A reference made of build arguments
  (`FROM ${BASE}`) is resolved from the ARG defaults and the build arguments
  of hakobune.toml, or refused. Image ids (`sha256:...`, or a bare hex name,
  which the engine resolves as an id prefix) are refused unless the image is
  one of the team's own.
- `ADD` of a URL (http, https, git, any scheme), also when a variable holds it.
- `VOLUME`: refused rather than ignored. Hakobune builds a Dockerfile as it
  is; silently dropping a line would make the image differ from its recipe,
  and a volume would only keep data on the host's disk, outside the service's
  limits, lost at the next release anyway.
- `RUN` options (`--mount`, `--network`, `--security`): they would reach past
  the build's network or into other images.
- The same rules for the instruction inside `ONBUILD`, and for the ONBUILD
  triggers of a base image the engine already holds.
- Build arguments named like a proxy (`HTTP_PROXY`, ...): the engine leaves
  them out of its layer cache's key, so a step that went through one team's
  proxy would be reused as is by another team's identical step.

The parser follows the Docker Engine's: parser directives (`# escape=`),
comments, line continuations, JSON and shell forms, and `$VAR`, `${VAR}`,
`${VAR:-default}`, `${VAR:+word}` in the words it needs. Nothing here knows
Django or the engine: what it needs of the engine comes in as callables."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hakobune.worker import treefs

from .base import BuildError

MAX_BYTES = 1024 * 1024  # a Dockerfile larger than this is not one a person wrote
HAKOBUNE_NAMESPACE = "docker.io/hakobune/"
STACK_REPOSITORY = re.compile(r"^docker\.io/hakobune/stack-[a-z0-9]+(?:[._-][a-z0-9]+)*$")
DEFAULT_DOMAIN = "docker.io"

_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}$")
_HEX = re.compile(r"^[0-9a-f]+$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^git@", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$")
_NAME = re.compile(r"[A-Za-z0-9_]")
_REFUSED_RUN_OPTIONS = ("--mount", "--network", "--security")
# Build arguments the engine leaves out of its layer cache's key: a step built
# through one team's proxy would be reused by another team's identical step.
PROXY_ARGS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")


class DockerfileRefused(BuildError):
    """The person's Dockerfile asks for something Hakobune does not do: a user
    error, in a sentence that says which line and what to write instead."""

    def __init__(self, message: str):
        super().__init__(message, user_error=True, transient=False)


# -- image references ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    """A reference the way the Docker Engine reads it: docker.io/library/python:3.12-slim."""

    repository: str  # with its registry: docker.io/library/python
    tag: str = ""
    digest: str = ""

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    return domain, path


def parse_reference(text: str) -> ImageRef:
    """The normalised reference, or ValueError when the engine would not take it either."""
    name, at, digest = text.partition("@")
    if at and not _DIGEST.match(digest):
        raise ValueError(f"{digest!r} is not a digest")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ValueError(f"{tag!r} is not a tag")
    if not name or len(name) > 255:
        raise ValueError("no image name")
    domain, path = _split_domain(name)
    if domain != DEFAULT_DOMAIN and not _DOMAIN.match(domain):
        raise ValueError(f"{domain!r} is not a registry")
    if not all(_PATH_COMPONENT.match(component) for component in path.split("/")):
        raise ValueError(f"{name!r} is not an image name (names are lowercase)")
    if not tag and not digest:
        tag = "latest"
    return ImageRef(f"{domain}/{path}", tag, digest)


def looks_like_an_image_id(text: str) -> bool:
    """`sha256:<hex>`, or a bare hex word without a tag: the engine looks
    either up as an image id (or a prefix of one) when no image has that name."""
    if text.lower().startswith("sha256:"):
        return True
    return bool(_HEX.match(text))


@dataclass(frozen=True)
class AllowedImages:
    """An administrator's patterns: `python:*` (any tag or digest of that
    repository), `docker.io/library/*`, `ghcr.io/acme/base:1.2`, or `*`."""

    patterns: tuple[str, ...] = ()

    def allows(self, ref: ImageRef) -> bool:
        return any(_matches(pattern, ref) for pattern in self.patterns)


def _matches(pattern: str, ref: ImageRef) -> bool:
    pattern = pattern.strip()
    if not pattern:
        return False
    if pattern == "*":
        return True
    tag_pattern = None
    repository_pattern = pattern
    if ":" in pattern.rsplit("/", 1)[-1]:  # as in a reference: a colon after the last slash starts the tag
        repository_pattern, tag_pattern = pattern.rsplit(":", 1)
    domain, path = _split_domain(repository_pattern)
    if not fnmatch.fnmatchcase(ref.repository, f"{domain}/{path}"):
        return False
    if tag_pattern is None or tag_pattern == "*":
        return True
    return bool(ref.tag) and not ref.digest and fnmatch.fnmatchcase(ref.tag, tag_pattern)


def allowed_patterns(text: str | Iterable[str]) -> tuple[str, ...]:
    """A setting's patterns (comma or whitespace separated), checked: each one a
    reference, with `*` wildcards, that could name an image."""
    words = re.split(r"[\s,]+", text) if isinstance(text, str) else list(text)
    patterns = []
    for word in (w.strip() for w in words):
        if not word:
            continue
        if word != "*":
            probe = word.replace("*", "x").replace("?", "x")
            try:
                parse_reference(probe)
            except ValueError as exc:
                raise ValueError(f"{word!r} is not an image pattern: {exc}") from None
        patterns.append(word)
    return tuple(patterns)


# -- the Dockerfile, as the engine reads it ----------------------------------------------


@dataclass
class Instruction:
    line: int  # the first line of it, counted from 1
    keyword: str  # upper case
    rest: str  # after the keyword, continuation lines joined
    text: str  # as written (joined), for messages
    escape: str = "\\"  # the Dockerfile's escape character


def instructions(text: str) -> list[Instruction]:
    lines = text.removeprefix("\ufeff").splitlines()  # the engine skips a byte order mark
    escape = "\\"
    index = 0
    # Parser directives: only at the very top, before any comment, blank line or instruction.
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index].strip())
        if not match:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("\\", "`"):
            escape = match.group(2)
        index += 1
    found = []
    current: list[str] = []
    start = 0
    for number in range(index, len(lines)):
        raw = lines[number]
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and (not stripped or stripped.startswith("#")):
            continue  # comments and blank lines inside a continued instruction are dropped
        if not current:
            start = number + 1
        body = raw.rstrip()
        if body.endswith(escape):
            current.append(body[:-1])
            continue
        current.append(body)
        found.append(_instruction(start, " ".join(part.strip() for part in current)))
        current = []
    if current:
        found.append(_instruction(start, " ".join(part.strip() for part in current)))
    for instruction in found:
        instruction.escape = escape
    return found


def _instruction(line: int, joined: str) -> Instruction:
    keyword, _, rest = joined.strip().partition(" ")
    return Instruction(line=line, keyword=keyword.upper(), rest=rest.strip(), text=joined.strip())


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Words split at unquoted whitespace, quotes and escapes kept (expand() reads them)."""
    words, word, quote, i = [], "", "", 0
    started = False
    while i < len(text):
        char = text[i]
        if char == escape and quote != "'" and i + 1 < len(text):
            word += char + text[i + 1]
            started = True
            i += 2
            continue
        if quote:
            if char == quote:
                quote = ""
            word += char
        elif char in "'\"":
            quote = char
            word += char
            started = True
        elif char.isspace():
            if started:
                words.append(word)
                word, started = "", False
        else:
            word += char
            started = True
        i += 1
    if started:
        words.append(word)
    return words


UNKNOWN = object()


def expand(word: str, env: dict, escape: str = "\\") -> tuple[str, list[str]]:
    """The word with its quotes removed and its variables replaced; and the
    names whose value Hakobune cannot know (not declared by ARG or ENV in this
    Dockerfile, or given no value here). Values of `env` are strings, None
    (declared without a value: empty) or UNKNOWN."""
    out, unknown, quote, i = [], [], "", 0
    while i < len(word):
        char = word[i]
        if char == escape and quote != "'" and i + 1 < len(word):
            out.append(word[i + 1])
            i += 2
            continue
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                out.append(char)
            i += 1
            continue
        if char in "'\"" and (not quote or quote == char):
            quote = "" if quote else char
            i += 1
            continue
        if char != "$":
            out.append(char)
            i += 1
            continue
        # A variable.
        if i + 1 < len(word) and word[i + 1] == "{":
            end = word.find("}", i + 2)
            if end == -1:
                unknown.append(word[i:])
                break
            inner = word[i + 2:end]
            i = end + 1
            match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])(.*))?$", inner, re.DOTALL)
            if not match:
                unknown.append(inner)
                continue
            name, operator, alternative = match.group(1), match.group(2), match.group(3) or ""
            value = env.get(name, UNKNOWN)
            if value is UNKNOWN:
                if operator in (":-", "-"):
                    out.append(expand(alternative, env, escape)[0])
                else:
                    unknown.append(name)
                continue
            value = value or ""
            if operator == ":-":
                out.append(value or expand(alternative, env, escape)[0])
            elif operator == "-":
                out.append(value)
            elif operator in (":+", "+"):
                out.append(expand(alternative, env, escape)[0] if (value or operator == "+") else "")
            elif operator in (":?", "?"):
                if not value and operator == ":?":
                    unknown.append(name)
                out.append(value)
            else:
                out.append(value)
            continue
        j = i + 1
        while j < len(word) and _NAME.match(word[j]):
            j += 1
        if j == i + 1:
            out.append("$")
            i += 1
            continue
        name = word[i + 1:j]
        i = j
        value = env.get(name, UNKNOWN)
        if value is UNKNOWN:
            unknown.append(name)
        else:
            out.append(value or "")
    return "".join(out), unknown


def _flags(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading `--name=value` (or `--name`) options, and the words after them."""
    flags = {}
    index = 0
    while index < len(words) and words[index].startswith("--"):
        name, _, value = words[index][2:].partition("=")
        flags[name.lower()] = value
        index += 1
    return flags, words[index:]


def _assignments(rest: str, escape: str, legacy: bool) -> list[tuple[str, str | None]]:
    """ARG NAME[=value] / ENV NAME=value ... (and ENV's old `NAME value` form)."""
    words = split_words(rest, escape)
    if legacy and words and "=" not in words[0]:
        return [(words[0], rest[len(words[0]):].strip())]
    pairs = []
    for word in words:
        name, equals, value = word.partition("=")
        pairs.append((name, value if equals else None))
    return pairs


# -- the policy ---------------------------------------------------------------------------


@dataclass
class Policy:
    """What a team's Dockerfile may build on. `stacks` are the exact images of
    Hakobune's stacks; `allowed` the administrator's patterns; `is_own_image`
    says whether an image id (prefix) names one of the team's own images;
    `triggers_of` gives the ONBUILD triggers of a base image the engine holds."""

    team: str
    stacks: tuple[str, ...] = ()
    allowed: AllowedImages = field(default_factory=AllowedImages)
    is_own_image: Callable[[str], bool] = lambda ref: False
    triggers_of: Callable[[str], list[str]] = lambda ref: []

    @property
    def own_repository_prefix(self) -> str:
        return f"{HAKOBUNE_NAMESPACE}{self.team}/"

    def what_is_allowed(self) -> str:
        stacks = ", ".join(sorted(set(self.stacks))) or "hakobune/stack-…"
        allowed = ", ".join(self.allowed.patterns)
        return (
            f"Hakobune's stacks ({stacks}), your team's own images (hakobune/{self.team}/…), scratch, "
            "an earlier stage of this Dockerfile"
            + (f", or images your administrator allows ({allowed})" if allowed else "")
        )

    def image_problem(self, written: str) -> str | None:
        """Why `written` (after its variables were replaced) may not be built
        on, or None when it may."""
        if written.lower() == "scratch":
            return None
        if looks_like_an_image_id(written):
            if self.is_own_image(written):
                return None
            return (
                "looks like an image id (the Docker Engine would look it up as one) and is not one of your "
                "team's images; name an image by its repository and tag instead"
            )
        try:
            ref = parse_reference(written)
        except ValueError as exc:
            return f"is not an image name Hakobune can read ({exc})"
        if ref.repository.startswith(HAKOBUNE_NAMESPACE):
            if ref.repository.startswith(self.own_repository_prefix) or STACK_REPOSITORY.match(ref.repository):
                return None
            parts = ref.repository[len(HAKOBUNE_NAMESPACE):].split("/")
            if len(parts) >= 2:
                return f"is an image of another team ({parts[0]})"
            return "is not one of Hakobune's stacks"
        if any(_same_image(ref, stack) for stack in self.stacks):
            return None
        if self.allowed.allows(ref):
            return None
        return "is not an image Hakobune builds on"


def _same_image(ref: ImageRef, stack: str) -> bool:
    try:
        return parse_reference(stack) == ref
    except ValueError:
        return False


def _excerpt(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _Stage:
    index: int
    name: str
    env: dict


def check(text: str, policy: Policy, *, build_args: dict[str, str] | None = None,
          path: str = "Dockerfile") -> list[str]:
    """Refuses (DockerfileRefused) what the Dockerfile may not do; returns the
    images it builds on, as written after its variables were replaced."""
    build_args = {str(name): str(value) for name, value in (build_args or {}).items()}
    proxies = sorted(name for name in build_args if name.upper() in PROXY_ARGS)
    if proxies:
        raise DockerfileRefused(
            f"hakobune.toml sets the build argument {', '.join(proxies)}. Hakobune's builds take no proxy from an "
            "app: the Docker Engine leaves proxy settings out of its build cache, so a step built through your proxy "
            "could be reused by another team's build. Remove it from [build_args]; builds reach package indexes "
            "without one."
        )
    found = instructions(text)
    global_args: dict = {}
    stages: list[_Stage] = []
    bases: list[str] = []

    def refuse(instruction: Instruction, why: str, instead: str, *, where: str = "") -> None:
        where = where or f"Line {instruction.line} of your {path}"
        raise DockerfileRefused(f"{where}, `{_excerpt(instruction.text)}`, {why}. {instead}")

    def check_image(instruction: Instruction, written: str, *, what: str, where: str = "") -> None:
        problem = policy.image_problem(written)
        if problem:
            refuse(instruction, f"{what} `{written}`, which {problem}",
                   f"A build may use only {policy.what_is_allowed()}. Use one of those"
                   + ("; ask your administrator if your team needs another image." if "Hakobune builds on" in problem
                      else "."), where=where)

    def check_body(instruction: Instruction, stage: _Stage | None, escape: str, *, where: str = "",
                   onbuild: bool = False) -> None:
        keyword = instruction.keyword
        env = stage.env if stage else {}
        if keyword == "ONBUILD" and not onbuild:
            inner = _instruction(instruction.line, instruction.rest)
            inner.text = instruction.text
            check_body(inner, stage, escape, where=where, onbuild=True)
            return
        if keyword == "VOLUME":
            refuse(instruction, "declares a volume",
                   "Hakobune does not build images with VOLUME: a volume would keep what your app writes on the "
                   "host's disk, outside your service's limits, and it is emptied at every new release anyway. "
                   "Remove the line; keep data in a database, and write scratch files to /tmp.", where=where)
        if keyword == "RUN":
            flags, _ = _flags(split_words(instruction.rest, escape))
            used = [f"--{name}" for name in flags if f"--{name}" in _REFUSED_RUN_OPTIONS]
            if used:
                refuse(instruction, f"asks for {', '.join(used)}",
                       "Hakobune's builds do not offer RUN options: every RUN step runs on the build network, "
                       "without other images mounted. Remove the option and do the work in the step itself.",
                       where=where)
        if keyword in ("ADD", "COPY"):
            rest = instruction.rest
            words = split_words(rest, escape)
            flags, words = _flags(words)
            if "from" in flags:
                source, unknown = expand(flags["from"], env, escape)
                if unknown:
                    names = ", ".join("$" + name for name in unknown)
                    refuse(instruction, f"takes files --from an image named with {names}, whose value Hakobune "
                           "cannot tell",
                           "Write the stage or image name itself.", where=where)
                if not _is_earlier_stage(source, stages, stage):
                    check_image(instruction, source, what="copies files from", where=where)
            if keyword == "ADD":
                remainder = " ".join(words)
                sources = _json_words(remainder)
                if sources is None:
                    sources = words
                for source in sources[:-1] if len(sources) > 1 else sources:
                    value, unknown = expand(source, env, escape)
                    if _URL.match(value) or _URL.match(source):
                        refuse(instruction, f"downloads a URL ({_excerpt(value, 80)})",
                               "Hakobune does not let ADD download: the Docker Engine would fetch it from the host "
                               "itself, outside your build's network. Download it in a RUN step instead (for example "
                               "`RUN curl -fsSLo /app/file https://…`), or put the file in your app's folder and "
                               "COPY it.", where=where)
                    if unknown:
                        refuse(instruction,
                               f"adds a source named with {', '.join('$' + u for u in unknown)}, whose value Hakobune "
                               "cannot tell",
                               "Write the path itself, or declare the value with ARG or ENV earlier in the "
                               "Dockerfile.", where=where)
        if keyword == "FROM" and onbuild:
            refuse(instruction, "uses FROM inside ONBUILD", "Remove it: the Docker Engine does not allow it either.",
                   where=where)
        if stage is not None and keyword in ("ARG", "ENV") and not onbuild:
            for name, value in _assignments(instruction.rest, escape, legacy=keyword == "ENV"):
                if keyword == "ARG":
                    if name in build_args:
                        stage.env[name] = build_args[name]
                    elif value is not None:
                        stage.env[name] = expand(value, stage.env, escape)[0]
                    else:
                        stage.env[name] = global_args.get(name)
                else:
                    expanded, unknown = expand(value or "", stage.env, escape)
                    stage.env[name] = UNKNOWN if unknown else expanded

    for instruction in found:
        escape = instruction.escape
        keyword = instruction.keyword
        if keyword == "ARG" and not stages:
            for name, value in _assignments(instruction.rest, escape, legacy=False):
                if name in build_args:
                    global_args[name] = build_args[name]
                elif value is not None:
                    global_args[name] = expand(value, global_args, escape)[0]
                else:
                    global_args[name] = None
            continue
        if keyword == "FROM":
            flags, words = _flags(split_words(instruction.rest, escape))
            if not words:
                refuse(instruction, "names no image", "Write the image to start from, for example "
                       f"`FROM {policy.stacks[0] if policy.stacks else 'hakobune/stack-python:bookworm'}`.")
            # An ARG declared without a value gives FROM nothing to go on.
            meta = {key: UNKNOWN if value is None else value for key, value in global_args.items()}
            written, unknown = expand(words[0], meta, escape)
            if unknown or not written:
                names = ", ".join(unknown) or words[0]
                refuse(instruction, f"starts from an image named by {names}, which has no value here",
                       "Give the build argument a default before the first FROM (for example "
                       "`ARG BASE_IMAGE=hakobune/stack-python:bookworm`), or set it in hakobune.toml under "
                       "[build_args].")
            name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else ""
            if not any(written.lower() == earlier.name for earlier in stages if earlier.name):
                check_image(instruction, written, what="starts from")
                if written.lower() != "scratch":
                    bases.append(written)
                    _check_triggers(policy, written, instruction, refuse, path, check_body)
            stages.append(_Stage(index=len(stages), name=name, env={}))
            continue
        if keyword != "FROM" and not stages and keyword not in ("ARG",):
            # The engine refuses anything but ARG before the first FROM; so does Hakobune, with the line.
            refuse(instruction, "comes before the first FROM",
                   "A Dockerfile starts with FROM (only ARG may come before it).")
        check_body(instruction, stages[-1] if stages else None, escape)
    if not stages:
        raise DockerfileRefused(f"Your {path} has no FROM line, so there is nothing to build. "
                                "Start it with `FROM hakobune/stack-python:bookworm` (or another stack).")
    return list(dict.fromkeys(bases))


def _is_earlier_stage(source: str, stages: list[_Stage], current: _Stage | None) -> bool:
    upto = current.index if current else len(stages)
    if source.isdigit():
        return int(source) < upto
    return any(stage.name and stage.name == source.lower() for stage in stages[:upto])


def _json_words(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        words = json.loads(text)
    except ValueError:
        return None
    if isinstance(words, list) and all(isinstance(word, str) for word in words):
        return words
    return None


def _check_triggers(policy: Policy, image: str, instruction: Instruction, refuse, path: str, check_body) -> None:
    """A base image's own ONBUILD steps run in this build: the same rules apply."""
    for trigger in policy.triggers_of(image) or []:
        inner = _instruction(instruction.line, trigger)
        where = f"The image `{image}` that line {instruction.line} of your {path} starts from carries an ONBUILD step"
        check_body(inner, None, "\\", where=where, onbuild=True)


def read_dockerfile(root, relative: str) -> str:
    """The Dockerfile's text, read without following a link (on the way or as
    the file, see treefs) and refused when it is not a small plain file."""
    try:
        data = treefs.read_head(root, relative, MAX_BYTES + 1)
    except treefs.UnsafePath as exc:
        raise DockerfileRefused(exc.message) from None
    except OSError as exc:
        raise DockerfileRefused(f"Hakobune could not read your {relative} ({exc.strerror}).") from None
    if len(data) > MAX_BYTES:
        raise DockerfileRefused(f"Your {relative} is larger than {MAX_BYTES // 1024} KiB; a Dockerfile is a short "
                                "recipe: keep data in files and COPY them.")
    return data.decode("utf-8", errors="replace")
