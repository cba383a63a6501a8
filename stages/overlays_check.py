"""Stage overlays_check: the overlay detector's precision and recall on the samples labelled by eye."""

import argparse
from pathlib import Path

from bcmodels.audit.overlay_check import check_samples, draw_samples, score, summary_lines
from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.formats.manifest import read_manifest
from bcmodels.formats.overlays import read_labels, read_overlays
from bcmodels.io.files import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draw", action="store_true", help="only list the samples to label: sample<TAB>file")
    parser.add_argument("--overlays", type=Path, help="the overlays stage's table")
    parser.add_argument("--labels", type=Path, help="the labelled samples")
    parser.add_argument("--out", type=Path, help="the metrics JSON to write")
    args = parser.parse_args()
    params = load_params()
    drawn = draw_samples(read_manifest(params.download.manifest), params.overlays.check)
    if args.draw:
        print("\n".join(f"{sample}\t{file}" for sample, files in drawn.items() for file in files))
        return
    if not (args.overlays and args.labels and args.out):
        parser.error("--overlays, --labels and --out are required (or --draw)")
    labels = read_labels(args.labels)
    check_samples(labels, drawn)
    metrics = score(read_overlays(args.overlays), labels)
    write_json(args.out, metrics)
    print(f"{args.out}: {len(labels)} labelled images")
    print("\n".join(summary_lines(metrics)))


if __name__ == "__main__":
    run_stage(main)
