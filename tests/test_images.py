"""Image files as preprocess meets them: each odd case is converted by its rule or refused naming the file.

Images are square and the geometry is `resize` to their own size, which PIL does as an exact copy, so the
pixel values that come out are those of the conversion alone.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import bcmodels
from bcmodels.errors import DataError
from bcmodels.io.images import MAX_ASPECT, MAX_PIXELS, MIN_SIDE, load_square


def _load(path: Path, size: int) -> np.ndarray:
    return load_square(path, "resize", size, size)


def _big(pixels: np.ndarray, k: int = 4) -> np.ndarray:
    """Each pixel as a k x k block: test images above MIN_SIDE whose values are still known by hand."""
    return pixels.repeat(k, axis=0).repeat(k, axis=1)


def _small(out: np.ndarray, k: int = 4) -> np.ndarray:
    """One pixel per k x k block of an image loaded at its own size (no resampling happens then)."""
    return out[::k, ::k]


def test_grey_and_bilevel_images_are_replicated_into_three_channels(tmp_path):
    grey = np.array([[0, 77], [200, 255]], dtype=np.uint8)
    Image.fromarray(_big(grey), "L").save(tmp_path / "grey.png")
    Image.fromarray(_big(grey) > 100).save(tmp_path / "bilevel.png")  # mode "1"
    assert np.array_equal(_small(_load(tmp_path / "grey.png", 8)), np.stack([grey] * 3, axis=-1))
    assert np.array_equal(_small(_load(tmp_path / "bilevel.png", 8))[..., 0], np.array([[0, 0], [255, 255]]))


def test_palette_image_is_looked_up(tmp_path):
    image = Image.fromarray(_big(np.array([[0, 1], [1, 0]], dtype=np.uint8)), "P")
    image.putpalette([10, 20, 30, 255, 0, 0])
    image.save(tmp_path / "palette.png")
    out = _small(_load(tmp_path / "palette.png", 8))
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [255, 0, 0]


def test_alpha_is_composited_on_black(tmp_path):
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 128]], [[200, 100, 50, 0], [10, 20, 30, 1]]], np.uint8)
    Image.fromarray(_big(rgba), "RGBA").save(tmp_path / "rgba.png")
    expected = [[[200, 100, 50], [100, 50, 25]], [[0, 0, 0], [0, 0, 0]]]  # round(c * alpha / 255)
    assert _small(_load(tmp_path / "rgba.png", 8)).tolist() == expected
    Image.fromarray(_big(np.array([[[200, 128], [200, 255]]] * 2, np.uint8)), "LA").save(tmp_path / "la.png")
    assert _small(_load(tmp_path / "la.png", 8))[0].tolist() == [[100, 100, 100], [200, 200, 200]]


def test_transparent_palette_entry_becomes_black(tmp_path):
    image = Image.fromarray(_big(np.array([[0, 1], [1, 0]], dtype=np.uint8)), "P")
    image.putpalette([10, 20, 30, 255, 0, 0])
    image.save(tmp_path / "palette.png", transparency=0)
    out = _small(_load(tmp_path / "palette.png", 8))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 0, 0]


def test_sixteen_bit_grey_is_scaled_by_the_full_range(tmp_path):
    values = np.array([[0, 128, 129], [257, 25700, 32768], [40000, 65534, 65535]], dtype=np.uint16)
    Image.fromarray(_big(values)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    out = _small(_load(tmp_path / "deep.png", 12))
    expected = np.round(values / 257.0).astype(np.uint8)  # 0 -> 0, 65535 -> 255, no clipping at 255
    assert out[..., 0].tolist() == [[0, 0, 1], [1, 100, 128], [156, 255, 255]] == expected.tolist()
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()


def test_sixteen_bit_greys_transparency_key_is_composited_on_black(tmp_path):
    values = np.array([[0, 1000, 65535], [1000, 25700, 1001], [40000, 1000, 999]], dtype=np.uint16)
    Image.fromarray(_big(values)).save(tmp_path / "keyed.png", transparency=1000)  # a tRNS chunk: grey 1000
    data = (tmp_path / "keyed.png").read_bytes()
    assert data[24:26] == bytes([16, 0]) and b"tRNS" in data  # IHDR: bit depth 16, colour type 0 (grey)
    out = _small(_load(tmp_path / "keyed.png", 12))
    assert out[..., 0].tolist() == [[0, 0, 255], [0, 100, 4], [156, 0, 4]]  # 1000 alone is black; 999, 1001: 4
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()


@pytest.mark.parametrize("dtype, mode", [(np.int32, "I"), (np.float32, "F")])
def test_32_bit_images_are_refused(tmp_path, dtype, mode):
    path = tmp_path / "benign (9).png"
    Image.fromarray(np.arange(64, dtype=dtype).reshape(8, 8)).save(path, format="TIFF")  # a TIFF under a .png name
    with pytest.raises(DataError, match=re.escape(f"{path}: unsupported image mode {mode};")):
        _load(path, 8)


@pytest.mark.parametrize(
    "orientation, upright",
    [
        (2, lambda a: a[:, ::-1]),
        (3, lambda a: a[::-1, ::-1]),
        (6, lambda a: np.rot90(a, -1)),
        (8, lambda a: np.rot90(a, 1)),
    ],
    ids=["mirrored", "upside-down", "rotate-clockwise", "rotate-anticlockwise"],
)
def test_exif_orientation_is_applied(tmp_path, orientation, upright):
    stored = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored, "RGB").save(tmp_path / "turned.png", exif=exif)
    assert np.array_equal(_load(tmp_path / "turned.png", 8), upright(stored))


@pytest.mark.parametrize("geometry", ["study", "resize", "letterbox"])
def test_image_smaller_than_the_target_is_upsampled(tmp_path, geometry):
    Image.new("RGB", (12, 8), (90, 90, 90)).save(tmp_path / "small.png")
    out = load_square(tmp_path / "small.png", geometry, 32, 36)
    assert out.shape == (32, 32, 3)
    if geometry == "letterbox":  # 12 x 8 fitted to 32 x 21, black above and below
        assert (out[:5] == 0).all() and (out[6:26] == 90).all() and (out[27:] == 0).all()
    else:
        assert (out == 90).all()


def test_truncated_image_is_refused(tmp_path):
    path = tmp_path / "benign (3).png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB").save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=re.escape(f"{path}: cannot decode image (image file is truncated)")):
        _load(path, 8)


def test_no_module_lets_pil_load_truncated_images():
    for module in pkgutil.iter_modules(bcmodels.__path__):
        importlib.import_module(f"bcmodels.{module.name}")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("content", [b"", b"benign lesion, see report\n", b"\x89PNG\r\n\x1a\n" + bytes(40)])
def test_file_that_is_no_image_is_refused(tmp_path, content):
    path = tmp_path / "benign (4).png"
    path.write_bytes(content)
    message = re.escape(f"{path}: cannot decode image (") + ".*Restore the verified original"
    with pytest.raises(DataError, match=message):
        _load(path, 8)


def test_a_missing_file_says_to_run_the_stage_that_installs_it(tmp_path):
    path = tmp_path / "Dataset_BUSI_with_GT" / "benign" / "benign (5).png"
    message = f"{path}: not found. Restore the verified original with `dvc repro download` (the stage that installs"
    with pytest.raises(DataError, match=re.escape(message)):
        _load(path, 8)


def _png_with_stored_data(path: Path) -> tuple[bytearray, int, int]:
    """A PNG whose image data is one stored (uncompressed) deflate block: its bytes, where its IDAT chunk's
    data starts, and that data's length."""
    Image.fromarray(np.arange(16 * 16, dtype=np.uint8).reshape(16, 16), "L").save(path, compress_level=0)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    (length,) = struct.unpack(">I", data[start - 8 : start - 4])
    return data, start, length


