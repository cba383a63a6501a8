"""The shortcuts stage's numbers (bcmodels/evaluation/looks.py measures them per run, shortcuts.py gathers the
runs): per model, pooled over every out-of-fold test image, with 95% percentile bootstrap intervals from the
benchmark's one set of image draws (stats.image_weights with evaluate.bootstrap_resamples and bootstrap_seed, as
crossval.py uses them), so that a difference between two models in the same resample is a paired difference on the
same images.

Every pooled number is a mean over (image, seed) entries where it is defined, each image weighted by how often a
resample draws it (an image carries all its seeds): e.g. the Grad-CAM share inside the lesion is defined on
images with a lesion in the model's input, and not where the map is empty (nothing spoke for the class).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bcmodels.evaluation.stats import percentile_interval
from bcmodels.io.files import write_csv

NORMAL = "normal"  # the class without a lesion


@dataclass(frozen=True)
class Images:
    """What every model shares about the tested images (N: every image tested, in file order)."""

    files: list[str]
    classes: tuple[str, ...]
    labels: np.ndarray  # (N,) class index
    fold: np.ndarray  # (N,) the fold that tested it
    marked: np.ndarray  # (N,) bool: operator marks (calipers, text, colour) inside the model's input
    lesion: np.ndarray  # (N,) bool: a lesion inside the model's input (benign and malignant images)
    lesion_edited: np.ndarray  # (N,) bool: the lesion-free image differs (a lesion, or a normal image's sham patch)
    lesion_area: np.ndarray  # (N,) share of the image inside the lesion mask (NaN without one)
    grown_area: np.ndarray  # (N,) the same for the mask grown by crossval.shortcuts.grown_px
    background_area: np.ndarray  # (N,) share of the image that is background


@dataclass
class Looks:
    """One model on every tested image, per seed (N, S): predictions on the three versions of the image and where
    its Grad-CAM map of the predicted class lies on the original (NaN where undefined)."""

    predicted: np.ndarray
    predicted_mark_free: np.ndarray
    predicted_lesion_free: np.ndarray
    cam_in_lesion: np.ndarray
    cam_in_grown: np.ndarray
    cam_on_background: np.ndarray
    empty_maps: int = 0  # maps that were zero everywhere
    lowest: list[tuple[float, int, int, np.ndarray]] = field(default_factory=list)  # (share, image, seed, map uint8)


def pooled(values: np.ndarray, weights: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Per row of weights (R, N): the weighted mean of the defined (image, seed) entries of values (N, S), or (N,),
    among the images in keep; NaN where none is defined."""
    values = values.reshape(len(values), -1).astype(np.float64)
    defined = ~np.isnan(values)
    if keep is not None:
        defined &= keep[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(defined, values, 0).sum(axis=1)) / (weights @ defined.sum(axis=1))


def entry(samples: np.ndarray) -> dict:
    """Row 0 is the estimate (all images once), the rest the resamples: {value, ci95}; None where undefined."""
    if np.isnan(samples[0]):
        return {"value": None, "ci95": None}
    return {"value": float(samples[0]), "ci95": percentile_interval(samples[1:])}


