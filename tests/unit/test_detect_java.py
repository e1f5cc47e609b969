"""Java apps as an owner brings them: a Maven project, a Gradle one with its
wrapper, a runnable jar built already, or plain .java files; what each is
built and started with, the Java version it asks for, what the detector says
when it cannot follow the app, and the sentence an owner reads when Maven
cannot reach the repository a package must come from."""

import io
import os
import subprocess
import xml.etree.ElementTree as ElementTree
import zipfile

import pytest

from hakobune.platform.diagnoses import diagnose
from hakobune.worker.builders.base import BuildError
from hakobune.worker.buildpacks import DetectionError, NoStackDetected, detect, java
from hakobune.worker.buildpacks.versions import StackOffer, VersionUnavailable, fit_stack
from hakobune.worker.stacks import RECIPES
from tests.conftest import APPS_DIR
from tests.unit.test_detect import tree

POM = """<?xml version="1.0"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <parent><groupId>org.example</groupId><artifactId>parent</artifactId><version>9.9</version></parent>
  <artifactId>shop</artifactId>
  <version>2.1.0</version>
  {extra}
  <dependencies>
    <dependency><groupId>org.example</groupId><artifactId>lib</artifactId><version>7.0</version></dependency>
  </dependencies>
</project>
"""
MAIN = "public class Main {\n    public static void main(String[] args) {}\n}\n"
JAVA_17 = StackOffer("java", "", "17.0.19", "hakobune/stack-java:bookworm")
JAVA_21 = StackOffer("java", "trixie", "21.0.8", "hakobune/stack-java:trixie")

# What Maven printed here, building pom.xml files on the Java stack of this host,
# which reaches neither Maven Central nor jitpack.io (run in the stack with
# java.MAVEN_FETCH; the apps are java-maven-central and one naming jitpack.io).
CENTRAL_UNREACHABLE = [
    "\x1b[0m\x1b[0m[ERROR] Failed to execute goal on project hello: Could not resolve dependencies for project "
    "example:hello:jar:1.0: Failed to collect dependencies at io.javalin:javalin:jar:6.3.0: Failed to read artifact "
    "descriptor for io.javalin:javalin:jar:6.3.0: Could not transfer artifact io.javalin:javalin:pom:6.3.0 from/to "
    "central (https://repo.maven.apache.org/maven2): transfer failed for "
    "https://repo.maven.apache.org/maven2/io/javalin/javalin/6.3.0/javalin-6.3.0.pom: Unknown host "
    "repo.maven.apache.org -> [Help 1]",
    "[ERROR] ",
    "[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.",
    "[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/DependencyResolutionException",
]
APP_REPOSITORY_UNREACHABLE = [
    "\x1b[0m\x1b[0m[ERROR] Failed to execute goal on project hello: Could not resolve dependencies for project "
    "example:hello:jar:1.0: Failed to collect dependencies at com.github.example:greeting:jar:1.0: Failed to read "
    "artifact descriptor for com.github.example:greeting:jar:1.0: Could not transfer artifact "
    "com.github.example:greeting:pom:1.0 from/to jitpack.io (https://jitpack.io): transfer failed for "
    "https://jitpack.io/com/github/example/greeting/1.0/greeting-1.0.pom: Unknown host jitpack.io: Name or service "
    "not known -> [Help 1]",
]


