"""The image builders behind their interface: which builder a service gets,
that each service's images are pruned by the builder that made them, the
failure classes a build reports (the app's fault or not, worth trying again
or not), and the layers: detection and the builders know nothing of the
platform, nor detection of image building."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import docker.errors
import pytest
import requests

from hakobune.platform.builds import images
from hakobune.platform.services.backends import backend_for
from hakobune.platform.services.services import create_service
from hakobune.runtime.cloud_run import CloudBuildBuilder, CloudRunBackend
from hakobune.worker import stacks, tasks
from hakobune.worker.builders.base import BUILDPACKS, PLAN, BuildError, BuildRequest
from hakobune.worker.builders.local_docker import LocalDockerBuilder
from hakobune.worker.buildpacks import detect
from tests.conftest import APPS_DIR
from tests.support.fake_gcp import error_info
from tests.unit.cloud_run_fixtures import (  # noqa: F401 (fixtures)
    backend_options,
    cloud_run,
    cloudrun_target,
    fake_gcp,
    loopback_only,
    run_pipeline,
    storage_emulator,
)

ROOT = Path(__file__).resolve().parents[2]


# -- which builder --------------------------------------------------------------------


@pytest.fixture
def services(team, owner, cloudrun_target):
    """A service on this host (the dummy runtime, no builder of its own) and one on Cloud Run."""
    local = create_service(team=team, name="here", created_by=owner)
    remote = create_service(team=team, name="hello", created_by=owner, target="cloudrun")
    return local, remote


def test_a_cloud_run_service_builds_in_cloud_build_and_a_local_one_on_this_host(services):
    local, remote = services

    remote_builder = images.builder_for(remote)
    local_builder = images.builder_for(local)

    assert isinstance(remote_builder, CloudBuildBuilder) and "buildpacks" in remote_builder.capabilities
    assert isinstance(local_builder, LocalDockerBuilder) and "local_images" in local_builder.capabilities
    # Cloud Build shares the backend's settings and clients: one sign-in.
    backend = backend_for(remote)
    assert remote_builder is backend.image_builder() and remote_builder.cloud is backend
    # The platform's builder is made once, from IMAGE_BUILDERS.
    assert images.builder_for(local) is local_builder is images.local_builder()


def test_the_platforms_builder_is_made_again_when_its_setting_changes(settings, services):
    local, _ = services
    before = images.builder_for(local)
    settings.IMAGE_BUILDERS = {"local": {"BACKEND": "hakobune.worker.builders.local_docker.LocalDockerBuilder",
                                         "OPTIONS": {"memory_mb": 512, "stack_images": {"python": "py:1"}}}}
    after = images.builder_for(local)
    assert after is not before and after.memory_mb == 512 and after.stack_refs()["python"] == "py:1"


def test_a_target_that_is_not_configured_builds_on_this_host(team, owner, dummy_backend):
    service = create_service(team=team, name="here", created_by=owner)
    service.target = "nowhere"
    assert isinstance(images.builder_for(service), LocalDockerBuilder)


def test_the_build_request_says_plan_or_buildpacks_as_the_service_and_its_builder_choose(services, tmp_path):
    from hakobune.platform.builds.models import Build

    local, remote = services
    plan = detect(APPS_DIR / "flask-hello").plan

    def request_for(service, cloud_builder=""):
        service.cloud_builder = cloud_builder
        service.start_command = "gunicorn app:app"
        build = Build(service=service, number=1, source_digest="d" * 64)
        return images.build_request_for(build, plan, tmp_path / "src", tmp_path / "ws")

    request = request_for(remote)
    assert request == BuildRequest(team="acme", service="hello", source_dir=tmp_path / "src", source_digest="d" * 64,
                                   plan=plan, workspace=tmp_path / "ws", mode=PLAN, start_command="gunicorn app:app")
    assert request_for(remote, "buildpacks").mode == BUILDPACKS
    assert request_for(remote, "dockerfile").mode == PLAN
    # This host's builder has no buildpacks: the service's choice means nothing there.
    assert request_for(local, "buildpacks").mode == PLAN


def test_the_backends_default_builder_is_buildpacks_when_its_options_say_so(fake_gcp, storage_emulator):
    backend = CloudRunBackend("cloudrun", **backend_options(fake_gcp, storage_emulator, builder="buildpacks"))
    assert backend.image_builder().default_mode == BUILDPACKS
    assert CloudRunBackend("cloudrun", **backend_options(fake_gcp, storage_emulator)).image_builder().default_mode == PLAN


# -- pruning ----------------------------------------------------------------------------


@pytest.fixture
def removals(monkeypatch):
    """Which builder was asked to remove which service's images."""
    calls = []

    def recorder(kind):
        def remove_images(self, team, service, *, keep=frozenset()):
            calls.append((kind, team, service, set(keep)))
            return []
        return remove_images

    monkeypatch.setattr(LocalDockerBuilder, "remove_images", recorder("local docker"))
    monkeypatch.setattr(CloudBuildBuilder, "remove_images", recorder("cloud build"))
    return calls


