"""The builder without a Docker Engine: the context it writes, the limits it
asks for, and failures told apart by step."""

import shutil

import pytest

from hakobune.worker import builder
from hakobune.worker.buildpacks import detect
from tests.conftest import APPS_DIR


class FakeAPI:
    def __init__(self, chunks):
        self.chunks = chunks
        self.kwargs = None

    def build(self, **kwargs):
        self.kwargs = kwargs
        return iter(self.chunks)


class FakeImages:
    def get(self, ref):
        from docker.errors import ImageNotFound

        raise ImageNotFound(ref)


class FakeClient:
    def __init__(self, chunks):
        self.api = FakeAPI(chunks)
        self.images = FakeImages()


def stream(*lines):
    return [{"stream": line + "\n"} for line in lines]


def run_failing_build(plan, failing_step, code="1", tmp_path=None):
    chunks = stream("Step 1/9 : FROM base", f"Step 5/9 : {failing_step}", "boom") + [
        {"error": f"The command '/bin/sh -c x' returned a non-zero code: {code}"}
    ]
    client = FakeClient(chunks)
    with pytest.raises(builder.BuildError) as excinfo:
        builder.build_image(client, tmp_path, "Dockerfile", "t", log=lambda line: None, plan=plan, memory_mb=512)
    return excinfo.value, client


def test_an_install_failure_says_it_was_the_install(tmp_path):
    plan = detect(APPS_DIR / "node-express").plan
    error, _ = run_failing_build(plan, f"RUN {plan.install_commands[0]}", tmp_path=tmp_path)
    assert error.message.startswith("Installing your app's dependencies failed (the install step `NODE_ENV=")
    assert error.user_error and "boom" in error.log_tail


def test_a_build_failure_says_it_was_the_build_command(tmp_path):
    plan = detect(APPS_DIR / "vite-static").plan
    error, _ = run_failing_build(plan, "RUN npm run build", tmp_path=tmp_path)
    assert error.message.startswith("Your app's build command failed (`npm run build` exited with code 1)")
    assert "The dependencies installed fine" in error.message


def test_running_out_of_memory_is_named(tmp_path):
    plan = detect(APPS_DIR / "flask-hello").plan
    error, _ = run_failing_build(plan, f"RUN {plan.install_commands[0]}", code="137", tmp_path=tmp_path)
    assert "ran out of memory (builds get 512 MiB)" in error.message


def test_a_failing_step_of_the_persons_own_dockerfile(tmp_path):
    plan = detect(APPS_DIR / "dockerfile").plan
    error, _ = run_failing_build(plan, "RUN make", tmp_path=tmp_path)
    assert error.message.startswith("A step of your Dockerfile failed (`RUN make` exited with code 1)")


def test_a_dockerfile_from_an_image_this_host_lacks():
    plan = detect(APPS_DIR / "dockerfile").plan
    message = builder.explain_failure("pull access denied for nope, repository does not exist", "FROM nope", plan)
    assert "starts FROM an image this host does not have" in message


def test_builds_run_with_memory_cpu_and_the_build_arguments(tmp_path):
    plan = detect(APPS_DIR / "dockerfile").plan
    client = FakeClient(stream("Step 1/1 : FROM x") + [{"aux": {"ID": "sha256:abc"}}])
    lines = []
    built = builder.build_image(client, tmp_path, "Dockerfile", "t", log=lines.append, plan=plan, memory_mb=1024,
                                cpu_shares=512, cpuset_cpus="0")
    assert built.id == "sha256:abc" and lines == ["Step 1/1 : FROM x"]
    kwargs = client.api.kwargs
    assert kwargs["container_limits"] == {"memory": 1024 << 20, "memswap": 1024 << 20, "cpushares": 512,
                                          "cpusetcpus": "0"}
    assert kwargs["buildargs"] == {"BASE_IMAGE": "hakobune/stack-python:bookworm"}
    assert kwargs["pull"] is False


def test_the_context_gets_the_generated_dockerfile_and_a_dockerignore(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(APPS_DIR / "go-http", src)
    plan = detect(src).plan
    path = builder.prepare_context(src, plan, "run-image", None, build_image="build-image")
    assert path == ".hakobune/Dockerfile"
    written = (src / path).read_text().splitlines()
    assert written[written.index("FROM run-image") + 1] == "LABEL org.hakobune.managed=true"
    written.remove("LABEL org.hakobune.managed=true")
    assert written == plan.dockerfile("run-image", build_image="build-image").splitlines()
    assert "node_modules" in (src / ".dockerignore").read_text()


def test_an_own_dockerfile_is_used_as_it_is(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(APPS_DIR / "dockerfile", src)
    plan = detect(src).plan
    assert builder.prepare_context(src, plan, "", None) == "Dockerfile"
    assert not (src / ".dockerignore").exists()


def test_a_rebuilt_stack_gives_a_new_tag():
    plan = detect(APPS_DIR / "flask-hello").plan
    one = builder.image_tag("t", "s", "digest", plan, "stack", base_image_ids=("sha256:1",))
    two = builder.image_tag("t", "s", "digest", plan, "stack", base_image_ids=("sha256:2",))
    assert one != two and one.startswith("hakobune/t/s:")


def test_a_step_that_prints_without_newlines_is_cut_as_it_comes(tmp_path):
    """A RUN step printing 10 MB on one line: the worker holds one line's
    worth, and the log gets the line cut, with how much was left out."""
    plan = detect(APPS_DIR / "dockerfile").plan
    flood = [{"stream": "y" * 65_536} for _ in range(160)]
    client = FakeClient(stream("Step 1/2 : FROM x") + flood + [{"stream": "\ndone\n"}, {"aux": {"ID": "sha256:abc"}}])
    lines = []
    builder.build_image(client, tmp_path, "Dockerfile", "t", log=lines.append, plan=plan)
    assert lines[0] == "Step 1/2 : FROM x" and lines[2] == "done"
    assert lines[1].startswith("y" * 4000) and lines[1].endswith(f"[{160 * 65_536 - 4000:,} more characters not kept]")