def jar(path, manifest: str | None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        if manifest is not None:
            archive.writestr("META-INF/MANIFEST.MF", manifest)
        archive.writestr("app/Main.class", b"\xca\xfe\xba\xbe")
    return path


# --- Maven ---------------------------------------------------------------------------------


def test_a_maven_app_is_fetched_with_its_pom_alone_then_packaged_and_run_as_a_jar():
    detection = detect(APPS_DIR / "java-maven")
    plan = detection.plan
    assert detection.stack == plan.stack == "java" and not plan.build_stack
    assert plan.dependency_files == ("pom.xml",)
    assert plan.install_commands == (java.MAVEN_FETCH,)
    assert plan.build_commands == ("mvn -B -ntp -DskipTests -Dmaven.wagon.http.retryHandler.count=1 package",)
    assert plan.start_command == ("java -XX:MaxRAMPercentage=75 -XX:+ExitOnOutOfMemoryError -Dserver.port=$PORT "
                                  "-jar target/java-maven-1.0.0.jar")
    assert plan.build_env["MAVEN_REPOSITORY"] == "https://repo.maven.apache.org/maven2"
    assert detection.reason == (
        "found pom.xml (java-maven 1.0.0), built with Maven (`mvn package`), started with "
        "`java -jar target/java-maven-1.0.0.jar`; its heap is 75% of the instance's memory "
        "(-XX:MaxRAMPercentage=75), the rest left to the JVM itself; it asks for Java >=17 "
        "(pom.xml maven.compiler.release)"
    )
    dockerfile = plan.dockerfile("hakobune/stack-java:bookworm")
    # The dependencies are a layer of their own, before the code.
    assert dockerfile.index("COPY pom.xml ./") < dockerfile.index("dependency:resolve") < dockerfile.index("COPY . .")
    assert "MAVEN_REPOSITORY=https://repo.maven.apache.org/maven2" in dockerfile


def test_the_jar_is_named_by_the_poms_own_values_not_its_parents_or_dependencies(tmp_path):
    tree(tmp_path, {"pom.xml": POM.format(extra="")})
    assert detect(tmp_path).plan.start_command.endswith("-jar target/shop-2.1.0.jar")
    extra = "<properties><app.name>shop-app</app.name></properties><build><finalName>${app.name}-${project.version}</finalName></build>"
    tree(tmp_path, {"pom.xml": POM.format(extra=extra)})
    assert detect(tmp_path).plan.start_command.endswith("-jar target/shop-app-2.1.0.jar")


def test_a_jar_name_the_pom_cannot_tell_is_found_in_target_when_the_app_starts(tmp_path):
    tree(tmp_path, {"pom.xml": POM.format(extra="<build><finalName>${revision}</finalName></build>")})
    start = detect(tmp_path).plan.start_command
    assert start.endswith("""-jar "$(ls target/*.jar | grep -v -- original- | head -n 1)\"""")


def test_a_procfile_starts_a_maven_app_its_own_way(tmp_path):
    tree(tmp_path, {"pom.xml": POM.format(extra=""), "Procfile": "web: java -jar target/shop.jar --port=$PORT\n"})
    detection = detect(tmp_path)
    assert detection.stack == "java"
    assert detection.plan.start_command == "java -jar target/shop.jar --port=$PORT"
    assert detection.plan.build_commands[0].endswith(" package")


def test_a_maven_app_with_its_own_maven_folder_is_built_in_one_step(tmp_path):
    tree(tmp_path, {"pom.xml": POM.format(extra=""), ".mvn/maven.config": "-Dfoo=bar\n", "mvnw": "#!/bin/sh\n"})
    plan = detect(tmp_path).plan
    assert plan.dependency_files == () and plan.install_commands == ()
    assert any("mvnw" in note and "not used" in note for note in plan.notes)


@pytest.mark.parametrize("extra, words", [
    ("<packaging>war</packaging>", "pom.xml packages the app as a war; Hakobune runs a Java app as an executable jar."),
    ("<packaging>pom</packaging><modules><module>api</module><module>web</module></modules>",
     "pom.xml builds several modules (api, web), and Hakobune cannot tell which one's jar starts the app. Name the "
     "module to build in GOOGLE_BUILDABLE (like `api`, in project.toml, hakobune.toml's [build_env] or the service's "
     "variables), or say how to start it in a Procfile, like `web: java -jar api/target/api.jar`."),
])
def test_a_maven_app_hakobune_cannot_start_is_told_what_to_change(tmp_path, extra, words):
    tree(tmp_path, {"pom.xml": POM.format(extra=extra)})
    with pytest.raises(DetectionError) as excinfo:
        detect(tmp_path)
    assert words in str(excinfo.value)


def test_a_multi_module_app_starts_with_the_jar_its_procfile_names(tmp_path):
    tree(tmp_path, {"pom.xml": POM.format(extra="<modules><module>web</module></modules>"),
                    "Procfile": "web: java -jar web/target/web.jar\n"})
    assert detect(tmp_path).plan.start_command == "java -jar web/target/web.jar"


def test_google_buildable_builds_the_module_it_names_with_the_modules_it_needs():
    # The fixture's project.toml names the web module; its admin module does not compile.
    detection = detect(APPS_DIR / "java-maven-modules")
    plan = detection.plan
    assert detection.stack == "java"
    assert plan.build_commands == (f"{java.MAVEN} package -pl web -am",)
    assert plan.start_command == f"java {java.JVM_FLAGS} {java.PORT_FLAGS} -jar web/target/web-1.0.0.jar"
    # Every module's pom takes part: no layer of dependencies fetched with the root pom alone.
    assert plan.dependency_files == () and plan.install_commands == ()
    assert plan.sources["build_commands"] == "GOOGLE_BUILDABLE"
    assert plan.language_version == ">=17"
    assert detection.reason.startswith(
        "found pom.xml of 3 modules (greeting, web, admin); GOOGLE_BUILDABLE names web (web 1.0.0), built with the "
        "modules it needs (`mvn package -pl web -am`), started with `java -jar web/target/web-1.0.0.jar`")


@pytest.mark.parametrize("named", ["web", "./web", "web/", "./web/"])
def test_google_buildable_names_a_module_as_a_path_or_a_name(tmp_path, named):
    tree(tmp_path, {"pom.xml": POM.format(extra="<packaging>pom</packaging><modules><module>api</module>"
                                                "<module>web</module></modules>"),
                    "web/pom.xml": POM.format(extra="").replace("<artifactId>shop</artifactId>",
                                                                "<artifactId>web</artifactId>")})
    plan = detect(tmp_path, build_env={"GOOGLE_BUILDABLE": named}).plan
    assert plan.build_commands == (f"{java.MAVEN} package -pl web -am",)
    assert plan.start_command.endswith("-jar web/target/web-2.1.0.jar")


def test_a_procfile_starts_the_module_google_buildable_builds(tmp_path):
    tree(tmp_path, {"pom.xml": POM.format(extra="<modules><module>web</module></modules>"),
                    "web/pom.xml": POM.format(extra=""), "Procfile": "web: java -jar web/target/shop.jar\n"})
    plan = detect(tmp_path, build_env={"GOOGLE_BUILDABLE": "web"}).plan
    assert plan.build_commands == (f"{java.MAVEN} package -pl web -am",)
    assert plan.start_command == "java -jar web/target/shop.jar"


@pytest.mark.parametrize("files, named, words", [
    ({"web/pom.xml": POM.format(extra="")}, "shop",
     "GOOGLE_BUILDABLE names the module 'shop', but pom.xml's modules are api, web. Name one of them."),
    ({}, "web", "GOOGLE_BUILDABLE names the module 'web', but web/pom.xml is not in the app's folder."),
    ({"web/pom.xml": POM.format(extra="<packaging>war</packaging>")}, "web",
     "web/pom.xml packages the module as a war; Hakobune runs a Java app as an executable jar."),
])
def test_google_buildable_that_names_no_module_it_can_build_is_told_in_a_sentence(tmp_path, files, named, words):
    tree(tmp_path, {"pom.xml": POM.format(extra="<modules><module>api</module><module>web</module></modules>"),
                    **files})
    with pytest.raises(DetectionError) as excinfo:
        detect(tmp_path, build_env={"GOOGLE_BUILDABLE": named})
    assert words in str(excinfo.value)


def test_google_buildable_on_a_project_of_one_module_builds_the_whole_and_says_so(tmp_path):
    tree(tmp_path, {"pom.xml": POM.format(extra="")})
    plan = detect(tmp_path, build_env={"GOOGLE_BUILDABLE": "web"}).plan
    assert plan.build_commands == (f"{java.MAVEN} package",)
    assert any("GOOGLE_BUILDABLE (web) names a module to build, but pom.xml has no <modules>" in note
               for note in plan.notes)


# --- Gradle, a jar built already, plain sources --------------------------------------------------


def test_gradle_without_its_wrapper_is_refused_saying_why(tmp_path):
    tree(tmp_path, {"build.gradle.kts": "plugins { java }\n"})
    with pytest.raises(DetectionError) as excinfo:
        detect(tmp_path)
    message = str(excinfo.value)
    assert message.startswith("found build.gradle.kts but no Gradle wrapper (gradlew).")
    assert "run `gradle wrapper` and commit gradlew and the gradle/ folder" in message


def test_gradle_with_its_wrapper_is_built_with_it(tmp_path):
    tree(tmp_path, {"build.gradle": "plugins { id 'java' }\n", "gradlew": "#!/bin/sh\n",
                    "system.properties": "java.runtime.version=17\n"})
    detection = detect(tmp_path)
    assert detection.plan.build_commands == ("sh ./gradlew --no-daemon --console=plain build -x test",)
    assert "build/libs/*.jar" in detection.plan.start_command and "-plain.jar" in detection.plan.start_command
    assert detection.plan.language_version == "17"
    assert detection.reason.startswith("found build.gradle with the Gradle wrapper, built with `./gradlew build`")


def test_a_runnable_jar_is_started_as_it_is(tmp_path):
    jar(tmp_path / "server-1.2.jar", "Manifest-Version: 1.0\r\nMain-Class: com.example.Server\r\n")
    jar(tmp_path / "library.jar", "Manifest-Version: 1.0\r\n")  # no Main-Class: not the app
    detection = detect(tmp_path)
    assert detection.stack == "java"
    assert detection.plan.build_commands == () and detection.plan.install_commands == ()
    assert detection.plan.start_command.endswith("-Dserver.port=$PORT -jar server-1.2.jar")
    assert detection.reason.startswith(
        "found a runnable jar built already, server-1.2.jar (Main-Class com.example.Server), nothing to build")


def test_two_runnable_jars_ask_for_a_procfile(tmp_path):
    for name in ("a.jar", "b.jar"):
        jar(tmp_path / name, "Main-Class: app.Main\n")
    with pytest.raises(DetectionError, match=r"found 2 runnable jars \(a.jar, b.jar\).*web: java -jar app.jar"):
        detect(tmp_path)


def test_a_jar_that_is_a_link_or_not_a_zip_is_not_read(tmp_path):
    outside = jar(tmp_path / "outside" / "real.jar", "Main-Class: app.Main\n")
    app = tmp_path / "app"
    app.mkdir()
    os.symlink(outside, app / "linked.jar")
    (app / "broken.jar").write_bytes(b"not a zip at all")
    assert java.main_class_of(app, "linked.jar") == ""
    assert java.main_class_of(app, "broken.jar") == ""
    with pytest.raises(NoStackDetected):
        detect(app)


def test_plain_java_sources_are_compiled_with_javac_and_their_main_class_runs():
    detection = detect(APPS_DIR / "java-plain")
    assert detection.plan.build_commands == ("javac -encoding UTF-8 -d classes *.java",)
    assert detection.plan.start_command == (
        "java -XX:MaxRAMPercentage=75 -XX:+ExitOnOutOfMemoryError -Dserver.port=$PORT -cp classes Main")
    assert detection.reason.startswith("found Java sources at the top (Greeting.java, Main.java) and no build tool")


def test_the_main_class_of_plain_sources_carries_its_package(tmp_path):
    tree(tmp_path, {"Server.java": "package web.demo;\n" + MAIN.replace("Main", "Server"), "Util.java": "class Util {}\n"})
    assert detect(tmp_path).plan.start_command.endswith("-cp classes web.demo.Server")


def test_several_main_methods_ask_which_one_unless_one_is_main_java(tmp_path):
    tree(tmp_path / "a", {"Tool.java": MAIN.replace("Main", "Tool"), "Other.java": MAIN.replace("Main", "Other")})
    with pytest.raises(DetectionError, match=r"found 2 .java files with a `main` method \(Other.java, Tool.java\)"):
        detect(tmp_path / "a")
    tree(tmp_path / "b", {"Tool.java": MAIN.replace("Main", "Tool"), "Main.java": MAIN})
    assert detect(tmp_path / "b").plan.start_command.endswith("-cp classes Main")


def test_java_sources_without_a_main_method_are_not_an_app(tmp_path):
    tree(tmp_path, {"Util.java": "class Util {}\n"})
    assert java.detect(tmp_path) is None
    with pytest.raises(NoStackDetected) as excinfo:
        detect(tmp_path)
    # What the detector says it looks for, among the others.
    assert f"  • Java: {java.LOOKS_FOR}" in str(excinfo.value)
    assert "pom.xml (Maven), build.gradle or build.gradle.kts with the Gradle wrapper (gradlew)" in java.LOOKS_FOR


def test_hakobune_toml_can_ask_for_the_java_stack_and_says_what_it_lacks(tmp_path):
    tree(tmp_path, {"hakobune.toml": 'stack = "java"\n', "README.md": "nothing to build\n"})
    with pytest.raises(NoStackDetected) as excinfo:
        detect(tmp_path)
    assert str(excinfo.value).startswith("hakobune.toml asks for the Java stack, but Hakobune did not find what it needs")


def test_heroku_java_in_buildpacks_builds_on_the_java_stack(tmp_path):
    tree(tmp_path, {".buildpacks": "heroku/java\n", "pom.xml": POM.format(extra="")})
    assert detect(tmp_path).stack == "java"


def test_the_other_stacks_fixture_apps_are_no_java_apps():
    for app in ("flask-hello", "go-http", "node-express", "static-site", "vite-static"):
        assert java.detect(APPS_DIR / app) is None, app


# --- the Java version ----------------------------------------------------------------------


@pytest.mark.parametrize("files, version, source", [
    ({"system.properties": "java.runtime.version=21\n"}, "21", "system.properties java.runtime.version"),
    ({"system.properties": "java.runtime.version = 1.8\n"}, "8", "system.properties java.runtime.version"),
    ({"system.properties": "java.runtime.version=zulu-17.0.2\n"}, "17", "system.properties java.runtime.version"),
    ({"pom.xml": POM.format(extra="<properties><java.version>21</java.version></properties>")},
     ">=21", "pom.xml java.version"),
    ({"pom.xml": POM.format(extra="<properties><maven.compiler.source>1.8</maven.compiler.source></properties>")},
     ">=8", "pom.xml maven.compiler.source"),
    ({"pom.xml": POM.format(extra="<build><plugins><plugin><artifactId>maven-compiler-plugin</artifactId>"
                                  "<configuration><release>11</release></configuration></plugin></plugins></build>")},
     ">=11", "pom.xml maven-compiler-plugin <release>"),
    # system.properties names the release that runs it, over what the pom compiles for.
    ({"system.properties": "java.runtime.version=17\n",
      "pom.xml": POM.format(extra="<properties><java.version>11</java.version></properties>")},
     "17", "system.properties java.runtime.version"),
])
def test_the_java_version_an_app_asks_for(tmp_path, files, version, source):
    tree(tmp_path, {**files, "Main.java": MAIN} if "pom.xml" not in files else files)
    plan = detect(tmp_path).plan
    assert (plan.language_version, plan.sources["language_version"]) == (version, source)


def test_an_app_asking_for_a_newer_java_builds_on_the_stack_that_has_it(tmp_path):
    tree(tmp_path, {"pom.xml": POM.format(extra="<properties><maven.compiler.release>21</maven.compiler.release>"
                                                "</properties>")})
    plan, chosen = fit_stack(detect(tmp_path).plan, lambda language: [JAVA_17, JAVA_21])
    assert plan.stack_variant == "trixie"
    assert chosen == "Java >=21 is asked for: built on hakobune/stack-java:trixie (Java 21.0.8)"
    # A pom compiling for 11 builds on 17: javac --release 11 makes classes 11 runs.
    tree(tmp_path, {"pom.xml": POM.format(extra="<properties><java.version>11</java.version></properties>")})
    plan, chosen = fit_stack(detect(tmp_path).plan, lambda language: [JAVA_17, JAVA_21])
    assert plan.stack_variant == "" and chosen == ""


def test_an_app_asking_for_a_java_no_stack_has_is_refused_naming_those_there_are(tmp_path):
    tree(tmp_path, {"Main.java": MAIN, "system.properties": "java.runtime.version=25\n"})
    with pytest.raises(VersionUnavailable) as excinfo:
        fit_stack(detect(tmp_path).plan, lambda language: [JAVA_17, JAVA_21])
    diagnosis = diagnose(excinfo.value)
    assert diagnosis.rule == "detect.version_unavailable"
    assert diagnosis.in_english().startswith(
        "The app asks for Java 25 (system.properties java.runtime.version), but the stacks here have Java 17.0.19 "
        "(hakobune/stack-java:bookworm), Java 21.0.8 (hakobune/stack-java:trixie).")


def test_google_runtime_version_asks_for_the_java_release(tmp_path):
    tree(tmp_path, {"Main.java": MAIN})
    plan = detect(tmp_path, build_env={"GOOGLE_RUNTIME_VERSION": "21"}).plan
    with pytest.raises(VersionUnavailable, match=r"Java 21 \(GOOGLE_RUNTIME_VERSION\)"):
        fit_stack(plan, lambda language: [JAVA_17])


# --- the Maven repository ------------------------------------------------------------------


def test_the_hosts_maven_repository_goes_into_java_builds_only():
    plan = detect(APPS_DIR / "java-maven").plan
    mirrored = java.with_repository(plan, "https://maven.example.com/maven2/")
    assert mirrored.build_env["MAVEN_REPOSITORY"] == "https://maven.example.com/maven2"
    assert "MAVEN_REPOSITORY=https://maven.example.com/maven2" in mirrored.dockerfile("hakobune/stack-java:bookworm")
    flask = detect(APPS_DIR / "flask-hello").plan
    assert java.with_repository(flask, "https://maven.example.com/maven2") == flask


def test_the_java_stacks_maven_settings_read_debian_first_then_the_hosts_repository():
    recipe = RECIPES["java"]
    settings = dict(recipe.files)["/etc/maven/settings.xml"]
    root = ElementTree.parse(io.StringIO(settings)).getroot()
    ns = {"m": "http://maven.apache.org/SETTINGS/1.0.0"}
    mirror = root.find("m:mirrors/m:mirror", ns)
    assert (mirror.findtext("m:id", namespaces=ns), mirror.findtext("m:mirrorOf", namespaces=ns),
            mirror.findtext("m:url", namespaces=ns)) == ("central", "central", "${env.MAVEN_REPOSITORY}")
    urls = [e.text for e in root.iterfind(".//m:profile//m:url", ns)]
    assert urls == ["file:///usr/share/maven-repo", "file:///usr/share/maven-repo"]
    assert root.findtext("m:activeProfiles/m:activeProfile", namespaces=ns) == "debian"
    assert {"default-jdk-headless", "maven", "libmaven-compiler-plugin-java", "libsurefire-java"} <= set(recipe.apt_packages)


def test_an_unreachable_maven_central_is_told_in_one_sentence_naming_the_setting():
    error = BuildError("Installing your app's dependencies failed (the install step exited with code 1).",
                       log_tail=CENTRAL_UNREACHABLE)
    diagnosis = diagnose(error)
    assert diagnosis.rule == "build.maven_repository_unreachable"
    assert diagnosis.params == {"artifact": "io.javalin:javalin:pom:6.3.0", "repository": "central",
                                "url": "https://repo.maven.apache.org/maven2",
                                "why": "Unknown host repo.maven.apache.org"}
    assert diagnosis.in_english() == (
        "Maven could not download io.javalin:javalin:pom:6.3.0 from the Maven repository "
        "https://repo.maven.apache.org/maven2 (Unknown host repo.maven.apache.org). The app needs a package that "
        "Debian does not carry, and this host cannot reach that repository. This is not your app: an administrator "
        "sets MAVEN_REPOSITORY to a Maven repository this host can reach (a company mirror of Maven Central), then "
        "deploy again."
    )
    assert diagnosis.kind.value == "platform"


def test_an_unreachable_repository_the_app_names_is_the_apps_to_change():
    diagnosis = diagnose(BuildError("failed", log_tail=APP_REPOSITORY_UNREACHABLE))
    assert diagnosis.rule == "build.maven_app_repository_unreachable"
    words = diagnosis.in_english()
    assert words.startswith("Maven could not download com.github.example:greeting:pom:1.0 from jitpack.io "
                            "(https://jitpack.io), a repository the app's pom.xml names (Unknown host jitpack.io: "
                            "Name or service not known).")
    assert diagnosis.kind.value == "user"


def test_other_build_failures_keep_their_own_words():
    error = BuildError("Your app's build command failed.", log_tail=["[ERROR] COMPILATION ERROR", "Main.java:[3,1]"])
    assert diagnose(error).rule == "build.failed"
    assert java.unreachable_repository(["Could not find artifact x:y:jar:1 in central (https://repo)"]) is None


def test_a_hostile_pom_or_source_is_read_in_one_pass_and_told_apart(tmp_path):
    # Sections never closed, whitespace runs and properties that grow at each
    # filling-in: read in time linear in the (capped) file, and no name comes of them.
    bomb = "".join(f"<p{i}>${{p{i + 1}}}${{p{i + 1}}}${{p{i + 1}}}${{p{i + 1}}}</p{i}>" for i in range(40))
    pom = ("<project><artifactId>x</artifactId><version>${p0}</version><properties>" + bomb + "</properties>"
           + "<parent>" * 20_000 + " " * 200_000 + "<build>" * 20_000)
    tree(tmp_path / "pom", {"pom.xml": pom})
    start = detect(tmp_path / "pom").plan.start_command
    assert '"$(ls target/*.jar' in start  # the name could not be told from the pom
    tree(tmp_path / "java", {"Main.java": "\n" * 400_000 + MAIN, "system.properties": " " * 400_000})
    assert detect(tmp_path / "java").plan.language_version == ""


def test_the_java_stack_lists_the_versions_debian_packages_so_a_pom_may_name_a_plugin_without_one(tmp_path):
    # Debian's repository as the stack has it: versions, and no list of them.
    for version in ("3.2.4", "3.10.1", "debian"):
        tree(tmp_path / "repo", {f"org/apache/maven/plugins/maven-shade-plugin/{version}/"
                                 f"maven-shade-plugin-{version}.pom": "<project/>"})
    tree(tmp_path / "repo", {"commons-io/commons-io/debian/commons-io-debian.pom": "<project/>"})
    script = java.MAVEN_METADATA.replace(java.DEBIAN_REPOSITORY, str(tmp_path / "repo"))
    subprocess.run(["sh", "-euc", script], check=True)
    listed = ElementTree.parse(tmp_path / "repo/org/apache/maven/plugins/maven-shade-plugin/maven-metadata.xml")
    assert listed.findtext("groupId") == "org.apache.maven.plugins"
    assert listed.findtext("versioning/release") == listed.findtext("versioning/latest") == "3.10.1"
    assert [v.text for v in listed.iterfind("versioning/versions/version")] == ["3.2.4", "3.10.1", "debian"]
    # Only Debian's own alias: no release to name.
    assert not (tmp_path / "repo/commons-io/commons-io/maven-metadata.xml").exists()
    assert RECIPES["java"].post_install == (java.MAVEN_METADATA,)


def test_a_procfile_running_a_jar_kept_in_a_folder_is_a_java_app(tmp_path):
    jar(tmp_path / "build/libs/app-1.0.jar", "Main-Class: app.Main\n")
    tree(tmp_path, {"Procfile": "web: java -Xmx200m -jar build/libs/app-1.0.jar\n"})
    detection = detect(tmp_path)
    assert detection.stack == "java" and detection.plan.build_commands == ()
    assert detection.plan.start_command == "java -Xmx200m -jar build/libs/app-1.0.jar"
    assert "build/libs/app-1.0.jar" in detection.reason
