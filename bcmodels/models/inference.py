"""How images become model input (scaled, normalised) and how a model runs over many of them."""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

# The study normalised every model's input with ImageNet statistics; checkpoints record them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, S, S) to float32 in [0, 1], on the images' device."""
    return images.float().div_(255.0)


def standardize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Float images in [0, 1] standardised per channel (ImageNet statistics unless a checkpoint says otherwise)."""
    mean_t = _channel_values(tuple(mean), images.device, images.dtype)
    std_t = _channel_values(tuple(std), images.device, images.dtype)
    return (images - mean_t) / std_t


@functools.cache
def _channel_values(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """values as a (1, C, 1, 1) tensor on device, made once: a new one per batch would be a host-to-device copy
    that waits for the GPU at every step, and one that a CUDA graph cannot capture."""
    return torch.tensor(values, device=device, dtype=dtype).view(1, len(values), 1, 1)


def autocast(
    device: torch.device, dtype: torch.dtype | None, *, cache_enabled: bool = True
) -> contextlib.AbstractContextManager:
    """torch.autocast to dtype on device, or nothing for full fp32 (dtype None). cache_enabled: autocast's
    cache of weights cast to dtype, which a CUDA graph cannot capture."""
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache_enabled) if dtype else contextlib.nullcontext()


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int,
    amp_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """Logits (fp32, on the CPU) of uint8 images (N, 3, S, S) on the model's device, in order, in eval mode."""
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = standardize(to_unit_float(images[start : start + batch_size]), mean, std)
        with autocast(batch.device, amp_dtype):
            outputs.append(model(batch.contiguous(memory_format=memory_format)).float())
    return torch.cat(outputs).cpu() if outputs else torch.empty(0)
