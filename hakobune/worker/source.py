"""Source intake: unpacks an uploaded archive into a build workspace.

Archives come from people we do not know, so nothing in them is trusted: the
format is read from the file's first bytes, entries are streamed one at a time
and written by this code (never by tarfile/zipfile's own extract), and every
entry is checked before a byte of it is written."""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK = 1024 * 1024


class SourceError(Exception):
    """Something is wrong with the source a person gave; the message says what
    and what to do about it. `rule` and `params` name its diagnosis where it
    has one of its own (platform/diagnoses.py)."""

    def __init__(self, message: str, *, rule: str = "", params: dict | None = None):
        super().__init__(message)
        if rule:
            self.rule, self.params = rule, dict(params or {})


@dataclass(frozen=True)
class Limits:
    max_archive_bytes: int = 200 * 1024 * 1024
    max_total_bytes: int = 1024 * 1024 * 1024
    max_entries: int = 20_000
    # A zip's table of contents (its central directory), read whole by zipfile.
    max_directory_bytes: int = 32 * 1000 * 1000
    # Expansion beyond this ratio is refused once the output passes 10 MB.
    max_ratio: int = 100
    ratio_floor_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class ExtractedSource:
    root: Path
    files: int
    total_bytes: int


def archive_kind(head: bytes) -> str | None:
    """The kind of archive whose first 512 bytes are `head`, or None."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "tar.xz"
    if head.startswith(b"BZh"):
        return "tar.bz2"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def archive_format(path: Path) -> str:
    with open(path, "rb") as handle:
        kind = archive_kind(handle.read(512))
    if kind is None:
        raise SourceError(
            "This file is not an archive Hakobune can read. Upload a .zip, .tar, .tar.gz or .tar.xz of your app's "
            "folder.", rule="source.not_archive",
        )
    return kind


def extract_archive(archive: Path, dest: Path, limits: Limits = Limits()) -> ExtractedSource:
    """Unpacks `archive` into the empty folder `dest` and returns the app's root
    (a single top-level folder, as GitHub's ZIPs have, is unwrapped)."""
    size = archive.stat().st_size
    if size == 0:
        raise SourceError("The archive is empty. Upload an archive of your app's folder.", rule="source.empty")
    if size > limits.max_archive_bytes:
        raise SourceError(
            f"The archive is {size / 1e6:.0f} MB; the limit is {limits.max_archive_bytes / 1e6:.0f} MB. "
            "Leave out dependencies and build output (node_modules, .venv, dist) and try again.",
            rule="source.too_big", params={"size": f"{size / 1e6:.0f}", "limit": f"{limits.max_archive_bytes / 1e6:.0f}"},
        )
    dest.mkdir(parents=True, exist_ok=True)
    writer = _TreeWriter(dest, limits, compressed_size=size)
    kind = archive_format(archive)
    try:
        if kind == "zip":
            _check_zip_directory(archive, limits)
            _extract_zip(archive, writer)
        else:
            _extract_tar(archive, writer)
    except UnicodeDecodeError:
        raise SourceError(
            "The archive has an entry whose name is not valid UTF-8. Rename the file (plain letters work best) and try again."
        )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise SourceError(f"The archive is damaged or cut short ({exc}). Create it again and upload the new file.")
    if writer.files == 0:
        raise SourceError("The archive holds no files. Upload an archive of your app's folder.")
    # Each link was checked as it was written, but a later entry can change
    # where an earlier link leads (a link `d -> .` turns `d/d/../../x` into a
    # way out): the finished tree is what counts.
    check_links(dest, "archive")
    return ExtractedSource(root=_unwrap_single_folder(dest), files=writer.files, total_bytes=writer.total_bytes)


def _extract_tar(archive: Path, writer: _TreeWriter) -> None:
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            name = member.name
            if member.isdir():
                writer.directory(name)
            elif member.isfile():
                source = tar.extractfile(member)
                writer.file(name, source, executable=bool(member.mode & 0o111))
            elif member.issym():
                writer.symlink(name, member.linkname)
            elif member.islnk():
                raise SourceError(
                    f"The archive has a hard link, {_show(name)}. Hakobune does not take hard links; "
                    "replace it with a copy of the file."
                )
            else:
                raise SourceError(
                    f"The archive has a special file (a device or pipe), {_show(name)}. "
                    "Only files, folders and links are allowed."
                )


# A central directory file header: its fixed part, and where in it the
# lengths of the name, the extra field and the comment are.
_CENTRAL_HEADER = 46
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_CENTRAL_LENGTHS = struct.Struct("<3H")
_CENTRAL_LENGTHS_AT = 28


def _check_zip_directory(archive: Path, limits: Limits) -> None:
    """Bounds what opening a zip costs, before zipfile.ZipFile reads its
    table of contents: ZipFile reads the whole central directory and makes an
    object per entry (2.3 million empty entries took 1.4 GB) before the first
    entry reaches the entry cap. So the End Of Central Directory record (and
    ZIP64's) is read first, with zipfile's own reader of it so that this is the
    directory ZipFile will read; its entry count and size are checked; then
    the directory's entries are counted, a 46-byte header at a time, in case
    the record understates them. Memory stays flat whatever the archive.
    Damage is left for ZipFile to report."""
    with open(archive, "rb") as handle:
        end = zipfile._EndRecData(handle)
        if not end:
            return
        claimed, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
        if claimed > limits.max_entries:
            raise SourceError(
                f"The archive has {claimed:,} entries; the limit is {limits.max_entries:,}. "
                "Leave out dependencies and build output (node_modules, .venv, dist) and try again."
            )
        if size > limits.max_directory_bytes:
            raise SourceError(
                f"The archive's list of contents takes {size / 1e6:.0f} MB; Hakobune reads at most "
                f"{limits.max_directory_bytes / 1e6:.0f} MB of it. Leave out dependencies and build output "
                "and try again."
            )
        start = end[zipfile._ECD_LOCATION] - size
        if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
            start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
        if start < 0:
            return
        handle.seek(start)
        counted = done = 0
        while done < size:
            header = handle.read(_CENTRAL_HEADER)
            if len(header) != _CENTRAL_HEADER or header[:4] != _CENTRAL_SIGNATURE:
                return
            rest = sum(_CENTRAL_LENGTHS.unpack_from(header, _CENTRAL_LENGTHS_AT))
            handle.seek(rest, os.SEEK_CUR)
            done += _CENTRAL_HEADER + rest
            counted += 1
            if counted > limits.max_entries:
                raise SourceError(
                    f"The archive has more than {limits.max_entries:,} entries. "
                    "Leave out dependencies and build output and try again."
                )


def _extract_zip(archive: Path, writer: _TreeWriter) -> None:
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            mode = info.external_attr >> 16
            if info.is_dir():
                writer.directory(info.filename)
            elif stat.S_ISLNK(mode):
                with bundle.open(info) as handle:
                    target = handle.read(4096).decode("utf-8", "surrogateescape")
                writer.symlink(info.filename, target)
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise SourceError(
                    f"The archive has a special file, {_show(info.filename)}. Only files, folders and links are allowed."
                )
            else:
                with bundle.open(info) as handle:
                    writer.file(info.filename, handle, executable=bool(mode & 0o111))


class _TreeWriter:
    def __init__(self, root: Path, limits: Limits, compressed_size: int):
        self.root = root.resolve()
        self.limits = limits
        self.compressed_size = compressed_size
        self.files = 0
        self.entries = 0
        self.total_bytes = 0

    def _target(self, name: str) -> Path | None:
        """The path an entry goes to, or None for entries that are dropped."""
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise SourceError(
                f"The archive has more than {self.limits.max_entries:,} entries. "
                "Leave out dependencies and build output and try again."
            )
        if "\x00" in name or any("\udc80" <= ch <= "\udcff" for ch in name):
            raise SourceError(
                f"The archive has an entry whose name is not valid UTF-8 ({_show(name)}). Rename it and try again."
            )
        posix = name.replace("\\", "/")
        if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
            raise SourceError(
                f"The archive has an entry with an absolute path, {_show(name)}; "
                "archives must hold paths relative to their folder."
            )
        parts = [part for part in PurePosixPath(posix).parts if part not in ("", ".")]
        if ".." in parts:
            raise SourceError(
                f"The archive has an entry {_show(name)}; archives must stay inside their folder."
            )
        if not parts or ".git" in parts:
            return None
        target = self.root.joinpath(*parts)
        self._check_inside(target.parent, name)
        return target

    def _check_inside(self, path: Path, name: str) -> None:
        # Resolving follows links already written, so a link to a folder
        # outside cannot be used as a way out by a later entry.
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise SourceError(f"The archive has an entry {_show(name)}; archives must stay inside their folder.")

    def directory(self, name: str) -> None:
        target = self._target(name)
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)

    def file(self, name: str, source, *, executable: bool) -> None:
        target = self._target(name)
        if target is None:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        # O_NOFOLLOW|O_EXCL: never write through a link, never over something else.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if executable else 0o644)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                self.total_bytes += len(chunk)
                self._check_size()
                out.write(chunk)
        self.files += 1

    def symlink(self, name: str, link_target: str) -> None:
        target = self._target(name)
        if target is None:
            return
        if link_target.startswith("/") or not self._link_stays_inside(target, link_target):
            raise SourceError(
                f"The archive has a link {_show(name)} pointing outside the app's folder (to {_show(link_target)}). "
                "Links must point inside the folder."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            raise SourceError(f"The archive has the entry {_show(name)} twice.")
        os.symlink(link_target, target)
        self.files += 1

    def _link_stays_inside(self, link: Path, link_target: str) -> bool:
        resolved = (link.parent / link_target).resolve()
        return resolved == self.root or self.root in resolved.parents

    def _check_size(self) -> None:
        if self.total_bytes > self.limits.max_total_bytes:
            raise SourceError(
                f"The archive unpacks to more than {self.limits.max_total_bytes / 1e6:.0f} MB. "
                "Leave out dependencies and build output and try again."
            )
        if (
            self.total_bytes > self.limits.ratio_floor_bytes
            and self.total_bytes > self.compressed_size * self.limits.max_ratio
        ):
            raise SourceError(
                f"The archive expands more than {self.limits.max_ratio} times its size, "
                "which is how archive bombs look. Upload the app's own files."
            )


def _unwrap_single_folder(dest: Path) -> Path:
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


def _show(name: str) -> str:
    return repr(name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"))


def tree_digest(root: Path) -> str:
    """A digest of a source tree's content: paths, executable bits, file bytes
    and link targets. The same source gives the same digest whatever archive
    format or timestamps it came with."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest.update(f"L {relative} {os.readlink(path)}\n".encode())
        elif path.is_file():
            file_hash = hashlib.sha256()
            with open(path, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    file_hash.update(chunk)
            executable = "x" if os.access(path, os.X_OK) else "-"
            digest.update(f"F {relative} {executable} {file_hash.hexdigest()}\n".encode())
    return digest.hexdigest()


def remove_workspace(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def check_links(root: Path, what: str = "source") -> None:
    """Checks every link of a finished tree: read as it is written, from the
    link's own folder, its target must stay inside the tree at every step, and
    reach a file or folder that exists, passing through no other link and
    being none itself. So a link never leads anywhere but where its text says,
    whatever other links the tree holds. `what` names the tree in messages
    ("archive", "source")."""
    top = os.path.realpath(root)
    for current, dirs, files in os.walk(top):  # never enters a linked folder
        for name in dirs + files:
            path = os.path.join(current, name)
            if os.path.islink(path):
                _check_link(top, path, what)


def _check_link(top: str, path: str, what: str) -> None:
    relative = os.path.relpath(path, top)
    target = os.readlink(path)
    outside = SourceError(
        f"The {what} has a link {_show(relative)} pointing outside the app's folder (to {_show(target)}). "
        "Links must point inside the folder."
    )
    if target.startswith("/"):
        raise outside
    # Walked one name at a time: `current` is always a real folder of the
    # tree (os.walk gave a link-free start, and no link is ever followed), so
    # `..` means the same to this walk as to the kernel.
    current = os.path.dirname(path)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        current = os.path.dirname(current) if part == ".." else os.path.join(current, part)
        if current != top and not current.startswith(top + os.sep):
            raise outside
        if part == "..":
            continue
        try:
            info = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            raise SourceError(
                f"The {what} has a link {_show(relative)} to {_show(target)}, which is not in the {what}. "
                "Links must point to a file or folder inside the app's folder."
            ) from None
        if stat.S_ISLNK(info.st_mode):
            raise SourceError(
                f"The {what} has a link {_show(relative)} that leads to another link "
                f"({_show(os.path.relpath(current, top))}). Hakobune takes links to files and folders only, "
                f"not chains of links: point {_show(relative)} at the file or folder itself."
            )


def check_tree(root: Path, *, max_entries: int = 20_000, max_bytes: int = 1024 * 1024 * 1024) -> None:
    """Checks a tree Hakobune did not unpack itself (a git checkout): links
    lead inside, to files and folders (see check_links), no special files,
    within the entry and size caps."""
    root = root.resolve()
    entries = 0
    total = 0
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            entries += 1
            if entries > max_entries:
                raise SourceError(f"The source has more than {max_entries:,} files and folders.")
            path = Path(current) / name
            relative = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                _check_link(str(root), str(path), "source")
            elif stat.S_ISREG(info.st_mode):
                total += info.st_size
                if info.st_mode & 0o6000:
                    path.chmod(info.st_mode & 0o777 & ~0o6000)
            elif not stat.S_ISDIR(info.st_mode):
                raise SourceError(f"The source has a special file {relative!r}. Only files, folders and links are allowed.")
    if total > max_bytes:
        raise SourceError(f"The source is larger than {max_bytes / 1e6:.0f} MB.")


def select_subdir(root: Path, subdir: str) -> Path:
    """The folder of the app inside a larger source (a monorepo)."""
    subdir = (subdir or "").strip().strip("/")
    if not subdir:
        return root
    parts = PurePosixPath(subdir).parts
    if ".." in parts or subdir.startswith("/") or "\\" in subdir:
        raise SourceError(f"The folder {subdir!r} must be a path inside the source, like services/api.")
    candidate = root.joinpath(*parts)
    resolved = candidate.resolve()
    # No link on the way: the build reads and writes below this folder.
    linked = any(root.joinpath(*parts[: index + 1]).is_symlink() for index in range(len(parts)))
    if root.resolve() not in resolved.parents or linked or not candidate.is_dir():
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))[:12]
        shown = ", ".join(folders) if folders else "no folders"
        raise SourceError(f"The source has no folder {subdir}. At its top it has: {shown}.")
    return candidate


def pack_tree(root: Path, archive: Path) -> None:
    """Packs a source tree as a .tar.gz snapshot, in a stable order."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
            name = path.relative_to(root).as_posix()
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            elif info.isdir() or info.issym():
                tar.addfile(info)
