"""The registry of diagnoses: every failure a person is shown is a rule id
with its parameters, stored with the build or release that failed, and put
into words only when shown, in the reader's language. The deploy doctor,
refusals and translations all add rules here.

A library error may name its own rule by carrying `rule` and `params`
attributes; otherwise the error's class picks one of the rules below that
say the library's own words (`detail`)."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from django.utils.translation import gettext, gettext_noop, override

from hakobune.platform.failures import FailureKind, classify
from hakobune.runtime.base import RuntimeBackendError
from hakobune.worker.buildpacks import NoStackDetected, java, ruby
from hakobune.worker.source import SourceError
from hakobune.worker.stacks import StackError


@dataclass(frozen=True)
class Rule:
    id: str
    kind: FailureKind
    # A %-format with the diagnosis' parameters; marked for translation.
    text: str


@dataclass(frozen=True)
class Diagnosis:
    rule: str
    params: dict = field(default_factory=dict)

    @property
    def kind(self) -> FailureKind:
        return RULES[self.rule].kind

    def in_words(self) -> str:
        return render(self.rule, self.params)

    def in_english(self) -> str:
        with override("en"):
            return render(self.rule, self.params)


RULES: dict[str, Rule] = {}


def rule(id: str, kind: FailureKind, text: str) -> Rule:
    if id in RULES:
        raise ValueError(f"the diagnosis {id} is declared twice")
    RULES[id] = Rule(id, kind, text)
    return RULES[id]


def render(rule_id: str, params: dict | None = None) -> str:
    found = RULES.get(rule_id)
    if found is None:
        return (params or {}).get("detail", "") or rule_id
    try:
        return gettext(found.text) % (params or {})
    except (KeyError, TypeError, ValueError):
        return gettext(found.text)


U, T, P = FailureKind.USER, FailureKind.TRANSIENT, FailureKind.PLATFORM

# Failures in the library's own words, by where they happened.
rule("source.refused", U, "%(detail)s")
rule("detect.no_app", U, "%(detail)s")
rule("build.failed", U, "%(detail)s")
rule("build.platform", P, "%(detail)s")
rule("runtime.failed", U, "%(detail)s")
rule("runtime.platform", P, "%(detail)s")

# Detection (hakobune.worker.buildpacks.versions): a language version no stack here has.
rule("detect.version_unavailable", U,
     gettext_noop("The app asks for %(language)s %(asked)s (%(source)s), but the stacks here have %(have)s. Ask for one of "
                  "these versions (or remove the version the app asks for), or ask your operator to add a stack that has it "
                  "(STACK_VARIANTS)."))

# Detection: an app of two languages asks for versions no variant of their stack has together.
rule("detect.versions_unavailable", U,
     gettext_noop("The app asks for %(asked)s, but the stacks here have %(have)s. Ask for versions one of these stacks "
                  "has (or remove the versions the app asks for), or ask your operator to add a stack that has them "
                  "(STACK_VARIANTS)."))

# Java builds (hakobune.worker.buildpacks.java): Maven could not reach a repository.
rule("build.maven_repository_unreachable", P,
     gettext_noop("Maven could not download %(artifact)s from the Maven repository %(url)s (%(why)s). The app needs a "
                  "package that Debian does not carry, and this host cannot reach that repository. This is not your "
                  "app: an administrator sets MAVEN_REPOSITORY to a Maven repository this host can reach (a company "
                  "mirror of Maven Central), then deploy again."))
rule("build.maven_app_repository_unreachable", U,
     gettext_noop("Maven could not download %(artifact)s from %(repository)s (%(url)s), a repository the app's pom.xml "
                  "names (%(why)s). This host cannot reach it: take the package from Maven Central (or the mirror "
                  "MAVEN_REPOSITORY names), or ask your operator to make that repository reachable."))
# Builds (hakobune.worker.package_sources): an install whose package source did not answer.
rule("build.source_unreachable", P,
     gettext_noop("Installing the app's dependencies failed: %(tool)s could not reach %(source)s, the package source this "
                  "host gives it (%(setting)s). This is not your app: an administrator sets %(setting)s to a mirror this "
                  "host can reach; then deploy again."))
rule("build.source_unreachable_package", P,
     gettext_noop("Installing the app's dependencies failed: %(tool)s could not reach %(source)s to fetch %(package)s, "
                  "the package source this host gives it (%(setting)s). This is not your app: an administrator sets "
                  "%(setting)s to a mirror this host can reach; then deploy again."))
rule("build.app_source_unreachable", U,
     gettext_noop("Installing the app's dependencies failed: %(tool)s could not reach %(source)s, a package source the "
                  "app's own files name (not this host's, which %(setting)s sets). Check that address, or take the "
                  "package from the host's source."))

# Ruby builds (hakobune.worker.buildpacks.ruby): a Gemfile that names no gem
# source takes its gems from the stack, which lacks one of them.
rule("build.gem_not_in_stack", U,
     gettext_noop("The Gemfile names no gem source, so its gems come from the Ruby stack (Debian's packages), and the "
                  "stack has no %(gem)s. Add `source \"https://rubygems.org\"` at the top of the Gemfile to install "
                  "the gems from there (or from the mirror this host uses), or ask for a version the stack has."))

# The pipeline's own.
rule("pipeline.internal", P,
     gettext_noop("Hakobune failed while handling this build (an internal error, not your app). Deploy again."))
rule("pipeline.gave_up", T,
     gettext_noop("%(what)s did not answer after %(attempts)s attempts (last: %(error)s). This is not your app: "
                  "deploy again in a few minutes, and tell your operator if it keeps happening."))
rule("pipeline.stalled", P, gettext_noop("The build stopped making progress (the worker may have restarted). Deploy again."))
rule("pipeline.worker_lost", P,
     gettext_noop("The worker running the %(step)s step stopped %(times)s times (it was killed, ran out of memory or its host "
                  "restarted), so Hakobune stopped trying. This is not your app's fault if the log shows no error: "
                  "deploy again, and tell your operator if it keeps happening."))
rule("pipeline.step_timeout", P,
     gettext_noop("The %(step)s step took longer than %(seconds)s s, the time it may take, and was stopped. "
                  "Deploy again; tell your operator if it keeps happening."))
rule("build.timed_out", U,
     gettext_noop("The build took longer than %(seconds)s s, the time a build may take, and was stopped. Look at the last "
                  "step in the log: a step that waits for input, or for a server that never answers, runs until it is stopped."))
rule("release.internal", P, gettext_noop("Hakobune failed while starting this release."))
rule("release.quota", U, "%(detail)s")
rule("release.command_failed", U,
     gettext_noop("The release command (`%(command)s`) failed with exit code %(code)s, so this release was not started; "
                  "the live release goes on serving. Its last lines:\n%(tail)s"))
rule("release.command_timeout", U,
     gettext_noop("The release command (`%(command)s`) ran longer than %(seconds)s s, the time it may take, and was stopped; "
                  "this release was not started and the live release goes on serving. Its last lines:\n%(tail)s"))
rule("release.no_one_off", U,
     gettext_noop("The app has a release command (`%(command)s`), but %(target)s cannot run one-off containers; "
                  "remove the release command or deploy to the local runtime."))
rule("network.no_room", P,
     gettext_noop("Hakobune has no room for another team network: TEAM_SUBNET_POOL (%(pool)s) has no free /%(prefix)s block "
                  "left (the size this team's quota asks for: room for %(room)s containers). This is not your app: an "
                  "administrator must widen TEAM_SUBNET_POOL, or delete teams that are no longer used."))
# The runtime's (docker_local.py): the team's block has no address left.
rule("network.full", P,
     gettext_noop("The network of team %(team)s is full: its address block %(subnet)s has room for %(room)s containers and "
                  "all of them are in use (the team's running instances, and during a deploy the new ones started beside "
                  "the old). This is not your app, and deploying again will not help until room is made: scale down, stop "
                  "or delete services the team does not need. An administrator can lower what the team may run (its quota), "
                  "or raise the quota and move the team to a larger block (the team's quota page offers it when the "
                  "quota outgrows the block; its services stop for a few seconds)."))
# The engine refused two blocks in a row as overlapping its networks.
rule("network.overlap", P,
     gettext_noop("Hakobune could not make this team's network: the Docker Engine says the address block %(subnet)s "
                  "overlaps a network it already has, though Hakobune chose it clear of every network the engine "
                  "listed. This is not your app, and deploying again will not help: an administrator should remove "
                  "Docker networks left by deleted teams (docker network ls) or move TEAM_SUBNET_POOL. (%(detail)s)"))
rule("network.bad_pool", P,
     gettext_noop("Hakobune cannot give this team a network: %(detail)s. An administrator must correct TEAM_SUBNET_POOL."))

# Disk (builds/disk.py): not the person's app; an administrator frees space.
rule("disk.low", P,
     gettext_noop("Hakobune did not start this build: %(where)s has only %(free)s free (%(path)s), under the %(threshold)s "
                  "a build needs. This is not your app. An administrator must free space: prune old images and build cache "
                  "(\"Prune now\" on the Disk page, or `manage.py prune`), or remove what else fills that disk; "
                  "then deploy again."))
rule("disk.full", P,
     gettext_noop("The disk filled up during this build (%(detail)s). This is not your app. An administrator must free space: "
                  "prune old images and build cache (\"Prune now\" on the Disk page, or `manage.py prune`); "
                  "then deploy again."))

# Reviews by an administrator.
rule("review.rejected", U,
     gettext_noop("An administrator did not approve this service: %(note)s Change it and deploy again; "
                  "the new deploy is reviewed again."))
rule("review.replaced", U, gettext_noop("Deploy #%(number)s came after it and went on in its place once approved."))

# A team's log drain (observability/drains.py): the endpoint is the team's, so
# each says what the team can check; the lines wait and are sent again.
rule("drain.http_status", U,
     gettext_noop("The endpoint answered HTTP %(status)s. Hakobune keeps the lines and sends them again later; "
                  "check that the address and its token are right and that the endpoint takes POSTed JSON lines."))
rule("drain.redirect", U,
     gettext_noop("The endpoint answered HTTP %(status)s, a redirect, which Hakobune does not follow. "
                  "Give the address it redirects to."))
rule("drain.unreachable", U,
     gettext_noop("Hakobune could not connect to %(address)s: %(detail)s. It tries again later; check the host and port."))
rule("drain.timeout", U,
     gettext_noop("%(address)s did not answer within %(seconds)s s. Hakobune tries again later."))
rule("drain.tls", U,
     gettext_noop("The TLS connection to %(address)s failed: %(detail)s. The endpoint needs a certificate for its "
                  "name from a public authority."))
rule("drain.address_refused", U,
     gettext_noop("Hakobune did not connect: %(detail)s A drain is sent only to public addresses; "
                  "the name may have been changed to point elsewhere since it was saved."))


def diagnose(exc: BaseException) -> Diagnosis:
    """The diagnosis of an exception met by a pipeline step."""
    if getattr(exc, "rule", None) in RULES:
        return Diagnosis(exc.rule, dict(getattr(exc, "params", None) or {}))
    detail = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return Diagnosis("disk.full", {"detail": f"no space left on {exc.filename or 'the device'}"})
    kind = classify(exc)
    if isinstance(exc, SourceError):
        return Diagnosis("source.refused", {"detail": detail})
    if isinstance(exc, NoStackDetected):
        return Diagnosis("detect.no_app", {"detail": detail})
    if isinstance(exc, RuntimeBackendError):
        return Diagnosis("runtime.failed" if kind == FailureKind.USER else "runtime.platform", {"detail": detail})
    if isinstance(exc, StackError):
        return Diagnosis("build.platform", {"detail": detail})
    maven = java.unreachable_repository(getattr(exc, "log_tail", None) or []) if hasattr(exc, "user_error") else None
    if maven:
        central = maven["repository"] == "central"
        return Diagnosis("build.maven_repository_unreachable" if central else "build.maven_app_repository_unreachable",
                         maven)
    gem = ruby.missing_stack_gem(getattr(exc, "log_tail", None) or []) if hasattr(exc, "user_error") else ""
    if gem:
        return Diagnosis("build.gem_not_in_stack", {"gem": gem})
    if hasattr(exc, "user_error"):
        return Diagnosis("build.failed" if kind == FailureKind.USER else "build.platform", {"detail": detail})
    return Diagnosis("pipeline.internal", {"error": f"{type(exc).__name__}: {exc}"[:500]})
