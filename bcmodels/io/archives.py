"""Sources of files: a folder, or a zip or tar archive recognised by its content; their members; and the rules
every member and every listing must pass before anything is read from them.

One home for these rules: the download stage refuses a whole source on the first refusal, predict refuses a
zip member (or the whole zip) and goes on with the rest. The caller passes in its limits, named as the user
can change them (a setting or a constant), and says what to do about a refusal in its own words. The rules,
the limits and the order in which a file's type is read from its content are in docs/input-handling.md.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bcmodels.errors import DataError, describe_os_error

READ_BYTES = 1 << 20  # bytes read (and hashed, downloaded, copied) at a time


def file_type(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    for test, words in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return words
    return "of an unknown file type"


# --- what a source is -------------------------------------------------------------------------------------


def source_mode(source: Path, hint: str) -> int:
    """The st_mode of a source that is a folder or a regular file; anything else is refused unopened (a FIFO
    would block the open for ever, a device is endless). hint: what the source should be, for the message."""
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise DataError(f"{source}: not found ({hint})") from None
    except OSError as err:
        raise DataError(describe_os_error(err)) from None  # it names the path
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise DataError(f"{source}: {file_type(mode)}, neither a file nor a folder; refused ({hint})")
    return mode


def regular_fd(path: Path) -> int:
    """A descriptor open for reading on path if it is a regular file. O_NONBLOCK: a FIFO swapped in since
    anyone looked cannot block the open, and fstat then refuses it. OSError if it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: {file_type(mode)}, not a regular file; refused")
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_regular(path: Path) -> IO[bytes]:
    """path opened for reading if it is a regular file (regular_fd)."""
    return os.fdopen(regular_fd(path), "rb")


# (offset, magic bytes, format), tried in this order; a format is a key of TAR_MODES or "zip".
MAGIC = (
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip"),  # an empty zip: only the end record
    (0, b"\x1f\x8b", "tar.gz"),
    (0, b"BZh", "tar.bz2"),
    (0, b"\xfd7zXZ\x00", "tar.xz"),
    (257, b"ustar", "tar"),  # POSIX and GNU tar headers both start their magic with these 5 bytes
)
TAR_MODES = {"tar": "r:", "tar.gz": "r:gz", "tar.bz2": "r:bz2", "tar.xz": "r:xz"}


def archive_format(source: Path, f: IO[bytes], hint: str) -> str:
    """zip, tar, tar.gz, tar.bz2 or tar.xz, from the first bytes of f (MAGIC); an error for anything else."""
    head = f.read(512)
    f.seek(0)
    for offset, magic, fmt in MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    found = f"its first bytes are {head[:16]!r}" if head else "it is empty"
    raise DataError(
        f"{source}: neither a zip or tar archive nor a folder ({found}); recognised by content: zip, tar, "
        f"tar.gz, tar.bz2, tar.xz. {hint}."
    )


# --- members ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    """Why zipfile cannot extract a member, and what can."""

    problem: str  # completes "<member> ...": "is encrypted"
    extract_with: str  # completes "Extract the archive with ...": "its password"
    other_copy: bool = False  # only the compression method is at fault: another copy of the archive may do


@dataclass(frozen=True)
class Member:
    """One entry of an archive, or one file or folder below a source folder."""

    name: str  # as stored: the archive's member name, or the path relative to the folder's parent
    size: int  # bytes, as the archive declares them
    kind: str  # file, dir, symlink, hardlink or other (device, fifo)
    ref: Any  # what the opener needs: a ZipInfo, TarInfo or Path
    unreadable: Unreadable | None = None  # why zipfile cannot extract it


Opener = Callable[[Member], IO[bytes]]

# What zipfile can decompress; any other method fails only when the member is opened, as NotImplementedError.
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
# Some methods zipfile cannot read, named in the refusal (Deflate64 is what Windows writes for large zips).
ZIP_METHOD_NAMES = {1: "Shrink", 6: "Implode", 9: "Deflate64", 93: "Zstandard", 95: "XZ", 98: "PPMd"}
ZIP_ENCRYPTED = 0x1  # general purpose flag bit 0


