"""Language versions: what an app asks for (.python-version, runtime.txt,
requires-python, engines.node, go.mod's `go` line, GOOGLE_RUNTIME_VERSION) and
which of the stacks on offer gives it.

A builder says which stacks it can build a language on and the version each
carries (`StackOffer`s: the default stack, then the variants an operator
configured, e.g. one built from Debian's next release). `fit_stack` picks the
first that gives the version the app asks for, or fails at detection with a
sentence naming the versions there are. When a stack's version is not known
before it is built (a registry image this host has not pulled), nothing is
refused: the build says which version it got.

The forms understood:
  python  3.12, 3.12.4 (that release line), and PEP 440 specifiers:
          >=3.11, >=3.10,<3.13, ~=3.11, ==3.12.*, !=3.12.0
  node    npm ranges: 20, 20.x, ^20.1, ~18.19, >=18 <21, 18 || 20, 18 - 20, *
  go      1.21 (go.mod's `go` line: that version or newer)
  java    17 (that release: system.properties, GOOGLE_RUNTIME_VERSION), 1.8 (8),
          >=17 (what a pom compiles for: that release or newer)
  ruby    3.1 (that line), 3.1.2 (that release, as Bundler reads the Gemfile's
          `ruby` line), and RubyGems requirements: ~> 3.1, >= 3.0, < 3.4, "a, b"
  php     Composer constraints: ^8.1, ~8.2 (>= 8.2, < 9), 8.2.*, >=8.1 <8.4,
          >=8.1,<8.4, ^7.4 || ^8.0, 8.1 - 8.3, *
Anything else is not refused (the build says which version it got).

A stack of more than one language (python-node) carries a version of each:
an app built on it may ask for both (`language_versions`), and the first
variant that gives every version asked for is chosen."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .plan import BuildPlan, NoStackDetected

NAMES = {"python": "Python", "node": "Node.js", "go": "Go", "java": "Java", "ruby": "Ruby", "php": "PHP"}
NUMBER = re.compile(r"^v?(\d+)(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?$")
COMPARATOR = re.compile(r"^(===|==|!=|~=|>=|<=|>|<|=|\^|~)?\s*(.+)$")


@dataclass(frozen=True)
class StackOffer:
    """A stack a builder can build `language` apps on: `variant` "" is the
    default one; `version` the language's version it carries ("" when not
    known before it is built); `name` what a person is told it is."""

    language: str
    variant: str
    version: str
    name: str
    # A stack of more than one language: (language, version) of each.
    versions: tuple[tuple[str, str], ...] = ()

    def version_of(self, language: str) -> str:
        if self.versions:
            return dict(self.versions).get(language, "")
        return self.version if language == self.language else ""

    def described(self) -> str:
        """"Python 3.11.2 + Node.js 18.20.4 (hakobune/stack-python-node:bookworm)"."""
        parts = self.versions or ((self.language, self.version),)
        return " + ".join(f"{NAMES.get(language, language)} {version}" for language, version in parts) + f" ({self.name})"


class VersionUnavailable(NoStackDetected):
    """The app asks for a language version no stack here has: a user error,
    in the registry of diagnoses as `detect.version_unavailable`."""

    rule = "detect.version_unavailable"

    def __init__(self, language: str, asked: str, source: str, offers: list[StackOffer]):
        have = ", ".join(f"{NAMES.get(language, language)} {o.version} ({o.name})" for o in offers)
        self.params = {"language": NAMES.get(language, language), "asked": asked, "source": source or "the app",
                       "have": have}
        self.message = (
            f"The app asks for {self.params['language']} {asked} ({self.params['source']}), but the stacks here "
            f"have {have}. Ask for one of these versions (or remove the version the app asks for), or ask your "
            "operator to add a stack that has it (STACK_VARIANTS)."
        )
        super().__init__(self.message)


class VersionsUnavailable(NoStackDetected):
    """An app built with more than one language asks for versions no variant
    of their stack has together: `detect.versions_unavailable`."""

    rule = "detect.versions_unavailable"

    def __init__(self, asked: dict[str, tuple[str, str]], offers: list[StackOffer]):
        self.params = {
            "asked": ", ".join(f"{NAMES.get(language, language)} {version} ({source or 'the app'})"
                               for language, (version, source) in asked.items()),
            "have": "; ".join(offer.described() for offer in offers),
        }
        self.message = (
            f"The app asks for {self.params['asked']}, but the stacks here have {self.params['have']}. Ask for "
            "versions one of these stacks has (or remove the versions the app asks for), or ask your operator to add "
            "a stack that has them (STACK_VARIANTS)."
        )
        super().__init__(self.message)


def language_of(plan: BuildPlan) -> str:
    """The stack whose language version the app asks for: the build stage's
    (Go, a Node-built site) or else the run stage's."""
    return plan.build_stack or plan.stack


