"""Links in a person's source (issue #12, finding 3): a link may only lead,
by its own text, to a file or folder inside the app's folder, through no other
link; this is checked on the finished tree, archives and git checkouts alike.
And where Hakobune reads or writes its own files in the tree (.hakobune/,
.dockerignore, hakobune.toml, ...) it follows no link at all. Each test keeps
a sentinel folder outside the workspace and checks it stays empty."""

import io
import os
import tarfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from hakobune.platform.builds import pipeline
from hakobune.platform.services.services import create_service, deploy_service
from hakobune.worker import tasks
from hakobune.worker.builder import BuildError, prepare_context
from hakobune.worker.buildpacks import detect
from hakobune.worker.buildpacks.plan import BuildPlan
from hakobune.worker.source import SourceError, check_tree, extract_archive, select_subdir

FLASK_APP = b"from flask import Flask\napp = Flask(__name__)\n"
# Each `d` below is one link the kernel follows; it gives up after 40 in one path.
DEPTH = 24
PLAN = BuildPlan(stack="python", start_command="python app.py", install_commands=("pip install flask",))


@pytest.fixture
def outside(tmp_path):
    """A folder outside every workspace of the test: nothing may appear in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    assert len(folder.parts) < DEPTH
    return folder


def escape_to(path: Path) -> str:
    """A link text that reads as a path inside the app's folder while `d`
    does not exist, and leads to `path` once `d -> .` exists."""
    return "d/" * DEPTH + "../" * DEPTH + str(path).lstrip("/")


def tar_of(entries) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, target_or_data in entries:
            info = tarfile.TarInfo(name)
            if isinstance(target_or_data, bytes):
                info.size = len(target_or_data)
                tar.addfile(info, io.BytesIO(target_or_data))
            else:
                info.type = tarfile.SYMTYPE
                info.linkname = target_or_data
                tar.addfile(info)
    return buffer.getvalue()


def chain_archive(outside: Path) -> bytes:
    """The archive of the finding: `.hakobune` and `.dockerignore` lead out
    through links that looked inside when they were unpacked."""
    return tar_of([
        ("app/app.py", FLASK_APP),
        ("app/requirements.txt", b"flask\n"),
        ("app/esc", escape_to(outside)),
        ("app/ign", escape_to(outside / "created-through-dockerignore")),
        ("app/.hakobune", "esc"),
        ("app/.dockerignore", "ign"),
        ("app/d", "."),
    ])


def test_a_chain_of_links_is_refused_and_the_build_writes_nothing_outside(tmp_path, outside):
    archive = tmp_path / "chain.tar.gz"
    archive.write_bytes(chain_archive(outside))
    ca_bundle = tmp_path / "ca.crt"
    ca_bundle.write_text("-----BEGIN CERTIFICATE-----\n")

    with pytest.raises(SourceError, match=r"The archive has a link '[^']+' that leads to another link \('[^']+'\)\. "
                                          r"Hakobune takes links to files and folders only, not chains of links"):
        extracted = extract_archive(archive, tmp_path / "ws")
        # Had the archive been taken, the build step would now write the
        # Dockerfile and the CA bundle through .hakobune, and create the file
        # .dockerignore leads to: all in `outside`.
        prepare_context(extracted.root, detect(extracted.root).plan, "hakobune/stack-python:bookworm", str(ca_bundle))
    assert list(outside.iterdir()) == []


def test_a_chain_of_links_fails_its_deploy_with_a_reason(owner, team, queued_tasks, outside):
    service = create_service(team=team, name="app", created_by=owner)
    upload = SimpleUploadedFile("chain.tar.gz", chain_archive(outside))
    build = deploy_service(service=service, source_file=upload, created_by=owner)

    tasks.fetch_source(build.id)

    build.refresh_from_db()
    assert build.status == "failed" and build.failed_step == "fetching"
    assert "that leads to another link" in build.failure_reason
    assert not pipeline.workspace_dir(build.id).exists()
    assert list(outside.iterdir()) == [] and queued_tasks == [("admit_builds",)]  # its build slot is free


@pytest.mark.parametrize("target, told", [
    ("missing.txt", r"The archive has a link 'app/config' to 'missing.txt', which is not in the archive"),
    ("alias", r"The archive has a link 'app/config' that leads to another link \('app/alias'\)"),
    ("lib/../alias", r"that leads to another link \('app/alias'\)"),
])
def test_a_link_to_nothing_or_to_a_link_is_refused(tmp_path, target, told):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_of([("app/app.py", FLASK_APP), ("app/lib/x.py", b""), ("app/real.txt", b"x"),
                                ("app/alias", "real.txt"), ("app/config", target)]))
    with pytest.raises(SourceError, match=told):
        extract_archive(archive, tmp_path / "ws")


def test_links_to_files_and_folders_inside_are_kept(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_of([("app/app.py", FLASK_APP), ("app/public/index.html", b"hi"),
                                ("app/static", "public"), ("app/main.py", "app.py"), ("app/public/up", "..")]))
    root = extract_archive(archive, tmp_path / "ws").root
    assert (root / "static" / "index.html").read_bytes() == b"hi"
    assert os.readlink(root / "main.py") == "app.py"


def test_a_checkout_with_a_chain_of_links_is_refused(tmp_path, outside):
    """check_tree is what a git checkout passes (its integration test runs the
    same chain through a real git server)."""
    tree = tmp_path / "checkout"
    tree.mkdir()
    (tree / "app.py").write_bytes(FLASK_APP)
    os.symlink(escape_to(outside), tree / "esc")
    os.symlink("esc", tree / ".hakobune")
    os.symlink(".", tree / "d")
    with pytest.raises(SourceError, match=r"The source has a link '[^']+' that leads to another link"):
        check_tree(tree)


def test_a_subfolder_reached_through_a_link_is_not_used(tmp_path):
    (tmp_path / "services" / "api").mkdir(parents=True)
    os.symlink("services", tmp_path / "svc")
    with pytest.raises(SourceError, match="The source has no folder svc/api"):
        select_subdir(tmp_path, "svc/api")
    assert select_subdir(tmp_path, "services/api") == tmp_path / "services" / "api"


# -- the build's own files: never written or read through a link --------------------


def app_folder(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_bytes(FLASK_APP)
    (src / "requirements.txt").write_text("flask\n")
    return src


def test_a_linked_hakobune_folder_is_refused_and_nothing_is_written_through_it(tmp_path, outside):
    src = app_folder(tmp_path)
    os.symlink(outside, src / ".hakobune")
    ca_bundle = tmp_path / "ca.crt"
    ca_bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(BuildError, match=r"In the app's folder, \.hakobune is a link\. Hakobune does not follow links"):
        prepare_context(src, PLAN, "hakobune/stack-python:bookworm", str(ca_bundle))
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ["Dockerfile", "ca-certificates.crt"])
def test_a_generated_file_that_is_a_link_is_not_written_through(tmp_path, outside, name):
    src = app_folder(tmp_path)
    (src / ".hakobune").mkdir()
    victim = outside / "victim"
    os.symlink(victim, src / ".hakobune" / name)
    ca_bundle = tmp_path / "ca.crt"
    ca_bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(BuildError, match=rf"In the app's folder, \.hakobune/{name} is a link"):
        prepare_context(src, PLAN, "hakobune/stack-python:bookworm", str(ca_bundle))
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("plan", [PLAN, BuildPlan(stack="dockerfile", start_command="", dockerfile_path="Dockerfile")],
                         ids=["generated", "own Dockerfile"])
def test_a_dockerignore_linked_to_dev_zero_is_refused_before_anything_reads_it(tmp_path, plan):
    """The Docker SDK reads .dockerignore whole: /dev/zero would take all the
    worker's memory. It is refused before the build starts."""
    src = app_folder(tmp_path)
    (src / "Dockerfile").write_text("FROM scratch\n")
    os.symlink("/dev/zero", src / ".dockerignore")
    with pytest.raises(BuildError, match=r"The app's \.dockerignore is a link \(or not a plain file\)"):
        prepare_context(src, plan, "hakobune/stack-python:bookworm", None)


