"""Stage evaluate@<model>: the test set once with the restored checkpoint; metrics JSON and predictions CSV.

`--seed S` evaluates the repeat run of that training seed (repeats/dvc.yaml) instead of the main run.
"""

import argparse

import torch

from bcmodels.cli import run_stage
from bcmodels.config import load_params
from bcmodels.data import load_subsets
from bcmodels.errors import DataError
from bcmodels.evaluation import classification_metrics
from bcmodels.fileio import write_csv, write_json
from bcmodels.models import build_model
from bcmodels.paths import PROCESSED_DIR, run_paths
from bcmodels.runtime import resolve_device
from bcmodels.training import predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a model trained by train@<model>")
    parser.add_argument("--seed", type=int, default=None, help="the repeat run of this training seed")
    args = parser.parse_args()
    name, run = args.model, run_paths(args.model, args.seed)
    params = load_params()
    for needed in (run.checkpoint, run.split):
        if not needed.is_file():
            made_by = f"train@{name}" if args.seed is None else "repeats/dvc.yaml"
            raise DataError(f"{needed}: not found; `dvc repro {made_by}` makes it")
    checkpoint = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    classes = checkpoint["classes"]
    model = build_model(checkpoint["model_config"]["arch"], num_classes=len(classes),
                        image_size=checkpoint["image_size"])  # fmt: skip
    model.load_state_dict(checkpoint["state_dict"])
    device = resolve_device(params.train.device)
    test = load_subsets(PROCESSED_DIR, run.split)["test"]
    logits = predict(model.to(device), test.to(device), batch_size=params.evaluate.batch_size)
    probs = torch.softmax(logits, dim=1).numpy()
    metrics = classification_metrics(test.labels.numpy(), probs, classes, params.evaluate)
    metrics["best_epoch"] = checkpoint["best_epoch"]
    metrics["epochs_run"] = checkpoint["epochs_run"]
    write_json(run.metrics, metrics)

    write_csv(
        run.predictions,
        ["file", "actual", "predicted", *(f"p_{c}" for c in classes)],
        ([file, classes[label], classes[int(p.argmax())], *(f"{x:.6f}" for x in p)]
         for file, label, p in zip(test.files, test.labels.tolist(), probs)),
    )  # fmt: skip
    accuracy = metrics["accuracy_ci95"]
    print(f"{name}{'' if args.seed is None else f' (seed {args.seed})'}: test accuracy {metrics['accuracy']:.3f} "
          f"(95% CI {accuracy['low']:.3f}-{accuracy['high']:.3f}), weighted F1 {metrics['weighted']['f1']:.3f}, "
          f"ECE {metrics['calibration']['ece']:.3f} on {metrics['n_test']} images")  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
