"""Get BUSI into data/raw/Dataset_BUSI_with_GT/ from download.urls or a local copy, verified file by file.

Three steps, each guarding the next: fetch (mirrors in order, bounded retries, a resumable `.part` file, a
size cap, the sha256 checked before use), install (every member of the source checked before anything is
written, then exactly the manifest's images copied into a folder that replaces the target only when complete)
and verify (every image of the manifest there with its sha256). What is refused, the limits, and the fixed
order in which a source's type is read from its content are the README's "Input handling"; the code below
follows it rule for rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import lzma
import math
import os
import re
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from bcmodels.config.schema import CLASSES, DownloadConfig
from bcmodels.errors import DataError, describe_os_error
from bcmodels.formats.manifest import ManifestEntry
from bcmodels.io.files import atomic_dir
from bcmodels.io.progress import progress

DATASET_DIR = "Dataset_BUSI_with_GT"
SOURCE_ENV = "BUSI_SOURCE"  # a local zip, tar or extracted folder, used instead of download.urls
# The archive is kept here once its sha256 matches; zip or tar, its format is read from its content.
DOWNLOAD_PATH = Path("data/downloads/Dataset_BUSI.zip")
PART_SUFFIX = ".part"  # DOWNLOAD_PATH + this: the download in progress, kept between runs to be resumed
BACKOFF_S = 2.0  # retry n of a URL waits n * BACKOFF_S seconds
MB = 1_000_000  # download.max_*_mb count in these
CHUNK = 1 << 20
SOURCE_HINT = f"{SOURCE_ENV} must name a BUSI zip or tar, or an extracted {DATASET_DIR} folder"
TRUSTED = "Use the official BUSI archive or another trusted copy"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _file_type(mode: int) -> str:
    """What a file that is not a regular file or folder is, in words."""
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


# --- fetch ------------------------------------------------------------------------------------------------


class _Refused(Exception):
    """A mirror's file is larger than allowed: another attempt at the same URL would only repeat it."""


