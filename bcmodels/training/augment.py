"""The study's training augmentation, done for a whole batch at once on the batch's device.

The study applied, per image, torchvision's
    RandomApply([RandomHorizontalFlip(hflip_p), RandomRotation(rotation_deg), ColorJitter(b, c, s, h)], p)
in a per-sample data loader. Here every image still gets its own independent draw of each random
choice, with the same distributions, but the work is a few tensor operations over the batch: no
per-image Python or PIL in the training loop, and it runs on the GPU where the images already are.

- flip: mirrored with probability hflip_p;
- rotation: angle uniform in [-rotation_deg, +rotation_deg] about the centre, nearest neighbour,
  corners filled with black, image size kept (torchvision's defaults);
- colour jitter: brightness, contrast and saturation factors uniform in [max(0, 1 - x), 1 + x], hue
  shift uniform in [-hue, +hue], applied in a random order drawn per image (as ColorJitter does).

The random numbers come from a CPU generator, so a seed gives the same draws on CPU and CUDA.
Images are float in [0, 1]; the per-sample reference works on uint8, so pixel values can differ by
rounding (at most one grey level per step), not in distribution (tests/test_augment.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bcmodels.config.schema import AugmentConfig

# Luma weights exactly as torchvision's rgb_to_grayscale (ITU-R 601-2, 0.299 rounded as 0.2989).
_LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentDraws:
    """Every random choice for one batch of n images (CPU tensors)."""

    applied: torch.Tensor  # (n,) bool: the whole block is applied to this image
    flip: torch.Tensor  # (n,) bool
    angle_deg: torch.Tensor  # (n,) float, counter-clockwise
    factors: torch.Tensor  # (n, 4) float: brightness, contrast, saturation factors and hue shift
    order: torch.Tensor  # (n, 4) long: per image, a permutation of the four jitter operations
    jitter_on: tuple[bool, bool, bool, bool]  # an operation set to 0 is skipped, as ColorJitter does


def draw(
    config: AugmentConfig, n: int, generator: torch.Generator, eligible: torch.Tensor | None = None
) -> AugmentDraws:
    """Draw the random choices for n images. eligible (n,) bool limits augmentation to some images."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    applied = torch.rand(n, generator=generator) < config.p
    if eligible is not None:
        applied &= eligible
    flip = applied & (torch.rand(n, generator=generator) < config.hflip_p)
    angle = uniform(-config.rotation_deg, config.rotation_deg)
    factors = torch.stack(
        [
            uniform(max(0.0, 1 - config.brightness), 1 + config.brightness),
            uniform(max(0.0, 1 - config.contrast), 1 + config.contrast),
            uniform(max(0.0, 1 - config.saturation), 1 + config.saturation),
            uniform(-config.hue, config.hue),
        ],
        dim=1,
    )
    order = torch.argsort(torch.rand(n, 4, generator=generator), dim=1)  # a uniform random permutation per row
    return AugmentDraws(applied, flip, angle, factors, order, jitter_on(config))


def jitter_on(config: AugmentConfig) -> tuple[bool, bool, bool, bool]:
    """Which colour-jitter operations run: one set to 0 is skipped, as ColorJitter does."""
    return tuple(x > 0 for x in (config.brightness, config.contrast, config.saturation, config.hue))


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * _per_image(factor)).clamp(0, 1)


def _contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = _grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return (images * _per_image(factor) + mean * (1 - _per_image(factor))).clamp(0, 1)


def _saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * _per_image(factor) + _grayscale(images) * (1 - _per_image(factor))).clamp(0, 1)


def _hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by shift (fraction of a turn) in HSV space, as torchvision's adjust_hue."""
    r, g, b = images.unbind(1)
    maxc, _ = images.max(dim=1)
    minc, _ = images.min(dim=1)
    delta = maxc - minc
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe_delta, (maxc - g) / safe_delta, (maxc - b) / safe_delta
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    h = (h + shift.view(-1, 1, 1)) % 1.0
    v = maxc
    # HSV back to RGB: the standard six-sector formula, each channel picked from its six candidates.
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    sector = (i.long() % 6).unsqueeze(1)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    channels = [
        torch.gather(torch.stack(candidates, 1), 1, sector)
        for candidates in ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))
    ]
    return torch.cat(channels, 1)


_JITTER = (_brightness, _contrast, _saturation, _hue)


def rotate(images: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise by its angle about the centre; nearest neighbour, black corners."""
    theta = angle_deg.to(images.device, torch.float32) * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(theta)
    # affine_grid maps output to input coordinates; on a square image, x right and y down, a
    # counter-clockwise turn of the picture samples the input at the output point turned clockwise.
    matrix = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="nearest", padding_mode="zeros", align_corners=False)


def apply(images: torch.Tensor, draws: AugmentDraws, *, fixed_shapes: bool = False) -> torch.Tensor:
    """Augment a float (n, 3, S, S) batch in [0, 1] with the given draws; images not applied stay bit-identical.

    Each operation runs only on the images that get it. The selections are made from the CPU draws,
    so choosing them never waits for the GPU.

    fixed_shapes: draws already on the images' device; every operation runs on the whole batch and each
    image keeps its result only where it was selected. More arithmetic, but no shape depends on the draws:
    what a CUDA graph can capture once and replay. The same pixels, except that contrast's per-image mean
    may round differently in the last bit (a reduction's order can depend on how many images it runs on).
    """
    device = images.device
    out = images.clone()

    def run(selected: torch.Tensor, op, *args) -> None:
        nonlocal out
        if fixed_shapes:
            out = torch.where(selected.view(-1, 1, 1, 1), op(out, *args), out)
            return
        index = selected.nonzero().squeeze(1)
        if len(index):
            on_device = index.to(device, non_blocking=True)
            out[on_device] = op(out[on_device], *(a[index].to(device, non_blocking=True) for a in args))

    run(draws.flip, lambda x: x.flip(-1))
    run(draws.applied, rotate, draws.angle_deg)
    for position in range(4):
        for op_index, op in enumerate(_JITTER):
            if draws.jitter_on[op_index]:
                # each image runs op at the position its own permutation gives it
                run(draws.applied & (draws.order[:, position] == op_index), op, draws.factors[:, op_index])
    return out
