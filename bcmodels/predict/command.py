"""Classify images with trained checkpoints: per image and model the predicted class and every class's
probability, as a table on stdout and a CSV file; with --explain also a Grad-CAM heat map per image and model.

Inputs, in the order given (a file met twice is read once):
  an image file   read whatever its name;
  a folder        every *.png, *.jpg and *.jpeg below it (any case), recursively, in sorted order;
  a zip (*.zip)   its *.png, *.jpg and *.jpeg members, sorted, each read into memory and decoded there: nothing is
                  extracted to disk. The download stage's rules (bcmodels.io.archives) refuse a member with an
                  absolute name, a ".." part, a link or a device, one larger than MAX_MEMBER_BYTES, and one
                  encrypted or compressed in a way zipfile cannot read; a zip of more than MAX_ZIP_MEMBERS
                  entries or MAX_ZIP_BYTES in all (as its directory declares, which zipfile enforces while
                  reading) is refused whole (the limits in bcmodels/predict/inputs.py).
  In folders and zips, names starting with "." and __MACOSX folders (macOS's resource forks) are skipped.
  Only regular files are read: a named pipe or device is refused unopened (opening a pipe waits for ever).
Every image is decoded by preprocess's rules (bcmodels.io.images): the same limits on size and shape, 16-bit
grey and transparency converted the same way, a broken file refused.

Models: --model NAME is the main run's checkpoint <checkpoints>/NAME.pt (data/checkpoints/, which
`dvc repro train@NAME` makes); --checkpoint FILE is any checkpoint file; with neither, DEFAULT_MODEL (the
benchmark's best, docs/model_card.md). Each image is made square exactly as
the checkpoint records its training input was made (geometry, size, short side) and normalised with the
checkpoint's mean and std. Images are decoded once (once per distinct preprocessing), in chunks of
IMAGES_PER_CHUNK, by a pool of threads; each model then runs over a chunk in batches, on CUDA when there is
one (--device auto).

Output: the folder --out (default predictions/ in the current folder). It is predict's own: each run
replaces it as a whole (nothing stale stays; an interrupted run leaves the previous one), and a folder
holding anything predict does not write is refused, as is a symbolic link.
  predictions.csv                      one row per input, in input order: file; then per model
                                       <model>/predicted, <model>/p_<class> for each class of its checkpoint
                                       (and <model>/heatmap with --explain); then error: empty, or why the
                                       input could not be classified (its model cells are then empty).
  gradcam/<model>/<row>_<name>.png     --explain: the model's input and the heat map over it, titled with
                                       the predicted class and its probability (bcmodels.models.gradcam)
  gradcam/contact_sheet.png            --explain: the heat maps of the first MAX_SHEET_IMAGES images
  <model>/lesion_share (a CSV column)  --explain --masks: the share of the heat map's energy inside the lesion,
                                       from the mask files beside each image file named as BUSI names them
                                       (<stem>_mask.png, <stem>_mask_1.png, ...: joined, made square as the
                                       image, their edge drawn on the heat maps); empty for an image without
                                       mask files or without a lesion (a normal image's empty mask), and for
                                       images in zips. Mask files found beside images are not classified.
<model> is the --model NAME, or the checkpoint file's name without .pt (made unique if two are the same).

Errors: an input that cannot be read gets one `error: <input>: <why>` line on stderr and an error in its
CSV row; the rest still runs, and the exit status is 1 if any input failed. A problem with a model (no
checkpoint, another format version, another architecture) fails the whole run with one line before any
image is read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bcmodels.errors import ConfigError
from bcmodels.evaluation.best import DEFAULT_MODEL
from bcmodels.io.files import atomic_dir, csv_text
from bcmodels.io.progress import say
from bcmodels.predict.classify import (
    DEFAULT_CHECKPOINTS,
    LoadedModel,
    Row,
    load_models,
    predict_sources,
)
from bcmodels.predict.inputs import collect_sources
from bcmodels.predict.output import CSV_NAME, HeatMapFiles, check_out_dir, csv_header, csv_rows, format_table
from bcmodels.runtime import resolve_device

DEFAULT_OUT = Path("predictions")


@dataclass(frozen=True)
class Outcome:
    rows: list[Row]
    models: list[LoadedModel]

    @property
    def failed(self) -> int:
        return sum(1 for row in self.rows if row.error)


def run(
    paths: Sequence[Path],
    *,
    names: Sequence[str] = (),
    files: Sequence[Path] = (),
    checkpoints: Path = DEFAULT_CHECKPOINTS,
    out: Path = DEFAULT_OUT,
    explain_maps: bool = False,
    lesion_masks: bool = False,
    device: str = "auto",
    batch_size: int = 32,
    workers: int = 0,
    report: Callable[[str], None] = lambda line: None,
) -> Outcome:
    """Everything the command does: load the models, read and classify the inputs, write --out."""
    if not names and not files:
        raise ConfigError("no model: give --model NAME or --checkpoint FILE")
    if not paths:
        raise ConfigError("no input: give image files, folders or zips")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    if workers < 0:
        raise ConfigError(f"--workers {workers}: must be 0 (one per core) or more")
    if lesion_masks and not explain_maps:
        raise ConfigError("--masks measures the heat maps against the lesion: give --explain too")
    check_out_dir(out)
    torch_device = resolve_device(device)
    models = load_models(names, files, checkpoints=checkpoints, device=torch_device, explain_layers=explain_maps)
    for m in models:
        say(m.describe())
    with ExitStack() as stack, atomic_dir(out) as tmp:
        sources = collect_sources(paths, stack, with_masks=lesion_masks)
        say(f"{len(sources)} inputs, on {torch_device}")
        heatmaps = HeatMapFiles(tmp, len(sources)) if explain_maps else None
        rows = predict_sources(
            sources,
            models,
            device=torch_device,
            batch_size=batch_size,
            workers=workers,
            report=report,
            heatmaps=heatmaps,
        )
        header = csv_header(models, explain_maps, lesion_masks)
        (tmp / CSV_NAME).write_text(csv_text(header, csv_rows(rows, models, explain_maps, lesion_masks)))
        if heatmaps is not None:
            heatmaps.write_sheet(models, sum(1 for r in rows if not r.error))
    return Outcome(rows, models)


# ---------------------------------------------------------------------------------------------- command


def _names(values: Sequence[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bcmodels.predict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Classify breast-ultrasound images with trained checkpoints: per image and model the predicted\n"
        "class and each class's probability, as a table and a CSV file. Every image is preprocessed exactly as\n"
        "its checkpoint records (geometry, size, normalisation).",
        epilog="output in --out:\n"
        "  predictions.csv                   a row per input: file, then per model <model>/predicted and\n"
        "                                    <model>/p_<class> (and <model>/heatmap, <model>/lesion_share),\n"
        "                                    then error\n"
        "  gradcam/<model>/<row>_<name>.png  --explain: input and Grad-CAM heat map of the predicted class\n"
        "  gradcam/contact_sheet.png         --explain: all heat maps (the first 120 images)\n"
        "An input that cannot be read gets one `error:` line and an error in its row; the exit status is then 1.\n"
        "A missing or unusable checkpoint stops the run with one `error:` line.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="image files, folders (searched recursively for PNG/JPEG) or zips of PNG/JPEG files",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="the main run's model NAME (checkpoint <checkpoints>/NAME.pt); repeat it, or give a comma-separated "
        f"list, for several. Without --model and --checkpoint: {DEFAULT_MODEL}, the benchmark's best "
        "(docs/model_card.md)",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a checkpoint file; may be repeated",
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=DEFAULT_CHECKPOINTS,
        metavar="DIR",
        help="where --model looks for NAME.pt (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="output folder, replaced as a whole on each run (default: %(default)s)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="also write a Grad-CAM heat map per image and model, and a contact sheet of them",
    )
    parser.add_argument(
        "--masks",
        action="store_true",
        help="with --explain: measure each heat map against the image's lesion mask files, named as BUSI names "
        "them (<stem>_mask.png beside <stem>.png); the share inside the lesion goes to <model>/lesion_share",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CUDA when there is one (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="images per forward pass (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="threads decoding images; 0: one per core (default: %(default)s)",
    )
    return parser.parse_args(argv)


def _report(line: str) -> None:
    tqdm.write(f"error: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    names = _names(args.model) or ([] if args.checkpoint else [DEFAULT_MODEL])
    outcome = run(
        args.paths,
        names=names,
        files=args.checkpoint,
        checkpoints=args.checkpoints,
        out=args.out,
        explain_maps=args.explain,
        lesion_masks=args.masks,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        report=_report,
    )
    print(format_table(outcome.rows, outcome.models))
    done = f"{len(outcome.rows) - outcome.failed} of {len(outcome.rows)} inputs classified; written to {args.out}/"
    say(done + (f"; {outcome.failed} failed (their lines above, and the error column)" if outcome.failed else ""))
    if outcome.failed:
        sys.exit(1)
