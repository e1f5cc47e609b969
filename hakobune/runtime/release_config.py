"""A service's settings, each declared once: its name, type, bounds, default,
label and help text, which runtime capability it needs, and whether it sizes
one process type. The portal's settings form, the API's serializers, the
quota check, the model's validators, the release a change makes and the
DeploySpec a runtime gets are all made from this list.

Settings are of two stages. `release` settings are part of a release: a
change makes a new release of the live image, and each release keeps its own
values (a rollback brings them back). `build` settings are read when the
next deploy builds its image.

Adding a setting: declare it below, and make the backend that honours it
read `spec.<name>`. A setting without a column on the service is kept in its
`extra_settings`; the form, the API and the releases find it here."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

RELEASE = "release"
BUILD = "build"

# The process type that serves requests; a release's sizes are its sizes
# until Procfile process types have their own.
WEB = "web"


class SettingError(ValueError):
    """A value a setting does not take; `setting` is its name, `message` says
    what it takes, in words."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting
        self.message = message


def _number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Setting:
    name: str
    type: type  # int, float, bool or str
    label: str
    help: str
    default: Any = None
    # Bounds: numbers from `min` to `max`; text from `choices` (value,
    # label) or of at most `max_length` characters.
    min: float | None = None
    max: float | None = None
    choices: tuple[tuple[str, str], ...] = ()
    max_length: int | None = None
    # A number kept as a decimal: (most digits, digits after the point).
    digits: tuple[int, int] | None = None
    # None is a value: "empty: the runtime's default".
    optional: bool = False
    # Text that may be empty.
    blank: bool = False
    # The runtime capability it needs; None: every runtime honours it.
    capability: str | None = None
    # A size of one process type (cpu, memory, instances), which process types
    # may be given apart.
    per_process: bool = False
    stage: str = RELEASE
    # The build's plan may set it (the app's hakobune.toml, the detected port).
    from_plan: bool = False
    # Counted in the team's quota (what the runtime reserves for it).
    quota: bool = False
    # Where it is offered: the portal's settings form, the API.
    in_form: bool = True
    in_api: bool = True
    # The API's description where it differs from `help` ("" for none).
    api_help: str | None = None
    # A further rule: returns what is wrong with a value, in words, or "".
    check: Callable[[Any], str] | None = field(default=None, compare=False)

    @property
    def choice_values(self) -> tuple[str, ...]:
        return tuple(value for value, _ in self.choices)

    @property
    def description(self) -> str:
        """The text the API gives for it."""
        return self.help if self.api_help is None else self.api_help

    def in_words(self) -> str:
        """What it takes: "a whole number from 1 to 1000, or nothing"."""
        if self.type is bool:
            said = "yes or no"
        elif self.choices:
            said = "one of " + ", ".join(repr(value) if value else "'' (empty)" for value in self.choice_values)
        elif self.type in (int, float):
            said = "a whole number" if self.type is int else "a number"
            if self.min is not None and self.max is not None:
                said += f" from {_number(self.min)} to {_number(self.max)}"
            elif self.min is not None:
                said += f" of at least {_number(self.min)}"
            elif self.max is not None:
                said += f" of at most {_number(self.max)}"
            if self.digits:
                said += f" with at most {self.digits[1]} decimals"
        else:
            said = "text" if self.blank else "some text"
            if self.max_length:
                said += f" of at most {self.max_length} characters"
        if self.optional:
            said += ", or nothing for the runtime's default"
        return said

    def coerce(self, value: Any) -> Any:
        """A stored value in the setting's type, without judging it (releases
        keep what they were made with); missing or empty: the default."""
        if value is None:
            return None if self.optional else self.default
        if self.type is str:
            value = str(value)
            return value if value or self.blank else self.default
        if self.type is bool:
            return bool(value)
        try:
            return float(value) if self.type is float else int(value)
        except (TypeError, ValueError):
            return self.default

    def validate(self, value: Any) -> Any:
        """The value in the setting's type, or SettingError naming the setting
        and what it takes."""

        def wrong(why: str = "") -> SettingError:
            return SettingError(
                self.name, why or f"{self.label} ({self.name}) takes {self.in_words()}; {value!r} is not.",
            )

        if value is None or (value == "" and self.type is not str):
            if self.optional:
                return None
            raise wrong(f"{self.label} ({self.name}) needs a value: {self.in_words()}.")
        if self.type is bool:
            if not isinstance(value, bool):
                raise wrong()
        elif self.type in (int, float):
            if isinstance(value, bool):
                raise wrong()
            try:
                exact = Decimal(str(value))
            except InvalidOperation:
                raise wrong()
            if not exact.is_finite():
                raise wrong()
            if self.type is int:
                if exact != exact.to_integral_value():
                    raise wrong()
                value = int(exact)
            else:
                if self.digits and exact.as_tuple().exponent < -self.digits[1]:
                    raise wrong()
                value = float(exact)
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise wrong()
        else:
            if not isinstance(value, str):
                raise wrong()
            if self.choices and value not in self.choice_values:
                raise wrong()
            if (not value and not self.blank and not self.choices) or (self.max_length and len(value) > self.max_length):
                raise wrong()
        problem = self.check(value) if self.check else ""
        if problem:
            raise wrong(f"{self.label} ({self.name}): {problem}")
        return value


