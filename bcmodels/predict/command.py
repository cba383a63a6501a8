"""Classify images with trained checkpoints: per image and model the predicted class and every class's
probability, as a table on stdout and a CSV file; with --explain also a Grad-CAM heat map per image and model.

Inputs, in the order given (a file met twice is read once):
  an image file   read whatever its name;
  a folder        every *.png, *.jpg and *.jpeg below it (any case), recursively, in sorted order;
  a zip (*.zip)   its *.png, *.jpg and *.jpeg members, sorted, each read into memory and decoded there: nothing is
                  extracted to disk. A member with an absolute name, a ".." part or a link is refused, as is one
                  larger than MAX_MEMBER_BYTES; a zip of more than MAX_ZIP_MEMBERS entries or MAX_ZIP_BYTES in
                  all (as its directory declares, which zipfile enforces while reading) is refused whole.
  In folders and zips, names starting with "." and __MACOSX folders (macOS's resource forks) are skipped.
Every image is decoded by preprocess's rules (bcmodels.io.images): the same limits on size and shape, 16-bit
grey and transparency converted the same way, a broken file refused.

Models: --model NAME is the main run's checkpoint <checkpoints>/NAME.pt (data/checkpoints/, which
`dvc repro train@NAME` makes); --checkpoint FILE is any checkpoint file. Each image is made square exactly as
the checkpoint records its training input was made (geometry, size, short side) and normalised with the
checkpoint's mean and std. Images are decoded once (once per distinct preprocessing), in chunks of CHUNK, by
a pool of threads (Pillow releases the GIL while decoding and resizing; threads, unlike preprocess's spawned
processes, need no second import of torch); each model then runs over a chunk in batches, on CUDA when there
is one (--device auto).

Output: the folder --out (default predictions/ in the current folder). It is predict's own: each run
replaces it as a whole (nothing stale stays; an interrupted run leaves the previous one), and a folder
holding anything predict does not write is refused.
  predictions.csv                      one row per input, in input order: file; then per model
                                       <model>/predicted, <model>/p_<class> for each class of its checkpoint
                                       (and <model>/heatmap with --explain); then error: empty, or why the
                                       input could not be classified (its model cells are then empty).
  gradcam/<model>/<row>_<name>.png     --explain: the model's input and the heat map over it, titled with
                                       the predicted class and its probability (bcmodels.models.gradcam)
  gradcam/contact_sheet.png            --explain: the heat maps of the first MAX_SHEET_IMAGES images
<model> is the --model NAME, or the checkpoint file's name without .pt (made unique if two are the same).

Errors: an input that cannot be read gets one `error: <input>: <why>` line on stderr and an error in its
CSV row; the rest still runs, and the exit status is 1 if any input failed. A problem with a model (no
checkpoint, another format version, another architecture) fails the whole run with one line before any
image is read.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import stat
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from bcmodels.config.schema import NAME
from bcmodels.errors import ConfigError, DataError, WeightsError
from bcmodels.formats.checkpoint import Checkpoint, load_checkpoint
from bcmodels.io.files import atomic_dir, csv_text
from bcmodels.io.images import REMEDY, decode, decode_bytes, to_square
from bcmodels.io.progress import progress, say
from bcmodels.models.gradcam import CamLayer, explain, heatmap_figure, overlay, target_layer
from bcmodels.models.inference import predict_logits
from bcmodels.models.registry import restore
from bcmodels.render.contact_sheet import contact_sheet
from bcmodels.runtime import resolve_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MB = 1_000_000
MAX_MEMBER_BYTES = 64 * MB  # one zip member; BUSI's largest image is under 1 MB
MAX_ZIP_BYTES = 4_000 * MB  # all members of one zip, uncompressed
MAX_ZIP_MEMBERS = 100_000
CHUNK = 256  # images decoded and held in memory at once (256 x 224 x 224 x 3 bytes = 39 MB)
MAX_SHEET_IMAGES = 120  # images on the contact sheet: BUSI's test set fits
SHEET_CELLS = 6  # thumbnails per contact-sheet row (at least one image per row)
SHEET_THUMB = 160  # pixels
DEFAULT_OUT = Path("predictions")
DEFAULT_CHECKPOINTS = Path("data/checkpoints")
CSV_NAME = "predictions.csv"
GRADCAM_DIR = "gradcam"
SHEET_NAME = "contact_sheet.png"
OWN_ENTRIES = {CSV_NAME, GRADCAM_DIR}

Spec = tuple[str, int, int]  # geometry, image_size, resize_short_side


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Source:
    """One input: its name in the output, and how to decode it or why it cannot be."""

    name: str
    read: Callable[[], Image.Image] | None = None
    error: str | None = None


def _skipped(parts: Sequence[str]) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def folder_images(root: Path) -> list[Path]:
    """The PNG and JPEG files below root, recursively (links to folders not followed), in sorted order."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not _skipped([d])]
        found += [Path(folder) / f for f in files if _is_image_name(f) and not _skipped([f])]
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member's name or kind is refused, or None."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "refused: an absolute name in the zip"
    if ".." in name.split("/"):
        return "refused: a '..' part in its name in the zip"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "refused: a link in the zip"
    return None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Image.Image:
    try:
        with zf.open(info) as member:  # yields at most file_size bytes and checks the CRC at the end
            data = member.read(MAX_MEMBER_BYTES + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{name}: cannot read it from the zip ({str(err)[:200]})") from None
    return decode_bytes(data, name)


def zip_sources(path: Path, stack: ExitStack) -> list[Source]:
    """The images of a zip as sources that read their member on demand (the zip stays open in stack)."""
    try:
        zf = stack.enter_context(zipfile.ZipFile(path))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return [Source(str(path), error=f"not a readable zip ({str(err)[:200]})")]
    if len(infos) > MAX_ZIP_MEMBERS:
        return [
            Source(str(path), error=f"refused: {len(infos):,} entries, more than MAX_ZIP_MEMBERS ({MAX_ZIP_MEMBERS:,})")
        ]
    total = sum(info.file_size for info in infos)
    if total > MAX_ZIP_BYTES:
        return [
            Source(str(path), error=f"refused: {total:,} bytes unpacked, more than MAX_ZIP_BYTES ({MAX_ZIP_BYTES:,})")
        ]
    sources = []
    for info in sorted(infos, key=lambda i: PurePosixPath(i.filename.replace("\\", "/")).parts):
        name = f"{path}:{info.filename}"
        problem = _unsafe_member(info)
        if problem:
            sources.append(Source(name, error=problem))
        elif info.is_dir() or not _is_image_name(info.filename) or _skipped(PurePosixPath(info.filename).parts):
            continue
        elif info.file_size > MAX_MEMBER_BYTES:
            sources.append(
                Source(
                    name, error=f"refused: {info.file_size:,} bytes, more than MAX_MEMBER_BYTES ({MAX_MEMBER_BYTES:,})"
                )
            )
        else:
            sources.append(Source(name, read=functools.partial(_read_member, zf, info, name)))
    if not sources:
        return [Source(str(path), error="a zip with no PNG or JPEG files in it")]
    return sources


def collect_sources(paths: Sequence[Path], stack: ExitStack) -> list[Source]:
    """Every input image of the command line, in order; a path that yields none is an input that failed."""
    sources: list[Source] = []
    seen: set = set()

    def add(key: object, source: Source) -> None:
        if key not in seen:
            seen.add(key)
            sources.append(source)

    for path in paths:
        if path.is_dir():
            files = folder_images(path)
            if not files:
                add(("folder", path.resolve()), Source(str(path), error="a folder with no PNG or JPEG files in it"))
            for file in files:
                add(file.resolve(), Source(str(file), read=functools.partial(decode, file)))
        elif path.is_file() and path.suffix.lower() == ".zip":
            for source in zip_sources(path, stack):
                add((path.resolve(), source.name), source)
        elif path.is_file():
            add(path.resolve(), Source(str(path), read=functools.partial(decode, path)))
        else:
            problem = "not a file or folder" if path.exists() else "no such file or folder"
            add(("missing", str(path)), Source(str(path), error=problem))
    return sources


def _reason(err: DataError, name: str) -> str:
    """The refusal of a DataError without the input's name (the row has it) and preprocess's remedy (it
    speaks of restoring BUSI's download, which does not apply to images given here)."""
    text = str(err).removeprefix(f"{name}: ").removesuffix(f" {REMEDY}.")
    return text.rstrip(".")


def _prepare(source: Source, specs: Sequence[Spec]) -> dict[Spec, np.ndarray] | str:
    """The source's model inputs (S, S, 3) uint8 for each preprocessing, or why it cannot be read."""
    try:
        image = source.read()  # type: ignore[misc]
    except DataError as err:
        return _reason(err, source.name)
    return {spec: np.asarray(to_square(image, *spec), dtype=np.uint8) for spec in specs}


# ---------------------------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    label: str  # its name in the output
    path: Path
    checkpoint: Checkpoint
    model: nn.Module  # in eval mode, on the device
    layer: CamLayer | None = None  # Grad-CAM's layer, with --explain

    @property
    def spec(self) -> Spec:
        c = self.checkpoint
        return (c.geometry, c.image_size, c.resize_short_side)

    def describe(self) -> str:
        c = self.checkpoint
        geometry = f"{c.geometry} {c.image_size} px" + (
            f" from short side {c.resize_short_side}" if c.geometry == "study" else ""
        )
        cam = f", Grad-CAM on {self.layer.name}" if self.layer else ""
        return f"{self.label}: {self.path} ({c.arch}, {geometry}, best epoch {c.best_epoch}{cam})"


def _unique_label(stem: str, path: Path, taken: set[str]) -> str:
    label = stem if stem not in taken else f"{path.parent.name}_{stem}"
    n = 2
    while label in taken:
        label, n = f"{stem}_{n}", n + 1
    return label


def load_models(
    names: Sequence[str],
    files: Sequence[Path],
    *,
    checkpoints: Path = DEFAULT_CHECKPOINTS,
    device: torch.device,
    explain_layers: bool = False,
) -> list[LoadedModel]:
    """The models of --model NAME (checkpoints/NAME.pt) and --checkpoint FILE, in that order; any problem with
    one (missing, foreign, another version, not fitting its architecture) is an error naming the file."""
    wanted: list[tuple[str, Path, str]] = []
    for name in names:
        if not NAME.fullmatch(name):
            raise ConfigError(f"--model {name!r}: not a model name (a letter, then letters, digits or _)")
        wanted.append((name, checkpoints / f"{name}.pt", f"dvc repro train@{name}"))
    for file in files:
        if not file.is_file():
            raise DataError(f"{file}: checkpoint not found (--checkpoint)")
        wanted.append((file.stem, file, "dvc repro"))
    loaded: list[LoadedModel] = []
    seen: set[Path] = set()
    for stem, path, made_by in wanted:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        checkpoint = load_checkpoint(path, made_by)
        try:
            model = restore(checkpoint)
        except (WeightsError, ConfigError) as err:
            raise WeightsError(f"{path}: {err}; make it again with `{made_by}`") from None
        model.to(device)
        label = _unique_label(stem, path, {m.label for m in loaded})
        layer = None
        if explain_layers:
            layer = target_layer(
                model, num_classes=len(checkpoint.classes), image_size=checkpoint.image_size, arch=checkpoint.arch
            )
        loaded.append(LoadedModel(label, path, checkpoint, model, layer))
    return loaded


# ---------------------------------------------------------------------------------------------- prediction


@dataclass
class Row:
    name: str
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # model label -> (K,) probabilities
    heatmaps: dict[str, str] = field(default_factory=dict)  # model label -> PNG path relative to --out
    error: str | None = None


@dataclass
class SheetCell:
    image: Image.Image
    caption: str


def _file_stem(name: str) -> str:
    base = PurePosixPath(name.replace("\\", "/").rsplit(":", 1)[-1]).name
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return re.sub(r"[^A-Za-z0-9._()-]+", "_", stem).strip("._")[:80] or "image"


def _heatmap_path(label: str, index: int, total: int, name: str) -> str:
    digits = max(4, len(str(total)))
    return f"{GRADCAM_DIR}/{label}/{index + 1:0{digits}d}_{_file_stem(name)}.png"


def _caption(name: str, label: str, classes: tuple[str, ...], p: np.ndarray) -> str:
    base = _file_stem(name)
    base = base if len(base) <= 24 else base[:23] + "~"
    k = int(p.argmax())
    return f"{base}\n{label}\n{classes[k]} {p[k]:.2f}"


def predict_sources(
    sources: Sequence[Source],
    models: Sequence[LoadedModel],
    *,
    device: torch.device,
    batch_size: int = 32,
    workers: int = 0,
    heatmap_dir: Path | None = None,
    report: Callable[[str], None] = lambda line: None,
    sheet: list[list[SheetCell]] | None = None,
) -> list[Row]:
    """A row per source: every model's probabilities, or why the source could not be read (also passed to
    report as one line). With heatmap_dir (and models loaded with explain_layers) the Grad-CAM figures are
    written below it; sheet, if given, collects contact-sheet cells of the first MAX_SHEET_IMAGES images."""
    rows = [Row(s.name, error=s.error) for s in sources]
    for row in rows:
        if row.error:
            report(f"{row.name}: {row.error}")
    specs = list(dict.fromkeys(m.spec for m in models))
    readable = [i for i, s in enumerate(sources) if s.error is None]
    threads = max(1, min(workers or os.cpu_count() or 1, len(readable)))
    prepare = functools.partial(_prepare, specs=specs)
    with ThreadPoolExecutor(threads) as pool, progress(total=len(readable), desc="predict", unit="image") as bar:
        for start in range(0, len(readable), CHUNK):
            chunk = readable[start : start + CHUNK]
            inputs: list[tuple[int, dict[Spec, np.ndarray]]] = []
            for i, prepared in zip(chunk, pool.map(prepare, [sources[i] for i in chunk])):
                if isinstance(prepared, str):
                    rows[i].error = prepared
                    report(f"{rows[i].name}: {prepared}")
                else:
                    inputs.append((i, prepared))
            if inputs:
                for m in models:
                    _run_model(m, inputs, rows, device, batch_size, heatmap_dir, sheet)
            bar.update(len(chunk))
    return rows


def _run_model(
    m: LoadedModel,
    inputs: list[tuple[int, dict[Spec, np.ndarray]]],
    rows: list[Row],
    device: torch.device,
    batch_size: int,
    heatmap_dir: Path | None,
    sheet: list[list[SheetCell]] | None,
) -> None:
    c = m.checkpoint
    arrays = np.stack([prepared[m.spec] for _, prepared in inputs])
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).to(device)
    logits = predict_logits(m.model, images, batch_size=batch_size, mean=c.mean, std=c.std)
    probs = torch.softmax(logits.double(), dim=1).numpy()
    for (i, _), p in zip(inputs, probs):
        rows[i].probs[m.label] = p
    if heatmap_dir is None or m.layer is None:
        return
    targets = torch.from_numpy(probs.argmax(axis=1))
    maps = explain(m.model, images, targets, m.layer, batch_size=batch_size, mean=c.mean, std=c.std).numpy()
    for (i, _), image, cam, p in zip(inputs, arrays, maps, probs):
        k = int(p.argmax())
        relative = _heatmap_path(m.label, i, len(rows), rows[i].name)
        title = f"{rows[i].name}\n{m.label}: {c.classes[k]} {p[k]:.3f} (Grad-CAM on {m.layer.name})"
        target = heatmap_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        heatmap_figure(image, cam, title).save(target, format="PNG")
        rows[i].heatmaps[m.label] = relative
        if sheet is not None and i < MAX_SHEET_IMAGES:
            thumb = Image.fromarray(overlay(image, cam))
            small = thumb.width < SHEET_THUMB
            thumb = thumb.resize(
                (SHEET_THUMB, SHEET_THUMB), Image.Resampling.NEAREST if small else Image.Resampling.BOX
            )
            sheet[i].append(SheetCell(thumb, _caption(rows[i].name, m.label, c.classes, p)))


