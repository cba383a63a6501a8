"""The shortcuts stage of the benchmark (crossval/dvc.yaml, docs/shortcuts.md): what the models look at, pooled.

For every model of crossval.models, fold and seed, the looks stage has judged the fold's test images with the fold's
checkpoint (evaluation/looks.py) and written what it saw to crossval/looks (formats/looks.py). This stage pools those
runs over every out-of-fold test image, with what every model shares about the images (marks in the input, the
lesion and its area, the background) from the stores; it needs no checkpoint. Pooling, intervals and the outputs:
shortcuts_summary.py and shortcuts_figures.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bcmodels.config.schema import CLASSES, Params
from bcmodels.data.versions import Stores, read_stores
from bcmodels.errors import DataError
from bcmodels.evaluation.regions import background, grow
from bcmodels.evaluation.shortcuts_figures import lowest_share_sheet, shortcuts_figure
from bcmodels.evaluation.shortcuts_summary import Images, Looks, summarize_shortcuts, write_image_table
from bcmodels.evaluation.stats import image_weights
from bcmodels.formats.looks import CALLS, SHARES, RunLooks, read_looks
from bcmodels.formats.overlays import read_overlays
from bcmodels.io.files import write_json

COMMAND = "dvc repro crossval/dvc.yaml"
OPERATOR_MARKS = ("calipers", "text", "colour")  # what a sonographer adds; the logo is the scanner's


def looks_paths(looks_dir: Path, model: str, fold: int, seed: int) -> tuple[Path, Path]:
    """The two files the looks stage writes for one run (crossval/dvc.yaml names them so)."""
    run = looks_dir / f"fold{fold}-seed{seed}"
    return run / f"{model}.csv", run / f"{model}-lowest.npz"


@dataclass(frozen=True)
class ShortcutFiles:
    """What the shortcuts stage reads and writes (paths from crossval/dvc.yaml)."""

    store: Path
    mark_free: Path
    lesion_free: Path
    masks: Path
    overlays: Path
    looks: Path  # fold<k>-seed<s>/<model>.csv and <model>-lowest.npz below it
    summary: Path
    images: Path
    figure: Path
    sheet: Path


def read_runs(looks_dir: Path, params: Params) -> dict[tuple[str, int, int], RunLooks]:
    """Every run of crossval.models, folds and seeds; each names the looks stage that makes it when missing."""
    cv, runs = params.crossval, {}
    for model in cv.models:
        for fold in cv.folds:
            for seed in cv.seeds:
                csv, npz = looks_paths(looks_dir, model, fold, seed)
                runs[model, fold, seed] = read_looks(csv, npz, CLASSES, f"{COMMAND}:looks@{model}-{fold}-{seed}")
    return runs


def tested(runs: dict[tuple[str, int, int], RunLooks], looks_dir: Path) -> dict[str, int]:
    """file -> the fold that tested it. Every run of a fold lists the same images; no image is in two folds."""
    fold_files: dict[int, list[str]] = {}
    for (model, fold, seed), run in runs.items():
        first = fold_files.setdefault(fold, run.files)
        if run.files != first:
            csv, _ = looks_paths(looks_dir, model, fold, seed)
            raise DataError(f"{csv}: lists other test images than the other runs of fold {fold}; rerun `{COMMAND}`")
    by_file: dict[str, int] = {}
    for fold, files in fold_files.items():
        for file in files:
            if file in by_file:
                raise DataError(f"{file} is tested by folds {by_file[file]} and {fold}; rerun `{COMMAND}`")
            by_file[file] = fold
    return by_file


def image_facts(stores: Stores, order: np.ndarray, fold: np.ndarray, overlays: Path, params: Params) -> Images:
    """What every model shares about the tested images (store rows `order`, in file order)."""
    marks = read_overlays(overlays)
    missing = [stores.files[i] for i in order if stores.files[i] not in marks]
    if missing:
        raise DataError(f"{overlays}: no row for {missing[0]}; rerun `dvc repro overlays`")

    def differs(edited: np.ndarray) -> np.ndarray:
        return (edited[order] != stores.original[order]).reshape(len(order), -1).any(axis=1)

    shortcuts = params.crossval.shortcuts
    flagged = np.array([any(marks[stores.files[i]].flag(k) for k in OPERATOR_MARKS) for i in order], dtype=bool)
    masks = stores.masks[order]
    lesion = masks.reshape(len(order), -1).any(axis=1)
    area = np.where(lesion, masks.reshape(len(order), -1).mean(axis=1), np.nan)
    grown = np.where(lesion, grow(masks, shortcuts.grown_px).reshape(len(order), -1).mean(axis=1), np.nan)
    dark = background(stores.original[order], shortcuts.background_max)
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
        background_area=dark.reshape(len(order), -1).mean(axis=1),
    )


def pool_runs(runs: dict[tuple[str, int, int], RunLooks], files: list[str], params: Params) -> dict[str, Looks]:
    """Per model, every run's numbers placed at its images' rows (files: every tested image, in file order)."""
    cv, position, looks = params.crossval, {f: p for p, f in enumerate(files)}, {}
    for (model, _, seed), run in runs.items():
        if model not in looks:
            shape = (len(files), len(cv.seeds))
            looks[model] = Looks(
                *(np.zeros(shape, dtype=int) for _ in CALLS), *(np.full(shape, np.nan) for _ in SHARES)
            )
        look, s = looks[model], cv.seeds.index(seed)
        at = np.array([position[f] for f in run.files], dtype=int)
        for name in CALLS:
            getattr(look, name)[at, s] = run.calls[name]
        look.cam_in_lesion[at, s] = run.shares["cam_in_lesion"]
        look.cam_in_grown[at, s] = run.shares["cam_in_grown"]
        look.cam_on_background[at, s] = run.shares["cam_on_background"]
        look.empty_maps += int(run.empty_map.sum())
        share = dict(zip(run.files, run.shares["cam_in_lesion"]))
        candidates = [(float(share[f]), position[f], s, m) for f, m in zip(run.lowest_files, run.lowest_maps)]
        merged = sorted(look.lowest + candidates, key=lambda c: (c[0], c[1], c[2]))
        kept, seen = [], set()
        for c in merged:  # one entry per image (its lowest seed), the lowest cv.shortcuts.sheet_per_model
            if c[1] not in seen and len(kept) < cv.shortcuts.sheet_per_model:
                kept.append(c)
                seen.add(c[1])
        look.lowest = kept
    return looks


def run_shortcuts(files: ShortcutFiles, params: Params) -> dict:
    """The whole stage: pool the runs, write crossval/shortcuts.json, the per-image table and both figures."""
    runs = read_runs(files.looks, params)
    stores = read_stores(files.store, files.mark_free, files.lesion_free, files.masks)
    by_file = tested(runs, files.looks)
    row = {f: i for i, f in enumerate(stores.files)}
    unknown = sorted(set(by_file) - set(row))
    if unknown:
        raise DataError(f"{files.looks}: {unknown[0]} is not in {files.store}; rerun `{COMMAND}`")
    order = np.array([row[f] for f in sorted(by_file)], dtype=int)  # file order, as crossval.py pools
    facts = image_facts(stores, order, np.array([by_file[f] for f in sorted(by_file)]), files.overlays, params)
    looks = pool_runs(runs, facts.files, params)
    ev, shortcuts = params.evaluate, params.crossval.shortcuts
    weights = image_weights(len(facts.files), ev.bootstrap_resamples, ev.bootstrap_seed)
    settings = {"grown_px": shortcuts.grown_px, "background_max": shortcuts.background_max}
    summary = summarize_shortcuts(facts, looks, weights, settings)
    write_json(files.summary, summary)
    write_image_table(files.images, facts, looks, list(params.crossval.seeds))
    shortcuts_figure(summary, list(looks), files.figure)
    lowest_share_sheet(facts, looks, stores.original[order], stores.masks[order], files.sheet)
    return summary
