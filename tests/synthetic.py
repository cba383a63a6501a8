"""Small synthetic BUSI look-alikes in the real archive layout, for tests that must not need the real data."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from bcmodels.data.busi import DATASET_DIR
from bcmodels.formats.manifest import ManifestEntry

DEFAULT_COUNTS = {"benign": 12, "malignant": 10, "normal": 8}


def make_busi_tree(root: Path, counts: dict[str, int] = DEFAULT_COUNTS, seed: int = 0) -> list[ManifestEntry]:
    """Write root/Dataset_BUSI_with_GT/<class>/<class> (i).png with masks beside them, as BUSI does.

    Images are RGB of varying size (portrait and landscape), grey in all three channels like most of
    BUSI, with a per-class brightness so that a model can learn something. The first image of each
    class also gets _mask_1.png, like BUSI's multi-lesion images. Returns the manifest: the images sorted by
    file, then the masks sorted by file (as data/busi_manifest.tsv lists them).
    """
    rng = np.random.default_rng(seed)
    entries, masks = [], []
    for k, (label, n) in enumerate(counts.items()):
        folder = root / DATASET_DIR / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            w, h = int(rng.integers(40, 80)), int(rng.integers(40, 80))
            grey = rng.integers(0, 256, (h, w), dtype=np.uint8) // 2 + 40 * k
            path = folder / f"{label} ({i}).png"
            Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB").save(path)
            mask = Image.fromarray((rng.random((h, w)) > 0.7).astype(np.uint8) * 255, "L").convert("1")
            for suffix in ("_mask", "_mask_1") if i == 1 else ("_mask",):
                mask_path = folder / f"{label} ({i}){suffix}.png"
                mask.save(mask_path)
                masks.append(ManifestEntry(f"{label}/{mask_path.name}", label, _sha256(mask_path), "mask"))
            entries.append(ManifestEntry(f"{label}/{path.name}", label, _sha256(path)))
    return sorted(entries, key=lambda e: e.file) + sorted(masks, key=lambda e: e.file)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def relative_files(folder: Path) -> set[str]:
    """The files below folder, as "/"-separated paths relative to it."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def parent_of(data: dict, dotted: str) -> tuple[dict, str]:
    """The mapping that holds a dotted params key (train.simple_cnn.lr) and the key's last part."""
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    return data, last


