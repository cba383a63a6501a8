"""Stage looks (crossval/dvc.yaml): one benchmark checkpoint on its fold's test images: the share of its Grad-CAM
map inside the lesion, and what it calls them with the marks or the lesion removed."""

import argparse
from pathlib import Path

import numpy as np

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.evaluation.looks import LookFiles, run_looks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("store", "mark-free", "lesion-free", "masks"):
        parser.add_argument(f"--{name}", type=Path, required=True, help="a store folder (edits, preprocess)")
    parser.add_argument("--split", type=Path, required=True, help="the fold's split.csv")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the fold's checkpoint of one model and seed")
    parser.add_argument("--looks", type=Path, required=True, help="the output CSV, one row per test image")
    parser.add_argument("--lowest", type=Path, required=True, help="the output npz, maps of the lowest shares")
    args = parser.parse_args()
    files = LookFiles(
        args.store, args.mark_free, args.lesion_free, args.masks, args.split, args.checkpoint, args.looks, args.lowest
    )
    looks = run_looks(files, load_params())
    changed = {name: int((looks.calls[name] != looks.calls["predicted"]).sum()) for name in looks.calls}
    share = looks.shares["cam_in_lesion"]
    mean = f"{np.nanmean(share):.2f}" if (~np.isnan(share)).any() else "-"
    print(
        f"{args.checkpoint}: {len(looks.files)} test images; Grad-CAM share in the lesion {mean} (mean over "
        f"{int((~np.isnan(share)).sum())} lesion images); calls changed with the marks removed "
        f"{changed['predicted_mark_free']}, with the lesion removed {changed['predicted_lesion_free']}"
    )


if __name__ == "__main__":
    run_stage(main)
