"""Stage summarize_repeats (repeats/dvc.yaml): each model of repeat.models over its main run (train.seed) and
its repeat runs (repeat.seeds): mean, standard deviation, min and max of each metric, and paired comparisons of
each pair of models by seed. Writes paths.REPEAT_SUMMARY (JSON) and paths.REPEAT_REPORT (Markdown)."""

import argparse

from bcmodels.cli import run_stage
from bcmodels.config import CLASSES, load_params
from bcmodels.errors import ConfigError
from bcmodels.fileio import write_json, write_text
from bcmodels.paths import REPEAT_MAIN_RUN_DIR, REPEAT_REPORT, REPEAT_SUMMARY, run_paths
from bcmodels.report import REPEATS_COMMAND, read_metrics, repeats_markdown, select_models
from bcmodels.stats import repeat_summary, run_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", metavar="MODEL", help="models to summarise (default: repeat.models)")
    args = parser.parse_args()
    params = load_params()
    if not params.repeat.seeds:
        raise ConfigError("repeat.seeds: lists no seed; a spread over runs needs at least one besides train.seed")
    models = select_models(args.models, params.repeat.models, params.train)
    seeds = [params.train.seed, *params.repeat.seeds]
    runs = {}
    for model in models:
        main_run = read_metrics(REPEAT_MAIN_RUN_DIR / f"{model}.json", model, REPEATS_COMMAND, "repeat.models")
        runs[model] = {params.train.seed: run_scores(main_run, CLASSES)}
        for seed in params.repeat.seeds:
            repeat_run = read_metrics(run_paths(model, seed).metrics, model, REPEATS_COMMAND, "repeat.models")
            runs[model][seed] = run_scores(repeat_run, CLASSES)
    summary = repeat_summary(runs)
    write_json(REPEAT_SUMMARY, summary)
    write_text(REPEAT_REPORT, repeats_markdown(summary, seeds))
    print(f"{len(seeds)} runs of {', '.join(models)} summarised: {REPEAT_SUMMARY}, {REPEAT_REPORT}")


if __name__ == "__main__":
    run_stage(main)
