"""Java apps, the way Google Cloud's Java buildpack sees them: a Maven
project (pom.xml), a Gradle project (build.gradle or build.gradle.kts), or a
runnable jar already built (its manifest names a Main-Class). Built on the
Java stack (Debian's JDK and Maven) and started with `java -jar`, its heap
sized from the container's memory limit.

Maven's packages come from Debian's /usr/share/maven-repo first (the plugins
Debian packages), then from MAVEN_REPOSITORY (Maven Central by default, a
company mirror where the administrator sets one): the stack's global
settings.xml says so, and the build's environment carries the address."""

from __future__ import annotations

import re
import shlex
import zipfile
from pathlib import Path

from .. import treefs
from ._files import first_file, is_file, read_text
from .plan import BuildPlan, Detection, DetectionError

NAME = "Java"
KEY = "java"
LOOKS_FOR = (
    "pom.xml (Maven), build.gradle or build.gradle.kts with the Gradle wrapper (gradlew), a runnable .jar at the "
    "top (its manifest names a Main-Class), or .java files at the top, one of them with a `main` method"
)

# Maven Central; MAVEN_REPOSITORY (settings) names a mirror of it instead.
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
REPOSITORY_ENV = "MAVEN_REPOSITORY"
DEBIAN_REPOSITORY = "/usr/share/maven-repo"
# Debian's packaged Maven plugins, in the stack: what building a jar needs.
MAVEN_PLUGIN_PACKAGES = (
    "libmaven-clean-plugin-java",
    "libmaven-resources-plugin-java",
    "libmaven-compiler-plugin-java",
    "libsurefire-java",
    "libmaven-jar-plugin-java",
    "libmaven-install-plugin-java",
    "libmaven-dependency-plugin-java",
    "libmaven-shade-plugin-java",
    "libmaven-assembly-plugin-java",
)
_DEBIAN_REPOSITORIES = "".join(
    f"""\
      <{kind}ies>
        <{kind}y>
          <id>debian</id>
          <url>file://{DEBIAN_REPOSITORY}</url>
          <releases><enabled>true</enabled><checksumPolicy>ignore</checksumPolicy></releases>
          <snapshots><enabled>false</enabled></snapshots>
        </{kind}y>
      </{kind}ies>
""" for kind in ("repositor", "pluginRepositor"))
# Debian's repository lists no versions (maven-metadata.xml), so a plugin a
# pom names without a version could only be found on Maven Central: the stack
# writes the list of each artifact's versions, its newest as the release.
MAVEN_METADATA = f"""\
cd {DEBIAN_REPOSITORY}
find . -name '*.pom' | sed 's|/[^/]*/[^/]*$||' | sort -u | while read -r dir; do
  artifact=${{dir##*/}}
  group=$(echo "${{dir%/*}}" | sed 's|^\\./||; s|/|.|g')
  versions=$(for version in $(ls "$dir"); do
    if [ -f "$dir/$version/$artifact-$version.pom" ]; then echo "$version"; fi; done | sort -V)
  release=$(echo "$versions" | grep -v '^debian$' | tail -n 1)
  if [ -z "$release" ]; then continue; fi
  {{ echo '<?xml version="1.0" encoding="UTF-8"?>'
    echo "<metadata><groupId>$group</groupId><artifactId>$artifact</artifactId><versioning>"
    echo "<latest>$release</latest><release>$release</release><versions>"
    for version in $versions; do echo "<version>$version</version>"; done
    echo '</versions></versioning></metadata>'; }} > "$dir/maven-metadata.xml"
done
"""
# The stack's global settings.xml: Debian's repository first (file: no
# network), then Central, through the mirror in $MAVEN_REPOSITORY. The mirror
# keeps the id `central`, so Maven's messages name it as people know it.
MAVEN_SETTINGS = f"""\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Hakobune's Java stack: Maven's packages come from Debian's repository
     ({DEBIAN_REPOSITORY}) first, then from ${{env.{REPOSITORY_ENV}}} in place of
     Maven Central (the build's environment sets it from MAVEN_REPOSITORY). -->
<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0">
  <mirrors>
    <mirror>
      <id>central</id>
      <name>Maven Central, or the mirror MAVEN_REPOSITORY names</name>
      <mirrorOf>central</mirrorOf>
      <url>${{env.{REPOSITORY_ENV}}}</url>
    </mirror>
  </mirrors>
  <profiles>
    <profile>
      <id>debian</id>
{_DEBIAN_REPOSITORIES}    </profile>
  </profiles>
  <activeProfiles>
    <activeProfile>debian</activeProfile>
  </activeProfiles>
</settings>
"""

