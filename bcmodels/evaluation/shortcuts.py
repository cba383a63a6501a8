"""The shortcuts stage of the benchmark (crossval/dvc.yaml, docs/shortcuts.md): what the models look at.

For every model of crossval.models, fold and seed, the fold's checkpoint judges its own out-of-fold test images
(never one it trained on) in three versions from the edits stage: the original (data/processed), with the marks
removed (data/mark_free) and with the lesion removed (data/lesion_free). On the original, the Grad-CAM map of the
predicted class (models/gradcam.py) is measured against the lesion mask (data/masks, aligned pixel for pixel):
its energy share inside the lesion, sum(map * mask) / sum(map), and inside the mask grown by
crossval.shortcuts.grown_px; a uniform map would give the lesion's area share, the baseline reported beside it.
The same share on the background (`background`) tells whether a model reads the black outside the scan.
Pooling, intervals and the outputs: shortcuts_summary.py and shortcuts_figures.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from bcmodels.config.schema import CLASSES, Params
from bcmodels.data.edits import grow as grow_mask
from bcmodels.errors import DataError
from bcmodels.evaluation.shortcuts_figures import lowest_share_sheet, shortcuts_figure
from bcmodels.evaluation.shortcuts_summary import Images, Looks, summarize_shortcuts, write_image_table
from bcmodels.evaluation.stats import image_weights
from bcmodels.formats.checkpoint import Checkpoint, load_checkpoint
from bcmodels.formats.masks import read_masks
from bcmodels.formats.overlays import read_overlays
from bcmodels.formats.split import read_split
from bcmodels.formats.store import read_images, read_index
from bcmodels.io.files import write_json
from bcmodels.io.progress import progress
from bcmodels.models.gradcam import explain, target_layer
from bcmodels.models.inference import predict_logits
from bcmodels.models.registry import restore
from bcmodels.runtime import resolve_device

COMMAND = "dvc repro crossval/dvc.yaml"
OPERATOR_MARKS = ("calipers", "text", "colour")  # what a sonographer adds; the logo is the scanner's
WINDOW = 5  # background: dark over a whole window this wide, which speckle is not


def grow(masks: np.ndarray, px: int) -> np.ndarray:
    """(N, S, S) masks grown by px pixels in every direction (a disc, as the edits grow theirs), as bool."""
    return np.stack([grow_mask(m, px) for m in masks]) if len(masks) else masks.astype(bool)


def cam_share(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N,) share of each map's energy (N, S, S, non-negative) inside its mask: NaN where the mask is empty or
    the map is zero everywhere (nothing to share)."""
    total = cams.reshape(len(cams), -1).sum(axis=1, dtype=np.float64)
    inside = (cams * masks).reshape(len(cams), -1).sum(axis=1, dtype=np.float64)
    defined = (total > 0) & masks.reshape(len(masks), -1).any(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, inside / total, np.nan)


def background(images: np.ndarray, max_grey: int) -> np.ndarray:
    """(N, S, S) bool: the black outside the scan and below its depth. A pixel is dark at or below max_grey (the
    largest of R, G, B); background is every dark pixel of a WINDOW x WINDOW window dark all over (a morphological
    opening: a dark tissue's speckle rises above max_grey somewhere in any such window), connected to the image's
    border (a dark cyst inside the tissue is not background)."""
    out = np.zeros(images.shape[:3], dtype=bool)
    window = np.ones((WINDOW, WINDOW), np.uint8)
    for i, image in enumerate(images):
        dark = cv2.morphologyEx((image.max(axis=2) <= max_grey).astype(np.uint8), cv2.MORPH_OPEN, window)
        _, labels = cv2.connectedComponents(dark, connectivity=8)
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        out[i] = np.isin(labels, edge[edge > 0])
    return out


@dataclass(frozen=True)
class ShortcutFiles:
    """What the shortcuts stage reads and writes (paths from crossval/dvc.yaml)."""

    store: Path
    mark_free: Path
    lesion_free: Path
    masks: Path
    overlays: Path
    runs: Path  # fold<k>/split.csv and fold<k>/seed<s>/<model>.pt below it
    summary: Path
    images: Path
    figure: Path
    sheet: Path


@dataclass(frozen=True)
class Stores:
    """The three versions of every image and the lesion masks, in store order, with the tested images' rows."""

    files: list[str]
    labels: np.ndarray
    original: np.ndarray
    mark_free: np.ndarray
    lesion_free: np.ndarray
    masks: np.ndarray


