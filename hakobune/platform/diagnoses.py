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
from hakobune.runtime.doctor import next_memory_size
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


# Parameters whose values are words of a closed set, marked below and put
# into the reader's language with the rest (the built-in samples' names).
TRANSLATED_PARAMS = ("sample",)
SAMPLE_NAMES = (gettext_noop("Flask"), gettext_noop("FastAPI"), gettext_noop("Django"), gettext_noop("Node/Express"),
                gettext_noop("static site"))


def render(rule_id: str, params: dict | None = None) -> str:
    found = RULES.get(rule_id)
    if found is None:
        return (params or {}).get("detail", "") or rule_id
    params = dict(params or {})
    for name in TRANSLATED_PARAMS:
        if isinstance(params.get(name), str) and params[name]:
            params[name] = gettext(params[name])
    try:
        return gettext(found.text) % params
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
# The deploy doctor: what a beginner's app does wrong, read from what the
# runtime saw (hakobune.runtime.doctor), the upload and the detection.
rule("runtime.exited_at_start", U,
     gettext_noop("The %(process)s process stopped while starting, with exit code %(code)s: %(error)s. "
                  "Its last lines are in the log. Fix that error and deploy again; running its start command on "
                  "your computer, in the app's folder, shows the same error."))
rule("runtime.exited_at_start_silent", U,
     gettext_noop("The %(process)s process stopped while starting, with exit code %(code)s, and printed nothing. "
                  "Check its start command: run it on your computer, in the app's folder, and make the app print "
                  "what goes wrong before it exits."))
rule("runtime.module_missing", U,
     gettext_noop("The %(process)s process stopped because the app imports %(module)s, which is not installed "
                  "(%(error)s). Add the package that provides it, %(package)s, to %(file)s and deploy again: "
                  "Hakobune installs what that file lists, and nothing else."))
rule("runtime.out_of_memory", U,
     gettext_noop("The %(process)s process ran out of memory while starting: it may use %(memory)s MiB, and the "
                  "kernel stopped it when it went over. Give it %(suggested)s MiB (the next size up) in the "
                  "service's settings and deploy again, or make it use less (fewer worker processes, less data "
                  "loaded at start)."))
rule("runtime.out_of_memory_running", U,
     gettext_noop("The %(process)s process ran out of memory while running (instances stopped by the kernel: "
                  "%(kills)s): it may use %(memory)s MiB, and each time it went over it was stopped and started "
                  "again, losing the requests in flight. Give it %(suggested)s MiB (the next size up) in the "
                  "service's settings, or make it use less (fewer worker processes, data read in parts)."))
rule("runtime.health_check_status", U,
     gettext_noop("The app runs and listens on port %(port)s, but answered its health check (%(path)s) with "
                  "HTTP %(status)s for %(seconds)s s: %(error)s. This is an error inside the app, not its port or "
                  "address. Its last lines are in the log: fix that error (or set the health check path to a page "
                  "that answers) and deploy again."))
rule("runtime.health_check_status_silent", U,
     gettext_noop("The app runs and listens on port %(port)s, but answered its health check (%(path)s) with "
                  "HTTP %(status)s for %(seconds)s s, and printed no error. This is the app's own answer, not a "
                  "problem with its port or address: open that page on your computer to see why, or set the "
                  "health check path to a page that answers, and deploy again."))
rule("runtime.listens_on_loopback", U,
     gettext_noop("The app listens on %(address)s port %(port)s, an address only the container itself can "
                  "reach, so Hakobune could not connect to it. Make it listen on 0.0.0.0 (every address) and the "
                  "port in $PORT: for example `gunicorn --bind 0.0.0.0:$PORT app:app`, "
                  "`app.run(host=\"0.0.0.0\", port=int(os.environ[\"PORT\"]))` or "
                  "`app.listen(process.env.PORT)`."))
rule("runtime.listens_on_other_port", U,
     gettext_noop("The app listens on port %(port)s, but Hakobune sends requests to port %(expected)s, the one "
                  "given to it in $PORT. Make the app read its port from $PORT (for example "
                  "`int(os.environ[\"PORT\"])` or `process.env.PORT`), or set the service's port to %(port)s "
                  "in its settings, and deploy again."))
rule("runtime.listens_on_other_port_loopback", U,
     gettext_noop("The app listens on %(address)s port %(port)s: another port than the %(expected)s Hakobune "
                  "gives it in $PORT, and on an address only the container itself can reach. Make it listen on "
                  "0.0.0.0 and the port in $PORT (for example `gunicorn --bind 0.0.0.0:$PORT app:app` or "
                  "`app.run(host=\"0.0.0.0\", port=int(os.environ[\"PORT\"]))`) and deploy again."))
