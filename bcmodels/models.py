"""Model registry: the study's two networks from scratch, and any torchvision classifier with weights."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

from bcmodels.errors import WeightsError

STUDY_ARCHS = ("simple_cnn", "mobilenet")


class SimpleCNN(nn.Module):
    """The study's simple CNN: two conv/pool blocks, then three fully connected layers."""

    def __init__(self, *, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        side = image_size // 4  # two 2x2 poolings
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * side * side, 512), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(512, 128), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(128, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _separable_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    # The study's block: depthwise 3x3 (carrying the stride), pointwise 1x1, then a single BN + ReLU.
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin),
        nn.Conv2d(cin, cout, 1),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class StudyMobileNet(nn.Module):
    """The study's own "MobileNet" (not torchvision's): a stem, four separable blocks, a 1024-wide head."""

    def __init__(self, *, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            _separable_block(32, 64, 1),
            _separable_block(64, 128, 2),
            _separable_block(128, 128, 1),
            _separable_block(128, 256, 2),
        )  # fmt: skip
        side = image_size
        for _ in range(3):  # three stride-2 convolutions, each ceil(side / 2) with padding 1
            side = (side + 1) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(256 * side * side, 1024), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(1024, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def available_archs() -> list[str]:
    return [*STUDY_ARCHS, *torchvision.models.list_models(module=torchvision.models)]


def _final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classification head: the last nn.Linear the model registers (fc, classifier.1, heads.head...)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head to replace")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Swap the final Linear for a fresh one with num_classes outputs; returns its module name."""
    name, old = _final_linear(model)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Linear(old.in_features, num_classes))
    return name


def _is_path(weights: str) -> bool:
    return "/" in weights or weights.endswith((".pth", ".pt")) or Path(weights).exists()


def _torchvision_weights(arch: str, weights: str) -> torchvision.models.WeightsEnum:
    enum = torchvision.models.get_model_weights(arch)
    try:
        return enum[weights]
    except KeyError:
        valid = ", ".join(["none", *enum.__members__, "a path to a state_dict file"])
        raise WeightsError(f"Invalid weights {weights!r} for {arch}. Only {valid} are supported.") from None


def _fetch_torchvision_weights(arch: str, spec: torchvision.models.WeightsEnum) -> None:
    """Put the weights file in torch's cache (download once), or fail saying where to put it."""
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(spec.url).name
    try:
        torch.hub.load_state_dict_from_url(spec.url, progress=True, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise WeightsError(
            f"Could not get the ImageNet weights {spec} for {arch}: {err}.\n"
            f"Download {spec.url} on a machine with internet and put it at {cache} "
            f"(torch then loads it offline), or set the model's `weights` in params.yaml to a local "
            f"state_dict path, or to none to train from scratch. Nothing falls back to random weights."
        ) from err


def load_state_dict_file(model: nn.Module, path: Path, head: str) -> list[str]:
    """Load a local state_dict into model; drops head keys whose shape does not fit, returns their names."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (the model's `weights` in params.yaml)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a state_dict
        raise WeightsError(f"{path}: not a loadable state_dict ({err})") from err
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state_dict (a mapping of tensors), got {type(state).__name__}")
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in dropped}
    result = model.load_state_dict(state, strict=False)
    missing_body = [k for k in result.missing_keys if not k.startswith(f"{head}.")]
    if missing_body or result.unexpected_keys:
        raise WeightsError(
            f"{path}: does not fit {type(model).__name__}: {len(missing_body)} missing keys "
            f"(e.g. {missing_body[:3]}), {len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})"
        )
    return dropped


def build_model(arch: str, *, num_classes: int, image_size: int, weights: str = "none") -> nn.Module:
    """Build a classifier by name; weights: none, a torchvision weights name, or a state_dict path."""
    local_file = weights != "none" and _is_path(weights)
    if arch in STUDY_ARCHS:
        if weights != "none" and not local_file:
            raise WeightsError(f"{arch} has no published weights; use none or a path to a state_dict file")
        cls = SimpleCNN if arch == "simple_cnn" else StudyMobileNet
        model: nn.Module = cls(num_classes=num_classes, image_size=image_size)
        head = _final_linear(model)[0]
    elif arch in torchvision.models.list_models(module=torchvision.models):
        spec = None if weights == "none" or local_file else _torchvision_weights(arch, weights)
        if spec is not None:
            _fetch_torchvision_weights(arch, spec)
        model = torchvision.models.get_model(arch, weights=spec)
        head = replace_head(model, num_classes)
    else:
        raise ValueError(f"Invalid arch {arch!r}. Only {', '.join(available_archs())} are supported.")
    if local_file:
        dropped = load_state_dict_file(model, Path(weights), head)
        if dropped:
            print(f"weights {weights}: dropped {len(dropped)} head tensors of another shape: {', '.join(dropped)}")
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
