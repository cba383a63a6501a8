"""Get BUSI into data/raw/Dataset_BUSI_with_GT/, from the official URL or a local copy, verified file by file."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from bcmodels.config import CLASSES, DownloadConfig
from bcmodels.errors import DataError
from bcmodels.fileio import atomic_dir, atomic_path

DATASET_DIR = "Dataset_BUSI_with_GT"
SOURCE_ENV = "BUSI_SOURCE"  # a local zip or extracted folder, used instead of the URL
DOWNLOAD_PATH = Path("data/downloads/Dataset_BUSI.zip")  # the official zip is kept here once fetched
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


def fetch(url: str, dest: Path, sha256: str, timeout_s: float) -> Path:
    """Download url to dest with a progress bar; dest appears only once its sha256 matches."""
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, atomic_path(dest) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            digest = hashlib.sha256()
            with tmp.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if digest.hexdigest() != sha256:
                raise DataError(
                    f"{url}: sha256 {digest.hexdigest()} does not match download.sha256 {sha256}. "
                    "The file was not kept; the host may have served an error page or a changed archive."
                )
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise DataError(
            f"Could not download {url}: {err}.\n"
            f"Without network access, use a local copy: set {SOURCE_ENV} to the BUSI zip or to the extracted "
            f"{DATASET_DIR} folder (e.g. `{SOURCE_ENV}=/path/to/Dataset_BUSI_with_GT.zip dvc repro`), "
            f"or put the official zip at {DOWNLOAD_PATH}."
        ) from err
    return dest


def _dataset_relpath(name: str) -> PurePosixPath | None:
    """Path below Dataset_BUSI_with_GT/ for an archive member or file, or None if outside it."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if DATASET_DIR not in parts:
        return None
    rel = parts[parts.index(DATASET_DIR) + 1 :]
    # Only <class>/<file>.png is data; skip folders, __MACOSX copies and anything else.
    if len(rel) != 2 or rel[0] not in CLASSES or not rel[1].lower().endswith(".png"):
        return None
    if any(p in ("..", "") for p in rel) or rel[1].startswith("."):
        return None
    return PurePosixPath(*rel)


def _copy_from_zip(archive: Path, target: Path) -> int:
    count = 0
    with zipfile.ZipFile(archive) as zf:
        members = [(m, _dataset_relpath(m.filename)) for m in zf.infolist() if not m.is_dir()]
        members = [(m, rel) for m, rel in members if rel is not None]
        for member, rel in tqdm(members, desc=f"extract {archive.name}", unit="file"):
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            count += 1
    return count


def _copy_from_folder(folder: Path, target: Path) -> int:
    files = [(p, _dataset_relpath(str(p.relative_to(folder.parent)))) for p in sorted(folder.rglob("*.png"))]
    files = [(p, rel) for p, rel in files if rel is not None]
    for path, rel in tqdm(files, desc=f"copy {folder.name}", unit="file"):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    return len(files)


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


def install_dataset(source: Path, target: Path, manifest: list[ManifestEntry]) -> int:
    """Copy the BUSI images and masks from a zip or folder into target, verified; returns files copied."""
    if not source.exists():
        raise DataError(f"{source}: not found ({SOURCE_ENV} must name a BUSI zip or an extracted {DATASET_DIR} folder)")
    with atomic_dir(target) as tmp:
        if source.is_dir():
            folders = [source] if source.name == DATASET_DIR else sorted(source.rglob(DATASET_DIR))
            if not folders:
                raise DataError(f"{source}: no {DATASET_DIR} folder inside; point {SOURCE_ENV} at it or at the zip")
            count = _copy_from_folder(folders[0], tmp)
        elif zipfile.is_zipfile(source):
            count = _copy_from_zip(source, tmp)
        else:
            raise DataError(f"{source}: neither a zip archive nor a folder")
        verify(tmp, manifest)
    return count


def resolve_source(config: DownloadConfig) -> Path:
    """The local copy named by BUSI_SOURCE, else the official zip (downloaded once)."""
    local = os.environ.get(SOURCE_ENV)
    if local:
        return Path(local).expanduser()
    return fetch(config.url, DOWNLOAD_PATH, config.sha256, config.timeout_s)