# A rule over several settings: returns (the setting to blame, what is wrong)
# or None. It sees every declared setting's value.
Rule = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]

_declared: dict[str, Setting] = {}
_rules: list[Rule] = []
# Changes whenever the declaration does, for what keeps things made from it.
_stamp = 0


def declaration_stamp() -> int:
    return _stamp


def _changed() -> None:
    global _stamp
    _stamp += 1


def declare(*settings: Setting) -> None:
    for setting in settings:
        if setting.name in _declared:
            raise ValueError(f"A setting called {setting.name} is declared already.")
        if setting.stage not in (RELEASE, BUILD):
            raise ValueError(f"{setting.name}: the stage is {RELEASE!r} or {BUILD!r}.")
        _declared[setting.name] = setting
    _changed()


def rule(check: Rule) -> Rule:
    _rules.append(check)
    return check


@contextmanager
def declared(*settings: Setting) -> Iterator[tuple[Setting, ...]]:
    """Declares settings for the time of a `with` block (tests, say)."""
    declare(*settings)
    try:
        yield settings
    finally:
        for setting in settings:
            _declared.pop(setting.name, None)
        _changed()


def all_settings(*, stage: str | None = None) -> list[Setting]:
    """The declared settings in their order (which forms follow)."""
    return [s for s in _declared.values() if stage is None or s.stage == stage]


def release_settings() -> list[Setting]:
    return all_settings(stage=RELEASE)


def get_setting(name: str) -> Setting:
    return _declared[name]


def is_setting(name: str) -> bool:
    return name in _declared


def problems(values: Mapping[str, Any]) -> list[SettingError]:
    """What the rules over several settings find wrong with these values."""
    found = []
    for check in _rules:
        problem = check(values)
        if problem:
            found.append(SettingError(*problem))
    return found