def test_a_png_whose_image_data_fails_its_crc_is_refused(tmp_path):
    """One bit of the image data changed, the CRC kept: the bit that marks the deflate block as the last one.
    The data still inflates to the right pixels, so only the CRC tells of the damage."""
    path = tmp_path / "benign (6).png"
    data, start, _ = _png_with_stored_data(path)
    assert data[start + 2] == 0b001  # after the 2-byte zlib header: last block, stored
    data[start + 2] ^= 0b001
    path.write_bytes(bytes(data))
    message = re.escape(f"{path}: cannot decode image (broken PNG file (") + ".*IDAT.*Restore the verified original"
    with pytest.raises(DataError, match=message):
        _load(path, 16)


def test_a_png_whose_crc_itself_is_damaged_is_refused(tmp_path):
    path = tmp_path / "benign (7).png"
    data, start, length = _png_with_stored_data(path)
    data[start + length] ^= 0xFF  # the first byte of the IDAT chunk's CRC
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=re.escape(f"{path}: cannot decode image (broken PNG file (") + ".*IDAT"):
        _load(path, 16)
    data[start + length] ^= 0xFF
    path.write_bytes(bytes(data))
    assert _load(path, 16).shape == (16, 16, 3)  # the undamaged file reads


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height: decoding it would allocate that much."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR follows the 8-byte signature, length and type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "size",
    [(4097, 4096), (10_000, 10_000), (20_000, 20_000)],
    ids=["over MAX_PIXELS", "over PIL's warning limit", "over PIL's error limit"],
)
def test_decompression_bomb_is_refused_before_decoding(tmp_path, size):
    path = tmp_path / "bomb.png"
    message = f"{path}: refused as a possible decompression bomb"
    if size == (4097, 4096):
        Image.new("1", size).save(path)  # a real, fully decodable image of 16.8 MP, 2 kB on disk
        message += ": 4097 x 4096 = 16,781,312 pixels, more than MAX_PIXELS (16,777,216)"
    else:
        _png_claiming(path, *size)  # PIL itself warns (then fails) first; both end the same way
    assert size[0] * size[1] > MAX_PIXELS
    with pytest.raises(DataError, match=re.escape(message)):
        _load(path, 8)