def _check_download_path(path: Path, *, follow: bool) -> None:
    """Refuse a FIFO, device or folder where a download goes: opening a FIFO blocks forever, a device is endless.

    The archive may be a symbolic link to a file (follow); the .part file is the download's own, so not there.
    """
    try:
        mode = (os.stat if follow else os.lstat)(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise DataError(describe_os_error(err)) from None  # it names the path
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: {_file_type(mode)}, not a regular file; remove it and run again")


def _range_start(content_range: str) -> int | None:
    """The first byte of a `Content-Range: bytes a-b/n` header, or None if it is not one."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    return int(match.group(1)) if match else None


def _download_to_part(url: str, part: Path, timeout_s: float, max_bytes: float, size_key: str) -> None:
    """One request for url, written to part from its current size on; raises on any failure.

    A server that honours the Range header answers 206 and the part grows; one that ignores it answers 200
    and the part starts over; 416 means the part already holds the whole file (its sha256 then decides).
    The part never grows beyond max_bytes: a file announced larger is not read, one sent larger is cut off.
    """
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return
        raise
    limit = f"more than {size_key} ({max_bytes / MB:g} MB)"
    with response:
        if response.status == 206:
            sent = response.headers.get("Content-Range", "")
            if _range_start(sent) != offset:
                part.unlink()  # the next attempt starts from zero rather than append to the wrong place
                raise OSError(f"asked for bytes {offset}- and got Content-Range {sent!r}")
        else:
            offset = 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length else None
        total = offset + expected if expected is not None else None
        if total is not None and total > max_bytes:
            raise _Refused(f"the server announces {total:,} bytes, {limit}")
        received = 0
        with (
            part.open("ab" if offset else "wb") as out,
            progress(
                total=total, initial=offset, unit="B", scale=True, desc=f"download {url.rsplit('/', 1)[-1]}"
            ) as bar,
        ):
            while chunk := response.read1(CHUNK):  # what has arrived, so a timeout loses nothing received
                if offset + received + len(chunk) > max_bytes:  # checked before writing: the disk use is bounded
                    raise _Refused(f"the server sent {limit}; stopped after {offset + received:,} bytes")
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short body without an error when the connection drops, so count the bytes.
    if expected is not None and received < expected:
        raise OSError(f"connection closed after {offset + received:,} of {total:,} bytes")


def _reason(err: BaseException, timeout_s: float) -> str:
    """What went wrong, in one line."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, TimeoutError):
        return f"no answer within download.timeout_s ({timeout_s:g} s)"
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        return _reason(reason, timeout_s) if isinstance(reason, BaseException) else str(reason)
    return str(err) or type(err).__name__


def _is_permanent(err: BaseException) -> bool:
    """A failure that another attempt at the same URL would only repeat: a client error or a malformed URL."""
    if isinstance(err, urllib.error.HTTPError):
        return 400 <= err.code < 500 and err.code not in (408, 429)  # timeout and rate limit pass
    return isinstance(err, ValueError)


def fetch(
    urls: Sequence[str],
    dest: Path,
    sha256: str,
    *,
    timeout_s: float,
    retries: int,
    backoff_s: float = BACKOFF_S,
    what: str = "BUSI",
    urls_key: str = "download.urls",
    offline_hint: str = "",
    max_mb: float | None = None,
    size_key: str = "download.max_archive_mb",
) -> Path:
    """Download the first of urls that serves a file with this sha256 to dest, which appears only verified.

    Each URL gets 1 + retries attempts, retry n after n * backoff_s seconds. The bytes go to dest + ".part",
    which an interrupted attempt (this run or an earlier one) leaves to be resumed: every mirror serves the
    same file, so a part from one mirror is resumed from another. A mirror whose file is larger than max_mb
    (the setting size_key) is stopped there, its bytes discarded, and not tried again.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + PART_SUFFIX)
    _check_download_path(dest, follow=True)
    _check_download_path(part, follow=False)
    if dest.is_file():
        if sha256_file(dest) == sha256:
            return dest
        print(f"{dest}: sha256 differs from the expected one; downloading it again", file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    max_bytes = max_mb * MB if max_mb is not None else math.inf
    last_failure: dict[str, str] = {}
    for url in urls:
        for attempt in range(1, retries + 2):
            if attempt > 1:
                time.sleep(backoff_s * (attempt - 1))
            resumed = part.is_file() and part.stat().st_size > 0
            try:
                _download_to_part(url, part, timeout_s, max_bytes, size_key)
            except _Refused as err:
                part.unlink(missing_ok=True)  # bytes beyond what is allowed, from a mirror not to be trusted
                failure = f"{err}; not retried, nothing kept (raise {size_key} in params.yaml if this file is right)"
                permanent = True
            except (OSError, ValueError, http.client.HTTPException) as err:
                failure, permanent = _reason(err, timeout_s), _is_permanent(err)
            else:
                digest = sha256_file(part)
                if digest == sha256:
                    os.replace(part, dest)
                    return dest
                part.unlink()
                failure = f"sha256 {digest} does not match download.sha256 {sha256}; the file was discarded"
                # A whole file of wrong bytes will come again; after a resume the old part may be to blame,
                # so that case gets another attempt, from zero.
                permanent = not resumed
            last_failure[url] = f"attempt {attempt} of {retries + 1} failed: {failure}"
            print(f"download {url}: {last_failure[url]}", file=sys.stderr)
            if permanent:
                break
    kept = f" The partial download {part} is kept and will be resumed." if part.is_file() else ""
    raise DataError(
        f"Could not download {what} from any of the {len(urls)} URL(s) in {urls_key} (params.yaml):\n"
        + "".join(f"  {url}: {failure}\n" for url, failure in last_failure.items())
        + offline_hint
        + f"Or put the file (sha256 {sha256}) at {dest}.{kept}"
    )


def resolve_source(config: DownloadConfig, backoff_s: float = BACKOFF_S) -> Path:
    """The local copy named by BUSI_SOURCE, else the archive from download.urls (downloaded once)."""
    local = os.environ.get(SOURCE_ENV)
    if local:
        return Path(local).expanduser()
    hint = (
        f"Without network access, or to use a copy you have, set {SOURCE_ENV} to a local zip, tar or tar.gz of "
        f"BUSI or to the extracted {DATASET_DIR} folder (e.g. `{SOURCE_ENV}=/path/to/Dataset_BUSI_with_GT.zip "
        "dvc repro`). "
    )
    return fetch(
        config.urls,
        DOWNLOAD_PATH,
        config.sha256,
        timeout_s=config.timeout_s,
        retries=config.retries,
        backoff_s=backoff_s,
        offline_hint=hint,
        max_mb=config.max_archive_mb,
    )


# --- what a source is -------------------------------------------------------------------------------------

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


def _source_mode(source: Path) -> int:
    """The st_mode of a source that is a folder or a regular file; anything else is refused unopened."""
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise DataError(f"{source}: not found ({SOURCE_HINT})") from None
    except OSError as err:
        raise DataError(describe_os_error(err)) from None  # it names the path
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise DataError(f"{source}: {_file_type(mode)}, neither a file nor a folder; refused ({SOURCE_HINT})")
    return mode


def _open_regular(path: Path) -> IO[bytes]:
    """path opened for reading if it is a regular file. O_NONBLOCK: a FIFO swapped in since os.stat looked
    cannot block the open, and fstat then refuses it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: {_file_type(mode)}, not a regular file; refused")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _archive_format(source: Path, f: IO[bytes]) -> str:
    """zip, tar, tar.gz, tar.bz2 or tar.xz, from the first bytes of f (MAGIC); an error for anything else."""
    head = f.read(512)
    f.seek(0)
    for offset, magic, fmt in MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    found = f"its first bytes are {head[:16]!r}" if head else "it is empty"
    raise DataError(
        f"{source}: neither a zip or tar archive nor a folder ({found}); recognised by content: zip, tar, "
        f"tar.gz, tar.bz2, tar.xz. {SOURCE_HINT}."
    )


# --- members ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One entry of an archive, or one file or folder below a source folder."""

    name: str  # as stored: the archive's member name, or the path relative to the folder's parent
    size: int  # bytes, as the archive declares them
    kind: str  # file, dir, symlink, hardlink or other (device, fifo)
    ref: Any  # what the opener needs: a ZipInfo, TarInfo or Path
    unreadable: tuple[str, str] | None = None  # why the reader cannot extract it, and what to do instead


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


def _zip_unreadable(info: zipfile.ZipInfo) -> tuple[str, str] | None:
    """Why zipfile cannot extract this member, as (problem, what to do), or None. zipfile itself would only
    say so when the member is opened, with a RuntimeError or NotImplementedError."""
    extracted = f"set {SOURCE_ENV} to the extracted {DATASET_DIR} folder"
    if info.flag_bits & ZIP_ENCRYPTED:
        return "is encrypted", f"Extract the archive with its password and {extracted}"
    if info.compress_type not in ZIP_METHODS:
        method = ZIP_METHOD_NAMES.get(info.compress_type, "an unknown method")
        problem = (
            f"is compressed with {method} (method {info.compress_type}), which Python's zipfile cannot read "
            "(it reads stored, deflated, bzip2 and lzma)"
        )
        advice = f"Extract the archive with a tool that reads it (7-Zip, for one) and {extracted}, or use the "
        return problem, advice + "official BUSI archive"
    if info.extract_version > zipfile.MAX_EXTRACT_VERSION:
        problem = f"needs zip version {info.extract_version / 10:.1f} to be extracted, newer than zipfile reads"
        return problem, f"Extract the archive with another tool and {extracted}"
    return None


def _zip_members(zf: zipfile.ZipFile) -> Iterator[Member]:
    for info in zf.infolist():
        kind = "dir" if info.is_dir() else _kind(info.external_attr >> 16)
        yield Member(info.filename, info.file_size, kind, info, _zip_unreadable(info))


def _tar_members(tf: tarfile.TarFile) -> Iterator[Member]:
    """The members as tarfile reads them, one header at a time, so that listing can stop at any one."""

    def kind(m: tarfile.TarInfo) -> str:
        if m.issym():
            return "symlink"
        if m.islnk():
            return "hardlink"
        return "dir" if m.isdir() else "file" if m.isfile() else "other"

    for m in tf:
        yield Member(m.name, m.size, kind(m), m)


def _unreadable_folder(source: Path, err: OSError) -> DataError:
    """A folder that cannot be listed is an error, not a silent gap in the data (os.walk would skip it)."""
    return DataError(f"{source}: a folder in it cannot be read: {describe_os_error(err)}; nothing was extracted")


def _folder_members(source: Path, root: Path) -> Iterator[Member]:
    """Everything below root, links included as links (os.walk does not enter a linked folder)."""

    def onerror(err: OSError) -> None:
        raise _unreadable_folder(source, err)

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()  # walk in a fixed order, so the first refused file is always the same
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            info = path.lstat()
            yield Member(path.relative_to(root.parent).as_posix(), info.st_size, _kind(info.st_mode), path)


def _refused(source: Path, problem: str, advice: str = TRUSTED, setting: str = "") -> DataError:
    """The error for a source refused before anything was written."""
    raise_it = f", or raise {setting} in params.yaml if you trust this copy" if setting else ""
    return DataError(f"{source}: {problem}; refused, nothing was extracted. {advice}{raise_it}.")


def _check_member(source: Path, member: Member, what: str, max_member_mb: float) -> None:
    """Raise DataError naming source and member if the member could write outside the target, is too large or
    cannot be read."""
    name = member.name.replace("\\", "/")
    advice, setting = TRUSTED, ""
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        problem = "has an absolute path"
    elif ".." in name.split("/"):
        problem = "has a '..' component, which points outside the target"
    elif member.kind == "symlink":
        problem = "is a symbolic link"
    elif member.kind == "hardlink":
        problem = "is a hard link"
    elif member.kind == "other":
        problem = "is not a regular file (a device or pipe)"
    elif member.kind == "file" and member.size > max_member_mb * MB:
        problem = f"is {member.size:,} bytes, more than download.max_member_mb ({max_member_mb:g} MB)"
        setting = "download.max_member_mb"
    elif member.unreadable:
        problem, advice = member.unreadable
    else:
        return
    raise _refused(source, f"{what} {member.name!r} {problem}", advice, setting)


def _checked(source: Path, members: Iterable[Member], what: str, config: DownloadConfig) -> list[Member]:
    """The members, each checked as it is listed (_check_member, then the count and the running total).

    Listing stops at the first refusal: an archive of a million entries or a terabyte of declared bytes is
    refused without being read to its end. Every file counts towards max_total_mb, not only the images.
    """
    checked: list[Member] = []
    total = 0
    for member in members:
        if len(checked) == config.max_members:
            problem = f"has more than download.max_members ({config.max_members:,}) entries, files and folders counted"
            raise _refused(source, problem, setting="download.max_members")
        _check_member(source, member, what, config.max_member_mb)
        if member.kind == "file":
            total += member.size
            if total > config.max_total_mb * MB:
                problem = (
                    f"its files add up to more than download.max_total_mb ({config.max_total_mb:g} MB): "
                    f"{total:,} bytes up to {what} {member.name!r}"
                )
                raise _refused(source, problem, setting="download.max_total_mb")
        checked.append(member)
    return checked


# --- the root: the one Dataset_BUSI_with_GT folder that holds the class folders ---------------------------


def _parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(name.replace("\\", "/")).parts


def _one_root(source: Path, roots: dict[str, Any]) -> Any:
    """The one root of a source, from {how to name it: root}; an error for none or several."""
    if not roots:
        raise DataError(
            f"{source}: no {DATASET_DIR} folder holding the class folders ({', '.join(CLASSES)}) at its top level "
            f"or one level below. {SOURCE_HINT}."
        )
    if len(roots) > 1:
        listed = ", ".join(sorted(roots))
        raise DataError(f"{source}: {len(roots)} {DATASET_DIR} folders ({listed}); use a copy with exactly one.")
    return next(iter(roots.values()))


def _archive_root(source: Path, members: list[Member]) -> tuple[str, ...]:
    """Dataset_BUSI_with_GT/ at the top, or one folder down as some mirrors pack it, holding a class folder.

    A copy packed twice (Dataset_BUSI_with_GT/Dataset_BUSI_with_GT/benign/...) has one root, the inner one;
    macOS's __MACOSX copies are not roots.
    """
    roots = {}
    for member in members:
        parts = _parts(member.name)
        if parts[:1] == ("__MACOSX",):
            continue
        for depth in (0, 1):
            if len(parts) > depth + 1 and parts[depth] == DATASET_DIR and parts[depth + 1] in CLASSES:
                roots["/".join(parts[: depth + 1])] = parts[: depth + 1]
    return _one_root(source, roots)


def _subfolders(source: Path, folder: Path) -> list[Path]:
    """The folders (or links to folders) directly in folder, sorted; one that cannot be listed is an error."""
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir())
    except OSError as err:
        raise _unreadable_folder(source, err) from None


