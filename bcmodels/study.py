"""`make study` (`python -m bcmodels.study`): the whole study as a user starts it.

1. Before anything runs, every model of train.models must be able to get its starting weights: torchvision's
   ImageNet weights are fetched into torch's cache now (or found there), a state_dict file must exist or be
   made by a stage of dvc.yaml. A model that cannot start is reported within seconds, with where to put the
   file, instead of after a quarter of an hour of training the others.
2. `dvc repro --keep-going`: everything that does not depend on a failed stage runs to the end.
3. If the report was skipped because a model could not run, `dvc repro --single-item report` makes the
   report of the models that did run (it lists the others as not run) and records it in dvc.lock.
4. A summary: which stages are up to date and which are not, and why; exit status 1 if any is not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from bcmodels.config.load import load_params
from bcmodels.config.schema import Params
from bcmodels.errors import ConfigError, WeightsError, run_stage
from bcmodels.models.registry import available_archs, fetch_torchvision_weights, is_weights_path, torchvision_weights

PIPELINE = "dvc.yaml"


def stage_outputs(pipeline: Path = Path(PIPELINE)) -> set[str]:
    """Every path a stage of the pipeline writes (plain outs, not templated ones)."""
    stages = YAML(typ="safe").load(pipeline.read_text())["stages"]
    outs = set()
    for stage in stages.values():
        for out in stage.get("outs", []):
            outs.add(next(iter(out)) if isinstance(out, dict) else out)
    return outs


def weights_problem(params: Params, name: str, made_by_stages: set[str]) -> str | None:
    """Why model section `name` cannot start training here, in one line with what to do; None if it can."""
    model = params.train.model_configs[name]
    if model.arch not in available_archs():
        return f"train.{name}.arch: unknown architecture {model.arch!r}"
    if model.weights == "none":
        return None
    if is_weights_path(model.weights):
        if Path(model.weights).is_file() or model.weights in made_by_stages:
            return None
        return f"train.{name}.weights: {model.weights} not found; put the state_dict file there or set weights: none"
    try:
        fetch_torchvision_weights(model.arch, torchvision_weights(model.arch, model.weights))
    except (WeightsError, ConfigError) as err:
        return f"train.{name}.weights: {str(err).splitlines()[0]} {' '.join(str(err).splitlines()[1:])}"
    return None


def check_models(params: Params) -> dict[str, str]:
    """model -> problem, for every model of train.models that cannot start."""
    made = stage_outputs()
    problems = {}
    for name in params.train.models:
        problem = weights_problem(params, name, made)
        print(f"  {name}: {'ready' if problem is None else 'CANNOT RUN'}", flush=True)
        if problem:
            problems[name] = problem
            print(f"error: {problem}", file=sys.stderr, flush=True)
    return problems


def dvc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], text=True, capture_output=args[0] == "status")


def not_up_to_date() -> list[str]:
    """The stages of the pipeline that `dvc status` reports as changed or never run."""
    result = dvc("status", "--json", PIPELINE)
    return sorted(json.loads(result.stdout or "{}")) if result.returncode == 0 else ["(dvc status failed)"]


def main() -> None:
    params = load_params()
    print("Checking that every model of train.models can start (before anything trains):", flush=True)
    problems = check_models(params)
    dvc("repro", "--keep-going", PIPELINE)
    pending = not_up_to_date()
    if "report" in pending:
        print("Making the report of the models that did run:", flush=True)
        dvc("repro", "--single-item", "report")
        pending = not_up_to_date()
    print("\nSummary:")
    print(f"  up to date: every stage of {PIPELINE} but the {len(pending)} below" if pending else "  every stage ran")
    for stage in pending:
        model = stage.partition("@")[2]
        why = problems.get(model, "failed or was skipped; see its output above")
        print(f"  not run: {stage}: {why}")
    if pending:
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main)