# ---------------------------------------------------------------------------------------------- output


def csv_header(models: Sequence[LoadedModel], explained: bool) -> list[str]:
    header = ["file"]
    for m in models:
        header += [f"{m.label}/predicted", *(f"{m.label}/p_{c}" for c in m.checkpoint.classes)]
        if explained:
            header.append(f"{m.label}/heatmap")
    return [*header, "error"]


def csv_rows(rows: Sequence[Row], models: Sequence[LoadedModel], explained: bool) -> Iterator[list[str]]:
    for row in rows:
        cells = [row.name]
        for m in models:
            p = row.probs.get(m.label)
            k = len(m.checkpoint.classes)
            if p is None:
                cells += [""] * (k + 1)
            else:
                cells += [m.checkpoint.classes[int(p.argmax())], *(f"{x:.6f}" for x in p)]
            if explained:
                cells.append(row.heatmaps.get(m.label, ""))
        yield [*cells, row.error or ""]


def format_table(rows: Sequence[Row], models: Sequence[LoadedModel]) -> str:
    """The predictions as aligned text: file, then per model the class and the probabilities, then errors."""
    header = ["file"]
    for m in models:
        header += [m.label, *m.checkpoint.classes]
    header.append("error")
    body = []
    for row in rows:
        cells = [row.name]
        for m in models:
            p = row.probs.get(m.label)
            k = len(m.checkpoint.classes)
            cells += ["-"] * (k + 1) if p is None else [m.checkpoint.classes[int(p.argmax())], *(f"{x:.3f}" for x in p)]
        body.append([*cells, row.error or ""])
    if not any(row[-1] for row in body):
        header, body = header[:-1], [row[:-1] for row in body]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
    numeric = {j for j in range(1, len(header)) if body and all(_is_number(r[j]) for r in body)}
    lines = [
        "  ".join(
            cell.rjust(w) if j in numeric else cell.ljust(w) for j, (cell, w) in enumerate(zip(r, widths))
        ).rstrip()
        for r in [header, *body]
    ]
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    return text == "-" or re.fullmatch(r"\d+\.\d+", text) is not None


