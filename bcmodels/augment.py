"""The study's training augmentation, applied to uint8 image tensors."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from bcmodels.config import AugmentConfig


def study_augmentation(config: AugmentConfig) -> v2.Transform:
    """With probability p: horizontal flip (hflip_p), rotation in +-rotation_deg, colour jitter.

    The report says minority classes only; its code augmented every training image, as here.
    """
    return v2.RandomApply(
        [
            v2.RandomHorizontalFlip(config.hflip_p),
            v2.RandomRotation(config.rotation_deg),
            v2.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue),
        ],
        p=config.p,
    )


def augment_batch(images: torch.Tensor, transform: v2.Transform) -> torch.Tensor:
    """Each image of a uint8 (N, 3, S, S) batch gets its own random draw, as in a per-sample loader."""
    return torch.stack([transform(image) for image in images])
