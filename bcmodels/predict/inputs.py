"""predict's inputs: image files, folders and zips of them, each image a Source that decodes it on demand or
says why it cannot be read, with its lesion mask files where asked for (BUSI's naming, MASK_NAME). Zip members
pass bcmodels.io.archives' rules (the download stage's, with the limits below); a file is decoded only if it is a
regular file, opened without blocking (a FIFO would hang the decoder for ever, a device never ends)."""

from __future__ import annotations

import functools
import io
import os
import re
import stat
import zipfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from bcmodels.errors import DataError, describe_os_error
from bcmodels.io.archives import (
    DAMAGED,
    Limit,
    Limits,
    Member,
    Refused,
    file_type,
    listed,
    member_refusal,
    open_regular,
    placement_problem,
    regular_fd,
    zip_members,
)
from bcmodels.io.images import decode, decode_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_MEMBER_BYTES = 64_000_000  # one zip member; BUSI's largest image is under 1 MB
MAX_ZIP_BYTES = 4_000_000_000  # all members of one zip, uncompressed
MAX_ZIP_MEMBERS = 100_000
# BUSI names the lesion masks of "<stem>.png" "<stem>_mask.png", "<stem>_mask_1.png", ... beside it.
MASK_NAME = re.compile(r"(?P<stem>.+)_mask(_[0-9]+)?\.png", re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    """One input: its name in the output, and how to decode it or why it cannot be."""

    name: str
    read: Callable[[], Image.Image] | None = None
    error: str | None = None
    masks: tuple[Path, ...] = ()  # its lesion mask files, joined (with --masks; none: no lesion drawn)


def _skipped(parts: Sequence[str]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _without_name(err: Exception, name: str) -> str:
    """An error's message without the input's name in front (the row and the error line have it)."""
    return str(err).removeprefix(f"{name}: ")


# ---------------------------------------------------------------------------------------------- files


class _NamedFile(io.BufferedReader):
    """An open image file that decode() names in its errors by its path, as decode_bytes names its bytes."""

    def __init__(self, fd: int, name: str) -> None:
        super().__init__(io.FileIO(fd, "rb"))
        self._name = name

    def __str__(self) -> str:
        return self._name


def read_file(path: Path) -> Image.Image:
    """decode() of a regular file; anything else (a FIFO, a device) is refused before it is read."""
    try:
        fd = regular_fd(path)
    except OSError as err:
        raise DataError(describe_os_error(err)) from None  # it names the path
    with _NamedFile(fd, str(path)) as f:
        return decode(f)  # type: ignore[arg-type]  # PIL opens a file object as a path


def masks_beside(folder: Path, names: Sequence[str]) -> dict[str, tuple[Path, ...]]:
    """Image file name -> its mask files among names (files of one folder), by BUSI's naming; a file named like
    a mask whose image is not there is no mask, nor is anything but a regular file (a FIFO would hang the
    decoder: as an input of its own it is refused unread)."""
    stems = {Path(n).stem: n for n in names if _is_image_name(n) and not MASK_NAME.fullmatch(n)}
    found: dict[str, list[Path]] = {}
    for name in names:
        match = MASK_NAME.fullmatch(name)
        if match and match["stem"] in stems and (folder / name).is_file():
            found.setdefault(stems[match["stem"]], []).append(folder / name)
    return {image: tuple(sorted(masks)) for image, masks in found.items()}


def _file_source(path: Path, masks: tuple[Path, ...] = ()) -> Source:
    return Source(str(path), read=functools.partial(read_file, path), masks=masks)


def folder_sources(root: Path, with_masks: bool = False) -> list[Source]:
    """The PNG and JPEG files below root, recursively (links to folders not followed), in sorted order; a
    folder below root that cannot be listed is an input that failed, not a silent gap. with_masks: each image
    takes the mask files beside it (masks_beside), which are then no inputs of their own."""
    found: dict[Path, Source] = {}

    def unreadable(err: OSError) -> None:
        folder = Path(err.filename or root)
        found[folder] = Source(
            str(folder), error=f"cannot list this folder: {_without_name(describe_os_error(err), str(folder))}"
        )

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = [d for d in dirs if not _skipped([d])]
        names = [f for f in files if _is_image_name(f) and not _skipped([f])]
        masks = masks_beside(Path(folder), names) if with_masks else {}
        taken = {p.name for paths in masks.values() for p in paths}
        for f in names:
            if f not in taken:
                found[Path(folder) / f] = _file_source(Path(folder) / f, masks.get(f, ()))
    return [found[p] for p in sorted(found, key=lambda p: p.relative_to(root).parts)]


# ---------------------------------------------------------------------------------------------- zips


def zip_limits() -> Limits:
    """The caps on one zip, cited by their constants (read when called, so that a test can lower them)."""
    return Limits(
        members=Limit(MAX_ZIP_MEMBERS, "MAX_ZIP_MEMBERS", f"{MAX_ZIP_MEMBERS:,}"),
        member_bytes=Limit(MAX_MEMBER_BYTES, "MAX_MEMBER_BYTES", f"{MAX_MEMBER_BYTES:,} bytes"),
        total_bytes=Limit(MAX_ZIP_BYTES, "MAX_ZIP_BYTES", f"{MAX_ZIP_BYTES:,} bytes"),
    )


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Image.Image:
    try:
        with zf.open(info) as member:  # yields at most file_size bytes and checks the CRC at the end
            data = member.read(MAX_MEMBER_BYTES + 1)
    except (*DAMAGED, RuntimeError, OSError) as err:
        raise DataError(f"{name}: cannot read it from the zip ({str(err)[:200]})") from None
    return decode_bytes(data, name)


def _member_source(zf: zipfile.ZipFile, member: Member, name: str, limits: Limits) -> Source | None:
    """A zip member as a source; None for one predict does not read (a folder, a non-image, a hidden file).

    A member whose name or kind the rules refuse is reported whatever its name: the zip is not to be trusted.
    """
    problem = placement_problem(member)
    if problem:
        return Source(name, error=f"refused: the member {problem}")
    if member.kind == "dir" or not _is_image_name(member.name) or _skipped(PurePosixPath(member.name).parts):
        return None
    refusal = member_refusal(member, limits)
    if refusal is None:
        return Source(name, read=functools.partial(_read_member, zf, member.ref, name))
    error = f"refused: the member {refusal.problem}"
    if refusal.unreadable:
        error += f"; extract the zip with {refusal.unreadable.extract_with} and give the extracted folder instead"
    return Source(name, error=error)


def zip_sources(path: Path, stack: ExitStack) -> list[Source]:
    """The images of a zip as sources that read their member on demand (the zip stays open in stack)."""
    limits = zip_limits()
    try:
        zf = stack.enter_context(zipfile.ZipFile(stack.enter_context(open_regular(path))))
        members = listed(zip_members(zf), limits, "member")
    except Refused as err:
        return [Source(str(path), error=f"refused as a whole: {err.problem}")]
    except DataError as err:  # not a regular file (any more)
        return [Source(str(path), error=_without_name(err, str(path)))]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return [Source(str(path), error=f"not a readable zip ({str(err)[:200]})")]
    sources = []
    for member in sorted(members, key=lambda m: PurePosixPath(m.name.replace("\\", "/")).parts):
        source = _member_source(zf, member, f"{path}:{member.name}", limits)
        if source is not None:
            sources.append(source)
    if not sources:
        return [Source(str(path), error="a zip with no PNG or JPEG files in it")]
    return sources


# ---------------------------------------------------------------------------------------------- all


def _masks_of_file(path: Path) -> tuple[Path, ...]:
    try:
        names = os.listdir(path.parent)
    except OSError:
        return ()  # the image itself is then read, or refused, with its own error
    return masks_beside(path.parent, names).get(path.name, ())


def collect_sources(paths: Sequence[Path], stack: ExitStack, with_masks: bool = False) -> list[Source]:
    """Every input image of the command line, in order; a path that yields none is an input that failed.
    with_masks: image files (given or in folders) take their mask files (masks_beside); images in zips none."""
    sources: list[Source] = []
    seen: set = set()

    def add(key: object, source: Source) -> None:
        if key not in seen:
            seen.add(key)
            sources.append(source)

    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            add(("missing", str(path)), Source(str(path), error="no such file or folder"))
            continue
        except OSError as err:
            add(("missing", str(path)), Source(str(path), error=_without_name(describe_os_error(err), str(path))))
            continue
        if stat.S_ISDIR(mode):
            found = folder_sources(path, with_masks)
            if not found:
                add(("folder", path.resolve()), Source(str(path), error="a folder with no PNG or JPEG files in it"))
            for source in found:
                add(Path(source.name).resolve(), source)
        elif stat.S_ISREG(mode) and path.suffix.lower() == ".zip":
            for source in zip_sources(path, stack):
                add((path.resolve(), source.name), source)
        elif stat.S_ISREG(mode):
            add(path.resolve(), _file_source(path, _masks_of_file(path) if with_masks else ()))
        else:
            problem = f"{file_type(mode)}, neither a file nor a folder; give image files, folders or zips"
            add(("other", str(path)), Source(str(path), error=problem))
    return sources
