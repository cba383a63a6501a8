"""data/busi_manifest.tsv: every file of the data set with its class, kind and sha256 (committed, read by
download, preprocess, the audit and the split). Kinds: image, and mask: a lesion mask drawn by the data set's
radiologists, <image name>_mask.png, with _mask_1.png and _mask_2.png where an image has more than one lesion.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError, clip
from bcmodels.io.files import csv_text, write_text

COLUMNS = ("file", "class", "kind", "sha256")
KINDS = ("image", "mask")
# <class>/<name>.png with a plain name: no folder, no "..", no leading dot, nothing a file system treats specially.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _().,+-]{0,150}\.png")
MASK_SUFFIX = re.compile(r"_mask(_[0-9]+)?\.png$")


@dataclass(frozen=True)
class ManifestEntry:
    file: str  # path inside Dataset_BUSI_with_GT/, e.g. "benign/benign (1).png"
    label: str
    sha256: str
    kind: str = "image"


def mask_image(mask_file: str) -> str:
    """The image a mask file belongs to: "benign/benign (4)_mask_1.png" -> "benign/benign (4).png"."""
    return MASK_SUFFIX.sub(".png", mask_file)


def _check(path: Path, line: int, entry: ManifestEntry) -> None:
    label, _, name = entry.file.partition("/")
    problem = None
    if entry.label not in CLASSES:
        problem = f"class {clip(repr(entry.label))}; classes are {', '.join(CLASSES)}"
    elif label != entry.label or not FILE_NAME.fullmatch(name):
        problem = f"file {clip(repr(entry.file))} is not <class>/<name>.png with a plain file name"
    elif entry.kind not in KINDS:
        problem = f"kind {clip(repr(entry.kind))}; kinds are {', '.join(KINDS)}"
    elif (entry.kind == "mask") != bool(MASK_SUFFIX.search(name)):
        problem = f"file {clip(repr(entry.file))}: a mask's name ends in _mask.png or _mask_<n>.png, an image's not"
    elif not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
        problem = "sha256 is not 64 lowercase hex digits"
    if problem:
        raise DataError(f"{path} line {line}: {problem}. Use the project's committed manifest.")


def read_manifest(path: str | Path, kinds: Sequence[str] = ("image",)) -> list[ManifestEntry]:
    """The manifest's entries of these kinds (images unless asked) in file order; every row checked, since file
    names become paths on disk, and every mask must belong to an image of the manifest."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (download.manifest in params.yaml)")
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DataError(f"{path}: expected tab-separated columns {', '.join(COLUMNS)}")
        entries = []
        for line, row in enumerate(reader, start=2):
            if None in row or None in row.values():
                raise DataError(f"{path} line {line}: expected exactly {len(COLUMNS)} columns")
            entry = ManifestEntry(row["file"], row["class"], row["sha256"], row["kind"])
            _check(path, line, entry)
            entries.append(entry)
    files = [e.file for e in entries]
    if not any(e.kind == "image" for e in entries) or len(set(files)) != len(files):
        raise DataError(f"{path}: no images, or a file listed twice")
    images = {e.file for e in entries if e.kind == "image"}
    orphans = [e.file for e in entries if e.kind == "mask" and mask_image(e.file) not in images]
    if orphans:
        raise DataError(f"{path}: the mask {clip(repr(orphans[0]))} belongs to no image of the manifest")
    return [e for e in entries if e.kind in kinds]


def masks_by_image(entries: Sequence[ManifestEntry]) -> dict[str, list[ManifestEntry]]:
    """image file -> its masks among entries, in file order (an image without a mask is absent)."""
    masks: dict[str, list[ManifestEntry]] = {}
    for entry in entries:
        if entry.kind == "mask":
            masks.setdefault(mask_image(entry.file), []).append(entry)
    return masks


def write_manifest(path: str | Path, entries: list[ManifestEntry]) -> None:
    write_text(path, csv_text(COLUMNS, ([e.file, e.label, e.kind, e.sha256] for e in entries), delimiter="\t"))
