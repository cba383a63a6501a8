"""Stage edits: the image store again with every mark removed (--mark-free) and with every lesion removed
(--lesion-free), by inpainting the raw images; a figure of examples to judge the edits by eye."""

import argparse
import time
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.data.edits import EditFiles, jobs_of, make_edits
from bcmodels.data.edits_figure import edits_figure
from bcmodels.errors import run_stage
from bcmodels.formats.manifest import read_manifest
from bcmodels.formats.overlays import read_overlays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="the verified Dataset_BUSI_with_GT folder")
    parser.add_argument("--overlays", type=Path, required=True, help="the overlay audit's overlays.csv")
    parser.add_argument("--mark-free", type=Path, required=True, help="the image store folder to (re)place")
    parser.add_argument("--lesion-free", type=Path, required=True, help="the image store folder to (re)place")
    parser.add_argument("--figure", type=Path, required=True, help="the PNG of example edits")
    args = parser.parse_args()
    params = load_params()
    start = time.perf_counter()
    entries = read_manifest(params.download.manifest, kinds=("image", "mask"))
    marks = read_overlays(args.overlays)
    files = EditFiles(args.overlays, args.mark_free, args.lesion_free)
    counts = make_edits(args.raw, entries, marks, params.edits, params.preprocess, files)
    edits_figure(jobs_of(args.raw, entries, marks, args.overlays), params.edits, params.preprocess, args.figure)
    c = counts  # short, for the line below
    print(
        f"{args.mark_free}: marks repainted on {c['marks']} of {c['images']} raw images ({c['marks_in_store']} "
        f"changed in the store); {args.lesion_free}: lesions on {c['lesions']} ({c['lesions_in_store']}), sham "
        f"patches on {c['shams']} ({c['shams_in_store']}); {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    run_stage(main)
