"""`make search RECIPE=<name>` (`python -m bcmodels.search <name>`): one recipe of the benchmark's model tried on
the validation folds only, recorded as a DVC experiment (docs/search.md).

crossval/search/<name>/overrides.txt holds the recipe: the params.yaml settings it changes, one `key=value` a
line. The recipe runs as `dvc exp run --temp -S <each line>` on the model's train and validate stages of
crossval/dvc.yaml (every fold of crossval.folds, for each seed of crossval.seeds or of --seeds), in a copy of the
project, so that params.yaml and dvc.lock of the workspace stay as they are; the experiment keeps the checkpoints
and every setting (`dvc exp show`). Its validation predictions are then copied from the experiment into
crossval/search/<name>/, where `dvc repro crossval/dvc.yaml:summarize_search` compares every recipe with the
model as params.yaml trains it. No test image is predicted.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from ruamel.yaml import YAML

from bcmodels.config.load import load_params
from bcmodels.errors import ConfigError, DataError, run_stage
from bcmodels.evaluation.best import DEFAULT_MODEL
from bcmodels.evaluation.crossval import predictions_path
from bcmodels.evaluation.search import OVERRIDES, check_recipe_name, read_overrides, unmet_overrides
from bcmodels.io.files import write_text

PIPELINE = "crossval/dvc.yaml"
SEARCH = Path("crossval/search")
VALIDATION = Path("crossval/validation")  # where the validate stages of PIPELINE write (their --predictions)


def experiment_name(recipe: str, seeds) -> str:
    return f"search-{recipe}-seed{'-'.join(map(str, seeds))}"


def targets(model: str, folds, seeds) -> list[str]:
    """The model's train and validate stages of PIPELINE for every fold and seed: all that a recipe reruns."""
    runs = [f"{model}-{fold}-{seed}" for fold in folds for seed in seeds]
    return [f"{PIPELINE}:{stage}@{run}" for stage in ("train", "validate") for run in runs]


def seeds_override(seeds) -> str:
    """The setting that gives crossval/dvc.yaml stages for these seeds in the experiment's copy."""
    return f"crossval.seeds=[{', '.join(map(str, seeds))}]"


def experiment_command(recipe: str, overrides: list[str], model: str, folds, seeds) -> list[str]:
    sets = [arg for o in overrides for arg in ("-S", o)]
    return ["dvc", "exp", "run", "--temp", "--single-item", "-n", experiment_name(recipe, seeds), *sets,
            *targets(model, folds, seeds)]  # fmt: skip


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def experiment_ref(name: str, head: str) -> str:
    """The git ref of the experiment name on commit head, the one it started from (DVC keeps it under
    refs/exps/)."""
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    if not _git("for-each-ref", "--format=%(refname)", ref).strip():
        raise DataError(f"no experiment {name} on commit {head[:7]} (`dvc exp show` lists them)")
    return ref


def check_applied(ref: str, overrides: list[str]) -> None:
    """Every override must be in the params.yaml the experiment at ref recorded: DVC sets them in the workspace and
    stashes it, so a commit made while it starts can leave them out (and in the workspace's params.yaml)."""
    unmet = unmet_overrides(YAML(typ="safe").load(_git("show", f"{ref}:params.yaml")), overrides)
    if unmet:
        key, held, value = unmet[0]
        raise DataError(
            f"the experiment {ref.rsplit('/', 1)[1]} trained with {key}={held}, not {value}: its runs are not "
            f"the recipe; check `git status` (params.yaml) and `git log`, then run it again"
        )


def collect(ref: str, recipe: str, model: str, folds, seeds) -> list[Path]:
    """Copy the validation predictions of the experiment at ref into the recipe's folder (git keeps them, not
    DVC)."""
    written = []
    for fold in folds:
        for seed in seeds:
            source = predictions_path(VALIDATION, fold, seed, model)
            target = predictions_path(SEARCH / recipe, fold, seed, model)
            write_text(target, _git("show", f"{ref}:{source.as_posix()}"))
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="a folder name below crossval/search/, holding overrides.txt")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"the model of crossval.models it changes ({DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="training seeds to run (default crossval.seeds); runs with seeds the "
        "benchmark lacks are compared with those of the recipe that sets only params.yaml's own values, run with them",
    )  # fmt: skip
    args = parser.parse_args()
    check_recipe_name(SEARCH / args.recipe)
    cv = load_params().crossval
    if args.model not in cv.models:
        raise ConfigError(f"--model {args.model}: not in crossval.models ({', '.join(cv.models)})")
    overrides = read_overrides(SEARCH / args.recipe / OVERRIDES)
    seeds = tuple(args.seeds or cv.seeds)
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds {' '.join(map(str, seeds))}: give distinct seeds, 0 or more")
    if seeds != cv.seeds:
        overrides.append(seeds_override(seeds))
    command = experiment_command(args.recipe, overrides, args.model, cv.folds, seeds)
    print(" ".join(command), flush=True)
    head = _git("rev-parse", "HEAD").strip()  # a commit made while the experiment runs does not move its ref
    if subprocess.run(command).returncode != 0:
        raise DataError(f"the experiment {experiment_name(args.recipe, seeds)} failed (above); nothing was copied")
    ref = experiment_ref(experiment_name(args.recipe, seeds), head)
    check_applied(ref, overrides)
    written = collect(ref, args.recipe, args.model, cv.folds, seeds)
    print(f"{len(written)} validation prediction files in {SEARCH / args.recipe}; compare the recipes with "
          f"`dvc repro {PIPELINE}:summarize_search`")  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
