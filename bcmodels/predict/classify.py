"""predict's models and the classification: checkpoints loaded as models, inputs decoded once per distinct
preprocessing and run through every model, Grad-CAM maps of the predicted class handed to the caller, with
their energy share inside the lesion where the input has mask files (--masks).

Images are decoded in chunks of IMAGES_PER_CHUNK by a pool of threads (Pillow releases the GIL while
decoding and resizing; threads, unlike preprocess's spawned processes, need no second import of torch);
each model then runs over a chunk in batches.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bcmodels.config.schema import NAME
from bcmodels.errors import ConfigError, DataError, WeightsError
from bcmodels.evaluation.regions import cam_share
from bcmodels.formats.checkpoint import Checkpoint, load_checkpoint
from bcmodels.io.images import REMEDY, mask_square, to_square
from bcmodels.io.progress import progress
from bcmodels.models.gradcam import CamLayer, explain, target_layer
from bcmodels.models.inference import predict_logits
from bcmodels.models.registry import restore
from bcmodels.predict.inputs import Source

IMAGES_PER_CHUNK = 256  # images decoded and held in memory at once (256 x 224 x 224 x 3 bytes = 39 MB)
DEFAULT_CHECKPOINTS = Path("data/checkpoints")

Spec = tuple[str, int, int]  # geometry, image_size, resize_short_side


# ---------------------------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    label: str  # its name in the output
    path: Path
    checkpoint: Checkpoint
    model: nn.Module  # in eval mode, on the device
    layer: CamLayer | None = None  # Grad-CAM's layer, with --explain

    @property
    def spec(self) -> Spec:
        c = self.checkpoint
        return (c.geometry, c.image_size, c.resize_short_side)

    def describe(self) -> str:
        c = self.checkpoint
        geometry = f"{c.geometry} {c.image_size} px" + (
            f" from short side {c.resize_short_side}" if c.geometry == "study" else ""
        )
        cam = f", Grad-CAM on {self.layer.name}" if self.layer else ""
        return f"{self.label}: {self.path} ({c.arch}, {geometry}, best epoch {c.best_epoch}{cam})"


def _unique_label(stem: str, path: Path, taken: set[str]) -> str:
    label = stem if stem not in taken else f"{path.parent.name}_{stem}"
    n = 2
    while label in taken:
        label, n = f"{stem}_{n}", n + 1
    return label


def load_models(
    names: Sequence[str],
    files: Sequence[Path],
    *,
    checkpoints: Path = DEFAULT_CHECKPOINTS,
    device: torch.device,
    explain_layers: bool = False,
) -> list[LoadedModel]:
    """The models of --model NAME (checkpoints/NAME.pt) and --checkpoint FILE, in that order; any problem with
    one (missing, foreign, another version, not fitting its architecture) is an error naming the file."""
    wanted: list[tuple[str, Path, str]] = []
    for name in names:
        if not NAME.fullmatch(name):
            raise ConfigError(f"--model {name!r}: not a model name (a letter, then letters, digits or _)")
        wanted.append((name, checkpoints / f"{name}.pt", f"dvc repro train@{name}"))
    for file in files:
        if not file.is_file():
            raise DataError(f"{file}: checkpoint not found (--checkpoint)")
        wanted.append((file.stem, file, "dvc repro"))
    loaded: list[LoadedModel] = []
    seen: set[Path] = set()
    for stem, path, made_by in wanted:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        checkpoint = load_checkpoint(path, made_by)
        try:
            model = restore(checkpoint)
        except (WeightsError, ConfigError) as err:
            raise WeightsError(f"{path}: {err}; make it again with `{made_by}`") from None
        model.to(device)
        label = _unique_label(stem, path, {m.label for m in loaded})
        layer = None
        if explain_layers:
            layer = target_layer(
                model, num_classes=len(checkpoint.classes), image_size=checkpoint.image_size, arch=checkpoint.arch
            )
        loaded.append(LoadedModel(label, path, checkpoint, model, layer))
    return loaded


# ---------------------------------------------------------------------------------------------- prediction


@dataclass
class Row:
    name: str
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # model label -> (K,) probabilities
    heatmaps: dict[str, str] = field(default_factory=dict)  # model label -> PNG path relative to --out
    lesion_share: dict[str, float] = field(default_factory=dict)  # model label -> Grad-CAM share in the lesion
    error: str | None = None


@dataclass(frozen=True)
class HeatMap:
    """One Grad-CAM result: which row and model, the model's input, the map and the probabilities."""

    index: int  # the row
    name: str  # the row's input
    model: LoadedModel
    image: np.ndarray  # (S, S, 3) uint8, as the model saw it
    cam: np.ndarray  # (S, S) in [0, 1]
    probs: np.ndarray  # (K,)
    mask: np.ndarray | None = None  # (S, S) bool, the lesion, where the input has mask files
    lesion_share: float | None = None  # the map's energy share inside it (NaN: no lesion, or an empty map)


