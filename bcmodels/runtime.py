"""The one place for device choice, seeding and determinism."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from bcmodels.errors import ConfigError


def resolve_device(setting: str) -> torch.device:
    """auto: CUDA when there is one, else CPU; cuda when there is none is an error."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device: cuda asked for, but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Use auto or cpu."
        )
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one number.

    deterministic=True also asks for deterministic kernels: two runs on the same machine give the same
    numbers, at some cost in speed on CUDA (no cuDNN autotuning, deterministic scatter and matmul paths).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cudnn.benchmark = not deterministic
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic matmuls; it must be set before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 autocast on CUDA cards that support it (no loss scaling needed); None means full fp32."""
    if amp and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def memory_format(device: torch.device) -> torch.memory_format:
    """channels-last on CUDA, where convolutions with bf16 run faster in NHWC; plain layout on CPU."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format