def _where(condition: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values (N, S) as floats, NaN where condition (N, S) or (N,) is false."""
    condition = condition if condition.ndim == values.ndim else condition[:, None]
    return np.where(condition, values.astype(np.float64), np.nan)


def model_samples(images: Images, looks: Looks, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every pooled number of one model, one value per row of weights."""
    seeds = looks.predicted.shape[1]
    per_seed = np.ones((1, seeds), dtype=bool)
    normal = images.classes.index(NORMAL)
    share = looks.cam_in_lesion
    defined = ~np.isnan(share)
    on_background = ~np.isnan(looks.cam_on_background)  # images with background, and a map
    label = images.labels[:, None]
    before, after = looks.predicted == label, looks.predicted_mark_free == label
    lesion = images.lesion & images.lesion_edited
    sham = (images.labels == normal) & images.lesion_edited
    out = {
        "cam_in_lesion": pooled(share, weights),
        "cam_in_lesion_grown": pooled(looks.cam_in_grown, weights),
        "lesion_area": pooled(_where(defined, images.lesion_area[:, None] * per_seed), weights),
        "lesion_area_grown": pooled(_where(defined, images.grown_area[:, None] * per_seed), weights),
        "cam_in_lesion_minus_area": pooled(share - images.lesion_area[:, None], weights),
        "cam_in_lesion_marked": pooled(share, weights, images.marked),
        "cam_in_lesion_unmarked": pooled(share, weights, ~images.marked),
        "cam_on_background": pooled(looks.cam_on_background, weights),
        "background_area": pooled(_where(on_background, images.background_area[:, None] * per_seed), weights),
        "cam_on_background_minus_area": pooled(looks.cam_on_background - images.background_area[:, None], weights),
        "accuracy_before": pooled(before, weights, images.marked),
        "accuracy": pooled(after, weights, images.marked),
        "accuracy_change": pooled(after.astype(float) - before, weights, images.marked),
        "changed_share": pooled(looks.predicted_mark_free != looks.predicted, weights, images.marked),
        "still_lesion": pooled(looks.predicted_lesion_free != normal, weights, lesion),
        "lesion_before": pooled(looks.predicted != normal, weights, lesion),
        "still_lesion_marked": pooled(looks.predicted_lesion_free != normal, weights, lesion & images.marked),
        "still_lesion_unmarked": pooled(looks.predicted_lesion_free != normal, weights, lesion & ~images.marked),
        "sham_called_lesion_before": pooled(looks.predicted != normal, weights, sham),
        "sham_called_lesion": pooled(looks.predicted_lesion_free != normal, weights, sham),
    }
    for c, name in enumerate(images.classes):
        out[f"cam_on_background_{name}"] = pooled(looks.cam_on_background, weights, images.labels == c)
        out[f"cam_on_background_minus_area_{name}"] = pooled(
            looks.cam_on_background - images.background_area[:, None], weights, images.labels == c
        )
    return out


PAIRED = (
    "cam_in_lesion",
    "cam_in_lesion_grown",
    "cam_in_lesion_minus_area",
    "cam_on_background",
    "cam_on_background_minus_area",
    "accuracy_change",
    "changed_share",
    "still_lesion",
    "sham_called_lesion",
)


def _model_summary(images: Images, looks: Looks, s: dict[str, np.ndarray]) -> dict:
    seeds = looks.predicted.shape[1]
    marked = np.repeat(images.marked, seeds).reshape(-1, seeds)
    changed = (looks.predicted_mark_free != looks.predicted) & marked
    lesion = images.lesion & images.lesion_edited
    sham = (images.labels == images.classes.index(NORMAL)) & images.lesion_edited
    return {
        **{k: entry(s[k]) for k in ("cam_in_lesion", "cam_in_lesion_grown", "lesion_area", "lesion_area_grown")},
        "cam_in_lesion_minus_area": entry(s["cam_in_lesion_minus_area"]),
        "cam_in_lesion_by_marks": {
            "marked": entry(s["cam_in_lesion_marked"]),
            "unmarked": entry(s["cam_in_lesion_unmarked"]),
        },
        "cam_on_background": entry(s["cam_on_background"]),
        "background_area": entry(s["background_area"]),
        "cam_on_background_minus_area": entry(s["cam_on_background_minus_area"]),
        "cam_on_background_by_class": {c: entry(s[f"cam_on_background_{c}"]) for c in images.classes},
        "cam_on_background_minus_area_by_class": {
            c: entry(s[f"cam_on_background_minus_area_{c}"]) for c in images.classes
        },
        "lesion_images": int((~np.isnan(looks.cam_in_lesion)).any(axis=1).sum()),
        "empty_maps": looks.empty_maps,
        "marks_removed": {
            "images": int(images.marked.sum()),
            "accuracy_before": entry(s["accuracy_before"]),
            "accuracy": entry(s["accuracy"]),
            "accuracy_change": entry(s["accuracy_change"]),
            "changed": int(changed.sum()),
            "changed_share": entry(s["changed_share"]),
            "changed_to": {
                c: int((changed & (looks.predicted_mark_free == i)).sum()) for i, c in enumerate(images.classes)
            },
        },
        "lesion_removed": {
            "images": int(lesion.sum()),
            "still_lesion": entry(s["still_lesion"]),
            "lesion_before": entry(s["lesion_before"]),
            "still_lesion_by_marks": {
                "marked": entry(s["still_lesion_marked"]),
                "unmarked": entry(s["still_lesion_unmarked"]),
            },
            "sham": {
                "images": int(sham.sum()),
                "called_lesion_before": entry(s["sham_called_lesion_before"]),
                "called_lesion": entry(s["sham_called_lesion"]),
            },
        },
    }


def summarize_shortcuts(images: Images, looks: dict[str, Looks], weights: np.ndarray, settings: dict) -> dict:
    """crossval/shortcuts.json: per model its numbers with intervals, and paired differences between models."""
    samples = {m: model_samples(images, look, weights) for m, look in looks.items()}
    background = {
        c: entry(pooled(images.background_area, weights, images.labels == i)) for i, c in enumerate(images.classes)
    }
    return {
        "images": len(images.files),
        "seeds": next(iter(looks.values())).predicted.shape[1],
        "resamples": len(weights) - 1,
        **settings,
        "lesion_images": int(images.lesion.sum()),
        "marked_images": int(images.marked.sum()),
        "background_area_by_class": background,
        "background_images_by_class": {
            c: int((images.background_area[images.labels == i] > 0).sum()) for i, c in enumerate(images.classes)
        },
        "models": {m: _model_summary(images, looks[m], samples[m]) for m in looks},
        "paired": {
            f"{a}_vs_{b}": {k: entry(samples[a][k] - samples[b][k]) for k in PAIRED}
            for a, b in itertools.combinations(looks, 2)
        },
    }


IMAGE_COLUMNS = (
    "model", "seed", "fold", "file", "class", "marked", "predicted", "predicted_mark_free", "predicted_lesion_free",
    "cam_in_lesion", "cam_in_lesion_grown", "lesion_area", "lesion_area_grown", "cam_on_background", "background_area",
)  # fmt: skip


def write_image_table(path: Path, images: Images, looks: dict[str, Looks], seeds: list[int]) -> None:
    """crossval/shortcuts_images.csv: one row per model, seed and image, every per-image number (empty: undefined)."""

    def number(v: float) -> str:
        return "" if np.isnan(v) else f"{v:.4f}"

    def rows():
        c = images.classes
        for model, look in looks.items():
            for s, seed in enumerate(seeds):
                for i, file in enumerate(images.files):
                    calls = [c[v[i, s]] for v in (look.predicted, look.predicted_mark_free, look.predicted_lesion_free)]
                    shares = [look.cam_in_lesion[i, s], look.cam_in_grown[i, s], images.lesion_area[i]]
                    shares += [images.grown_area[i], look.cam_on_background[i, s], images.background_area[i]]
                    labels = [c[images.labels[i]], int(images.marked[i])]
                    yield [model, seed, int(images.fold[i]), file, *labels, *calls, *map(number, shares)]

    write_csv(path, IMAGE_COLUMNS, rows())
