"""Unpacking what people upload: the usual archives work, hostile ones are
refused with a message that says what was wrong, and nothing lands outside
the workspace."""

import io
import os
import tarfile
import zipfile

import pytest

from hakobune.worker.source import Limits, SourceError, extract_archive, tree_digest
from tests.conftest import archive_of


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def tar_with(entries, mode="w:gz"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name, data=b"x", **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


@pytest.mark.parametrize("fmt", ["tar.gz", "zip", "tar", "tar.xz"])
def test_each_archive_format_unpacks_and_the_top_folder_is_unwrapped(tmp_path, fmt):
    archive = write(tmp_path, f"app.{fmt}", archive_of("flask-hello", fmt))
    extracted = extract_archive(archive, tmp_path / "ws")
    assert (extracted.root / "app.py").is_file()
    assert (extracted.root / "requirements.txt").is_file()
    assert extracted.root.name == "flask-hello"
    assert extracted.files == 2


def test_a_digest_ignores_the_archive_format(tmp_path):
    one = extract_archive(write(tmp_path, "a.zip", archive_of("flask-hello", "zip")), tmp_path / "one")
    two = extract_archive(write(tmp_path, "a.tgz", archive_of("flask-hello", "tar.gz")), tmp_path / "two")
    assert tree_digest(one.root) == tree_digest(two.root)


def test_a_path_that_climbs_out_is_refused(tmp_path):
    archive = write(tmp_path, "evil.tar.gz", tar_with([member("../../etc/passwd", b"root::0:0")]))
    with pytest.raises(SourceError, match=r"'\.\./\.\./etc/passwd'; archives must stay inside their folder"):
        extract_archive(archive, tmp_path / "ws")
    assert not (tmp_path.parent / "etc").exists()


def test_a_zip_slip_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("app/../../outside.txt", "x")
    with pytest.raises(SourceError, match="must stay inside"):
        extract_archive(write(tmp_path, "evil.zip", buffer.getvalue()), tmp_path / "ws")
    assert not (tmp_path / "outside.txt").exists()


def test_an_absolute_path_is_refused(tmp_path):
    archive = write(tmp_path, "abs.tar.gz", tar_with([member("/tmp/owned", b"x")]))
    with pytest.raises(SourceError, match="absolute path"):
        extract_archive(archive, tmp_path / "ws")


def test_a_link_out_of_the_folder_is_refused_and_nothing_is_written_through_it(tmp_path):
    archive = write(
        tmp_path,
        "link.tar.gz",
        tar_with([member("etc", None, type=tarfile.SYMTYPE, linkname="/etc"), member("etc/evil", b"x")]),
    )
    with pytest.raises(SourceError, match="pointing outside"):
        extract_archive(archive, tmp_path / "ws")
    assert not os.path.exists("/etc/evil")


def test_hard_links_and_devices_are_refused(tmp_path):
    hard = write(tmp_path, "h.tar", tar_with([member("a", b"x"), member("b", None, type=tarfile.LNKTYPE, linkname="a")], "w"))
    with pytest.raises(SourceError, match="hard link"):
        extract_archive(hard, tmp_path / "ws1")
    device = write(tmp_path, "d.tar", tar_with([member("null", None, type=tarfile.CHRTYPE, devmajor=1, devminor=3)], "w"))
    with pytest.raises(SourceError, match="special file"):
        extract_archive(device, tmp_path / "ws2")


def test_setuid_bits_are_dropped(tmp_path):
    archive = write(tmp_path, "s.tar", tar_with([member("run.sh", b"#!/bin/sh\n", mode=0o4755)], "w"))
    extracted = extract_archive(archive, tmp_path / "ws")
    mode = (extracted.root / "run.sh").stat().st_mode
    assert not mode & 0o4000
    assert mode & 0o100


def test_git_folders_are_left_out(tmp_path):
    archive = write(tmp_path, "g.tar", tar_with([member("app.py", b"x"), member(".git/config", b"[core]")], "w"))
    extracted = extract_archive(archive, tmp_path / "ws")
    assert not (extracted.root / ".git").exists()


def test_empty_and_damaged_archives_say_so(tmp_path):
    with pytest.raises(SourceError, match="empty"):
        extract_archive(write(tmp_path, "e.zip", b""), tmp_path / "ws1")
    whole = archive_of("flask-hello", "tar.gz")
    with pytest.raises(SourceError, match="damaged or cut short"):
        extract_archive(write(tmp_path, "t.tar.gz", whole[: len(whole) // 2]), tmp_path / "ws2")
    with pytest.raises(SourceError, match="not an archive"):
        extract_archive(write(tmp_path, "x.zip", b"hello, I am text"), tmp_path / "ws3")


def test_an_archive_bomb_is_stopped(tmp_path):
    archive = write(tmp_path, "bomb.tar.gz", tar_with([member("zeros", b"\0" * (30 * 1024 * 1024))]))
    with pytest.raises(SourceError, match="archive bombs"):
        extract_archive(archive, tmp_path / "ws")


def test_too_many_entries_are_refused(tmp_path):
    archive = write(tmp_path, "many.tar", tar_with([member(f"f{i}", b"") for i in range(30)], "w"))
    with pytest.raises(SourceError, match="more than 20 entries"):
        extract_archive(archive, tmp_path / "ws", Limits(max_entries=20))