rule("runtime.listens_nowhere", U,
     gettext_noop("The app runs, but after %(seconds)s s it listened on no port at all (Hakobune waited for port "
                  "%(expected)s, the one in $PORT). Its start command must start a web server: check that it "
                  "starts the server and not only a script. A program that serves no web page belongs on a "
                  "Procfile line of its own, like `worker: python worker.py`."))
rule("runtime.no_http", U,
     gettext_noop("The app listens on port %(expected)s, but did not answer HTTP there within %(seconds)s s. Make "
                  "sure what listens on $PORT is a web server (HTTP, not HTTPS or another protocol) and that it "
                  "is not stuck before it answers; its last lines are in the log."))
rule("runtime.no_answer", U,
     gettext_noop("The app did not answer HTTP on port %(expected)s ($PORT) within %(seconds)s s. Make sure it "
                  "listens on 0.0.0.0 and the port given in $PORT."))
rule("runtime.host_not_allowed", U,
     gettext_noop("The app refused the address it is served at, %(host)s, with HTTP 400 (%(error)s): Django "
                  "answers only the host names in its ALLOWED_HOSTS setting, and the one in a new project lets in "
                  "only your own computer. Add it in settings.py, for example `ALLOWED_HOSTS = [\"%(host)s\"]`, "
                  "and deploy again."))
rule("runtime.sqlite_unwritable", U,
     gettext_noop("The app could not write its SQLite database, %(file)s (%(error)s): the files of a container "
                  "are read-only here, so a database file beside the code can be neither created nor changed "
                  "(only /tmp can be written, and it is emptied at every start). Keep the data where it lasts: "
                  "attach a PostgreSQL add-on, read DATABASE_URL in the settings and run `python manage.py "
                  "migrate` as the release command (a `release:` line in the Procfile); or keep the file's folder "
                  "on a volume, where the service has one, with the setting pointed there."))
rule("runtime.sqlite_unwritable_unnamed", U,
     gettext_noop("The app could not write its SQLite database (%(error)s): the files of a container are "
                  "read-only here, so a database file beside the code can be neither created nor changed (only "
                  "/tmp can be written, and it is emptied at every start). Keep the data where it lasts: attach a "
                  "PostgreSQL add-on, read DATABASE_URL in the settings and run `python manage.py migrate` as the "
                  "release command (a `release:` line in the Procfile); or keep the file's folder on a volume, "
                  "where the service has one, with the setting pointed there."))
rule("build.out_of_memory", U,
     gettext_noop("The build ran out of memory: `%(command)s` was stopped with exit code 137 when it went over "
                  "the %(memory)s MiB a build may use. Make the step use less (fewer parallel jobs, for example "
                  "`npm run build` without extra workers, or `pip install` of fewer packages at once), or ask "
                  "your operator to give builds %(suggested)s MiB (BUILD_MEMORY_MB), and deploy again."))
rule("detect.procfile_empty", U,
     gettext_noop("The Procfile names no process, so Hakobune does not know what to run. Add a line like "
                  "`web: gunicorn app:app` (a command that serves HTTP on $PORT) or `worker: python worker.py` "
                  "(one that runs without a web address), or remove the Procfile to let Hakobune find the "
                  "start command."))
rule("detect.procfile_no_web", U,
     gettext_noop("The Procfile has %(names)s but no `web` process, so Hakobune does not know how to start your "
                  "web app. Add a line like `web: gunicorn app:app` (the command that serves HTTP on $PORT), or "
                  "remove the Procfile."))
rule("detect.unrecognized", U,
     gettext_noop("Hakobune could not tell what kind of app this is: it found %(found)s, but none of the files an "
                  "app starts from. Adding %(needs)s would make it one. The built-in sample \"%(sample)s\" is the "
                  "nearest to what you have: compare its folder with yours. (Hakobune looks for: %(tried)s.)"))
rule("detect.unrecognized_empty", U,
     gettext_noop("Hakobune could not tell what kind of app this is: the folder holds no files. Upload the folder "
                  "of your app, or start from a built-in sample such as \"%(sample)s\". (Hakobune looks for: "
                  "%(tried)s.)"))
rule("source.not_archive", U,
     gettext_noop("The uploaded file is not an archive Hakobune can read: its content is not a .zip, .tar, "
                  ".tar.gz or .tar.xz, whatever its name says. Compress your app's folder again (on most "
                  "computers: right-click the folder, then compress) and upload the new file."))
rule("source.too_big", U,
     gettext_noop("The archive is %(size)s MB; the limit is %(limit)s MB. Leave out dependencies and build output "
                  "(node_modules, .venv, dist): Hakobune installs the dependencies itself from your "
                  "requirements.txt or package.json."))
rule("source.empty", U, gettext_noop("The archive is empty. Upload an archive of your app's folder."))

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
        params = dict(getattr(exc, "params", None) or {})
        if exc.rule == "build.out_of_memory" and "suggested" not in params:
            params["suggested"] = next_memory_size(int(params.get("memory") or 0))
        return Diagnosis(exc.rule, params)
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
