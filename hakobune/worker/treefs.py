"""Files of a person's source tree, reached without following links.

Any name in a source tree may be a link, and intake only promises that links
lead to files and folders inside the tree. Where Hakobune itself reads or
writes in the tree (the detectors reading hakobune.toml or a Procfile, the
build writing .hakobune/Dockerfile or checking .dockerignore), it walks from
the tree's top one folder at a time with O_NOFOLLOW (openat-style, through
`dir_fd`): a link anywhere on the way, or as the file itself, is refused
instead of followed, and what is read is capped. The top folder itself is
Hakobune's (a build workspace) and is opened as it is."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(Exception):
    """A path in the tree that Hakobune will not use as it is; the message
    says which and what to do, in the app owner's words."""

    def __init__(self, message: str, relative: str):
        super().__init__(message)
        self.message = message
        self.relative = relative


def _parts(relative: str | PurePosixPath) -> list[str]:
    text = str(relative)
    parts = [part for part in PurePosixPath(text).parts if part not in ("", ".")]
    if not parts or text.startswith("/") or ".." in parts:
        raise UnsafePath(f"{text!r} is not a path inside the app's folder.", text)
    return parts


def _link_refused(shown: str) -> UnsafePath:
    return UnsafePath(
        f"In the app's folder, {shown} is a link. Hakobune does not follow links where it reads or writes "
        "its own files: make it a plain file or folder (or remove it) and deploy again.",
        shown,
    )


def _open_folder(root: Path, parts: list[str], *, create: bool = False) -> int:
    """A descriptor of the folder root/parts, reached without following a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts):
            try:
                child = os.open(part, _FOLDER, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _FOLDER, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                # Kernels differ in which of the two a link gives here.
                shown = "/".join(parts[: index + 1])
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise _link_refused(shown) from None
                raise UnsafePath(
                    f"In the app's folder, {shown} is not a folder, but Hakobune needs it to be one. "
                    "Rename or remove it and deploy again.",
                    shown,
                ) from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def lstat(root: Path, relative: str | PurePosixPath) -> os.stat_result | None:
    """What root/relative is (not following it if it is a link), or None when
    it does not exist. A link on the way is refused."""
    parts = _parts(relative)
    try:
        folder = _open_folder(root, parts[:-1])
    except FileNotFoundError:
        return None
    try:
        return os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None
    finally:
        os.close(folder)


def is_plain_file(root: Path, relative: str | PurePosixPath) -> bool:
    """True when root/relative is a regular file reached through no link."""
    try:
        info = lstat(root, relative)
    except (UnsafePath, OSError):
        return False
    return info is not None and stat.S_ISREG(info.st_mode)


def read_head(root: Path, relative: str | PurePosixPath, limit: int) -> bytes:
    """At most `limit` bytes from the start of the regular file root/relative.
    Raises UnsafePath for a link (on the way or as the file) or anything but a
    regular file, FileNotFoundError when it is not there."""
    with open_plain_file(root, relative) as handle:
        return handle.read(limit)


def open_plain_file(root: Path, relative: str | PurePosixPath) -> BinaryIO:
    """The regular file root/relative opened for reading (binary), reached
    through no link; raises as read_head does."""
    parts = _parts(relative)
    shown = "/".join(parts)
    folder = _open_folder(root, parts[:-1])
    try:
        info = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            raise _link_refused(shown)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"In the app's folder, {shown} is not a plain file.", shown)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _link_refused(shown) from None
            raise
    finally:
        os.close(folder)
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise UnsafePath(f"In the app's folder, {shown} is not a plain file.", shown)
    return handle


def make_folder(root: Path, relative: str | PurePosixPath) -> None:
    """Creates root/relative (and the folders on the way) unless it exists;
    a link on the way, or as the folder, is refused."""
    os.close(_open_folder(root, _parts(relative), create=True))


def write_file(root: Path, relative: str | PurePosixPath, data: bytes, *, mode: int = 0o644) -> None:
    """Writes `data` as a new regular file root/relative, replacing a regular
    file of that name; never through a link (refused), never into another file
    (a hard link to the old name keeps its content)."""
    parts = _parts(relative)
    shown = "/".join(parts)
    folder = _open_folder(root, parts[:-1], create=True)
    try:
        try:
            info = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None:
            if stat.S_ISLNK(info.st_mode):
                raise _link_refused(shown)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafePath(
                    f"In the app's folder, {shown} is not a plain file, but Hakobune writes its own file there. "
                    "Rename or remove it and deploy again.",
                    shown,
                )
            os.unlink(parts[-1], dir_fd=folder)
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=folder)
    finally:
        os.close(folder)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
