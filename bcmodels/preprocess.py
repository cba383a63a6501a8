"""Decode the 780 BUSI images once into one uint8 array (N, S, S, 3) plus an index CSV.

The download stage has verified every image against the manifest; the rules here are a second layer, for
files changed since then or other data. Each image is converted by a fixed rule or refused with a DataError
that names the file:

- EXIF orientation: applied (PIL.ImageOps.exif_transpose), so the image is upright as a viewer shows it.
- RGB: as is. L, 1, P without transparency, CMYK, YCbCr: PIL's conversion to RGB (grey into all channels).
- Transparency (LA, RGBA, PA, or a transparent palette or colour): composited on black, each channel times
  alpha / 255, rounded. Black, because a transparent pixel holds no image and black is what the scanner
  draws outside the scan and what letterbox pads with; dropping alpha instead would show whatever colour
  the encoder left under transparent pixels.
- 16-bit grey (I;16, I;16B, ...): v * 255 / 65535, rounded, over the full 16-bit range (0 -> 0,
  65535 -> 255). PIL's own conversion clips every value above 255 to white; stretching each image to
  its own min and max instead would make brightness mean something different in every image.
- Other modes (I and F, 32-bit; LAB, HSV): refused, there is no range to scale them by (BUSI has none).
- Truncated, undecodable or not an image at all: refused. ImageFile.LOAD_TRUNCATED_IMAGES stays False,
  so PIL raises rather than filling the missing rows with grey (a test holds every module to it).
- More than MAX_PIXELS pixels: refused as a possible decompression bomb, from the header, before
  decoding. PIL's own DecompressionBombWarning and DecompressionBombError (above its MAX_IMAGE_PIXELS,
  89 MP, and twice that) become the same refusal; PIL's module-wide limits are left as they are.
- Long side more than MAX_ASPECT times the short side: refused (the study geometry would scale a
  1 x 10000 strip to 256 x 2,560,000 pixels).
- Smaller than image_size: upsampled by the configured geometry like any other image (study: short
  side to resize_short_side, then the centre crop).

Outputs are written together into a temporary folder that replaces out_dir only when both are complete.
"""

from __future__ import annotations

import csv
import functools
import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from bcmodels.config import PreprocessConfig
from bcmodels.download import ManifestEntry
from bcmodels.errors import DataError
from bcmodels.fileio import atomic_dir, write_csv

IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"
MAX_PIXELS = 4096 * 4096  # 16.8 MP, 25 times the largest BUSI image (1048 x 578); PIL's default is 89 MP
MAX_ASPECT = 10  # BUSI's widest image is 2.1 : 1
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
TRANSPARENT_MODES = ("LA", "La", "RGBA", "RGBa", "PA")
RGB_CONVERTIBLE_MODES = ("RGB", "L", "1", "P", "CMYK", "YCbCr")
SUPPORTED_MODES = SIXTEEN_BIT_MODES + TRANSPARENT_MODES + RGB_CONVERTIBLE_MODES
REMEDY = (
    "Restore the verified original by running the download stage again (`dvc repro -f download`); for data "
    "other than BUSI, convert the file to an 8-bit RGB or grey PNG, or leave it out of the manifest."
)


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image by the rules of the module docstring; ValueError for a mode without one."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.uint32)
        grey = ((values + 128) // 257).astype(np.uint8)  # round(v / 257) = round(v * 255 / 65535)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in TRANSPARENT_MODES or (image.mode in RGB_CONVERTIBLE_MODES and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA")).astype(np.uint32)
        rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255  # round(c * alpha / 255): composited on black
        return Image.fromarray(rgb.astype(np.uint8), "RGB")
    if image.mode in RGB_CONVERTIBLE_MODES:
        return image.convert("RGB")
    raise ValueError(f"unsupported image mode {image.mode}")  # decode() refuses these, naming the file


def _study_resize_crop(image: Image.Image, short_side: int, size: int) -> Image.Image:
    """torchvision's Resize(short_side) then CenterCrop(size) on a PIL image, with its rounding rules.

    Written out in PIL so the worker processes need not import torch (which costs seconds per process).
    """
    w, h = image.size
    if w <= h:
        new_w, new_h = short_side, int(short_side * h / w)
    else:
        new_w, new_h = int(short_side * w / h), short_side
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def to_square(image: Image.Image, config: PreprocessConfig) -> Image.Image:
    """Apply the configured geometry: an RGB image of image_size x image_size."""
    image = to_rgb(image)
    size = config.image_size
    if config.geometry == "study":
        return _study_resize_crop(image, config.resize_short_side, size)
    if config.geometry == "resize":
        return image.resize((size, size), Image.Resampling.BILINEAR)
    # letterbox: the long side to `size`, centred on black, so nothing is cut and nothing distorted.
    scale = size / max(image.size)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(image.resize((w, h), Image.Resampling.BILINEAR), ((size - w) // 2, (size - h) // 2))
    return canvas


def _refusal(image: Image.Image) -> str | None:
    """Why an opened image is refused before decoding (from its header: size and mode), or None."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        return (
            f"refused as a possible decompression bomb: {width} x {height} = {width * height:,} pixels, more "
            f"than MAX_PIXELS ({MAX_PIXELS:,}) in bcmodels/preprocess.py"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        return f"refused: {width} x {height} pixels, a side more than MAX_ASPECT ({MAX_ASPECT}) times the other"
    if image.mode not in SUPPORTED_MODES:
        return f"unsupported image mode {image.mode}; only 8-bit, 16-bit grey and palette images are read"
    return None


def decode(path: Path) -> Image.Image:
    """The whole image file, decoded, upright and in a mode to_rgb takes; DataError naming the file if refused."""
    try:
        # PIL warns between its MAX_IMAGE_PIXELS and twice that (and raises above): made an error here, so
        # such a file is refused the same way whatever the process's warning filters are.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                problem = _refusal(image)
                if problem is None:
                    image.load()
                    return ImageOps.exif_transpose(image)  # a copy, upright, that outlives the file
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        problem = f"refused as a possible decompression bomb ({err})"
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        problem = f"cannot decode image ({err})"
    raise DataError(f"{path}: {problem}. {REMEDY}")


def load_image(path: Path, config: PreprocessConfig) -> np.ndarray:
    """One image file to a (S, S, 3) uint8 array; the error names the file if it is refused."""
    return np.asarray(to_square(decode(path), config), dtype=np.uint8)


def preprocess(raw_dir: Path, entries: list[ManifestEntry], config: PreprocessConfig, out_dir: Path) -> np.ndarray:
    """Write out_dir/images.npy and out_dir/index.csv for the manifest's images, in manifest order."""
    paths = [raw_dir / e.file for e in entries]
    workers = config.workers or os.cpu_count() or 1
    load = functools.partial(load_image, config=config)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        images = list(tqdm(pool.imap(load, paths, chunksize=8), total=len(paths), desc="preprocess", unit="image"))
    array = np.stack(images)
    # Both files or neither: a failure while writing leaves the previous out_dir as it was.
    with atomic_dir(out_dir) as tmp:
        with (tmp / IMAGES_FILE).open("wb") as f:
            np.save(f, array)
        write_csv(tmp / INDEX_FILE, ["file", "class", "sha256"], ([e.file, e.label, e.sha256] for e in entries))
    return array


def read_index(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))