def _folder_root(source: Path) -> Path:
    """The Dataset_BUSI_with_GT folder holding a class folder: source itself, inside it, or one folder down."""
    candidates = [source] if source.name == DATASET_DIR else []
    for child in _subfolders(source, source):
        if child.name == DATASET_DIR:
            candidates.append(child)
        else:
            candidates += [g for g in _subfolders(source, child) if g.name == DATASET_DIR]
    roots = {
        c.relative_to(source).as_posix(): c
        for c in candidates
        if any(f.name in CLASSES for f in _subfolders(source, c))
    }
    return _one_root(source, roots)


def _chosen(members: list[Member], root: tuple[str, ...], manifest: list[ManifestEntry]) -> dict[str, Member]:
    """The member to install for each manifest file the source has (the last one, as tar and unzip do).

    Masks, notes, thumbnails and images the manifest does not list are not installed.
    """
    wanted = {e.file for e in manifest}
    chosen = {}
    for member in members:
        parts = _parts(member.name)
        file = "/".join(parts[len(root) :])
        if member.kind == "file" and parts[: len(root)] == root and file in wanted:
            chosen[file] = member
    return chosen


# --- install ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_source(source: Path) -> Iterator[tuple[Iterable[Member], tuple[str, ...] | None, Opener, str]]:
    """Yield a source's members (listed lazily), its root (None: find it among the members), an opener and
    a word for a member."""
    if stat.S_ISDIR(_source_mode(source)):
        root = _folder_root(source)
        yield _folder_members(source, root), (root.name,), lambda m: _open_regular(m.ref), "file"
        return
    with _open_regular(source) as f:
        fmt = _archive_format(source, f)
        if fmt == "zip":
            with zipfile.ZipFile(f) as zf:
                yield _zip_members(zf), None, lambda m: zf.open(m.ref), "member"
        else:
            with tarfile.open(fileobj=f, mode=TAR_MODES[fmt]) as tf:
                yield _tar_members(tf), None, lambda m: tf.extractfile(m.ref), "member"


