"""The recipe search (summarize_search in crossval/dvc.yaml, docs/search.md): each recipe tried for a model of the
benchmark, pooled over its validation predictions, against that model as params.yaml trains it, on the same images.

A recipe is a folder crossval/search/<recipe>/ holding overrides.txt (the params.yaml settings it changes, one
`key=value` a line, as `dvc exp run -S` takes them) and the validation predictions of its runs, laid out as the
validate stages lay out theirs (fold<k>-seed<s>/<model>.csv); `make search RECIPE=<recipe>` fills it
(bcmodels/search.py). Only validation images are read: the test folds stay unseen until a recipe is chosen.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML

from bcmodels.config.schema import NAME
from bcmodels.errors import DataError
from bcmodels.evaluation.crossval import SUMMARY_METRICS, OutOfFold, load_out_of_fold, summarize
from bcmodels.io.files import write_json, write_text
from bcmodels.render.tables import metric_label, number, table

OVERRIDES = "overrides.txt"
# Not a recipe: the mean of the predicted probabilities of a model's own runs and of all its recipes' runs, image by
# image; what averaging several trained networks would give (no stage of the pipeline averages models yet).
ENSEMBLE = "ensemble"
# Not a recipe either: the mean of the probabilities of params.yaml's runs alone, over their seeds.
SEED_MEAN = "seeds_averaged"
RUN_FOLDER = re.compile(r"fold\d+-seed(\d+)")  # a run's predictions: fold<k>-seed<s>/<model>.csv


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


def recipe_seeds(root: Path) -> list[int]:
    """The training seeds of the runs a recipe's folder holds (fold<k>-seed<s>/), in order."""
    return sorted({int(m.group(1)) for p in root.iterdir() if (m := RUN_FOLDER.fullmatch(p.name))})


def unmet_overrides(params: dict, overrides: list[str]) -> list[tuple[str, object, str]]:
    """(key, value in params, override's value) of each override that params (a loaded params.yaml) does not
    hold; 1.0e-4 and 0.0001 are one value."""
    yaml = YAML(typ="safe")
    unmet = []
    for override in overrides:
        key, value = override.split("=", 1)
        node = params
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != yaml.load(value):
            unmet.append((key, node, value))
    return unmet


def _pool_seeds(parts: list[OutOfFold]) -> OutOfFold:
    """Runs of one model with different seeds, loaded apart (from different folders), as one."""
    for part in parts[1:]:
        if part.files != parts[0].files:
            raise DataError("runs of one model with different seeds were validated on different images")
    return replace(parts[0], probs=np.concatenate([p.probs for p in parts], axis=1))


def _accuracy(oof: OutOfFold) -> float:
    return float(np.mean(oof.probs[:, 0].argmax(axis=1) == oof.labels))


def summarize_search(
    validation: Path, search: Path, folds: Sequence[int], seeds: Sequence[int], params: dict, **stats
) -> dict:
    """Every recipe below search, pooled with intervals, and minus the model it changes as params.yaml trains it,
    paired on the same images and seeds; and the same for the ensemble of all the model's runs.

    The params.yaml recipe's runs are the validate stages' (below validation, seeds) and, for other seeds, those of
    the recipe whose overrides all hold in params (a loaded params.yaml): a recipe run with seeds the benchmark
    lacks (`make search SEEDS=...`) is compared with it on those seeds. stats: resamples, seed, bins."""
    by_model: dict[str, list[str]] = {}
    for name in recipes(search):
        model = recipe_model(search / name)
        if name in (model, ENSEMBLE, SEED_MEAN):
            raise DataError(
                f"{search / name}: a recipe may not be named {name} (a row of the table); rename the folder"
            )
        by_model.setdefault(model, []).append(name)
    result: dict = {"split": "validation", "images": None, "resamples": stats["resamples"]}
    result |= {"models": {}, "seed_means": {}, "recipes": {}, "ensembles": {}}
    for model, names in sorted(by_model.items()):
        overrides = {name: read_overrides(search / name / OVERRIDES) for name in names}
        same = [name for name in names if not unmet_overrides(params, overrides[name])]
        if len(same) > 1:
            raise DataError(f"{search}: {', '.join(same)} all set only params.yaml's own values; keep one of them")
        own_runs = {s: load_out_of_fold(validation, model, folds, [s]) for s in seeds}
        ran = {name: recipe_seeds(search / name) for name in names}
        runs = {(name, s): load_out_of_fold(search / name, model, folds, [s]) for name in names for s in ran[name]}
        for (name, s), run in runs.items():
            if name in same and s not in own_runs:
                own_runs[s] = run
        own_seeds = sorted(own_runs)
        own = _pool_seeds([own_runs[s] for s in own_seeds])
        labels = [f"{model} seed {s}" for s in own_seeds]
        members = [own]
        summary = summarize([model], {model: own}, **stats)
        result["images"] = summary["images"]
        result["models"][model] = _entry(summary, model, own_seeds, own)
        result["models"][model]["accuracy_per_seed"] = {str(s): _accuracy(own_runs[s]) for s in own_seeds}
        if len(own_seeds) > 1:
            averaged = replace(own, probs=own.probs.mean(axis=1, keepdims=True))
            result["seed_means"][model] = _against_own(SEED_MEAN, averaged, own_seeds, model, own, stats)
        for name in names:
            missing = [s for s in ran[name] if s not in own_runs]
            if missing:
                recipe = same[0] if same else "<a recipe that sets only params.yaml's own values>"
                raise DataError(
                    f"{search / name}: runs seed {missing[0]}, which {model} as params.yaml trains it lacks; run "
                    f"params.yaml's recipe with it: `make search RECIPE={recipe} SEEDS={missing[0]}`"
                )
            compared = [s for s in ran[name] if name not in same or s in seeds]  # the rest stand in for params.yaml's
            members += [runs[name, s] for s in compared]
            labels += [f"{name} seed {s}" for s in compared]
            if not compared:
                continue
            recipe = _pool_seeds([runs[name, s] for s in compared])
            baseline = _pool_seeds([own_runs[s] for s in compared])
            entry = _against_own(name, recipe, compared, model, baseline, stats)
            entry["accuracy_minus_params_yaml_per_seed"] = {
                str(s): _accuracy(runs[name, s]) - _accuracy(own_runs[s]) for s in compared
            }
            result["recipes"][name] = {"model": model, "overrides": overrides[name], **entry}
        ensemble = replace(own, probs=np.concatenate([m.probs for m in members], axis=1).mean(axis=1, keepdims=True))
        result["ensembles"][model] = {"of": labels, **_against_own(ENSEMBLE, ensemble, [], model, own, stats)}
    return result