def read_stores(files: ShortcutFiles) -> Stores:
    """The image store, its two edits and the masks; all must list the same images in the same order."""
    index = read_index(files.store)
    versions = [read_images(files.store, len(index))]
    for store in (files.mark_free, files.lesion_free):
        if read_index(store) != index:
            raise DataError(f"{store}: lists other images than {files.store}; rerun `dvc repro edits`")
        versions.append(read_images(store, len(index)))
    rows, masks = read_masks(files.masks)
    if [r.file for r in rows] != [r.file for r in index] or masks.shape[1:] != versions[0].shape[1:3]:
        raise DataError(f"{files.masks}: not aligned with {files.store}; rerun `dvc repro preprocess`")
    labels = np.array([CLASSES.index(r.label) for r in index])
    return Stores([r.file for r in index], labels, *versions, masks.astype(bool))


def tested(runs: Path, folds: tuple[int, ...], files: list[str]) -> dict[int, np.ndarray]:
    """fold -> store rows of its test images; every image is tested by one fold at most."""
    rows, seen = {}, {}
    for fold in folds:
        split = read_split(runs / f"fold{fold}" / "split.csv")
        rows[fold] = np.array([i for i, f in enumerate(files) if split.get(f) == "test"], dtype=int)
        for i in rows[fold]:
            if i in seen:
                raise DataError(
                    f"{files[i]} is tested by folds {seen[i]} and {fold}; rerun the split stages of {COMMAND}"
                )
            seen[i] = fold
    return rows


def image_facts(
    stores: Stores, order: np.ndarray, fold: np.ndarray, overlays: Path, grown_px: int, dark: np.ndarray
) -> Images:
    """What every model shares about the tested images (store rows `order`, in file order); dark: the background
    of every image of the store."""
    marks = read_overlays(overlays)
    missing = [stores.files[i] for i in order if stores.files[i] not in marks]
    if missing:
        raise DataError(f"{overlays}: no row for {missing[0]}; rerun `dvc repro overlays`")

    def differs(edited: np.ndarray) -> np.ndarray:
        return (edited[order] != stores.original[order]).reshape(len(order), -1).any(axis=1)

    flagged = np.array([any(marks[stores.files[i]].flag(k) for k in OPERATOR_MARKS) for i in order], dtype=bool)
    masks = stores.masks[order]
    lesion = masks.reshape(len(order), -1).any(axis=1)
    area = np.where(lesion, masks.reshape(len(order), -1).mean(axis=1), np.nan)
    grown = np.where(lesion, grow(masks, grown_px).reshape(len(order), -1).mean(axis=1), np.nan)
    return Images(
        files=[stores.files[i] for i in order],
        classes=CLASSES,
        labels=stores.labels[order],
        fold=fold,
        marked=flagged & differs(stores.mark_free),  # marks the crop of the study geometry left in the input
        lesion=lesion,
        lesion_edited=differs(stores.lesion_free),
        lesion_area=area,
        grown_area=grown,
        background_area=dark[order].reshape(len(order), -1).mean(axis=1),
    )


def _predict(model, images: np.ndarray, checkpoint: Checkpoint, batch_size: int, device) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    logits = predict_logits(model, x, batch_size=batch_size, mean=checkpoint.mean, std=checkpoint.std)
    return logits.argmax(dim=1).numpy()


def judge_run(checkpoint: Checkpoint, rows: np.ndarray, stores: Stores, facts: dict, batch_size: int, device) -> dict:
    """One checkpoint on its test images (store rows): predictions on the three versions, where its Grad-CAM map
    of the predicted class lies on the original, and that map (uint8) for the images of the contact sheet."""
    model = restore(checkpoint).to(device)
    layer = target_layer(
        model, num_classes=len(checkpoint.classes), image_size=checkpoint.image_size, arch=checkpoint.arch
    )
    original = stores.original[rows]
    predicted = _predict(model, original, checkpoint, batch_size, device)
    versions = {}
    for name, edited in (("mark_free", stores.mark_free[rows]), ("lesion_free", stores.lesion_free[rows])):
        changed = (edited != original).reshape(len(rows), -1).any(axis=1)
        versions[name] = predicted.copy()  # an unchanged input gets its own prediction, not a rerun's
        if changed.any():
            versions[name][changed] = _predict(model, edited[changed], checkpoint, batch_size, device)
    x = torch.from_numpy(original).permute(0, 3, 1, 2).contiguous().to(device)
    cams = explain(
        model, x, torch.from_numpy(predicted), layer, batch_size=batch_size, mean=checkpoint.mean, std=checkpoint.std
    ).numpy()
    masks = stores.masks[rows]
    return {
        "predicted": predicted,
        "predicted_mark_free": versions["mark_free"],
        "predicted_lesion_free": versions["lesion_free"],
        "cam_in_lesion": cam_share(cams, masks),
        "cam_in_grown": cam_share(cams, grow(masks, facts["grown_px"])),
        "cam_on_background": cam_share(cams, facts["background"][rows]),
        "empty_maps": int((cams.reshape(len(rows), -1).max(axis=1) == 0).sum()),
        "maps": (cams * 255 + 0.5).astype(np.uint8),
    }