def fit_stack(plan: BuildPlan, offers_of: Callable[[str], list[StackOffer] | None]) -> tuple[BuildPlan, str]:
    """The plan on the first stack on offer (`offers_of(language)`, asked only
    when the app asks for a version) that gives the version it asks for, and
    what was chosen in words ("" when nothing was to choose). Raises
    VersionUnavailable when every stack's version is known and none gives it
    (VersionsUnavailable for the versions of a stack of more than one language)."""
    if plan.uses_own_dockerfile:
        return plan, ""
    if plan.language_versions:
        return _fit_combined(plan, offers_of)
    asked = plan.language_version.strip()
    language = language_of(plan)
    if not asked or language not in NAMES:
        return plan, ""
    offers = offers_of(language)
    if not offers:
        return plan, ""
    verdicts = [(offer, satisfies(language, asked, offer.version)) for offer in offers]
    for offer, verdict in verdicts:
        if verdict:
            if not offer.variant:
                return plan, ""
            words = (f"{NAMES[language]} {asked} is asked for: built on {offer.name} "
                     f"({NAMES[language]} {offer.version})")
            return plan.with_changes(stack_variant=offer.variant), words
    if any(verdict is None for _, verdict in verdicts):
        return plan, ""  # a version not known before the build, or a form not understood
    raise VersionUnavailable(language, asked, plan.sources.get("language_version", ""), offers)


def _fit_combined(plan: BuildPlan, offers_of) -> tuple[BuildPlan, str]:
    """A plan on a stack of several languages, each perhaps asking for a
    version: the first variant that gives them all."""
    asked = {language: (version.strip(), plan.sources.get(f"language_version.{language}", ""))
             for language, version in plan.language_versions.items() if version.strip() and language in NAMES}
    offers = offers_of(plan.stack) if asked else None
    if not offers:
        return plan, ""
    verdicts = []
    for offer in offers:
        each = [satisfies(language, version, offer.version_of(language)) for language, (version, _) in asked.items()]
        verdicts.append((offer, False if False in each else (None if None in each else True)))
    for offer, verdict in verdicts:
        if verdict:
            if not offer.variant:
                return plan, ""
            wanted = " and ".join(f"{NAMES[language]} {version}" for language, (version, _) in asked.items())
            return plan.with_changes(stack_variant=offer.variant), f"{wanted} asked for: built on {offer.described()}"
    if any(verdict is None for _, verdict in verdicts):
        return plan, ""
    raise VersionsUnavailable(asked, offers)


def satisfies(language: str, asked: str, have: str) -> bool | None:
    """Whether version `have` gives what `asked` asks for; None when either
    cannot be read (then nothing is refused)."""
    version = _version(have)
    if version is None:
        return None
    asked = asked.strip()
    if asked in ("", "*", "x", "latest"):
        return True
    try:
        if language == "go":
            wanted = _partial(asked.removeprefix("go"))
            return None if wanted is None else _pad(version) >= _pad(wanted)
        if language == "node":
            return any(_node_set(part.strip(), version) for part in asked.split("||"))
        if language == "java":
            return _java(asked, version)
        if language == "python":
            if NUMBER.match(asked):
                # 3.12.4 asks for the 3.12 line: a stack has the release its Debian carries.
                return _prefix(_need(asked)[:2], version)
            return all(_python_clause(clause.strip(), version) for clause in asked.split(",") if clause.strip())
        if language == "ruby":
            return all(_ruby_clause(clause.strip(), version) for clause in asked.split(",") if clause.strip())
        if language == "php":
            return any(_node_set(part.strip(), version, composer=True) for part in re.split(r"\|\|?", asked))
    except _Unreadable:
        return None
    return None


class _Unreadable(ValueError):
    pass