@dataclass(frozen=True)
class ReleaseConfig:
    """The release settings of one release. `values` holds the settings of the
    whole release; `processes` the sizes of each process type (`web` always).
    `config.cpu` is the web process's; `config.port` the release's."""

    values: Mapping[str, Any]
    processes: Mapping[str, Mapping[str, Any]]

    def __post_init__(self):
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(
            self, "processes", MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.processes.items()}),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> "ReleaseConfig":
        """Reads a stored configuration, as any version of Hakobune wrote it:
        a setting it does not have takes its value in `defaults` (the
        service's), else its declared default. Values are not judged: a
        release keeps what it was made with.

        Stored, the web process's sizes are at the top level (as every release
        has them) and other process types' under "processes"; a size a process
        type does not give is the web process's."""
        defaults = defaults or {}

        def value(setting: Setting, source: Mapping[str, Any]) -> Any:
            if setting.name in source:
                return setting.coerce(source[setting.name])
            if setting.name in defaults:
                return setting.coerce(defaults[setting.name])
            return setting.coerce(setting.default)

        settings = release_settings()
        stored_processes = data.get("processes") or {}
        web_source = {**data, **(stored_processes.get(WEB) or {})}
        web = {s.name: value(s, web_source) for s in settings if s.per_process}
        processes = {WEB: web}
        for name, sizes in stored_processes.items():
            if name != WEB and isinstance(sizes, Mapping):
                processes[name] = {s.name: s.coerce(sizes[s.name]) if s.name in sizes else web[s.name]
                                   for s in settings if s.per_process}
        return cls(values={s.name: value(s, data) for s in settings if not s.per_process}, processes=processes)

    @classmethod
    def of(cls, **values: Any) -> "ReleaseConfig":
        """A configuration of these values (the web process's sizes among
        them) and the declared defaults, judged."""
        return cls.from_dict({}).replace(**values)

    def replace(self, **changes: Any) -> "ReleaseConfig":
        """A copy with these settings changed (sizes: the web process's),
        each judged against its bounds; raises SettingError."""
        values, web = dict(self.values), dict(self.processes[WEB])
        for name, value in changes.items():
            if name not in _declared or _declared[name].stage != RELEASE:
                raise SettingError(name, f"{name} is not a release setting.")
            setting = _declared[name]
            (web if setting.per_process else values)[setting.name] = setting.validate(value)
        return ReleaseConfig(values=values, processes={**self.processes, WEB: web})

    def sizes(self, process: str = WEB) -> Mapping[str, Any]:
        return self.processes.get(process) or self.processes[WEB]

    def as_flat(self) -> dict[str, Any]:
        """Every release setting by name, sizes the web process's."""
        return {**self.values, **self.processes[WEB]}

    def validate(self) -> "ReleaseConfig":
        """Itself, when every value is within its setting's bounds and the
        rules hold; else raises the first SettingError."""
        for process in self.processes.values():
            for name, value in process.items():
                _declared[name].validate(value)
        for name, value in self.values.items():
            if name in _declared:
                _declared[name].validate(value)
        for problem in problems(self.as_flat()):
            raise problem
        return self

    def to_dict(self) -> dict[str, Any]:
        """The stored form (JSON): the settings by name, the web process's
        sizes among them; other process types under "processes"."""
        data = self.as_flat()
        others = {name: dict(sizes) for name, sizes in self.processes.items() if name != WEB}
        if others:
            data["processes"] = others
        return data

    def __getattr__(self, name: str) -> Any:
        setting = _declared.get(name)
        if setting is None or setting.stage != RELEASE or name.startswith("_"):
            raise AttributeError(name)
        if setting.per_process:
            return object.__getattribute__(self, "processes")[WEB].get(name, setting.default)
        return object.__getattribute__(self, "values").get(name, setting.default)

    def __repr__(self) -> str:
        others = {k: dict(v) for k, v in self.processes.items() if k != WEB}
        return f"ReleaseConfig({self.as_flat()!r}{f', processes={others!r}' if others else ''})"


# -- the settings -------------------------------------------------------------------------

AUTOSCALING = "autoscaling"  # runtimes that scale on requests by themselves (Cloud Run)
REMOTE_BUILD = "remote_build"  # runtimes that build images themselves (Cloud Build)

INGRESS_CHOICES = (
    ("", "The platform's default"),
    ("all", "Anywhere (the internet)"),
    ("internal", "Only inside the project's network"),
    ("internal-and-cloud-load-balancing", "Inside the network and through a Cloud Load Balancer"),
)
CLOUD_BUILDERS = (
    ("dockerfile", "Hakobune's plan (a Dockerfile)"),
    ("buildpacks", "Google Cloud's buildpacks"),
)


def _path_on_the_app(path: str) -> str:
    if not path.startswith("/") or any(ch.isspace() for ch in path):
        return "A path on your app, starting with /, like /healthz."
    return ""


