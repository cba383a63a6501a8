"""One image file to a square RGB array: the rules every reader of raw images follows (preprocess, audit,
predict). The rules and their reasons are in docs/input-handling.md; in short: upright by EXIF,
8-bit RGB by a fixed rule per mode, refused (a DataError naming the file) if broken, a possible
decompression bomb, too elongated, or of a mode without a defined 8-bit meaning."""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from bcmodels.errors import OS_ADVICE, DataError, short

MAX_PIXELS = 4096 * 4096  # 16.8 MP, 25 times the largest BUSI image (1048 x 578); PIL's default is 89 MP
MAX_ASPECT = 10  # BUSI's widest image is 2.1 : 1
MIN_SIDE = 8
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
TRANSPARENT_MODES = ("LA", "La", "RGBA", "RGBa", "PA")
RGB_CONVERTIBLE_MODES = ("RGB", "L", "1", "P", "CMYK", "YCbCr")
SUPPORTED_MODES = SIXTEEN_BIT_MODES + TRANSPARENT_MODES + RGB_CONVERTIBLE_MODES
REMEDY = (  # predict, whose inputs are not BUSI's, leaves it out of its messages
    "Restore the verified original with `dvc repro download` (the stage that installs data/raw/); for data "
    "other than BUSI, use an 8-bit RGB or grey PNG or JPEG file"
)


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image: 16-bit grey scaled by 255/65535, transparency composited on black, else PIL's conversion."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.uint32)
        grey = ((values + 128) // 257).astype(np.uint8)  # round(v / 257) = round(v * 255 / 65535)
        if "transparency" in image.info:  # a tRNS key: the 16-bit value that is fully transparent
            grey[values == image.info["transparency"]] = 0  # composited on black
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
    left, top = round((new_w - size) / 2.0), round((new_h - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def to_square(image: Image.Image, geometry: str, size: int, short_side: int) -> Image.Image:
    """An RGB image of size x size by the geometry: study (short side to short_side, centre crop), resize or
    letterbox (long side to size, centred on black: nothing cut, nothing distorted)."""
    image = to_rgb(image)
    if geometry == "study":
        return _study_resize_crop(image, short_side, size)
    if geometry == "resize":
        return image.resize((size, size), Image.Resampling.BILINEAR)
    if geometry != "letterbox":
        raise ValueError(f"unknown geometry {geometry!r}")
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
            f"than MAX_PIXELS ({MAX_PIXELS:,}) in bcmodels/io/images.py"
        )
    if min(width, height) < MIN_SIDE:
        return f"refused: {width} x {height} pixels, a side shorter than {MIN_SIDE}"
    if max(width, height) > MAX_ASPECT * min(width, height):
        return f"refused: {width} x {height} pixels, a side more than MAX_ASPECT ({MAX_ASPECT}) times the other"
    if image.mode not in SUPPORTED_MODES:
        return f"unsupported image mode {image.mode}; only 8-bit, 16-bit grey and palette images are read"
    return None


def _damaged_png(image: Image.Image) -> str | None:
    """Why a PNG's chunks fail their CRC, or None. PIL checks those before the image data only; a damaged
    image data chunk often still inflates (into wrong pixels, or the right ones if the damage hit a flag)."""
    if image.format != "PNG":
        return None
    try:
        image.verify()  # reads every chunk up to IEND and checks its CRC, without decoding
    except SyntaxError as err:
        return f"cannot decode image ({err})"
    except (OSError, EOFError, struct.error):
        return None  # cut short: load() says so in its own words
    return None


def _upright(path: Path, image: Image.Image) -> Image.Image:
    """A copy turned as its EXIF orientation says (it outlives the file); malformed EXIF is refused by name."""
    try:
        return ImageOps.exif_transpose(image)
    except (TypeError, ValueError, KeyError, struct.error) as err:  # e.g. a tag of the wrong type
        raise DataError(
            f"{path}: malformed EXIF metadata ({type(err).__name__}: {str(err)[:100]}); save the image "
            "again without EXIF, or fix its orientation tag"
        ) from None


def decode(path: Path) -> Image.Image:
    """The whole image file, decoded, upright and in a mode to_rgb takes; DataError naming the file if refused."""
    try:
        # PIL warns between its MAX_IMAGE_PIXELS and twice that (and raises above): made an error here, so
        # such a file is refused the same way whatever the process's warning filters are.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                problem = _refusal(image) or _damaged_png(image)
            if problem is None:
                with Image.open(path) as image:  # again: verifying a PNG used the first one up
                    image.load()
                    return _upright(path, image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        problem = f"refused as a possible decompression bomb ({err})"
    except (MemoryError, DataError):
        raise
    except FileNotFoundError:
        problem = "not found"
    except OSError as err:
        if err.errno in OS_ADVICE or isinstance(err, IsADirectoryError):
            # the file system's fault, not the image's: no advice about restoring the data
            raise DataError(f"{path}: {OS_ADVICE.get(err.errno, err.strerror)}") from None
        problem = f"cannot decode image ({str(err)[:200]})"
    except Exception as err:
        problem = f"cannot decode image ({type(err).__name__}: {str(err)[:200]})"
    raise DataError(f"{path}: {problem}. {REMEDY}.")


def load_square(path: Path, geometry: str, size: int, short_side: int) -> np.ndarray:
    """One image file to a (size, size, 3) uint8 array; the error names the file if it is refused."""
    return np.asarray(to_square(decode(path), geometry, size, short_side), dtype=np.uint8)


def load_square_with_mask(
    path: Path, mask_paths: Sequence[Path], geometry: str, size: int, short_side: int
) -> tuple[np.ndarray, np.ndarray]:
    """An image as load_square makes it, and its lesion masks joined into one (mask_square)."""
    image = decode(path)
    square = np.asarray(to_square(image, geometry, size, short_side), dtype=np.uint8)
    return square, mask_square(mask_paths, image.size, geometry, size, short_side)


def join_masks(paths: Sequence[Path], size: tuple[int, int] | None) -> np.ndarray:
    """(H, W) bool: an image's lesion mask files joined (a pixel is lesion if any file marks it), at `size`
    (width, height), which every file must have; None: the first file's size. A mask must be binary: 0 for
    background and one other grey value for the lesion (BUSI's hold 0 and 255); any other file is refused,
    naming it, rather than thresholded into a lesion of the wrong shape."""
    lesion = None
    for path in paths:
        mask = decode(path)
        size = size or mask.size
        if mask.size != size:
            raise DataError(
                f"{path}: a mask of {mask.size[0]} x {mask.size[1]} pixels for an image of {size[0]} x {size[1]}. "
                f"{REMEDY}"
            )
        grey = np.asarray(to_rgb(mask).convert("L"))
        levels = np.unique(grey)
        if len(levels[levels > 0]) > 1:
            raise DataError(
                f"{path}: not a binary mask ({len(levels)} grey levels, {short(levels.tolist())}); a lesion mask "
                f"holds 0 and one other value. {REMEDY}"
            )
        lesion = grey > 0 if lesion is None else lesion | (grey > 0)
    if lesion is None:
        if size is None:
            raise ValueError("no mask files and no size")
        return np.zeros(size[::-1], dtype=bool)
    return lesion


def mask_square(
    paths: Sequence[Path], image_size: tuple[int, int], geometry: str, size: int, short_side: int
) -> np.ndarray:
    """An image's lesion masks (none, one or several files, joined by join_masks) to a (size, size) uint8 array
    of 0 and 1, made square by the very geometry of its image (to_square), so that mask and image stay aligned
    pixel for pixel: after resampling, lesion where at least half of the pixel is lesion."""
    lesion = join_masks(paths, image_size)
    grey = Image.fromarray(lesion.astype(np.uint8) * 255, "L")
    return (np.asarray(to_square(grey, geometry, size, short_side))[..., 0] >= 128).astype(np.uint8)


class _InMemoryFile(io.BytesIO):
    """An image file's bytes, read by decode() like an open file and named in its errors by `name`."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self._name = name

    def __str__(self) -> str:
        return self._name


def decode_bytes(data: bytes, name: str) -> Image.Image:
    """decode() for an image file held in memory (a zip member read without extracting it): the same rules
    and limits, a DataError naming `name` if refused."""
    return decode(_InMemoryFile(data, name))  # type: ignore[arg-type]  # PIL opens a file object as a path