def _copy(src: IO[bytes], out: IO[bytes], size: int) -> None:
    """At most size bytes: what the member declared, and the caps allowed. zipfile and tarfile stop there
    anyway; a folder's file may grow while it is read (verify then finds it altered)."""
    while size > 0 and (chunk := src.read(min(CHUNK, size))):
        out.write(chunk)
        size -= len(chunk)


# A damaged archive shows as one of these (or as an OSError without an errno: gzip's and bz2's bad data).
# NotImplementedError: zipfile's word for a header field it does not know, which _zip_unreadable should
# have caught before anything was written.
DAMAGED = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    UnicodeDecodeError,
    NotImplementedError,
)


def _install_error(source: Path, target: Path, at: str, err: Exception) -> DataError:
    """The error for a failure while reading the source or writing the target, with advice for its cause."""
    if isinstance(err, OSError) and err.errno is not None:
        # The machine, not the archive: a full disk, a permission, a name too long for the file system.
        return DataError(f"{source}: installing into {target} failed{at}: {describe_os_error(err)}")
    return DataError(
        f"{source}: the archive is damaged or truncated ({err}){at}. Download it again or use another copy."
    )


def install_dataset(source: Path, target: Path, manifest: list[ManifestEntry], config: DownloadConfig) -> int:
    """Install the manifest's images from a zip, tar or folder into target, verified; returns the count.

    Every member is checked first, so a refused source leaves nothing behind. Files are written only to
    target/<manifest file>, never to a path taken from a member's name; a zip or tar member yields at most
    its declared size (zipfile stops there and checks the CRC, tarfile reads exactly that many bytes), so
    max_member_mb and max_total_mb also bound a compression bomb.
    """
    source, at = Path(source), ""  # at: the member being copied, for an error
    try:
        with _open_source(source) as (listing, root, opener, what):
            members = _checked(source, listing, what, config)
            chosen = _chosen(members, root or _archive_root(source, members), manifest)
            with atomic_dir(target) as tmp:
                for file, member in progress(chosen.items(), desc=f"extract {source.name}", unit="file"):
                    at = f" at {what} {member.name!r}"
                    dest = tmp / file
                    dest.parent.mkdir(exist_ok=True)
                    with opener(member) as src, open(dest, "wb") as out:
                        _copy(src, out, member.size)
                at = ""
                verify(tmp, manifest, source)
    except (*DAMAGED, OSError) as err:
        raise _install_error(source, target, at, err) from err
    return len(chosen)


def verify(folder: Path, manifest: list[ManifestEntry], source: Path | None = None) -> None:
    """Raise DataError naming every image that is missing or differs from the manifest, and the source they
    came from (default: folder)."""
    missing, altered = [], []
    for entry in progress(manifest, desc="verify", unit="image"):
        path = folder / entry.file
        if not path.is_file():
            missing.append(entry.file)
        elif sha256_file(path) != entry.sha256:
            altered.append(entry.file)
    if missing or altered:
        lines = [f"missing: {f}" for f in missing[:20]] + [f"altered (sha256 differs): {f}" for f in altered[:20]]
        raise DataError(
            f"{source or folder}: the data does not match the manifest: {len(missing)} missing and {len(altered)} "
            f"altered of {len(manifest)} images.\n  "
            + "\n  ".join(lines)
            + "\nUse an unmodified copy of the BUSI data set."
        )