def _entry(summary: dict, name: str, seeds: list[int], oof: OutOfFold) -> dict:
    keys = (*SUMMARY_METRICS, *(f"recall_{c}" for c in oof.classes))
    return {"seeds": seeds, **{k: summary["models"][name][k] for k in keys}}


def _against_own(name: str, oof: OutOfFold, seeds: list[int], model: str, own: OutOfFold, stats: dict) -> dict:
    """A row's pooled numbers and its paired difference with model's params.yaml runs own (the same images); name is
    never a model's (recipes() refuses it)."""
    summary = summarize([name, model], {name: oof, model: own}, **stats)
    return {**_entry(summary, name, seeds, oof), "minus_params_yaml": summary["paired"][f"{name}_vs_{model}"]}


def markdown(result: dict) -> str:
    """crossval/search.md: per model its own runs, then one row per recipe and one for the ensemble: their numbers
    and paired differences, overall and per seed."""
    shown = ("accuracy", "macro_f1", "macro_auc")

    def row(name: str, settings: str, entry: dict) -> list[str]:
        diff = entry.get("minus_params_yaml")
        per_seed = entry.get("accuracy_minus_params_yaml_per_seed", {})
        return [
            name,
            settings,
            ", ".join(map(str, entry["seeds"])),
            *(number(entry[k]["value"], entry[k]["ci95"]) for k in shown),
            *(number(diff[k]["value"], diff[k]["ci95"], sign=True) if diff else "" for k in shown),
            ", ".join(f"{v:+.2f}" for v in per_seed.values()),
        ]

    rows = []
    for model, own in result["models"].items():
        per_seed = ", ".join(f"{v:.2f}" for v in own["accuracy_per_seed"].values())
        settings = f"accuracy per seed: {per_seed}" if len(own["seeds"]) > 1 else ""
        rows.append(row(f"{model} (params.yaml)", settings, own))
        if model in result["seed_means"]:
            m = result["seed_means"][model]
            rows.append(row(f"{SEED_MEAN} (not a recipe)", f"mean probability of the {len(m['seeds'])} runs above", m))
        for name, r in result["recipes"].items():
            if r["model"] == model:
                rows.append(row(name, "<br>".join(f"`{o}`" for o in r["overrides"]), r))
        if model in result["ensembles"]:
            e = result["ensembles"][model]
            rows.append(row(f"{ENSEMBLE} (not a recipe)", f"mean probability of the {len(e['of'])} runs above", e))
    header = [
        "run", "settings", "seeds", *(metric_label(k) for k in shown), *(f"{metric_label(k)} - own" for k in shown),
        "accuracy - own, per seed",
    ]  # fmt: skip
    tried = table(header, rows) if rows else "No recipe tried yet: `make search RECIPE=<name>`."
    images = f" ({result['images']} images)" if result["images"] else ""
    return f"""# Recipes tried, on the validation folds

Each recipe's runs on the validation images of every fold{images}, pooled over the training seeds it ran, with
95% bootstrap intervals over images; "- own" is the recipe minus its model as params.yaml trains it, paired on the
same images and seeds, and "per seed" is that accuracy difference seed by seed, which shows how much of a gain one
more training seed keeps. Where the benchmark lacks a seed, params.yaml's runs are those of the recipe that sets
only params.yaml's own values. Early stopping chose each run's epoch on these images, so every number leans
optimistic alike: they rank recipes. "{SEED_MEAN}" and "{ENSEMBLE}" are not recipes: the mean of the
probabilities of params.yaml's runs, and of all the runs above, image by image, for what averaging trained networks
gives. No test image was used. Made by
`dvc repro crossval/dvc.yaml:summarize_search` from crossval/search/ (docs/search.md).

{tried}
"""


def write_search(result: dict, out: Path, table_out: Path) -> None:
    write_json(out, result)
    write_text(table_out, markdown(result))
