"""A person's own Dockerfile under Hakobune's policy (worker/builders/
dockerfile_policy.py), asked of the local builder the way the pipeline asks
it, on a fake engine that records whether a build was started: what another
team's images, URLs in ADD, image ids and VOLUME get (a refusal before the
build, in a sentence naming the line), and what stays allowed (the team's own
images, the stacks, scratch, earlier stages, the administrator's patterns).
The module itself is imported only by the tests that read it directly."""

import shutil

import docker.errors
import pytest

from hakobune.worker.builders.base import BuildError, BuildRequest
from hakobune.worker.builders.local_docker import LocalDockerBuilder
from hakobune.worker.buildpacks import detect
from tests.conftest import APPS_DIR

OTHER_TEAMS_IMAGE = "hakobune/rival/web:0123456789abcdef"
OWN_IMAGE = "hakobune/acme/api:fedcba9876543210"
OWN_IMAGE_ID = "sha256:" + "a1" * 32
OTHER_IMAGE_ID = "sha256:" + "b2" * 32


class Image:
    def __init__(self, image_id, tags, onbuild=()):
        self.id = image_id
        self.tags = list(tags)
        self.attrs = {"Config": {"OnBuild": list(onbuild) or None}}


class Images:
    """The engine's images: the team's own, another team's, and one with ONBUILD triggers."""

    def __init__(self):
        own = Image(OWN_IMAGE_ID, [OWN_IMAGE])
        other = Image(OTHER_IMAGE_ID, [OTHER_TEAMS_IMAGE])
        self.known = {
            OWN_IMAGE: own, OWN_IMAGE_ID: own, OWN_IMAGE_ID[7:19]: own,
            OTHER_TEAMS_IMAGE: other, OTHER_IMAGE_ID: other, OTHER_IMAGE_ID[7:19]: other,
            "hakobune/acme/old:1": Image("sha256:" + "c3" * 32, ["hakobune/acme/old:1"],
                                         onbuild=["ADD http://127.0.0.1:2019/config/ /routes.json"]),
        }

    def get(self, ref):
        if ref in self.known:
            return self.known[ref]
        raise docker.errors.ImageNotFound(ref)


class API:
    def __init__(self):
        self.builds = []

    def build(self, **kwargs):
        self.builds.append(kwargs)
        return iter([{"stream": "Step 1/1 : FROM x\n"}, {"aux": {"ID": "sha256:" + "d4" * 32}}])


class Engine:
    def __init__(self):
        self.images = Images()
        self.api = API()


@pytest.fixture
def engine():
    return Engine()