# The API's recorded schema describes cpu, memory_mb, instances, port and
# health_check_path by their names alone (api_help=""); the other API texts
# are worded for programs.
declare(
    Setting(
        "cpu", float, "CPU (cores)", "CPU cores per instance.", default=0.5, min=0.1, max=8, digits=(4, 2),
        per_process=True, quota=True, api_help="",
    ),
    Setting(
        "memory_mb", int, "Memory (MiB)", "Memory per instance, in MiB.", default=256, min=64, max=16384,
        per_process=True, quota=True, api_help="",
    ),
    Setting(
        "instances", int, "Instances", "How many instances serve the service.", default=1, min=1, max=10,
        # The portal changes it with the Scale control beside Restart.
        per_process=True, quota=True, in_form=False, api_help="",
    ),
    Setting(
        "port", int, "Port ($PORT)", "The port your app listens on; it is also given to it as $PORT.",
        default=8080, min=1024, max=65535, from_plan=True, api_help="",
    ),
    Setting(
        "health_check_path", str, "Health-check path", "Asked before the new release takes requests; it must answer.",
        default="/", max_length=200, from_plan=True, check=_path_on_the_app, api_help="",
    ),
    Setting(
        "public", bool, "Public",
        "Off: no public address; your team's other services reach it at http://<name>:<port>.", default=True,
        api_help="False: no public address; the team's other services reach it by name.",
    ),
    Setting(
        "start_command", str, "Start command",
        "Empty: what Hakobune detected (or your hakobune.toml says). Applies from the next deploy.",
        default="", max_length=500, blank=True, stage=BUILD, in_api=False,
    ),
    Setting(
        "build_command", str, "Build command",
        "Run after the dependencies are installed. Applies from the next deploy.",
        default="", max_length=500, blank=True, stage=BUILD, in_api=False,
    ),
    Setting(
        "min_instances", int, "Fewest instances",
        "Kept warm even without requests (they cost money); empty: 0, the first request waits for a start.",
        min=0, max=100, optional=True, capability=AUTOSCALING, quota=True,
        api_help="Runtimes that scale by themselves (Cloud Run): the fewest instances kept warm.",
    ),
    Setting(
        "max_instances", int, "Most instances", "Empty: the Instances number above.",
        min=1, max=100, optional=True, capability=AUTOSCALING, quota=True,
        api_help="Runtimes that scale by themselves (Cloud Run): the most instances.",
    ),
    Setting(
        "concurrency", int, "Requests per instance",
        "Served at once before another instance starts; empty: the platform's default (80).",
        min=1, max=1000, optional=True, capability=AUTOSCALING,
        api_help="Runtimes that scale on requests (Cloud Run): requests one instance serves at once.",
    ),
    Setting(
        "request_timeout", int, "Request timeout (seconds)",
        "A longer request is cut off; empty: the platform's default (300).",
        min=1, max=3600, optional=True, capability=AUTOSCALING,
        api_help="Runtimes that scale on requests (Cloud Run): seconds before a request is cut off.",
    ),
    Setting(
        "ingress", str, "Requests from", "Where requests may come from.", default="", choices=INGRESS_CHOICES,
        blank=True, capability=AUTOSCALING,
        api_help="Runtimes that scale on requests (Cloud Run): where requests may come from; empty: the default.",
    ),
    Setting(
        "cloud_builder", str, "Builder",
        "Hakobune's plan builds the Dockerfile shown for each deploy; Google Cloud's buildpacks build the source "
        "their own way (gcr.io/buildpacks/builder). Applies from the next deploy.",
        default="", choices=(("", "The platform's default"), *CLOUD_BUILDERS), blank=True, stage=BUILD,
        capability=REMOTE_BUILD,
        api_help="Runtimes that build images themselves (Cloud Build): Hakobune's plan (dockerfile), Google "
        "Cloud's buildpacks, or empty for the platform's default. Applies from the next deploy.",
    ),
)


@rule
def _fewest_not_over_most(values: Mapping[str, Any]):
    low, high = values.get("min_instances"), values.get("max_instances")
    if low is not None and high is not None and low > high:
        return "min_instances", "The fewest instances cannot be more than the most."
    return None
