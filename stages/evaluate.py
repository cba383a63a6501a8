"""Stage evaluate@<model>: the test set once with the restored checkpoint; metrics JSON and predictions CSV."""

import argparse

import torch

from bcmodels.cli import run_stage
from bcmodels.config import load_params
from bcmodels.data import load_subsets
from bcmodels.evaluation import classification_metrics
from bcmodels.fileio import write_csv, write_json
from bcmodels.models import build_model
from bcmodels.paths import PROCESSED_DIR, SPLIT_CSV, checkpoint_path, metrics_path, predictions_path
from bcmodels.runtime import resolve_device
from bcmodels.training import predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a model trained by train@<model>")
    name = parser.parse_args().model
    params = load_params()
    checkpoint = torch.load(checkpoint_path(name), map_location="cpu", weights_only=True)
    classes = checkpoint["classes"]
    model = build_model(checkpoint["model_config"]["arch"], num_classes=len(classes),
                        image_size=checkpoint["image_size"])  # fmt: skip
    model.load_state_dict(checkpoint["state_dict"])
    device = resolve_device(params.train.device)
    test = load_subsets(PROCESSED_DIR, SPLIT_CSV)["test"]
    logits = predict(model.to(device), test, batch_size=params.evaluate.batch_size, device=device)
    probs = torch.softmax(logits, dim=1).numpy()
    metrics = classification_metrics(test.labels.numpy(), probs, classes)
    metrics["best_epoch"] = checkpoint["best_epoch"]
    metrics["epochs_run"] = checkpoint["epochs_run"]
    write_json(metrics_path(name), metrics)

    write_csv(
        predictions_path(name),
        ["file", "actual", "predicted", *(f"p_{c}" for c in classes)],
        ([file, classes[label], classes[int(p.argmax())], *(f"{x:.6f}" for x in p)]
         for file, label, p in zip(test.files, test.labels.tolist(), probs)),
    )  # fmt: skip
    print(f"{name}: test accuracy {metrics['accuracy']:.3f}, weighted F1 {metrics['weighted']['f1']:.3f} "
          f"on {metrics['n_test']} images")  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