def _write_sheet(path: Path, sheet: list[list[SheetCell]], models: Sequence[LoadedModel], classified: int) -> None:
    groups = [cells for cells in sheet if cells]
    per_row = max(1, SHEET_CELLS // max(1, len(models)))
    rows = [
        [(cell.image, cell.caption) for cells in groups[start : start + per_row] for cell in cells]
        for start in range(0, len(groups), per_row)
    ]
    layers = ", ".join(f"{m.label} on {m.layer.name}" for m in models if m.layer)
    shown = f"the first {len(groups)} of {classified} images" if classified > len(groups) else f"{len(groups)} images"
    title = f"Grad-CAM heat maps of the predicted class ({layers}), {shown}; red: most evidence"
    contact_sheet(rows, path, title, thumb=SHEET_THUMB)


def check_out_dir(out: Path) -> None:
    """--out must be a new folder or one predict wrote (it is replaced as a whole)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a folder")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"--out {out}: the current folder or one above it; name a folder of its own")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_ENTRIES)
        if foreign:
            raise ConfigError(
                f"--out {out}: holds files predict did not write ({', '.join(foreign[:3])}); it replaces its "
                "folder as a whole, so name a new folder or one of its earlier runs"
            )


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
    check_out_dir(out)
    torch_device = resolve_device(device)
    models = load_models(names, files, checkpoints=checkpoints, device=torch_device, explain_layers=explain_maps)
    for m in models:
        say(m.describe())
    with ExitStack() as stack, atomic_dir(out) as tmp:
        sources = collect_sources(paths, stack)
        say(f"{len(sources)} inputs, on {torch_device}")
        sheet: list[list[SheetCell]] | None = (
            [[] for _ in range(min(len(sources), MAX_SHEET_IMAGES))] if explain_maps else None
        )
        rows = predict_sources(
            sources,
            models,
            device=torch_device,
            batch_size=batch_size,
            workers=workers,
            heatmap_dir=tmp if explain_maps else None,
            report=report,
            sheet=sheet,
        )
        (tmp / CSV_NAME).write_text(csv_text(csv_header(models, explain_maps), csv_rows(rows, models, explain_maps)))
        if sheet is not None:
            _write_sheet(tmp / GRADCAM_DIR / SHEET_NAME, sheet, models, sum(1 for r in rows if not r.error))
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
        "                                    <model>/p_<class> (and <model>/heatmap), then error\n"
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
        "list, for several",
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
    outcome = run(
        args.paths,
        names=_names(args.model),
        files=args.checkpoint,
        checkpoints=args.checkpoints,
        out=args.out,
        explain_maps=args.explain,
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
