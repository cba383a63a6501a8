"""Get BUSI into data/raw/Dataset_BUSI_with_GT/ from download.urls or a local copy, verified file by file.

Three steps, each guarding the next:
- fetch: mirrors in order, a bounded number of retries each, an interrupted download resumed from a `.part`
  file; the archive appears under data/downloads/ only once complete and matching download.sha256.
- install: a zip, tar (plain or compressed) or extracted folder is read member by member. Every member is
  checked before anything is written (absolute paths, `..`, links and oversized members are refused), and
  only `<class>/<name>.png` below the one Dataset_BUSI_with_GT folder is copied, to paths this module builds
  itself, into a temporary folder that replaces the target only when all is done.
- verify: every image of the manifest must be there with its sha256.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import http.client
import os
import re
import shutil
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from tqdm import tqdm

from bcmodels.config import CLASSES, DownloadConfig
from bcmodels.errors import DataError
from bcmodels.fileio import atomic_dir

DATASET_DIR = "Dataset_BUSI_with_GT"
SOURCE_ENV = "BUSI_SOURCE"  # a local zip, tar or extracted folder, used instead of download.urls
# The archive is kept here once its sha256 matches; zip or tar, its format is read from its content.
DOWNLOAD_PATH = Path("data/downloads/Dataset_BUSI.zip")
PART_SUFFIX = ".part"  # DOWNLOAD_PATH + this: the download in progress, kept between runs to be resumed
BACKOFF_S = 2.0  # retry n of a URL waits n * BACKOFF_S seconds
MB = 1_000_000  # download.max_member_mb counts in these
CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    file: str  # path inside Dataset_BUSI_with_GT/, e.g. "benign/benign (1).png"
    label: str
    sha256: str


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Read the committed image manifest (file, class, sha256), in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (download.manifest in params.yaml)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or set(rows[0]) != {"file", "class", "sha256"}:
        raise DataError(f"{path}: expected tab-separated columns file, class, sha256")
    entries = [ManifestEntry(r["file"], r["class"], r["sha256"]) for r in rows]
    for e in entries:
        if e.label not in CLASSES or not e.file.startswith(f"{e.label}/"):
            raise DataError(f"{path}: row {e.file!r} has class {e.label!r}; classes are {', '.join(CLASSES)}")
    return entries


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- fetch ------------------------------------------------------------------------------------------------


def _range_start(content_range: str) -> int | None:
    """The first byte of a `Content-Range: bytes a-b/n` header, or None if it is not one."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    return int(match.group(1)) if match else None