# How the JVM is started: its heap sized from the instance's memory limit (the
# JVM reads the container's limit), the rest left to the JVM's own memory
# (classes, threads, code); out of memory, it exits and is restarted rather
# than limping on.
HEAP_PERCENT = 75
JVM_FLAGS = f"-XX:MaxRAMPercentage={HEAP_PERCENT} -XX:+ExitOnOutOfMemoryError"
# Spring Boot (and Quarkus, Micronaut) read their port from these.
PORT_FLAGS = "-Dserver.port=$PORT"
MEMORY_WORDS = (f"its heap is {HEAP_PERCENT}% of the instance's memory (-XX:MaxRAMPercentage={HEAP_PERCENT}), the "
                "rest left to the JVM itself")
# Batch mode, no download progress, tests not run (the image is not the place
# to run them), and a repository that does not answer is not asked again and again.
MAVEN = "mvn -B -ntp -DskipTests -Dmaven.wagon.http.retryHandler.count=1"
# The dependencies and plugins, fetched with the pom alone (the layer a change
# to the code reuses): all but the plugins of lifecycle steps `package` never
# runs (deploy, site; antrun is the site's), which Debian does not package.
MAVEN_FETCH = (f"{MAVEN} -q dependency:resolve dependency:resolve-plugins "
               "-DexcludeArtifactIds=maven-deploy-plugin,maven-site-plugin,maven-antrun-plugin")