def zip_tree(root: Path, archive: Path, prefix: str = "") -> Path:
    """Zip everything under root (paths relative to root, optionally under prefix/)."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, f"{prefix}{path.relative_to(root).as_posix()}")
    return archive


def tar_tree(root: Path, archive: Path, prefix: str = "", mode: str = "w:gz") -> Path:
    """Tar everything under root, like zip_tree; mode "w" for a plain tar, "w:gz" for tar.gz."""
    with tarfile.open(archive, mode) as tf:
        for path in sorted(root.rglob("*")):
            tf.add(path, f"{prefix}{path.relative_to(root).as_posix()}", recursive=False)
    return archive


def make_backbone_wheel(path: Path, member: str, seed: int = 0) -> str:
    """A stand-in for the PyPI wheel of the backbone stage: a zip holding MobileNetV2's 312 feature tensors
    (random values) under other names, in torchvision's order, as the real package stores them. Returns
    its sha256, for backbone.sha256."""
    import torch  # here, not at the top: most tests that use this module need no torch
    import torchvision

    torch.manual_seed(seed)
    features = {k: v for k, v in torchvision.models.mobilenet_v2().state_dict().items() if k.startswith("features.")}
    renamed = {f"layer{i}": v for i, v in enumerate(features.values())}
    buffer = io.BytesIO()
    torch.save(renamed, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, buffer.getvalue())
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- Scan-like images for the deep-feature detector ---------------------------------------------------
# An ImageNet network sees random noise as all alike, so these look like ultrasound: a skin line, tilted
# bright streaks, dark lobules, a dark irregular lesion with a posterior shadow or enhancement, depth
# attenuation, speckle; the style is drawn per seed, so that scans of different seeds differ clearly.


def make_scan(seed: int, height: int = 400, width: int = 500) -> np.ndarray:
    """A clean (speckle-free) synthetic scan, float in [0, 1]."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    canvas = Image.new("F", (width, height), 0.0)
    draw = ImageDraw.Draw(canvas)
    tilt, width_max = r.uniform(-0.4, 0.4), int(r.integers(3, 9))
    for _ in range(int(r.integers(15, 70))):
        y0, x0, length = r.uniform(10, height), r.uniform(-100, width), r.uniform(60, 320)
        xs = np.linspace(x0, x0 + length, 12)
        wave = r.uniform(-15, 15) * np.sin((xs - x0) / length * np.pi * r.uniform(0.5, 2))
        ys = y0 + tilt * (xs - width / 2) + wave
        draw.line(list(zip(xs, ys)), fill=float(r.uniform(0.4, 1.0)), width=int(r.integers(2, width_max)))
    streaks = ndimage.gaussian_filter(np.asarray(canvas), r.uniform(1.0, 2.5))
    lobules = Image.new("F", (width, height), 0.0)
    draw = ImageDraw.Draw(lobules)
    for _ in range(int(r.integers(2, 20))):
        cx, cy, a, b = r.uniform(0, width), r.uniform(20, height * 0.8), r.uniform(10, 50), r.uniform(6, 25)
        draw.ellipse([cx - a, cy - b, cx + a, cy + b], fill=float(r.uniform(0.3, 0.8)))
    lobules = ndimage.gaussian_filter(np.asarray(lobules), 3)
    background = ndimage.gaussian_filter(r.normal(size=(height, width)), r.uniform(6, 20))
    tissue = (
        r.uniform(0.3, 0.55) + r.uniform(0.3, 0.6) * streaks + r.uniform(0.03, 0.12) * background / background.std()
    )
    tissue -= 0.5 * lobules
    skin = r.uniform(8, 25)
    tissue += 0.5 * np.exp(-(((y - skin) / 4) ** 2)) + 0.25 * np.exp(-(((y - skin - r.uniform(12, 30)) / 3) ** 2))
    tissue *= np.clip(1.1 - (y / height) * r.uniform(0.3, 1.0), 0.1, 1)
    cy, cx, ry, rx, turn = (
        r.uniform(0.3, 0.6) * height,
        r.uniform(0.25, 0.75) * width,
        r.uniform(25, 70),
        r.uniform(35, 120),
        r.uniform(-0.5, 0.5),
    )
    u = ((x - cx) * np.cos(turn) + (y - cy) * np.sin(turn)) / rx
    v = (-(x - cx) * np.sin(turn) + (y - cy) * np.cos(turn)) / ry
    rough = ndimage.gaussian_filter(r.normal(size=(height, width)), r.uniform(4, 10))
    rough *= r.uniform(0.2, 1.3) / np.abs(rough).max()
    lesion = 1 / (1 + np.exp(np.clip((u**2 + v**2 - 1 + rough) * 10, -50, 50)))
    below = np.clip((y - cy) / (height - cy + 1), 0, 1) * np.exp(-(((x - cx) / (0.8 * rx)) ** 2)) * (y > cy)
    tissue = tissue * (1 - r.uniform(0.6, 0.9) * lesion) * (1 - r.uniform(-0.4, 0.7) * below)
    return np.clip(tissue * r.uniform(0.8, 1.25), 0, 1).astype(np.float32)


def add_speckle(scan: np.ndarray, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    speckle = ndimage.gaussian_filter(r.rayleigh(1.0, scan.shape), 0.7).astype(np.float32)
    return np.clip(scan * (0.55 + 0.45 * speckle / speckle.mean()), 0, 1)


def shifted_crop(scan: np.ndarray, keep: float = 0.90, offset: float = 0.05) -> np.ndarray:
    """keep of each side, from offset of each side: the frame re-cropped and shifted."""
    h, w = scan.shape
    top, left = int(offset * h), int(offset * w)
    return scan[top : top + int(keep * h), left : left + int(keep * w)]


def zoomed(scan: np.ndarray, keep: float = 0.90) -> np.ndarray:
    """The centre keep of the frame enlarged back to its size: the probe's zoom."""
    h, w = scan.shape
    top, left = (h - int(keep * h)) // 2, (w - int(keep * w)) // 2
    centre = scan[top : top + int(keep * h), left : left + int(keep * w)]
    return np.asarray(Image.fromarray(centre).resize((w, h), Image.Resampling.BICUBIC))


def neighbouring_frame(scan: np.ndarray, seed: int, amplitude: float = 5.0, shift=(3, 6)) -> np.ndarray:
    """The next frame of a sweep: a smooth deformation of at most amplitude pixels and a small shift."""
    r = np.random.default_rng(seed)
    h, w = scan.shape
    dy, dx = (ndimage.gaussian_filter(r.normal(size=(h, w)), 40) for _ in range(2))
    dy, dx = dy * amplitude / np.abs(dy).max(), dx * amplitude / np.abs(dx).max()
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return ndimage.map_coordinates(scan, [y + dy + shift[0], x + dx + shift[1]], order=1, mode="reflect")


def scan_image(scan: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(scan, 0, 1) * 255).astype(np.uint8), "L").convert("RGB")