def collect(files: ShortcutFiles, params: Params) -> tuple[Images, dict[str, Looks], Stores]:
    """Every model of crossval.models on every fold and seed: the shared image facts and each model's looks."""
    cv, shortcuts = params.crossval, params.crossval.shortcuts
    stores = read_stores(files)
    folds = tested(files.runs, cv.folds, stores.files)
    by_row = {int(i): fold for fold, rows in folds.items() for i in rows}
    order = np.array(sorted(by_row, key=lambda i: stores.files[i]), dtype=int)  # file order, as crossval.py pools
    position = {int(i): p for p, i in enumerate(order)}
    dark = background(stores.original, shortcuts.background_max)
    fold = np.array([by_row[int(i)] for i in order])
    facts = image_facts(stores, order, fold, files.overlays, shortcuts.grown_px, dark)
    context = {"grown_px": shortcuts.grown_px, "background": dark}
    device = resolve_device(params.train.device)
    looks = {}
    runs = [(m, f, s) for m in cv.models for f in cv.folds for s in cv.seeds]
    for model, fold, seed in progress(runs, desc="shortcuts", unit="run"):
        if model not in looks:
            shape = (len(order), len(cv.seeds))
            looks[model] = Looks(
                *(np.zeros(shape, dtype=int) for _ in range(3)), *(np.full(shape, np.nan) for _ in range(3))
            )
        path = files.runs / f"fold{fold}" / f"seed{seed}" / f"{model}.pt"
        checkpoint = load_checkpoint(path, COMMAND)
        _check_geometry(checkpoint, params, path)
        rows = folds[fold]
        run = judge_run(checkpoint, rows, stores, context, params.evaluate.batch_size, device)
        look, s, at = looks[model], cv.seeds.index(seed), np.array([position[int(i)] for i in rows], dtype=int)
        for name in ("predicted", "predicted_mark_free", "predicted_lesion_free", "cam_in_lesion", "cam_in_grown",
                     "cam_on_background"):  # fmt: skip
            getattr(look, name)[at, s] = run[name]
        look.empty_maps += run["empty_maps"]
        _keep_lowest(look, run, at, s, shortcuts.sheet_per_model)
    return facts, looks, stores


def _check_geometry(checkpoint: Checkpoint, params: Params, path: Path) -> None:
    made = (checkpoint.geometry, checkpoint.image_size, checkpoint.resize_short_side)
    pre = params.preprocess
    if made != (pre.geometry, pre.image_size, pre.resize_short_side):
        raise DataError(f"{path}: trained on images made with {made}, not as the store is made; rerun `{COMMAND}`")


def _keep_lowest(look: Looks, run: dict, at: np.ndarray, seed: int, count: int) -> None:
    """Keep the `count` lesion images of lowest share seen so far (one seed per image), with their maps."""
    candidates = [(float(v), int(p), seed, run["maps"][k]) for k, (v, p) in enumerate(zip(run["cam_in_lesion"], at))
                  if not np.isnan(v)]  # fmt: skip
    merged = sorted(look.lowest + candidates, key=lambda c: (c[0], c[1], c[2]))
    kept, seen = [], set()
    for c in merged:
        if c[1] not in seen and len(kept) < count:
            kept.append(c)
            seen.add(c[1])
    look.lowest = kept


def run_shortcuts(files: ShortcutFiles, params: Params) -> dict:
    """The whole stage: measure, pool, write crossval/shortcuts.json, the per-image table and both figures."""
    facts, looks, stores = collect(files, params)
    ev, shortcuts = params.evaluate, params.crossval.shortcuts
    weights = image_weights(len(facts.files), ev.bootstrap_resamples, ev.bootstrap_seed)
    settings = {"grown_px": shortcuts.grown_px, "background_max": shortcuts.background_max}
    summary = summarize_shortcuts(facts, looks, weights, settings)
    write_json(files.summary, summary)
    write_image_table(files.images, facts, looks, list(params.crossval.seeds))
    shortcuts_figure(summary, list(looks), files.figure)
    position = {f: i for i, f in enumerate(stores.files)}
    rows = np.array([position[f] for f in facts.files], dtype=int)
    lowest_share_sheet(facts, looks, stores.original[rows], stores.masks[rows], files.sheet)
    return summary