def _download_to_part(url: str, part: Path, timeout_s: float) -> None:
    """One request for url, written to part from its current size on; raises on any failure.

    A server that honours the Range header answers 206 and the part grows; one that ignores it answers 200
    and the part starts over; 416 means the part already holds the whole file (its sha256 then decides).
    """
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return
        raise
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
        received = 0
        with part.open("ab" if offset else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=f"download {url.rsplit('/', 1)[-1]}"
        ) as bar:
            while chunk := response.read1(CHUNK):  # what has arrived, so a timeout loses nothing received
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
    urls: Sequence[str], dest: Path, sha256: str, *, timeout_s: float, retries: int, backoff_s: float = BACKOFF_S
) -> Path:
    """Download the first of urls that serves a file with this sha256 to dest, which appears only verified.

    Each URL gets 1 + retries attempts, retry n after n * backoff_s seconds. The bytes go to dest + ".part",
    which an interrupted attempt (this run or an earlier one) leaves to be resumed: every mirror serves the
    same file, so a part from one mirror is resumed from another.
    """
    dest = Path(dest)
    if dest.is_file():
        if sha256_file(dest) == sha256:
            return dest
        tqdm.write(f"{dest}: sha256 differs from download.sha256; downloading it again", file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    last_failure: dict[str, str] = {}
    for url in urls:
        for attempt in range(1, retries + 2):
            if attempt > 1:
                time.sleep(backoff_s * (attempt - 1))
            resumed = part.is_file() and part.stat().st_size > 0
            try:
                _download_to_part(url, part, timeout_s)
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
            tqdm.write(f"download {url}: {last_failure[url]}", file=sys.stderr)
            if permanent:
                break
    kept = f" The partial download {part} is kept and will be resumed." if part.is_file() else ""
    raise DataError(
        f"Could not download BUSI from any of the {len(urls)} URL(s) in download.urls (params.yaml):\n"
        + "".join(f"  {url}: {failure}\n" for url, failure in last_failure.items())
        + f"Without network access, or to use a copy you have, set {SOURCE_ENV} to a local zip, tar or tar.gz of "
        f"BUSI or to the extracted {DATASET_DIR} folder (e.g. `{SOURCE_ENV}=/path/to/Dataset_BUSI_with_GT.zip "
        f"dvc repro`), or put the archive at {dest}.{kept}"
    )


def resolve_source(config: DownloadConfig, backoff_s: float = BACKOFF_S) -> Path:
    """The local copy named by BUSI_SOURCE, else the archive from download.urls (downloaded once)."""
    local = os.environ.get(SOURCE_ENV)
    if local:
        return Path(local).expanduser()
    return fetch(
        config.urls, DOWNLOAD_PATH, config.sha256, timeout_s=config.timeout_s, retries=config.retries,
        backoff_s=backoff_s,
    )  # fmt: skip


# --- install ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One entry of an archive, or one file below a source folder."""

    name: str  # as stored: the archive's member name, or the path relative to the folder's parent
    size: int  # bytes, as the archive declares them
    kind: str  # file, dir, symlink, hardlink or other (device, fifo)
    ref: Any  # what the opener needs: a ZipInfo, TarInfo or Path


Opener = Callable[[Member], IO[bytes]]


def _kind(mode: int) -> str:
    """A member's kind from its Unix mode bits (0, as zips made on Windows store them, is a file)."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_IFMT(mode) in (0, stat.S_IFREG) else "other"


def _zip_members(zf: zipfile.ZipFile) -> list[Member]:
    return [
        Member(i.filename, i.file_size, "dir" if i.is_dir() else _kind(i.external_attr >> 16), i) for i in zf.infolist()
    ]


def _tar_members(tf: tarfile.TarFile) -> list[Member]:
    def kind(m: tarfile.TarInfo) -> str:
        if m.issym():
            return "symlink"
        if m.islnk():
            return "hardlink"
        return "dir" if m.isdir() else "file" if m.isfile() else "other"

    return [Member(m.name, m.size, kind(m), m) for m in tf.getmembers()]


def _folder_members(root: Path) -> list[Member]:
    """Everything below root, links included as links (os.walk does not enter a linked folder)."""
    members = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # walk in a fixed order, so the first refused file is always the same
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            info = path.lstat()
            members.append(Member(path.relative_to(root.parent).as_posix(), info.st_size, _kind(info.st_mode), path))
    return members


def _parts(name: str) -> tuple[str, ...]:
    return PurePosixPath(name.replace("\\", "/")).parts


def _check_member(source: Path, member: Member, what: str, max_member_mb: float) -> None:
    """Raise DataError naming source and member if the member could write outside the target or is too large."""
    name = member.name.replace("\\", "/")
    resize = ""
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
        resize = ", or raise download.max_member_mb in params.yaml if you trust this copy"
    else:
        return
    raise DataError(
        f"{source}: {what} {member.name!r} {problem}; refused, nothing was extracted. Use the official BUSI "
        f"archive or another trusted copy{resize}."
    )


def _one_root(source: Path, roots: set[tuple[str, ...]]) -> tuple[str, ...]:
    """The one Dataset_BUSI_with_GT folder of a source, as path parts; an error for none or several."""
    if not roots:
        raise DataError(
            f"{source}: no {DATASET_DIR} folder at its top level or one level below. Point {SOURCE_ENV} at a "
            f"BUSI archive or at the extracted {DATASET_DIR} folder."
        )
    if len(roots) > 1:
        listed = ", ".join("/".join(r) for r in sorted(roots))
        raise DataError(f"{source}: {len(roots)} {DATASET_DIR} folders ({listed}); use a copy with exactly one.")
    return roots.pop()


def _archive_root(source: Path, members: list[Member]) -> tuple[str, ...]:
    """Dataset_BUSI_with_GT/ at the top, or one folder down as some mirrors pack it; macOS's copies skipped."""
    roots = set()
    for member in members:
        parts = _parts(member.name)
        for depth in (0, 1):
            if len(parts) > depth + 1 and parts[depth] == DATASET_DIR and parts[0] != "__MACOSX":
                roots.add(parts[: depth + 1])
    return _one_root(source, roots)


def _folder_root(source: Path) -> Path:
    """The Dataset_BUSI_with_GT folder: source itself, or inside it, or one folder further down."""
    if source.name == DATASET_DIR:
        return source
    found = [p for p in [source / DATASET_DIR, *source.glob(f"*/{DATASET_DIR}")] if p.is_dir()]
    roots = {p.relative_to(source).parts for p in found}
    return source.joinpath(*_one_root(source, roots))


def _dataset_relpath(parts: tuple[str, ...], root: tuple[str, ...]) -> PurePosixPath | None:
    """Path below the root for a member that is data (<class>/<name>.png), else None."""
    if parts[: len(root)] != root:
        return None
    rel = parts[len(root) :]
    # Only <class>/<file>.png is data; skip folders, notes, thumbnails and dot files.
    if len(rel) != 2 or rel[0] not in CLASSES or not rel[1].lower().endswith(".png") or rel[1].startswith("."):
        return None
    return PurePosixPath(*rel)


@contextlib.contextmanager
def _open_source(source: Path) -> Iterator[tuple[list[Member], tuple[str, ...] | None, Opener, str]]:
    """Yield a source's members, its root (None: find it among the members), an opener, a word for a member."""
    if source.is_dir():
        root = _folder_root(source)
        yield _folder_members(root), (root.name,), lambda m: m.ref.open("rb"), "file"
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            members = _zip_members(zf)
            yield members, None, lambda m: zf.open(m.ref), "member"
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as tf:  # any compression tarfile knows: gz, bz2, xz
            members = _tar_members(tf)
            yield members, None, lambda m: tf.extractfile(m.ref), "member"
    else:
        raise DataError(f"{source}: neither a zip or tar archive nor a folder")


def install_dataset(
    source: Path, target: Path, manifest: list[ManifestEntry], max_member_mb: float = DownloadConfig.max_member_mb
) -> int:
    """Copy the BUSI images and masks from a zip, tar or folder into target, verified; returns files copied.

    Every member is checked first, so a refused source leaves nothing behind. Files are written only to
    target/<class>/<name>.png, paths built here from the member name's last two parts, never the name
    itself; a zip or tar member yields at most its declared size (zipfile stops there and checks the CRC,
    tarfile reads exactly that many bytes), so max_member_mb also bounds a compression bomb.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(
            f"{source}: not found ({SOURCE_ENV} must name a BUSI zip or tar, or an extracted {DATASET_DIR} folder)"
        )
    try:
        with _open_source(source) as (members, root, opener, what):
            for member in members:
                _check_member(source, member, what, max_member_mb)
            root = root or _archive_root(source, members)
            relpaths = [_dataset_relpath(_parts(m.name), root) if m.kind == "file" else None for m in members]
            chosen = [(m, rel) for m, rel in zip(members, relpaths) if rel is not None]
            with atomic_dir(target) as tmp:
                for member, rel in tqdm(chosen, desc=f"extract {source.name}", unit="file"):
                    dest = tmp / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with opener(member) as src, dest.open("wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                verify(tmp, manifest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError(
            f"{source}: extracting into {target} failed ({err}). If the archive is damaged, download it again or "
            "use another copy."
        ) from err
    return len(chosen)


def verify(folder: Path, manifest: list[ManifestEntry]) -> None:
    """Raise DataError naming every image that is missing or differs from the manifest."""
    missing, altered = [], []
    for entry in tqdm(manifest, desc="verify", unit="image"):
        path = folder / entry.file
        if not path.is_file():
            missing.append(entry.file)
        elif sha256_file(path) != entry.sha256:
            altered.append(entry.file)
    if missing or altered:
        lines = [f"missing: {f}" for f in missing[:20]] + [f"altered (sha256 differs): {f}" for f in altered[:20]]
        raise DataError(
            f"The data does not match the manifest: {len(missing)} missing and {len(altered)} altered of "
            f"{len(manifest)} images.\n  " + "\n  ".join(lines) + "\nUse an unmodified copy of the BUSI data set."
        )