def test_pruning_goes_to_the_builder_that_made_the_images(services, removals, owner, queued_tasks):
    local, remote = services
    build = run_pipeline(remote, owner, queued_tasks)

    tasks.prune_images()

    assert sorted(removals) == [
        ("cloud build", "acme", "hello", {build.image}),  # the live release's image stays
        ("local docker", "acme", "here", set()),
    ]


def test_deleting_a_cloud_run_service_never_asks_local_docker(services, removals, monkeypatch):
    from contextlib import nullcontext

    from hakobune.platform.services import housekeeping
    from hakobune.platform.services.models import Service

    local, remote = services
    monkeypatch.setattr(housekeeping, "deploy_lock", lambda service_id: nullcontext())
    Service.objects.filter(id__in=[local.id, remote.id]).update(desired_state="deleted")

    tasks.destroy_service(remote.id)
    assert removals == [("cloud build", "acme", "hello", set())]
    tasks.destroy_service(local.id)
    assert removals[1:] == [("local docker", "acme", "here", set())]


def test_a_builder_that_cannot_prune_does_not_stop_the_others(services, monkeypatch, caplog):
    calls = []

    def unreachable(self, team, service, *, keep=frozenset()):
        raise BuildError("the Docker Engine does not answer", user_error=False, transient=True)

    monkeypatch.setattr(LocalDockerBuilder, "remove_images", unreachable)
    monkeypatch.setattr(CloudBuildBuilder, "remove_images", lambda self, team, service, keep: calls.append(service) or [])
    tasks.prune_images()
    assert calls == ["hello"]
    assert "could not prune the images of" in caplog.text


def test_cloud_build_removes_nothing_of_this_host(cloud_run):
    assert cloud_run.image_builder().remove_images("acme", "hello", keep=set()) == []


# -- failure classes ----------------------------------------------------------------------


class FakeImages:
    def __init__(self, error=None):
        self.error = error

    def get(self, ref):
        raise self.error or docker.errors.ImageNotFound(ref)


class FakeAPI:
    def __init__(self, chunks=(), error=None):
        self.chunks = chunks
        self.error = error

    def build(self, **kwargs):
        def stream():
            yield from self.chunks
            if self.error:
                raise self.error
        return stream()


class FakeClient:
    def __init__(self, *, images_error=None, chunks=(), stream_error=None):
        self.images = FakeImages(images_error)
        self.api = FakeAPI(chunks, stream_error)


def api_error(status: int, message: str = "boom") -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(message, response=response, explanation=message)


# These fake engines have no networks and these tests make no cgroups: the
# builds' confinement is tested in test_build_confinement.py.
UNCONFINED = {"network": "", "cgroup_parent": ""}