# Maven's JVM lives for one build: compiling its own code with the quick
# compiler only and the serial collector makes it two to three times faster
# on a small host (measured: bench/RESULTS.md, "Build cache: Java").
BUILD_ENV = {REPOSITORY_ENV: MAVEN_CENTRAL, "MAVEN_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}

MAIN_METHOD = re.compile(r"\bstatic\s+(?:public\s+|final\s+)*void\s+main\s*\(")
PACKAGE = re.compile(r"^[ \t]*package[ \t]+([\w.]+)[ \t]*;", re.MULTILINE)
MAIN_CLASS = re.compile(rb"^Main-Class:\s*(\S+)", re.MULTILINE)
SYSTEM_PROPERTY = re.compile(r"^[ \t]*java\.runtime\.version[ \t]*[=:][ \t]*(\S+)", re.MULTILINE)
RELEASE = re.compile(r"^(?:1\.)?(\d+)(?:\.\d+)*$")
MAIN_NAMES = ("Main", "App", "Application", "Server")
MAX_MANIFEST = 64 * 1024
# Maven's words when a repository did not answer (or was not found): the
# artifact, the repository's id and address, and why.
TRANSFER_FAILED = re.compile(
    r"Could not transfer artifact (?P<artifact>\S+) from/to (?P<repository>[\w.-]+) \((?P<url>[^)\s]+)\): (?P<why>.*)"
)
HELP = re.compile(r"\s+-> \[Help \d+\]\s*$")
# A pom's property filled in longer than this is not a file name.
MAX_VALUE = 1000


def detect(src: Path, *, start_command: str = "", buildable: str = "") -> Detection | None:
    """With `start_command` (a Procfile's web line), it starts the app; with
    `buildable` (GOOGLE_BUILDABLE), that module of a Maven project of several
    is built, with the modules it needs, and its jar starts the app."""
    if is_file(src, "pom.xml"):
        return _maven(src, start_command, buildable)
    gradle = first_file(src, ("build.gradle", "build.gradle.kts"))
    if gradle:
        return _gradle(src, gradle, start_command)
    jars = _runnable_jars(src)
    if not jars and start_command.startswith("java "):
        # A Procfile running a jar kept elsewhere (`web: java -jar build/libs/app.jar`).
        jars = [(word, "") for word in start_command.split() if word.endswith(".jar") and is_file(src, word)][:1]
    if jars:
        return _prebuilt_jar(src, jars, start_command)
    sources = sorted(p.name for p in src.glob("*.java") if is_file(src, p.name))
    if sources:
        return _plain_sources(src, sources, start_command)
    return None


# -- Maven ------------------------------------------------------------------------------


def _maven(src: Path, start_command: str, buildable: str = "") -> Detection:
    pom = _Pom(read_text(src, "pom.xml"))
    version, version_source = java_version(src, pom)
    notes = []
    if is_file(src, "mvnw"):
        notes.append("The Maven wrapper (mvnw) is not used: the Java stack's own Maven builds the app, from "
                     "Debian's packaged plugins and the Maven repository this host uses (MAVEN_REPOSITORY).")
    if pom.modules and buildable:
        return _maven_module(src, pom, _module_named(pom, buildable), start_command, version, version_source,
                             notes)
    if buildable:
        notes.append(f"GOOGLE_BUILDABLE ({buildable}) names a module to build, but pom.xml has no <modules>: the "
                     "whole project is built, as without it.")
    if pom.modules and not start_command:
        raise DetectionError(
            f"pom.xml builds several modules ({', '.join(pom.modules[:5])}), and Hakobune cannot tell which one's jar "
            f"starts the app. Name the module to build in GOOGLE_BUILDABLE (like `{pom.modules[0]}`, in project.toml, "
            "hakobune.toml's [build_env] or the service's variables), or say how to start it in a Procfile, like "
            f"`web: java -jar {pom.modules[0]}/target/{pom.modules[0]}.jar`."
        )
    if pom.packaging not in ("", "jar") and not start_command:
        raise DetectionError(
            f"pom.xml packages the app as a {pom.packaging}; Hakobune runs a Java app as an executable jar. "
            "Package it as a jar (Spring Boot's plugin makes one that serves HTTP), or say how to start it in a "
            "Procfile (`web: java -jar target/app.jar`)."
        )
    jar = pom.jar_name()
    if start_command:
        start, how = start_command, f"the app's own start command (`{start_command}`)"
    elif jar:
        start, how = _java_jar(f"target/{jar}"), f"`java -jar target/{jar}`; {MEMORY_WORDS}"
    else:
        start = _java_jar(_pick_jar("target"))
        how = f"the jar Maven makes in target/ (`java -jar`); {MEMORY_WORDS}"
    # The dependencies are fetched with the pom alone, so a change to the code
    # reuses them; a .mvn folder (extensions, maven.config) takes part in it too.
    own_config = (src / ".mvn").is_dir()
    plan = _plan(
        version, version_source,
        dependency_files=() if own_config else ("pom.xml",),
        install_commands=() if own_config else (MAVEN_FETCH,),
        build_commands=(f"{MAVEN} package",),
        start_command=start,
        build_env=dict(BUILD_ENV),
        notes=tuple(notes),
    )
    reason = f"found pom.xml ({pom.described()}), built with Maven (`mvn package`), started with {how}"
    return _detection(reason, plan)


def _module_named(pom: _Pom, buildable: str) -> str:
    """The module of `pom` that GOOGLE_BUILDABLE names ("web", "./web/",
    "services/web"); a DetectionError naming the modules when it is none."""
    wanted = buildable.strip().removeprefix("./").rstrip("/")
    for module in pom.modules:
        if module.removeprefix("./").rstrip("/") == wanted:
            return module.removeprefix("./").rstrip("/")
    raise DetectionError(
        f"GOOGLE_BUILDABLE names the module {buildable!r}, but pom.xml's modules are "
        f"{', '.join(pom.modules[:10])}. Name one of them."
    )


def _maven_module(src: Path, pom: _Pom, module: str, start_command: str, version: str, version_source: str,
                  notes: list[str]) -> Detection:
    """One module of a Maven project of several (GOOGLE_BUILDABLE): Maven
    builds it and the modules it needs (`-pl module -am`), and its jar starts
    the app. Every module's pom takes part in the build, so there is no layer
    of dependencies fetched with the poms alone: a change to the code fetches
    nothing again (Maven's repository is in the image already), but builds
    the module again."""
    if not is_file(src, f"{module}/pom.xml"):
        raise DetectionError(f"GOOGLE_BUILDABLE names the module {module!r}, but {module}/pom.xml is not in the "
                             "app's folder.")
    module_pom = _Pom(read_text(src, f"{module}/pom.xml"))
    if module_pom.packaging not in ("", "jar") and not start_command:
        raise DetectionError(
            f"{module}/pom.xml packages the module as a {module_pom.packaging}; Hakobune runs a Java app as an "
            "executable jar. Package it as a jar, or say how to start it in a Procfile "
            f"(`web: java -jar {module}/target/app.jar`)."
        )
    if not version:
        version, version_source = java_version(src, module_pom)
    jar = module_pom.jar_name()
    if start_command:
        start, how = start_command, f"the app's own start command (`{start_command}`)"
    elif jar:
        start, how = _java_jar(f"{module}/target/{jar}"), f"`java -jar {module}/target/{jar}`; {MEMORY_WORDS}"
    else:
        start = _java_jar(_pick_jar(f"{module}/target"))
        how = f"the jar Maven makes in {module}/target/ (`java -jar`); {MEMORY_WORDS}"
    quoted = shlex.quote(module)
    plan = _plan(
        version, version_source,
        build_commands=(f"{MAVEN} package -pl {quoted} -am",),
        start_command=start,
        build_env=dict(BUILD_ENV),
        notes=tuple(notes),
        sources={"build_commands": "GOOGLE_BUILDABLE"},
    )
    reason = (f"found pom.xml of {len(pom.modules)} modules ({', '.join(pom.modules[:5])}); GOOGLE_BUILDABLE names "
              f"{module} ({module_pom.described()}), built with the modules it needs (`mvn package -pl {module} -am`), "
              f"started with {how}")
    return _detection(reason, plan)


class _Pom:
    """What Hakobune reads of a pom.xml: by plain text search, not as XML (a
    detector reads the person's file, and only these few values), in time
    linear in its size."""

    def __init__(self, text: str):
        # The project's own values, not those of <parent> or of dependencies.
        own = _outside(text, ("parent", "dependencies", "dependencyManagement", "build", "profiles", "reporting"))
        self.text = text
        self.properties = {name: value.strip() for name, value in PROPERTY.findall(_section(text, "properties"))}
        self.artifact_id = _tag(own, "artifactId")
        self.version = _tag(own, "version") or _tag(_section(text, "parent"), "version")
        self.packaging = _tag(own, "packaging")
        self.final_name = _tag(_section(text, "build"), "finalName")
        self.modules = [name.strip() for name in re.findall(r"<module>([^<]+)</module>", text)]

    def value(self, text: str) -> str:
        """`text` with the pom's own properties filled in; "" when one cannot be."""
        known = {**self.properties, "project.artifactId": self.artifact_id, "project.version": self.version,
                 "artifactId": self.artifact_id, "version": self.version, "pom.version": self.version}
        for _ in range(5):
            if "${" not in text or len(text) > MAX_VALUE:
                break
            text = re.sub(r"\$\{([\w.-]+)\}", lambda m: known.get(m[1], m[0]), text)
        return "" if "${" in text or len(text) > MAX_VALUE else text

    def jar_name(self) -> str:
        name = self.value(self.final_name) if self.final_name else (
            self.value(f"{self.artifact_id}-{self.version}") if self.artifact_id and self.version else "")
        return f"{name}.jar" if name and re.fullmatch(r"[\w.+-]+", name) else ""

    def described(self) -> str:
        name = self.value(self.artifact_id) or "a Maven project"
        version = self.value(self.version)
        return f"{name} {version}" if version else name

    def compiler_plugin(self) -> str:
        start = self.text.find("<artifactId>maven-compiler-plugin</artifactId>")
        end = self.text.find("</plugin>", start) if start >= 0 else -1
        return self.text[start:end] if end >= 0 else ""


PROPERTY = re.compile(r"<([\w.-]+)>([^<]*)</\1>")


def _section(text: str, tag: str) -> str:
    """What the first <tag> holds."""
    start = text.find(f"<{tag}>")
    end = text.find(f"</{tag}>", start) if start >= 0 else -1
    return text[start + len(tag) + 2:end] if end >= 0 else ""


def _outside(text: str, tags: tuple[str, ...]) -> str:
    """`text` without the sections of `tags` (and without anything after one left open)."""
    opening = re.compile(f"<({'|'.join(tags)})>")
    kept, position = [], 0
    while (match := opening.search(text, position)) is not None:
        kept.append(text[position:match.start()])
        end = text.find(f"</{match[1]}>", match.end())
        if end < 0:
            return "".join(kept)
        position = end + len(match[1]) + 3
    kept.append(text[position:])
    return "".join(kept)


def _tag(text: str, tag: str) -> str:
    match = re.search(rf"<{tag}>([^<]*)</{tag}>", text)
    return match.group(1).strip() if match else ""


# -- Gradle -----------------------------------------------------------------------------


def _gradle(src: Path, build_file: str, start_command: str) -> Detection:
    if not is_file(src, "gradlew"):
        raise DetectionError(
            f"found {build_file} but no Gradle wrapper (gradlew). The Java stack has no Gradle of its own "
            "(Debian's is too old for its JDK), so a Gradle app brings its wrapper: run `gradle wrapper` and "
            "commit gradlew and the gradle/ folder. The wrapper downloads the Gradle it names when the app is "
            "built, so this host must reach that address."
        )
    version, version_source = java_version(src, None)
    if start_command:
        start, how = start_command, f"the app's own start command (`{start_command}`)"
    else:
        start = _java_jar(_pick_jar("build/libs", leave_out="-plain.jar"))
        how = f"the jar Gradle makes in build/libs/ (`java -jar`); {MEMORY_WORDS}"
    plan = _plan(
        version, version_source,
        build_commands=("sh ./gradlew --no-daemon --console=plain build -x test",),
        start_command=start,
        build_env=dict(BUILD_ENV),
    )
    reason = f"found {build_file} with the Gradle wrapper, built with `./gradlew build`, started with {how}"
    return _detection(reason, plan)


# -- a jar built already, plain sources ---------------------------------------------------


def _prebuilt_jar(src: Path, jars: list[tuple[str, str]], start_command: str) -> Detection:
    version, version_source = java_version(src, None)
    if start_command:
        start, how = start_command, f"the app's own start command (`{start_command}`)"
        jar_words = ", ".join(name for name, _ in jars)
    elif len(jars) > 1:
        raise DetectionError(
            f"found {len(jars)} runnable jars ({', '.join(name for name, _ in jars)}), and Hakobune cannot tell "
            "which one starts the app. Say it in a Procfile, like `web: java -jar app.jar`."
        )
    else:
        name, main_class = jars[0]
        start = _java_jar(shlex.quote(name))
        how = f"`java -jar {name}`; {MEMORY_WORDS}"
        jar_words = f"{name} (Main-Class {main_class})"
    plan = _plan(
        version, version_source,
        start_command=start,
    )
    reason = f"found a runnable jar built already, {jar_words}, nothing to build; started with {how}"
    return _detection(reason, plan)


def _plain_sources(src: Path, sources: list[str], start_command: str) -> Detection | None:
    """.java files at the top, compiled with javac; the one with `main` runs."""
    mains = [name for name in sources if MAIN_METHOD.search(read_text(src, name))]
    if not mains and not start_command:
        return None
    version, version_source = java_version(src, None)
    compile_command = "javac -encoding UTF-8 -d classes *.java"
    if start_command:
        start, how = start_command, f"the app's own start command (`{start_command}`)"
    else:
        chosen = mains[0] if len(mains) == 1 else next(
            (name for stem in MAIN_NAMES for name in mains if name == f"{stem}.java"), None)
        if chosen is None:
            raise DetectionError(
                f"found {len(mains)} .java files with a `main` method ({', '.join(mains[:5])}), and Hakobune cannot "
                "tell which one starts the app. Name it Main.java, or say it in a Procfile, like "
                "`web: java -cp classes Server`."
            )
        package = PACKAGE.search(read_text(src, chosen))
        main_class = (f"{package[1]}." if package else "") + chosen.removesuffix(".java")
        start = f"java {JVM_FLAGS} {PORT_FLAGS} -cp classes {main_class}"
        how = f"`java -cp classes {main_class}`; {MEMORY_WORDS}"
    plan = _plan(
        version, version_source,
        build_commands=(compile_command,),
        start_command=start,
        notes=("Hakobune found no pom.xml or build.gradle, so the app is compiled with javac alone, without "
               "libraries: add a pom.xml when it needs one.",),
    )
    files = ", ".join(sources[:5]) + (" …" if len(sources) > 5 else "")
    reason = f"found Java sources at the top ({files}) and no build tool: compiled with `{compile_command}`, started with {how}"
    return _detection(reason, plan)


def _runnable_jars(src: Path) -> list[tuple[str, str]]:
    """(name, Main-Class) of the jars at the top whose manifest names a Main-Class."""
    found = []
    for path in sorted(src.glob("*.jar")):
        main_class = main_class_of(src, path.name)
        if main_class:
            found.append((path.name, main_class))
    return found


def main_class_of(src: Path, name: str) -> str:
    """The Main-Class a jar's manifest names; "" when it names none or the
    jar cannot be read (a link, not a zip)."""
    try:
        with treefs.open_plain_file(src, name) as handle, zipfile.ZipFile(handle) as jar:
            with jar.open("META-INF/MANIFEST.MF") as manifest:
                text = manifest.read(MAX_MANIFEST)
    except (treefs.UnsafePath, OSError, KeyError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError):
        return ""
    match = MAIN_CLASS.search(text.replace(b"\r\n", b"\n"))
    return match.group(1).decode("utf-8", errors="replace") if match else ""


def _plan(version: str, version_source: str, *, sources: dict[str, str] | None = None, **settings) -> BuildPlan:
    sources = {**(sources or {}), **({"language_version": version_source} if version else {})}
    return BuildPlan(stack="java", language_version=version, sources=sources, **settings)


def _detection(reason: str, plan: BuildPlan) -> Detection:
    if plan.language_version:
        reason += f"; it asks for Java {plan.language_version} ({plan.sources['language_version']})"
    return Detection(stack="java", reason=reason, plan=plan)


def _java_jar(jar: str) -> str:
    return f"java {JVM_FLAGS} {PORT_FLAGS} -jar {jar}"


def _pick_jar(folder: str, leave_out: str = "original-") -> str:
    """A jar the build makes whose name is not known before: the first in
    `folder` but those Maven's shade (original-*) or Gradle (*-plain.jar) keep."""
    return f'"$(ls {folder}/*.jar | grep -v -- {shlex.quote(leave_out)} | head -n 1)"'


# -- the Java version -------------------------------------------------------------------


def java_version(src: Path, pom: _Pom | None) -> tuple[str, str]:
    """The Java version the app asks for and where: system.properties'
    java.runtime.version (Heroku's: that release), else what the pom compiles
    for (maven.compiler.release, java.version, maven.compiler.source or the
    compiler plugin's <release>: that release or newer)."""
    declared = SYSTEM_PROPERTY.search(read_text(src, "system.properties")) if is_file(src, "system.properties") else None
    if declared:
        release = RELEASE.match(re.sub(r"^[a-z]+-", "", declared[1]))
        if release:
            return release[1], "system.properties java.runtime.version"
    if pom is None:
        return "", ""
    for name in ("maven.compiler.release", "java.version", "maven.compiler.source", "maven.compiler.target"):
        release = RELEASE.match(pom.value(pom.properties.get(name, "")))
        if release:
            return f">={release[1]}", f"pom.xml {name}"
    plugin = pom.compiler_plugin()
    if plugin:
        for tag in ("release", "source"):
            release = RELEASE.match(pom.value(_tag(plugin, tag)))
            if release:
                return f">={release[1]}", f"pom.xml maven-compiler-plugin <{tag}>"
    return "", ""


# -- the Maven repository ---------------------------------------------------------------


def with_repository(plan: BuildPlan, repository: str) -> BuildPlan:
    """A Java plan with the host's Maven repository (MAVEN_REPOSITORY) in its
    build environment; any other plan as it is."""
    repository = (repository or "").strip().rstrip("/")
    if REPOSITORY_ENV not in plan.build_env or not repository:
        return plan
    return plan.with_changes(build_env={**plan.build_env, REPOSITORY_ENV: repository})


def unreachable_repository(lines: list[str]) -> dict[str, str] | None:
    """{"artifact", "repository", "url", "why"} when Maven's output says a
    repository could not be reached for an artifact; else None. The last
    such line wins (Maven repeats the first failure as the cause of later ones)."""
    found = None
    for line in lines:
        for match in TRANSFER_FAILED.finditer(line):
            found = {key: HELP.sub("", value).strip()[:300] for key, value in match.groupdict().items()}
            # "transfer failed for <the artifact's address>: Unknown host ...": the address says nothing new.
            found["why"] = re.sub(r"^transfer failed for \S+:\s*", "", found["why"]) or found["why"]
    return found
