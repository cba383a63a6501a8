"""The recipe search (summarize_search in crossval/dvc.yaml, docs/search.md): each recipe tried for a model of the
benchmark, pooled over its validation predictions, against that model as params.yaml trains it, on the same images.

A recipe is a folder crossval/search/<recipe>/ holding overrides.txt (the params.yaml settings it changes, one
`key=value` a line, as `dvc exp run -S` takes them) and the validation predictions of its runs, laid out as the
validate stages lay out theirs (fold<k>-seed<s>/<model>.csv); `make search RECIPE=<recipe>` fills it
(bcmodels/search.py). Only validation images are read: the test folds stay unseen until a recipe is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from bcmodels.config.schema import NAME
from bcmodels.errors import DataError
from bcmodels.evaluation.crossval import SUMMARY_METRICS, load_out_of_fold, summarize
from bcmodels.io.files import write_json, write_text
from bcmodels.render.tables import metric_label, number, table

OVERRIDES = "overrides.txt"
# Not a recipe: the mean of the predicted probabilities of a model's own runs and of all its recipes' runs, image by
# image; what averaging several trained networks would give (no stage of the pipeline averages models yet).
ENSEMBLE = "ensemble"


def read_overrides(path: Path) -> list[str]:
    """A recipe's `key=value` lines (blank lines and # comments skipped); an error names the file and line."""
    if not path.is_file():
        raise DataError(f"{path}: missing; write the params.yaml settings of the recipe there, one key=value a line")
    overrides = []
    for number_, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip() or " " in key.strip():
            raise DataError(f"{path}, line {number_}: {line!r} is not key=value (e.g. train.mobilenet_v2.lr=3e-4)")
        overrides.append(f"{key.strip()}={value.strip()}")
    if not overrides:
        raise DataError(f"{path}: sets nothing; a recipe changes at least one params.yaml setting")
    return overrides


def recipes(root: Path) -> list[str]:
    """The recipe folders below root, by name (none before the first search)."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; it holds one folder per recipe (docs/search.md)")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    for name in names:
        check_recipe_name(root / name)
    return names


def check_recipe_name(folder: Path) -> None:
    """A recipe is named as a model is (it becomes part of a DVC experiment's name and of the tables' keys)."""
    if NAME.fullmatch(folder.name) is None:
        raise DataError(f"{folder}: a recipe's name must be letters, digits and _ (a letter first)")


def recipe_model(root: Path) -> str:
    """The model a recipe changes: the one whose predictions its folder holds (fold<k>-seed<s>/<model>.csv)."""
    models = {p.stem for p in root.glob("fold*-seed*/*.csv")}
    if len(models) != 1:
        found = ", ".join(sorted(models)) or "none"
        raise DataError(f"{root}: holds predictions of {found}; a recipe holds those of the one model it changes")
    return models.pop()


def summarize_search(validation: Path, search: Path, folds: Sequence[int], seeds: Sequence[int], **stats) -> dict:
    """Every recipe below search, pooled with intervals, and minus the model it changes as params.yaml trains it
    (that model's validation predictions below validation), paired on the same images; and the same for the
    ensemble of the model's runs and its recipes' runs. stats: resamples, seed, bins."""
    by_model: dict[str, list[str]] = {}
    for name in recipes(search):
        model = recipe_model(search / name)
        if name in (model, ENSEMBLE):
            raise DataError(
                f"{search / name}: a recipe may not be named {name} (a row of the table); rename the folder"
            )
        by_model.setdefault(model, []).append(name)
    result: dict = {"split": "validation", "images": None, "seeds": len(seeds), "resamples": stats["resamples"]}
    result |= {"models": {}, "recipes": {}, "ensembles": {}}
    for model, names in sorted(by_model.items()):
        oofs = {name: load_out_of_fold(search / name, model, folds, seeds) for name in names}
        oofs[model] = load_out_of_fold(validation, model, folds, seeds)
        runs = [ENSEMBLE, *names, model]
        oofs[ENSEMBLE] = replace(oofs[model], probs=np.mean([oofs[n].probs for n in runs[1:]], axis=0))
        summary = summarize(runs, oofs, **stats)  # pairs (recipe, model): recipe minus model
        keys = (*SUMMARY_METRICS, *(f"recall_{c}" for c in oofs[model].classes))
        result["images"] = summary["images"]
        result["models"][model] = {k: summary["models"][model][k] for k in keys}
        for name in runs[:-1]:
            entry = {k: summary["models"][name][k] for k in keys}
            entry["minus_params_yaml"] = summary["paired"][f"{name}_vs_{model}"]
            if name == ENSEMBLE:
                result["ensembles"][model] = {"of": runs[1:], **entry}
            else:
                result["recipes"][name] = {"model": model, "overrides": read_overrides(search / name / OVERRIDES)}
                result["recipes"][name] |= entry
    return result


def markdown(result: dict) -> str:
    """crossval/search.md: per model its own run, then one row per recipe and one for the ensemble: their numbers
    and paired differences."""
    shown = ("accuracy", "macro_f1", "macro_auc")

    def row(name: str, settings: str, entry: dict) -> list[str]:
        diff = entry.get("minus_params_yaml")
        return [
            name,
            settings,
            *(number(entry[k]["value"], entry[k]["ci95"]) for k in shown),
            *(number(diff[k]["value"], diff[k]["ci95"], sign=True) if diff else "" for k in shown),
        ]

    rows = []
    for model, own in result["models"].items():
        rows.append(row(f"{model} (params.yaml)", "", own))
        for name, r in result["recipes"].items():
            if r["model"] == model:
                rows.append(row(name, "<br>".join(f"`{o}`" for o in r["overrides"]), r))
        if model in result["ensembles"]:
            e = result["ensembles"][model]
            rows.append(row(f"{ENSEMBLE} (not a recipe)", f"mean probability of the {len(e['of'])} runs above", e))
    header = ["run", "settings", *(metric_label(k) for k in shown), *(f"{metric_label(k)} - own" for k in shown)]
    tried = table(header, rows) if rows else "No recipe tried yet: `make search RECIPE=<name>`."
    images = f"{result['images']} images, " if result["images"] else ""
    return f"""# Recipes tried, on the validation folds

Each recipe's runs on the validation images of every fold ({images}{result["seeds"]} seed(s) per fold),
pooled, with 95% bootstrap intervals over images; "- own" is the recipe minus its model as
params.yaml trains it, paired on the same images. Early stopping chose each run's epoch on these images, so every
number leans optimistic alike: they rank recipes. "{ENSEMBLE}" is not a recipe: the mean of the probabilities
of the model's runs and its recipes' runs, image by image, for what averaging trained networks gives. No test image
was used. Made by `dvc repro crossval/dvc.yaml:summarize_search` from crossval/search/ (docs/search.md).

{tried}
"""


def write_search(result: dict, out: Path, table_out: Path) -> None:
    write_json(out, result)
    write_text(table_out, markdown(result))