def build(tmp_path, engine, dockerfile, *, files=None, toml=None, team="acme", **options):
    """Builds an app made of this Dockerfile for `team`; returns the log, or raises BuildError."""
    src = tmp_path / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    (src / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (src / name).write_text(text)
    if toml:
        (src / "hakobune.toml").write_text(toml)
    # A fake engine: no network nor cgroup here (the confinement has its own tests).
    builder = LocalDockerBuilder("local", network="", cgroup_parent="", stack_images={"python": "python:3.12-slim"},
                                 **options)
    builder._client = engine
    lines = []
    plan = detect(src).plan
    request = BuildRequest(team=team, service="api", source_dir=src, source_digest="d" * 64, plan=plan,
                           workspace=tmp_path)
    builder.build(request, lines.append)
    return lines


def refusal(tmp_path, engine, dockerfile, **kwargs) -> str:
    builds_before = len(engine.api.builds)
    with pytest.raises(BuildError) as caught:
        build(tmp_path, engine, dockerfile, **kwargs)
    error = caught.value
    assert error.user_error and not error.transient
    assert len(engine.api.builds) == builds_before, "the engine was asked to build a Dockerfile that was refused"
    return error.message


# -- another team's images -----------------------------------------------------------------


@pytest.mark.parametrize("dockerfile, line", [
    (f"FROM {OTHER_TEAMS_IMAGE}\nCMD [\"x\"]\n", 1),
    (f"FROM docker.io/{OTHER_TEAMS_IMAGE}\n", 1),
    (f"FROM hakobune/stack-python:bookworm\nCOPY --from={OTHER_TEAMS_IMAGE} /srv /srv\n", 2),
    (f"ARG BASE={OTHER_TEAMS_IMAGE}\nFROM ${{BASE}}\n", 2),
    (f"FROM hakobune/stack-python:bookworm AS build\nFROM build\nCOPY --from={OTHER_TEAMS_IMAGE} /a /a\n", 3),
], ids=["FROM", "FROM docker.io/", "COPY --from", "FROM ${ARG}", "after stages"])
def test_another_teams_image_is_refused_in_from_and_copy_from(tmp_path, engine, dockerfile, line):
    message = refusal(tmp_path, engine, dockerfile)
    assert message.startswith(f"Line {line} of your Dockerfile, `")
    assert "which is an image of another team (rival)" in message
    # What to do instead, with the team's own namespace named.
    assert "your team's own images (hakobune/acme/…)" in message and "scratch" in message


def test_another_teams_image_is_refused_even_when_the_administrator_allows_everything(tmp_path, engine):
    message = refusal(tmp_path, engine, f"FROM {OTHER_TEAMS_IMAGE}\n", allowed_base_images=["*", "docker.io/*"])
    assert "another team (rival)" in message


def test_the_teams_own_images_the_stacks_scratch_and_earlier_stages_are_allowed(tmp_path, engine):
    dockerfile = f"""\
# syntax=docker/dockerfile:1
FROM hakobune/stack-python:bookworm AS deps
RUN pip install flask
FROM {OWN_IMAGE} AS previous
FROM python:3.12-slim
COPY --from=deps /usr/local /usr/local
COPY --from=0 /etc/hostname /tmp/a
COPY --from=previous /srv /srv
COPY --from={OWN_IMAGE} /srv /srv2
FROM scratch
COPY --from=2 /srv /srv
"""
    lines = build(tmp_path, engine, dockerfile)
    assert "Your Dockerfile builds on hakobune/stack-python:bookworm, " + OWN_IMAGE + ", python:3.12-slim" in lines
    assert len(engine.api.builds) == 1


def test_the_fixture_apps_dockerfile_with_its_build_argument_is_allowed(tmp_path, engine):
    src = APPS_DIR / "dockerfile"
    lines = build(tmp_path, engine, (src / "Dockerfile").read_text(), files={"server.py": ""},
                  toml=(src / "hakobune.toml").read_text())
    assert "Your Dockerfile builds on hakobune/stack-python:bookworm" in lines


# -- image ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("reference", [OTHER_IMAGE_ID, OTHER_IMAGE_ID[7:19], OTHER_IMAGE_ID[:19], "cafe"])
def test_an_image_id_that_is_not_the_teams_own_is_refused(tmp_path, engine, reference):
    message = refusal(tmp_path, engine, f"FROM {reference}\n", allowed_base_images=["docker.io/library/*"])
    assert f"starts from `{reference}`, which looks like an image id" in message
    assert "name an image by its repository and tag instead" in message


def test_an_image_id_of_the_teams_own_is_allowed(tmp_path, engine):
    assert f"Your Dockerfile builds on {OWN_IMAGE_ID[7:19]}" in build(tmp_path, engine, f"FROM {OWN_IMAGE_ID[7:19]}\n")
    build(tmp_path, engine, f"FROM python:3.12-slim\nCOPY --from={OWN_IMAGE_ID} /srv /srv\n")
    assert len(engine.api.builds) == 2


# -- ADD of a URL --------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile, line", [
    ("FROM scratch\nADD http://127.0.0.1:2019/config/ /routes.json\n", 2),
    ("FROM scratch\nADD https://example.com/tool.tgz /opt/\n", 2),
    ("FROM scratch\nADD git@github.com:someone/repo.git /src\n", 2),
    ("FROM scratch\nADD --chown=1:1 HTTP://127.0.0.1:8000/ /x\n", 2),
    ('FROM scratch\nADD ["http://127.0.0.1:8000/a", "/a"]\n', 2),
    ("FROM scratch\nARG URL=http://127.0.0.1:2019/config/\nADD ${URL} /x\n", 3),
    ("ARG HOST=127.0.0.1\nFROM scratch\nARG HOST\nENV U=http://$HOST:2019\nADD $U/config/ /x\n", 5),
    ("FROM scratch\nADD \\\n    http://127.0.0.1:2019/config/ \\\n    /x\n", 2),
    ("# escape=`\nFROM scratch\nADD `\n  http://127.0.0.1:2019/ /x\n", 3),
    ("FROM scratch\nONBUILD ADD http://127.0.0.1:2019/config/ /x\n", 2),
], ids=["http", "https", "git", "upper case, with a flag", "JSON form", "ARG", "ARG and ENV", "continued",
        "escape directive", "ONBUILD"])
