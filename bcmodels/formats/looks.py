"""crossval/looks/fold<k>-seed<s>/<model>.csv and <model>-lowest.npz: what one benchmark checkpoint does on its
fold's test images (written by the looks stage, pooled by the shortcuts stage; docs/shortcuts.md).

The CSV has one row per test image, in file order: the class called on the original, with the marks removed and
with the lesion removed, and where the Grad-CAM map of the class called on the original lies: its energy share
inside the lesion, inside the grown lesion and on the background (empty where undefined: no lesion in the input,
or a map that is zero everywhere, which empty_map says). The npz holds the maps (uint8, 0-255 for 0-1) of the run's
crossval.shortcuts.sheet_per_model lesion images of lowest share inside the lesion, with their files, for the
contact sheet: small enough to keep in git, so that the summary never needs the checkpoints again.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bcmodels.errors import DataError
from bcmodels.io.files import atomic_path, raise_missing, read_csv, write_csv

CALLS = ("predicted", "predicted_mark_free", "predicted_lesion_free")
SHARES = ("cam_in_lesion", "cam_in_grown", "cam_on_background")
COLUMNS = ("file", *CALLS, *SHARES, "empty_map")


@dataclass(frozen=True)
class RunLooks:
    files: list[str]  # the fold's test images, in file order
    calls: dict[str, np.ndarray]  # CALLS -> (N,) class index
    shares: dict[str, np.ndarray]  # SHARES -> (N,) float, NaN where undefined
    empty_map: np.ndarray  # (N,) bool
    lowest_files: list[str]  # the images of the contact sheet, lowest share first
    lowest_maps: np.ndarray  # (K, S, S) uint8, their maps


def _number(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.6f}"


def write_looks(path: Path, lowest: Path, looks: RunLooks, classes: tuple[str, ...]) -> None:
    """The npz first, then the CSV; each is written whole or not at all."""
    maps = looks.lowest_maps
    if maps.dtype != np.uint8 or maps.ndim != 3 or len(maps) != len(looks.lowest_files):
        raise ValueError(f"expected {len(looks.lowest_files)} uint8 maps, K x S x S, got {maps.dtype} {maps.shape}")
    with atomic_path(lowest) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, files=np.array(looks.lowest_files, dtype=str), maps=maps)
    rows = (
        [file, *(classes[looks.calls[c][i]] for c in CALLS), *(_number(looks.shares[s][i]) for s in SHARES),
         int(looks.empty_map[i])]
        for i, file in enumerate(looks.files)
    )  # fmt: skip
    write_csv(path, COLUMNS, rows)


def read_looks(path: Path, lowest: Path, classes: tuple[str, ...], made_by: str) -> RunLooks:
    """Both files of one run; a missing or damaged one names the stage that writes it."""
    rows = read_csv(path, COLUMNS, made_by)
    try:
        calls = {c: np.array([classes.index(r[c]) for r in rows], dtype=np.int64) for c in CALLS}
        shares = {s: np.array([float(r[s]) if r[s] else np.nan for r in rows]) for s in SHARES}
        empty = np.array([{"0": False, "1": True}[r["empty_map"]] for r in rows], dtype=bool)
    except (ValueError, KeyError) as err:
        raise DataError(f"{path}: not a looks file of this project ({err}); rerun `{made_by}`") from None
    if not lowest.is_file():
        raise_missing(lowest, made_by)
    try:
        with np.load(lowest, allow_pickle=False) as npz:
            lowest_files, maps = [str(f) for f in npz["files"]], npz["maps"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{lowest}: unreadable ({str(err)[:200]}); rerun `{made_by}`") from None
    files = [r["file"] for r in rows]
    if maps.dtype != np.uint8 or maps.ndim != 3 or len(maps) != len(lowest_files) or set(lowest_files) - set(files):
        raise DataError(f"{lowest}: does not belong with {path}; rerun `{made_by}`")
    return RunLooks(files, calls, shares, empty, lowest_files, maps)