def _version(text: str) -> tuple[int, ...] | None:
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def _partial(text: str) -> tuple[int, ...] | None:
    """"3.12" -> (3, 12); "18.x" -> (18,); None when it is not a version."""
    match = NUMBER.match(text.strip())
    if not match:
        return None
    parts = []
    for part in match.groups():
        if part is None or not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def _need(text: str) -> tuple[int, ...]:
    parts = _partial(text)
    if parts is None:
        raise _Unreadable(text)
    return parts


def _pad(parts: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(parts) + (0,) * (3 - len(parts))


def _prefix(parts: tuple[int, ...] | None, version: tuple[int, ...]) -> bool:
    if parts is None:
        raise _Unreadable("")
    return _pad(version)[: len(parts)] == parts


def _bump(parts: tuple[int, ...], index: int) -> tuple[int, ...]:
    """The first version past `parts` at `index` (0: major, 1: minor)."""
    return _pad(parts[:index] + (parts[index] + 1,))


def _compare(op: str, parts: tuple[int, ...], version: tuple[int, ...]) -> bool:
    have, want = _pad(version), _pad(parts)
    if op in ("", "=", "==", "==="):
        return _prefix(parts, version)
    if op == "!=":
        return not _prefix(parts, version)
    if op == ">=":
        return have >= want
    if op == "<=":
        return have <= want or _prefix(parts, version)
    if op == ">":
        return have > want and not _prefix(parts, version)
    if op == "<":
        return have < want
    raise _Unreadable(op)


def _java(asked: str, version: tuple[int, ...]) -> bool:
    """17 asks for the 17 release; >=17 for 17 or newer; 1.8 is Java 8."""
    at_least = asked.startswith(">=")
    match = re.match(r"^(?:1\.)?(\d+)(?:\.\d+)*$", asked.removeprefix(">=").strip())
    if not match:
        raise _Unreadable(asked)
    release = int(match[1])
    return version[0] >= release if at_least else version[0] == release


def _python_clause(clause: str, version: tuple[int, ...]) -> bool:
    match = COMPARATOR.match(clause)
    if not match:
        raise _Unreadable(clause)
    op, text = match.group(1) or "==", match.group(2).strip()
    if op == "~=":
        parts = _need(text)
        if len(parts) < 2:
            raise _Unreadable(clause)
        return _pad(version) >= _pad(parts) and _prefix(parts[:-1], version)
    return _compare(op, _need(text.removesuffix(".*")), version)


def _node_set(text: str, version: tuple[int, ...], *, composer: bool = False) -> bool:
    """One of npm's comparator sets: space-separated comparators, all to hold,
    or a hyphen range. With `composer`, one of Composer's: commas separate
    too, and `~8.2` lets its last given part rise (>= 8.2, < 9) where npm's
    `~18.19` keeps the minor (< 18.20)."""
    if not text or text in ("*", "x", "X"):
        return True
    hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", text)
    if hyphen:
        return _compare(">=", _need(hyphen[1]), version) and _compare("<=", _need(hyphen[2]), version)
    tokens = re.findall(r"(?:===|==|!=|>=|<=|>|<|=|\^|~)?\s*v?[\dxX*][\w.*]*", text)
    if not tokens:
        raise _Unreadable(text)
    for token in tokens:
        match = COMPARATOR.match(token.strip())
        op, parts = match.group(1) or "", _need(re.sub(r"(\.\*)+$", "", match.group(2).strip()))
        if op == "^":
            if not _compare(">=", parts, version) or _pad(version) >= _bump(parts, 0):
                return False
        elif op == "~":
            rises = max(0, len(parts) - 2) if composer else min(1, len(parts) - 1)
            if not _compare(">=", parts, version) or _pad(version) >= _bump(parts, rises):
                return False
        elif not _compare(op, parts, version):
            return False
    return True


def _ruby_clause(clause: str, version: tuple[int, ...]) -> bool:
    """One RubyGems requirement: `~> 3.1` (>= 3.1, < 4), `~> 3.1.2` (>= 3.1.2,
    < 3.2), `>= 3.0`, or a version, which means that release (3.1.2) or that
    line (3.1)."""
    match = COMPARATOR.match(clause.replace("~>", "~=", 1))
    if not match:
        raise _Unreadable(clause)
    op, parts = match.group(1) or "=", _need(match.group(2).strip())
    if op == "~=":
        if len(parts) < 2:
            return _compare(">=", parts, version)
        return _pad(version) >= _pad(parts) and _prefix(parts[:-1], version)
    return _compare(op, parts, version)