def _kind(mode: int) -> str:
    """A member's kind from its Unix mode bits (0, as zips made on Windows store them, is a file)."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_IFMT(mode) in (0, stat.S_IFREG) else "other"


def _zip_unreadable(info: zipfile.ZipInfo) -> Unreadable | None:
    """Why zipfile cannot extract this member, or None. zipfile itself would only say so when the member is
    opened, with a RuntimeError or NotImplementedError."""
    if info.flag_bits & ZIP_ENCRYPTED:
        return Unreadable("is encrypted", "its password")
    if info.compress_type not in ZIP_METHODS:
        method = ZIP_METHOD_NAMES.get(info.compress_type, "an unknown method")
        problem = (
            f"is compressed with {method} (method {info.compress_type}), which Python's zipfile cannot read "
            "(it reads stored, deflated, bzip2 and lzma)"
        )
        return Unreadable(problem, "a tool that reads it (7-Zip, for one)", other_copy=True)
    if info.extract_version > zipfile.MAX_EXTRACT_VERSION:
        problem = f"needs zip version {info.extract_version / 10:.1f} to be extracted, newer than zipfile reads"
        return Unreadable(problem, "another tool")
    return None


def zip_members(zf: zipfile.ZipFile) -> Iterator[Member]:
    """The members of an open zip, in the order of its directory."""
    for info in zf.infolist():
        kind = "dir" if info.is_dir() else _kind(info.external_attr >> 16)
        yield Member(info.filename, info.file_size, kind, info, _zip_unreadable(info))


def tar_members(tf: tarfile.TarFile) -> Iterator[Member]:
    """The members as tarfile reads them, one header at a time, so that listing can stop at any one."""

    def kind(m: tarfile.TarInfo) -> str:
        if m.issym():
            return "symlink"
        if m.islnk():
            return "hardlink"
        return "dir" if m.isdir() else "file" if m.isfile() else "other"

    for m in tf:
        yield Member(m.name, m.size, kind(m), m)


def unreadable_folder(source: Path, err: OSError) -> DataError:
    """A folder that cannot be listed is an error, not a silent gap in the data (os.walk would skip it)."""
    return DataError(f"{source}: a folder in it cannot be read: {describe_os_error(err)}; nothing was extracted")


def folder_members(source: Path, root: Path) -> Iterator[Member]:
    """Everything below root (a folder of source), links included as links (os.walk does not enter a linked
    folder), in a fixed order, so that the first refused file is always the same."""

    def onerror(err: OSError) -> None:
        raise unreadable_folder(source, err)

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            info = path.lstat()
            yield Member(path.relative_to(root.parent).as_posix(), info.st_size, _kind(info.st_mode), path)


@contextlib.contextmanager
def archive_members(source: Path, hint: str) -> Iterator[tuple[Iterator[Member], Opener]]:
    """The members of a zip or tar file (its type read from its content), listed lazily, and their opener."""
    with open_regular(source) as f:
        fmt = archive_format(source, f, hint)
        if fmt == "zip":
            with zipfile.ZipFile(f) as zf:
                yield zip_members(zf), lambda m: zf.open(m.ref)
        else:
            with tarfile.open(fileobj=f, mode=TAR_MODES[fmt]) as tf:
                yield tar_members(tf), lambda m: tf.extractfile(m.ref)


# --- the rules --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """One cap, cited in messages as the key that sets it and its value as given there."""

    value: float  # entries or bytes
    key: str  # a setting or constant: "download.max_member_mb", "MAX_MEMBER_BYTES"
    shown: str  # the value as the key gives it: "50 MB", "64,000,000 bytes"

    def __str__(self) -> str:
        return f"{self.key} ({self.shown})"


@dataclass(frozen=True)
class Limits:
    """The caps on one source: its entries, one file's declared size, and all its files' together."""

    members: Limit  # files and folders counted
    member_bytes: Limit
    total_bytes: Limit


class Refused(Exception):
    """A member or a listing the rules refuse. problem completes "<member> ..." for a member and
    "<source>: ..." for a listing; limit is the key to raise if a cap refused it."""

    def __init__(self, problem: str, *, limit: str = "", unreadable: Unreadable | None = None) -> None:
        super().__init__(problem)
        self.problem, self.limit, self.unreadable = problem, limit, unreadable


# What a member's kind alone makes it: extracting it could write outside the target or through a link.
KIND_PROBLEMS = {
    "symlink": "is a symbolic link",
    "hardlink": "is a hard link",
    "other": "is not a regular file (a device or pipe)",
}


def placement_problem(member: Member) -> str | None:
    """Why a member's name or kind could put it outside its target (an absolute path, a '..' component, a
    link, a device or pipe), or None."""
    name = member.name.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has a '..' component, which points outside the target"
    return KIND_PROBLEMS.get(member.kind)


def member_refusal(member: Member, limits: Limits) -> Refused | None:
    """Why a member is refused (placement_problem, larger than limits.member_bytes, unreadable), or None."""
    problem = placement_problem(member)
    if problem:
        return Refused(problem)
    if member.kind == "file" and member.size > limits.member_bytes.value:
        return Refused(f"is {member.size:,} bytes, more than {limits.member_bytes}", limit=limits.member_bytes.key)
    if member.unreadable:
        return Refused(member.unreadable.problem, unreadable=member.unreadable)
    return None


def listed(
    members: Iterable[Member], limits: Limits, what: str, check: Callable[[Member], None] = lambda member: None
) -> list[Member]:
    """The members, each counted, passed to check and added to the running total as it is listed.

    Listing stops at the first refusal (Refused, or whatever check raises): an archive of a million entries
    or a terabyte of declared bytes is refused without being read to its end. Every file counts towards
    limits.total_bytes, whatever the caller then reads of it. what: a word for a member, for the message.
    """
    checked: list[Member] = []
    total = 0
    for member in members:
        if len(checked) == limits.members.value:
            raise Refused(
                f"has more than {limits.members} entries, files and folders counted", limit=limits.members.key
            )
        check(member)
        if member.kind == "file":
            total += member.size
            if total > limits.total_bytes.value:
                problem = (
                    f"its files add up to more than {limits.total_bytes}: {total:,} bytes up to {what} {member.name!r}"
                )
                raise Refused(problem, limit=limits.total_bytes.key)
        checked.append(member)
    return checked


# --- reading ----------------------------------------------------------------------------------------------


def copy_bounded(src: IO[bytes], out: IO[bytes], size: int) -> None:
    """At most size bytes: what the member declared, and the caps allowed. zipfile and tarfile stop there
    anyway; a folder's file may grow while it is read (a check of its content then finds it altered)."""
    while size > 0 and (chunk := src.read(min(READ_BYTES, size))):
        out.write(chunk)
        size -= len(chunk)


# A damaged archive shows as one of these (or as an OSError without an errno: gzip's and bz2's bad data).
# NotImplementedError: zipfile's word for a header field it does not know, which Member.unreadable should
# have caught before anything was read.
DAMAGED = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    UnicodeDecodeError,
    NotImplementedError,
)