def test_extreme_aspect_ratio_is_refused(tmp_path):
    Image.new("L", (8, 8 * MAX_ASPECT + 1)).save(tmp_path / "strip.png")
    message = f"{tmp_path / 'strip.png'}: refused: 8 x 81 pixels, a side more than MAX_ASPECT (10)"
    with pytest.raises(DataError, match=re.escape(message)):
        _load(tmp_path / "strip.png", 8)
    Image.new("L", (8, 8 * MAX_ASPECT)).save(tmp_path / "narrow.png")
    assert _load(tmp_path / "narrow.png", 8).shape == (8, 8, 3)


def test_an_image_too_small_to_hold_anything_is_refused(tmp_path):
    Image.new("L", (MIN_SIDE - 1, 40)).save(tmp_path / "thin.png")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'thin.png'}: refused: 7 x 40 pixels, a side shorter")):
        _load(tmp_path / "thin.png", 8)


def _exif_with(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """Raw EXIF (big-endian TIFF, one IFD) with these (tag, type, count, 4-byte value) entries."""
    body = struct.pack(">H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\0")[:4]
    return b"Exif\0\0MM\0*" + struct.pack(">I", 8) + body + struct.pack(">I", 0)


def test_exif_with_a_tag_of_the_wrong_type_is_refused_by_name_not_a_traceback(tmp_path):
    # orientation 6 (turn) with XResolution stored as text: turning re-writes the EXIF, which PIL cannot
    path = tmp_path / "scan.png"
    exif = _exif_with([(0x0112, 3, 1, struct.pack(">H", 6)), (0x011A, 2, 4, b"abc\0")])
    Image.new("RGB", (20, 10)).save(path, exif=exif)
    with pytest.raises(DataError, match=re.escape(f"{path}: malformed EXIF metadata (TypeError")):
        _load(path, 8)