def build_locally(tmp_path, client) -> BuildError:
    """A build of the dockerfile fixture (no stack to find) on `client`; returns its failure."""
    src = tmp_path / "src"
    shutil.copytree(APPS_DIR / "dockerfile", src)
    builder = LocalDockerBuilder("local", memory_mb=512, **UNCONFINED)
    builder._client = client
    request = BuildRequest(team="acme", service="hello", source_dir=src, source_digest="d", plan=detect(src).plan,
                           workspace=tmp_path)
    with pytest.raises(BuildError) as caught:
        builder.build(request, lambda line: None)
    return caught.value


@pytest.mark.parametrize("client", [
    pytest.param(FakeClient(images_error=api_error(500, "Internal Server Error")), id="500 before the build"),
    pytest.param(FakeClient(stream_error=api_error(500, "Internal Server Error")), id="500 during the build"),
    pytest.param(FakeClient(images_error=requests.ConnectionError("Connection refused")), id="refused"),
    pytest.param(FakeClient(chunks=[{"stream": "Step 1/3 : FROM x\n"}],
                            stream_error=requests.ConnectionError("Connection reset by peer")), id="reset"),
    pytest.param(FakeClient(stream_error=api_error(429, "Too Many Requests")), id="429"),
])
def test_an_engine_that_fails_or_cannot_be_reached_is_worth_trying_again(tmp_path, client):
    error = build_locally(tmp_path, client)
    assert error.transient and not error.user_error
    assert "Docker Engine" in error.message or "the build stopped" in error.message


def test_a_failing_run_step_is_the_apps_own_error_and_not_worth_trying_again(tmp_path):
    chunks = [{"stream": "Step 2/3 : RUN make\n"}, {"stream": "make: *** [all] Error 2\n"},
              {"error": "The command '/bin/sh -c make' returned a non-zero code: 2"}]
    error = build_locally(tmp_path, FakeClient(chunks=chunks))
    assert error.user_error and not error.transient
    assert error.message.startswith("A step of your Dockerfile failed (`RUN make` exited with code 2)")
    assert "make: *** [all] Error 2" in error.log_tail


def test_a_dockerfile_the_engine_refuses_is_the_apps_error(tmp_path):
    error = build_locally(tmp_path, FakeClient(stream_error=api_error(400, "dockerfile parse error line 1: unknown instruction: FORM")))
    assert error.user_error and not error.transient and "unknown instruction: FORM" in error.message


