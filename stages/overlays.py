"""Stage overlays: what is drawn on every raw image (calipers, text, colour, logo, view) and contact sheets."""

import argparse
import os
import time
from pathlib import Path

from bcmodels.audit.overlays import OverlayFiles, run_overlays
from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.formats.manifest import read_manifest

SHEETS = ("calipers", "text", "colour", "axilla")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="the verified Dataset_BUSI_with_GT folder")
    parser.add_argument("--out", type=Path, required=True, help="the overlays.csv to write")
    parser.add_argument("--sheets", type=Path, required=True, help="folder for the contact sheets")
    args = parser.parse_args()
    params = load_params()
    entries = read_manifest(params.download.manifest)
    out = OverlayFiles(args.out, {k: args.sheets / f"overlays_{k}.png" for k in SHEETS})
    workers = params.overlays.workers or os.cpu_count() or 1
    start = time.perf_counter()
    counts = run_overlays(args.raw, entries, params.overlays, out, workers=workers)
    print(f"overlays of {len(entries)} images in {time.perf_counter() - start:.1f}s (images with each kind):")
    for label, c in counts.items():
        print(
            f"  {label:9s} {c['images']:3d} images: calipers {c['calipers']}, text {c['text']}, colour "
            f"{c['colour']}, any of these {c['any_operator_mark']}; logo {c['logo']}; view axilla "
            f"{c['view_axilla']}, breast {c['view_breast']}, unknown {c['view_unknown']}"
        )


if __name__ == "__main__":
    run_stage(main)