HeatMapWriter = Callable[[HeatMap], str]  # writes a heat map; returns its path relative to --out


def _reason(err: DataError, name: str) -> str:
    """The refusal of a DataError without the input's name (the row has it) and preprocess's remedy (it
    speaks of restoring BUSI's download, which does not apply to images given here)."""
    text = str(err).removeprefix(f"{name}: ").removesuffix(f" {REMEDY}.")
    return text.rstrip(".")


@dataclass(frozen=True)
class Prepared:
    """One source as the models see it, for each preprocessing."""

    images: dict[Spec, np.ndarray]  # (S, S, 3) uint8
    masks: dict[Spec, np.ndarray]  # (S, S) bool, its mask files joined and made square alike; empty without


def _prepare(source: Source, specs: Sequence[Spec]) -> Prepared | str:
    """The source's model inputs for each preprocessing, with its lesion mask, or why it cannot be read (a mask
    that cannot be read, or does not fit its image, fails the source, naming the mask file)."""
    try:
        image = source.read()  # type: ignore[misc]
        masks = {spec: mask_square(source.masks, image.size, *spec) > 0 for spec in specs} if source.masks else {}
    except DataError as err:
        return _reason(err, source.name)
    return Prepared({spec: np.asarray(to_square(image, *spec), dtype=np.uint8) for spec in specs}, masks)


def predict_sources(
    sources: Sequence[Source],
    models: Sequence[LoadedModel],
    *,
    device: torch.device,
    batch_size: int = 32,
    workers: int = 0,
    report: Callable[[str], None] = lambda line: None,
    heatmaps: HeatMapWriter | None = None,
) -> list[Row]:
    """A row per source: every model's probabilities, or why the source could not be read (also passed to
    report as one line). With heatmaps (and models loaded with explain_layers) each image's Grad-CAM map of
    its predicted class goes to heatmaps as it is computed."""
    rows = [Row(s.name, error=s.error) for s in sources]
    for row in rows:
        if row.error:
            report(f"{row.name}: {row.error}")
    specs = list(dict.fromkeys(m.spec for m in models))
    readable = [i for i, s in enumerate(sources) if s.error is None]
    threads = max(1, min(workers or os.cpu_count() or 1, len(readable)))
    prepare = functools.partial(_prepare, specs=specs)
    with ThreadPoolExecutor(threads) as pool, progress(total=len(readable), desc="predict", unit="image") as bar:
        for start in range(0, len(readable), IMAGES_PER_CHUNK):
            chunk = readable[start : start + IMAGES_PER_CHUNK]
            inputs: list[tuple[int, Prepared]] = []
            for i, prepared in zip(chunk, pool.map(prepare, [sources[i] for i in chunk])):
                if isinstance(prepared, str):
                    rows[i].error = prepared
                    report(f"{rows[i].name}: {prepared}")
                else:
                    inputs.append((i, prepared))
            if inputs:
                for m in models:
                    _run_model(m, inputs, rows, device, batch_size, heatmaps)
            bar.update(len(chunk))
    return rows


def _run_model(
    m: LoadedModel,
    inputs: list[tuple[int, Prepared]],
    rows: list[Row],
    device: torch.device,
    batch_size: int,
    heatmaps: HeatMapWriter | None,
) -> None:
    c = m.checkpoint
    arrays = np.stack([prepared.images[m.spec] for _, prepared in inputs])
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).to(device)
    logits = predict_logits(m.model, images, batch_size=batch_size, mean=c.mean, std=c.std)
    probs = torch.softmax(logits.double(), dim=1).numpy()
    for (i, _), p in zip(inputs, probs):
        rows[i].probs[m.label] = p
    if heatmaps is None or m.layer is None:
        return
    targets = torch.from_numpy(probs.argmax(axis=1))
    maps = explain(m.model, images, targets, m.layer, batch_size=batch_size, mean=c.mean, std=c.std).numpy()
    for (i, prepared), image, cam, p in zip(inputs, arrays, maps, probs):
        mask = prepared.masks.get(m.spec)
        share = None if mask is None else float(cam_share(cam[None], mask[None])[0])
        if share is not None:
            rows[i].lesion_share[m.label] = share
        rows[i].heatmaps[m.label] = heatmaps(HeatMap(i, rows[i].name, m, image, cam, p, mask, share))