def test_an_engine_that_is_not_there_at_all(tmp_path):
    builder = LocalDockerBuilder("local", docker_url=f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(BuildError) as caught:
        builder.ensure_stack("python", lambda line: None)
    assert caught.value.transient and not caught.value.user_error
    assert "does not answer" in caught.value.message


def test_a_stack_error_is_a_build_error_of_the_platform():
    error = stacks.StackError("No base image for cobol")
    assert isinstance(error, BuildError) and not error.user_error and not error.transient
    assert str(error) == error.message == "No base image for cobol"


def test_the_local_build_fills_the_stack_versions_into_the_plan(tmp_path, monkeypatch):
    src = tmp_path / "src"
    shutil.copytree(APPS_DIR / "flask-hello", src)
    plan = detect(src).plan

    class Image:
        id = "sha256:stack"

    class Images(FakeImages):
        def get(self, ref):
            if ref == "python:3.12-slim":
                return Image()
            raise docker.errors.ImageNotFound(ref)

    client = FakeClient(chunks=[{"stream": "Step 1/9 : FROM python:3.12-slim\n"}, {"aux": {"ID": "sha256:app"}}])
    client.images = Images()
    monkeypatch.setattr(stacks, "resolve_stack", lambda client, language, configured, **kw: stacks.StackImage(
        language, configured, "registry", "Python 3.12.9"))
    builder = LocalDockerBuilder("local", stack_images={"python": "python:3.12-slim"}, **UNCONFINED)
    builder._client = client
    lines = []

    built = builder.build(BuildRequest(team="acme", service="hello", source_dir=src, source_digest="d", plan=plan,
                                       workspace=tmp_path), lines.append)

    assert built.ref.startswith("hakobune/acme/hello:")
    assert built.plan.stack_version == "Python 3.12.9" and plan.stack_version == ""
    assert "Building on python:3.12-slim (Python 3.12.9)" in lines
    assert (src / ".hakobune" / "Dockerfile").read_text().startswith("FROM python:3.12-slim\n")


def test_cloud_build_unavailable_is_worth_trying_again(cloud_run, fake_gcp, tmp_path):
    fake_gcp.fail("POST", r"/builds$", 503, "The service is currently unavailable.", times=5)
    with pytest.raises(BuildError) as caught:
        cloud_run.image_builder().submit(_archive(tmp_path), "FROM x\n", "acme/hello:abc", lambda line: None)
    assert caught.value.transient and not caught.value.user_error


def test_cloud_build_refused_permission_is_not(cloud_run, fake_gcp, tmp_path):
    fake_gcp.fail("POST", r"/builds$", 403, "The caller does not have permission",
                  details=[error_info("IAM_PERMISSION_DENIED", permission="cloudbuild.builds.create")])
    with pytest.raises(BuildError) as caught:
        cloud_run.image_builder().submit(_archive(tmp_path), "FROM x\n", "acme/hello:abc", lambda line: None)
    assert not caught.value.transient and not caught.value.user_error
    assert "needs roles/cloudbuild.builds.editor" in caught.value.message


def test_a_failing_step_in_cloud_build_is_the_apps_error(cloud_run, fake_gcp, tmp_path):
    fake_gcp.build_outcome = "FAILURE"
    with pytest.raises(BuildError) as caught:
        cloud_run.image_builder().submit(_archive(tmp_path), "FROM x\n", "acme/hello:abc", lambda line: None)
    assert caught.value.user_error and not caught.value.transient and caught.value.log_tail


def test_cloud_build_without_a_registry_image_for_a_stack_says_which(cloud_run, tmp_path):
    plan = detect(APPS_DIR / "go-http").plan  # builds on go, runs on static
    builder = CloudBuildBuilder("cloudrun", cloud=cloud_run, stack_images={"go": "golang:1.23", "static": ""})
    request = BuildRequest(team="acme", service="hello", source_dir=APPS_DIR / "go-http", source_digest="d",
                           plan=plan, workspace=tmp_path)
    with pytest.raises(BuildError, match="the static stack has no registry image, so cloudrun cannot build on it"):
        builder.build(request, lambda line: None)


def _archive(tmp_path):
    from hakobune.worker import source

    archive = tmp_path / "src.tar.gz"
    source.pack_tree(APPS_DIR / "flask-hello", archive)
    return archive


# -- layers ------------------------------------------------------------------------------


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the file's package
                package = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                module = ".".join([*package, module] if module else package)
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_detection_does_not_reach_into_image_building():
    for path in sorted((ROOT / "hakobune/worker/buildpacks").glob("*.py")):
        for name in imports_of(path):
            assert not name.startswith(("hakobune.worker.stacks", "hakobune.worker.builder", "docker")), (
                f"{path.name} imports {name}"
            )


def test_the_builders_are_a_library():
    paths = [*sorted((ROOT / "hakobune/worker/builders").glob("*.py")), *sorted((ROOT / "hakobune/runtime").rglob("*.py"))]
    for path in paths:
        for name in imports_of(path):
            assert not name.startswith(("django", "celery", "hakobune.platform")), f"{path.name} imports {name}"
    # And at run time, nothing of the kind comes along with them.
    assert _modules_after("hakobune.worker.builders.local_docker", "hakobune.runtime.cloud_run") & {
        "django", "celery"} == set()


def test_detection_alone_loads_no_image_building():
    loaded = _modules_after("hakobune.worker.buildpacks")
    assert "hakobune.worker.stacks" not in loaded and "docker" not in loaded


def _modules_after(*modules: str) -> set[str]:
    """The modules (and their top packages) a fresh interpreter has loaded after importing `modules`."""
    code = f"import sys, {', '.join(modules)}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    names = set(out.split())
    return names | {name.split(".")[0] for name in names}
