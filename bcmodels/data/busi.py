"""Get BUSI into data/raw/Dataset_BUSI_with_GT/ from download.urls or a local copy, verified file by file.

Three steps, each guarding the next: fetch (bcmodels.io.fetch: mirrors, retries, a resumable download, a size
cap, the sha256 checked before use), install (every member of the source checked by bcmodels.io.archives'
rules before anything is written, then exactly the manifest's images and lesion masks copied into a folder that
replaces the target only when complete) and verify (every file of the manifest there with its sha256). What is refused,
the limits, and the order in which a source's type is read from its content are in docs/input-handling.md;
the code follows it rule for rule.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from bcmodels.config.schema import CLASSES, DownloadConfig
from bcmodels.errors import DataError, describe_os_error
from bcmodels.formats.manifest import ManifestEntry
from bcmodels.io.archives import (
    DAMAGED,
    Limit,
    Limits,
    Member,
    Opener,
    Refused,
    archive_members,
    copy_bounded,
    folder_members,
    listed,
    member_refusal,
    open_regular,
    source_mode,
    unreadable_folder,
)
from bcmodels.io.fetch import BACKOFF_S, BYTES_PER_MB, FetchKeys, fetch, sha256_file
from bcmodels.io.files import atomic_dir
from bcmodels.io.progress import progress

DATASET_DIR = "Dataset_BUSI_with_GT"
SOURCE_ENV = "BUSI_SOURCE"  # a local zip, tar or extracted folder, used instead of download.urls
# The archive is kept here once its sha256 matches; zip or tar, its format is read from its content.
DOWNLOAD_PATH = Path("data/downloads/Dataset_BUSI.zip")
KEYS = FetchKeys(
    urls="download.urls", sha256="download.sha256", size="download.max_archive_mb", timeout="download.timeout_s"
)
SOURCE_HINT = f"{SOURCE_ENV} must name a BUSI zip or tar, or an extracted {DATASET_DIR} folder"
TRUSTED = "Use the official BUSI archive or another trusted copy"
EXTRACTED = f"set {SOURCE_ENV} to the extracted {DATASET_DIR} folder"  # what to do after extracting it elsewhere


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
        max_mb=config.max_archive_mb,
        what="BUSI",
        keys=KEYS,
        offline_hint=hint,
    )


# --- the rules, with the settings that set their limits -----------------------------------------------------


def _limits(config: DownloadConfig) -> Limits:
    return Limits(
        members=Limit(config.max_members, "download.max_members", f"{config.max_members:,}"),
        member_bytes=Limit(
            config.max_member_mb * BYTES_PER_MB, "download.max_member_mb", f"{config.max_member_mb:g} MB"
        ),
        total_bytes=Limit(config.max_total_mb * BYTES_PER_MB, "download.max_total_mb", f"{config.max_total_mb:g} MB"),
    )


def _refused(source: Path, problem: str, advice: str = TRUSTED, setting: str = "") -> DataError:
    """The error for a source refused before anything was written."""
    raise_it = f", or raise {setting} in params.yaml if you trust this copy" if setting else ""
    return DataError(f"{source}: {problem}; refused, nothing was extracted. {advice}{raise_it}.")


def _checked(source: Path, members: Iterable[Member], what: str, config: DownloadConfig) -> list[Member]:
    """The members, each checked as it is listed (bcmodels.io.archives.listed); the first refusal refuses the
    whole source, naming the member and what to do."""
    limits = _limits(config)

    def check(member: Member) -> None:
        refusal = member_refusal(member, limits)
        if refusal is None:
            return
        advice, u = TRUSTED, refusal.unreadable
        if u:
            advice = f"Extract the archive with {u.extract_with} and {EXTRACTED}"
            advice += ", or use the official BUSI archive" if u.other_copy else ""
        raise _refused(source, f"{what} {member.name!r} {refusal.problem}", advice, refusal.limit)

    try:
        return listed(members, limits, what, check)
    except Refused as err:
        raise _refused(source, err.problem, setting=err.limit) from None


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
        raise unreadable_folder(source, err) from None


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
    """The member to install for each manifest file (image or mask) the source has (the last one, as tar and
    unzip do). Notes, thumbnails and files the manifest does not list are not installed.
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
    if stat.S_ISDIR(source_mode(source, SOURCE_HINT)):
        root = _folder_root(source)
        yield folder_members(source, root), (root.name,), lambda m: open_regular(m.ref), "file"
        return
    with archive_members(source, SOURCE_HINT) as (members, opener):
        yield members, None, opener, "member"


def _install_error(source: Path, target: Path, at: str, err: Exception) -> DataError:
    """The error for a failure while reading the source or writing the target, with advice for its cause."""
    if isinstance(err, OSError) and err.errno is not None:
        # The machine, not the archive: a full disk, a permission, a name too long for the file system.
        # io.files names the target of a refused write, which this message names already.
        if err.filename is not None and Path(os.fsdecode(err.filename)) == target:
            err = OSError(err.errno, err.strerror)
        return DataError(f"{source}: installing into {target} failed{at}: {describe_os_error(err)}")
    return DataError(
        f"{source}: the archive is damaged or truncated ({err}){at}. Download it again or use another copy."
    )


def install_dataset(source: Path, target: Path, manifest: list[ManifestEntry], config: DownloadConfig) -> int:
    """Install the manifest's files (images and their masks) from a zip, tar or folder into target, verified;
    returns the count.

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
                        copy_bounded(src, out, member.size)
                at = ""
                verify(tmp, manifest, source)
    except (*DAMAGED, OSError) as err:
        raise _install_error(source, target, at, err) from err
    return len(chosen)


def verify(folder: Path, manifest: list[ManifestEntry], source: Path | None = None) -> None:
    """Raise DataError naming every file that is missing or differs from the manifest, and the source they
    came from (default: folder)."""
    missing, altered = [], []
    for entry in progress(manifest, desc="verify", unit="file"):
        path = folder / entry.file
        if not path.is_file():
            missing.append(entry.file)
        elif sha256_file(path) != entry.sha256:
            altered.append(entry.file)
    if missing or altered:
        lines = [f"missing: {f}" for f in missing[:20]] + [f"altered (sha256 differs): {f}" for f in altered[:20]]
        raise DataError(
            f"{source or folder}: the data does not match the manifest: {len(missing)} missing and {len(altered)} "
            f"altered of {len(manifest)} files.\n  "
            + "\n  ".join(lines)
            + "\nUse an unmodified copy of the BUSI data set."
        )
