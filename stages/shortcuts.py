"""Stage shortcuts (crossval/dvc.yaml): what every benchmark model looks at on its out-of-fold test images (the
share of its Grad-CAM map inside the lesion) and what it says with the marks or the lesion removed, pooled over
the runs of the looks stage."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.evaluation.shortcuts import ShortcutFiles, run_shortcuts


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("store", "mark-free", "lesion-free", "masks"):
        parser.add_argument(f"--{name}", type=Path, required=True, help="a store folder (edits, preprocess)")
    parser.add_argument("--overlays", type=Path, required=True, help="the overlay audit's overlays.csv")
    parser.add_argument(
        "--looks", type=Path, required=True, help="the looks stage's folder: fold<k>-seed<s>/<model>.csv"
    )
    for name in ("summary", "images", "figure", "sheet"):
        parser.add_argument(f"--{name}", type=Path, required=True, help="an output file")
    args = parser.parse_args()
    files = ShortcutFiles(
        args.store, args.mark_free, args.lesion_free, args.masks, args.overlays, args.looks,
        args.summary, args.images, args.figure, args.sheet,
    )  # fmt: skip
    summary = run_shortcuts(files, load_params())
    for model, m in summary["models"].items():
        share, area = (number(m[k]["value"]) for k in ("cam_in_lesion", "lesion_area"))
        changed, lesion = m["marks_removed"]["changed"], number(m["lesion_removed"]["still_lesion"]["value"])
        print(
            f"{model}: Grad-CAM share in the lesion {share} (area {area}); marks removed: {changed} predictions "
            f"changed; lesion removed: still called a lesion {lesion}"
        )


if __name__ == "__main__":
    run_stage(main)
