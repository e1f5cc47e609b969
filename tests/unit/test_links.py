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
    assert list(outside.iterdir()) == [] and queued_tasks == []


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