def test_add_of_a_url_is_refused_before_the_build(tmp_path, engine, dockerfile, line):
    message = refusal(tmp_path, engine, dockerfile)
    assert message.startswith(f"Line {line} of your Dockerfile")
    assert "downloads a URL" in message and "Download it in a RUN step instead" in message


def test_add_from_a_variable_hakobune_cannot_see_is_refused(tmp_path, engine):
    message = refusal(tmp_path, engine, "FROM scratch\nADD $SOMEWHERE/file /x\n")
    assert "named with $SOMEWHERE, whose value Hakobune cannot tell" in message


def test_add_of_a_local_file_is_allowed(tmp_path, engine):
    lines = build(tmp_path, engine, "FROM python:3.12-slim\nARG DIR=assets\nADD ${DIR}/site.tar.gz /srv/\n"
                  "COPY . /app\n", files={"site.tar.gz": ""})
    assert "Your Dockerfile builds on python:3.12-slim" in lines  # checked, and allowed
    assert len(engine.api.builds) == 1


def test_the_onbuild_steps_of_a_base_image_are_checked_too(tmp_path, engine):
    message = refusal(tmp_path, engine, "FROM hakobune/acme/old:1\n")
    assert message.startswith("The image `hakobune/acme/old:1` that line 1 of your Dockerfile starts from carries an "
                              "ONBUILD step, `ADD http://127.0.0.1:2019/config/ /routes.json`, downloads a URL")


# -- FROM with build arguments -------------------------------------------------------------


def test_from_with_a_build_argument_is_resolved_from_defaults_and_hakobune_toml(tmp_path, engine):
    dockerfile = "ARG BASE=python:3.12-slim\nFROM ${BASE}\n"
    assert "Your Dockerfile builds on python:3.12-slim" in build(tmp_path, engine, dockerfile)
    lines = build(tmp_path, engine, dockerfile, toml='[build_args]\nBASE = "hakobune/acme/api:fedcba9876543210"\n')
    assert f"Your Dockerfile builds on {OWN_IMAGE}" in lines
    message = refusal(tmp_path, engine, dockerfile, toml='[build_args]\nBASE = "evil.example/root:1"\n')
    assert "`evil.example/root:1`, which is not an image Hakobune builds on" in message
    assert "ask your administrator" in message


def test_build_arguments_of_any_type_and_a_byte_order_mark_are_read_as_the_engine_reads_them(tmp_path, engine):
    lines = build(tmp_path, engine, "\ufeffARG VERSION=3.11\nFROM python:${VERSION}-slim\n",
                  toml="[build_args]\nVERSION = 3.12\n")
    assert "Your Dockerfile builds on python:3.12-slim" in lines


@pytest.mark.parametrize("name", ["HTTP_PROXY", "https_proxy", "NO_PROXY"])
def test_a_proxy_among_the_build_arguments_is_refused(tmp_path, engine, name):
    message = refusal(tmp_path, engine, "FROM python:3.12-slim\nRUN curl http://example.com/\n",
                      toml=f'[build_args]\n{name} = "http://proxy.example:3128"\n')
    assert message.startswith(f"hakobune.toml sets the build argument {name}. Hakobune's builds take no proxy")


def test_from_with_a_build_argument_without_a_value_is_refused(tmp_path, engine):
    message = refusal(tmp_path, engine, "ARG BASE\nFROM $BASE\n")
    assert message.startswith("Line 2 of your Dockerfile, `FROM $BASE`, starts from an image named by BASE, which has "
                              "no value here. Give the build argument a default")


