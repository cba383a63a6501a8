"""data/checkpoints/<model>.pt (and per repeat or fold): a trained model with everything needed to use it.

Besides the weights it records how its input was made (geometry, size, normalisation) so that evaluation
and prediction preprocess exactly as training did, the settings it was trained with, and a format version.
Loaded with torch.load(weights_only=True): a file that holds anything but tensors and plain data is refused.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bcmodels.config.schema import GEOMETRIES, PreprocessConfig
from bcmodels.errors import DataError, WeightsError, short
from bcmodels.io.files import atomic_path

FORMAT = "bcmodels checkpoint"
VERSION = 2
# The recorded input size is refused outside the ranges params.yaml allows for it: a damaged or foreign value
# would otherwise fail (or exhaust memory) far from the file that holds it.
SIZE_RANGES = {
    f.name: f.metadata["range"]
    for f in dataclasses.fields(PreprocessConfig)
    if f.name in ("image_size", "resize_short_side")
}


@dataclass(frozen=True)
class Checkpoint:
    model: str  # the model's section name in params.yaml
    arch: str
    classes: tuple[str, ...]
    geometry: str  # how preprocess squared the image (bcmodels.io.images.to_square)
    image_size: int
    resize_short_side: int
    mean: tuple[float, float, float]  # input normalisation after scaling to [0, 1]
    std: tuple[float, float, float]
    model_config: dict[str, Any]  # the model's section as trained
    train_config: dict[str, Any]  # the shared recipe as trained (seed included)
    best_epoch: int
    epochs_run: int
    state_dict: dict[str, torch.Tensor]


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    content = {"format": FORMAT, "version": VERSION, **dataclasses.asdict(checkpoint)}
    content["state_dict"] = {k: v.detach().cpu() for k, v in checkpoint.state_dict.items()}
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(content, f)  # to a file object: no temporary name inside the archive


def _refuse(path: Path, problem: str, made_by: str) -> WeightsError:
    return WeightsError(f"{path}: {problem}. Make it again with `{made_by}`")


def _valid(content: dict) -> str | None:
    """What is wrong with a loaded checkpoint's content, or None."""
    state = content.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "its state_dict is not a mapping of tensors"
    if not isinstance(content.get("geometry"), str) or content["geometry"] not in GEOMETRIES:
        return f"unknown geometry {short(content.get('geometry'))}"
    for key in ("mean", "std"):
        values = content.get(key)
        if (
            not isinstance(values, (list, tuple))
            or len(values) != 3
            or not all(isinstance(v, float) and math.isfinite(v) for v in values)
        ):
            return f"{key} is not three finite numbers"
    if not all(isinstance(v, float) and v > 0 for v in content["std"]):
        return "std is not positive"
    classes = content.get("classes")
    if not isinstance(classes, (list, tuple)) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        return "classes is not a list of names"
    for key in ("image_size", "resize_short_side", "best_epoch", "epochs_run"):
        if not isinstance(content.get(key), int) or isinstance(content.get(key), bool):
            return f"{key} is not an integer"
    for key, (low, high, low_open) in SIZE_RANGES.items():
        if not (low < content[key] <= high if low_open else low <= content[key] <= high):
            return f"{key} {short(content[key])} is outside {'(' if low_open else '['}{low}, {high}]"
    if content["resize_short_side"] < content["image_size"]:
        return f"resize_short_side {content['resize_short_side']} is smaller than image_size {content['image_size']}"
    return None


def load_checkpoint(path: Path, made_by: str) -> Checkpoint:
    """The checkpoint at path; a missing, foreign, damaged or older-version file is an error saying what to run."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found; `{made_by}` makes it")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as err:
        raise _refuse(path, f"not a loadable checkpoint ({str(err).splitlines()[0][:200]})", made_by) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise _refuse(path, "not a checkpoint of this project", made_by)
    if content.get("version") != VERSION:
        raise _refuse(path, f"checkpoint format version {content.get('version')!r}; this code reads {VERSION}", made_by)
    fields = [f.name for f in dataclasses.fields(Checkpoint)]
    missing = [f for f in fields if f not in content]
    problem = f"no {missing[0]!r}" if missing else _valid(content)
    if problem:
        raise _refuse(path, problem, made_by)
    values = {name: content[name] for name in fields}
    for key in ("classes", "mean", "std"):
        values[key] = tuple(values[key])
    return Checkpoint(**values)