def test_a_dockerignore_leading_nowhere_is_refused_and_its_target_is_not_created(tmp_path, outside):
    src = app_folder(tmp_path)
    os.symlink(outside / "created-through-dockerignore", src / ".dockerignore")
    with pytest.raises(BuildError, match=r"The app's \.dockerignore is a link"):
        prepare_context(src, PLAN, "hakobune/stack-python:bookworm", None)
    assert list(outside.iterdir()) == []


def test_an_oversized_dockerignore_is_refused(tmp_path):
    src = app_folder(tmp_path)
    (src / ".dockerignore").write_bytes(b"*.log\n" * 20_000)
    with pytest.raises(BuildError, match=r"The app's \.dockerignore is 120,000 bytes; Hakobune takes one of up to 64 kB"):
        prepare_context(src, PLAN, "hakobune/stack-python:bookworm", None)


def test_a_plain_app_folder_still_gets_its_generated_files(tmp_path):
    src = app_folder(tmp_path)
    assert prepare_context(src, PLAN, "hakobune/stack-python:bookworm", None) == ".hakobune/Dockerfile"
    assert (src / ".hakobune" / "Dockerfile").read_text().startswith("FROM hakobune/stack-python:bookworm")
    assert (src / ".dockerignore").read_text().startswith(".git\n")


def test_the_detectors_read_nothing_through_a_linked_folder(tmp_path, outside):
    """manage.py names `site.settings`; `site` is a link to a folder outside
    that holds a Django project: the detectors do not read it, and find the
    Flask app of the folder itself."""
    src = app_folder(tmp_path)
    (src / "manage.py").write_text('os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site.settings")\n')
    (outside / "wsgi.py").write_text("from django.core.wsgi import get_wsgi_application\n")
    (outside / "settings.py").write_text("STATIC_ROOT = 'x'\n")
    os.symlink(outside, src / "site")
    detection = detect(src)
    assert "site.wsgi" not in detection.reason
    assert "app.py creating a Flask app" in detection.reason


def test_a_hakobune_toml_linked_to_dev_zero_is_not_read(tmp_path):
    src = app_folder(tmp_path)
    os.symlink("/dev/zero", src / "hakobune.toml")
    assert detect(src).stack == "python"