# -- the administrator's list --------------------------------------------------------------


def test_only_the_images_the_administrator_allows_come_from_a_registry(tmp_path, engine):
    allowed = dict(allowed_base_images=["python:*", "ghcr.io/acme/*"])
    for image in ("python:3.11-slim", "docker.io/library/python:3", "python", "python@sha256:" + "e5" * 32,
                  "ghcr.io/acme/base:2"):
        build(tmp_path, engine, f"FROM {image}\n", **allowed)
    for image in ("node:22", "127.0.0.1:5000/python:3", "ghcr.io/other/base:2", "hakobune/anything"):
        message = refusal(tmp_path, engine, f"FROM {image}\n", **allowed)
        assert "or images your administrator allows (python:*, ghcr.io/acme/*)" in message


def test_by_default_the_stacks_registry_images_are_allowed_with_any_tag(tmp_path, engine):
    build(tmp_path, engine, "FROM python:3.11-slim\n")
    assert "not an image Hakobune builds on" in refusal(tmp_path, engine, "FROM node:22\n")


def test_the_allow_list_setting_is_checked(settings):
    assert settings.BUILD_ALLOWED_BASE_IMAGES == ["python:*", "node:*", "golang:*"]
    assert settings.IMAGE_BUILDERS["local"]["OPTIONS"]["allowed_base_images"] == settings.BUILD_ALLOWED_BASE_IMAGES
    with pytest.raises(ValueError, match="is not an image pattern"):
        LocalDockerBuilder("local", allowed_base_images=["Not An Image"])


def test_references_are_read_as_the_engine_reads_them():
    from hakobune.worker.builders.dockerfile_policy import AllowedImages, Policy, parse_reference

    assert str(parse_reference("python")) == "docker.io/library/python:latest"
    assert str(parse_reference("index.docker.io/library/python:3")) == "docker.io/library/python:3"
    assert str(parse_reference("localhost:5000/app")) == "localhost:5000/app:latest"
    assert parse_reference("hakobune/acme/api:1").repository == "docker.io/hakobune/acme/api"
    policy = Policy(team="acme", allowed=AllowedImages(("docker.io/library/*",)))
    assert policy.image_problem("debian:bookworm") is None
    assert policy.image_problem("library/debian") is None
    assert "another team" in policy.image_problem("index.docker.io/hakobune/rival/x")


# -- VOLUME and RUN options ----------------------------------------------------------------


def test_volume_is_refused(tmp_path, engine):
    message = refusal(tmp_path, engine, "FROM python:3.12-slim\nWORKDIR /srv\nVOLUME [\"/data\"]\n")
    assert message.startswith('Line 3 of your Dockerfile, `VOLUME ["/data"]`, declares a volume. Hakobune does not '
                              "build images with VOLUME")
    assert "write scratch files to /tmp" in message


@pytest.mark.parametrize("option", ["--network=host", "--mount=type=bind,from=hakobune/rival/web,target=/x",
                                    "--security=insecure"])
def test_run_options_are_refused(tmp_path, engine, option):
    message = refusal(tmp_path, engine, f"FROM python:3.12-slim\nRUN {option} cat /x\n")
    assert f"asks for {option.split('=')[0]}" in message


# -- the file itself -----------------------------------------------------------------------


def test_a_dockerfile_that_is_a_link_or_behind_one_is_not_read(tmp_path):
    from hakobune.worker.builders import dockerfile_policy

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "Dockerfile").symlink_to(tmp_path / "elsewhere" / "Dockerfile")
    (tmp_path / "docker").symlink_to(tmp_path / "elsewhere")
    for relative in ("Dockerfile", "docker/Dockerfile"):
        with pytest.raises(dockerfile_policy.DockerfileRefused, match="link"):
            dockerfile_policy.read_dockerfile(tmp_path, relative)
    assert dockerfile_policy.read_dockerfile(tmp_path, "elsewhere/Dockerfile") == "FROM scratch\n"


def test_a_dockerfile_without_from_is_refused(tmp_path, engine):
    assert "has no FROM line" in refusal(tmp_path, engine, "# nothing here\n\n")
