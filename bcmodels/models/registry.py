"""Model registry: the study's two networks from scratch, and any torchvision classifier, with its weights."""

from __future__ import annotations

import inspect
import pickle
import typing
import urllib.error
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torchvision
from torch import nn

from bcmodels.errors import ConfigError, WeightsError
from bcmodels.models.networks import SimpleCNN, StudyMobileNet

if TYPE_CHECKING:
    from bcmodels.formats.checkpoint import Checkpoint

STUDY_ARCHS = ("simple_cnn", "mobilenet")
IMAGENET_CLASSES = 1000  # torchvision builds its classifiers with this many outputs


def torchvision_archs() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def available_archs() -> list[str]:
    return [*STUDY_ARCHS, *torchvision_archs()]


def find_head(model: nn.Module, num_classes: int) -> str:
    """The classification layer, found by structure: the one Linear or Conv2d with num_classes outputs.

    Most torchvision classifiers end in a Linear (fc, classifier.1, heads.head...), SqueezeNet in a 1x1
    Conv2d. Matching the output count keeps inner layers out; built with ImageNet's 1000 classes, every
    torchvision classifier has exactly one such layer once the auxiliary heads are gone.
    """
    heads = [
        name
        for name, m in model.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == num_classes)
        or (isinstance(m, nn.Conv2d) and m.out_channels == num_classes)
    ]
    if len(heads) != 1:
        found = f"{len(heads)} ({', '.join(heads)})" if heads else "none"
        raise ConfigError(
            f"{type(model).__name__}: expected one Linear or Conv2d layer with {num_classes} outputs "
            f"as its classification head, found {found}"
        )
    return heads[0]


def replace_head(model: nn.Module, num_classes: int, current_classes: int = IMAGENET_CLASSES) -> str:
    """Swap the classification layer for a fresh one of the same kind with num_classes outputs; its name."""
    name = find_head(model, current_classes)
    old = model.get_submodule(name)
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(
            old.in_channels,
            num_classes,
            old.kernel_size,
            old.stride,
            old.padding,
            old.dilation,
            bias=old.bias is not None,
        )
    model.set_submodule(name, new)
    return name


def drop_auxiliary_heads(model: nn.Module) -> None:
    """Remove GoogLeNet's and Inception v3's auxiliary classifiers, as torchvision does for its pretrained
    weights with aux_logits=False: the study's recipe trains one head, and train-mode forward then returns
    plain logits instead of a tuple."""
    if getattr(model, "aux_logits", False):
        for name, child in list(model.named_children()):
            if type(child).__name__ == "InceptionAux":
                setattr(model, name, None)
        model.aux_logits = False


def _builder_options(arch: str, pretrained: bool) -> dict:
    """init_weights=True for a model built from scratch whose class takes it (GoogLeNet, Inception v3): their
    documented default, stated to silence the warning that it may change. Builders refuse it with weights."""
    builder = torchvision.models.get_model_builder(arch)
    model_class = typing.get_type_hints(builder).get("return")
    accepts = inspect.isclass(model_class) and "init_weights" in inspect.signature(model_class).parameters
    return {"init_weights": True} if accepts and not pretrained else {}


def is_weights_path(weights: str) -> bool:
    return "/" in weights or weights.endswith((".pth", ".pt")) or Path(weights).exists()


def torchvision_weights(arch: str, weights: str) -> torchvision.models.WeightsEnum:
    enum = torchvision.models.get_model_weights(arch)
    try:
        return enum[weights]
    except KeyError:
        valid = ", ".join(["none", *enum.__members__, "a path to a state_dict file"])
        raise WeightsError(f"Invalid weights {weights!r} for {arch}. Only {valid} are supported.") from None


def weights_cache_path(spec: torchvision.models.WeightsEnum) -> Path:
    """Where torch's weights API keeps (and looks for) a downloaded weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(spec.url).name


def fetch_torchvision_weights(arch: str, spec: torchvision.models.WeightsEnum) -> None:
    """Put the weights file in torch's cache (download once), or fail saying where to put it."""
    try:
        torch.hub.load_state_dict_from_url(spec.url, progress=True, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise WeightsError(
            f"Could not get the ImageNet weights {spec} for {arch}: {str(err)[:200]}.\n"
            f"Download {spec.url} on a machine with internet and put it at {weights_cache_path(spec)} "
            f"(torch then loads it offline), or set the model's `weights` in params.yaml to a local "
            f"state_dict path, or to none to train from scratch. Nothing falls back to random weights."
        ) from err


def load_state_dict_file(model: nn.Module, path: Path, head: str) -> list[str]:
    """Load a local state_dict into model; drops head keys whose shape does not fit, returns their names."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (the model's `weights` in params.yaml)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as err:
        raise WeightsError(f"{path}: not a loadable state_dict ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise WeightsError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in dropped}
    missing_body = [k for k in own if k not in state and not k.startswith(f"{head}.")]
    unexpected = [k for k in state if k not in own]
    if missing_body or unexpected or any(not k.startswith(f"{head}.") for k in dropped):
        raise WeightsError(
            f"{path}: does not fit {type(model).__name__}: {len(missing_body)} missing keys "
            f"(e.g. {missing_body[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(dropped)} of another shape (e.g. {dropped[:3]})"
        )
    model.load_state_dict(state, strict=False)
    return dropped


def build_model(arch: str, *, num_classes: int, image_size: int, weights: str = "none") -> nn.Module:
    """Build a classifier by name; weights: none, a torchvision weights name, or a state_dict path."""
    local_file = weights != "none" and is_weights_path(weights)
    if arch in STUDY_ARCHS:
        if weights != "none" and not local_file:
            raise WeightsError(f"{arch} has no published weights; use none or a path to a state_dict file")
        cls = SimpleCNN if arch == "simple_cnn" else StudyMobileNet
        model: nn.Module = cls(num_classes=num_classes, image_size=image_size)
        head = find_head(model, num_classes)
    elif arch in torchvision_archs():
        spec = None if weights == "none" or local_file else torchvision_weights(arch, weights)
        if spec is not None:
            fetch_torchvision_weights(arch, spec)
        model = torchvision.models.get_model(arch, weights=spec, **_builder_options(arch, spec is not None))
        drop_auxiliary_heads(model)
        head = replace_head(model, num_classes)
    else:
        raise ConfigError(f"Invalid arch {arch!r}. Only {', '.join(available_archs())} are supported.")
    if local_file:
        dropped = load_state_dict_file(model, Path(weights), head)
        if dropped:
            print(f"weights {weights}: dropped {len(dropped)} head tensors of another shape: {', '.join(dropped)}")
    return model


def restore(checkpoint: Checkpoint) -> nn.Module:
    """The trained model of a checkpoint, on the CPU, in eval mode."""
    model = build_model(checkpoint.arch, num_classes=len(checkpoint.classes), image_size=checkpoint.image_size)
    try:
        model.load_state_dict(checkpoint.state_dict)
    except RuntimeError as err:
        raise WeightsError(
            f"checkpoint of {checkpoint.model} does not fit a {checkpoint.arch} ({str(err).splitlines()[0][:200]})"
        ) from None
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
