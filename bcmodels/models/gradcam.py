"""Grad-CAM heat maps (Selvaraju et al. 2017): where in the image a classifier's evidence for a class lies.

For an image and a class c, with A the feature maps (K, h, w) of a convolutional layer and y_c the class's
logit: weights a_k = mean over positions of dy_c/dA_k, map = ReLU(sum_k a_k A_k), upsampled bilinearly to
the model's square input and divided by its maximum, so it is non-negative and in [0, 1] (all zero where
nothing speaks for the class). A and its gradient are taken with hooks on the layer during one forward and
one backward pass per batch; in eval mode the images of a batch do not interact, so the gradient of the
summed scores is each image's own gradient.

Which layer (`target_layer`): the study's two networks have their convolutional blocks in `model.features`
and the rule below lands on it. For any model the rule is structural, found with one forward pass of a
blank image at the checkpoint's size: the layer is the module whose forward finished LAST before the
classification head (models.find_head: the last Linear or Conv2d with one output per class) started, among
those whose output is a 4-D (N, C, H, W) tensor with more than one position (H * W > 1) — that is, the last
spatial feature map before global pooling, which gives a 1 x 1 map and is passed over. Several modules
often hand on the very same tensor (a block and its last ReLU; torchvision's `features` and its last
stage; SqueezeNet's `features` and the eval-mode dropout after it); among those the outermost module
(fewest dots in its name, then the first to finish) is named. It gives:

    simple_cnn, mobilenet (the study's)        features
    resnet*, resnext*, wide_resnet*            layer4
    mobilenet_v2, mobilenet_v3_*, efficientnet_*, convnext_*, densenet*, squeezenet*   features
    regnet_*                                   trunk_output
    shufflenet_v2_*                            conv5
    googlenet                                  inception5b
    vgg*, alexnet                              avgpool (an adaptive pooling to 7 x 7 / 6 x 6, not a global one)
    swin_*                                     permute (its NHWC features turned to NCHW)

Vision transformers (vit_*) have no convolutional map but their patch embedding (conv_proj); the rule would
name it and its maps mean little, so they are refused, as is any model with no 4-D map before its head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from bcmodels.errors import ConfigError
from bcmodels.models.inference import standardize, to_unit_float
from bcmodels.models.registry import find_head

UNSUPPORTED_PREFIXES = ("vit_",)  # transformers whose only 4-D map is the patch embedding
PANEL_MIN = 160  # heat-map panels smaller than this many pixels are enlarged (nearest neighbour) to be seen
OVERLAY_ALPHA = 0.45  # weight of the colour map over the grey image


@dataclass(frozen=True)
class CamLayer:
    """Where Grad-CAM looks: the module whose output it explains, and the head whose start ends the search."""

    name: str
    head: str


def _is_spatial_map(output: object) -> bool:
    return isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[2] * output.shape[3] > 1


def target_layer(model: nn.Module, *, num_classes: int, image_size: int, arch: str = "") -> CamLayer:
    """The layer Grad-CAM uses for this model, by the rule in the module docstring."""
    if arch.startswith(UNSUPPORTED_PREFIXES):
        raise ConfigError(f"--explain: Grad-CAM needs a convolutional feature map; {arch} is a vision transformer")
    head = find_head(model, num_classes)
    finished: list[tuple[str, torch.Tensor]] = []
    head_started = False

    def on_output(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            if not head_started and _is_spatial_map(output):
                finished.append((name, output))  # type: ignore[arg-type]

        return hook

    def on_head(_module: nn.Module, _inputs: tuple) -> None:
        nonlocal head_started
        head_started = True

    handles = [m.register_forward_hook(on_output(name)) for name, m in model.named_modules() if name]
    handles.append(model.get_submodule(head).register_forward_pre_hook(on_head))
    was_training = model.training
    try:
        model.eval()
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not finished:
        raise ConfigError(
            f"--explain: {type(model).__name__} has no 4-D feature map larger than 1 x 1 before its head {head!r} "
            f"at {image_size} px input; Grad-CAM cannot be computed for it"
        )
    last = finished[-1][1]
    names = [name for name, output in finished if output is last]  # modules that handed on this very tensor
    return CamLayer(name=min(names, key=lambda n: n.count(".")), head=head)


def grad_cam(model: nn.Module, images: torch.Tensor, layer: CamLayer, targets: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps (N, S, S), float32 in [0, 1] on the CPU, of standardised float images (N, 3, S, S) on the
    model's device, for class targets (N,). One forward and one backward pass; the model stays in eval mode.

    If the layer runs more than once in a forward pass, its last output before the head starts is used.
    """
    model.eval()
    saved: list[torch.Tensor] = []
    head_started = False

    def on_output(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if not head_started:
            saved[:] = [output]

    def on_head(_module: nn.Module, _inputs: tuple) -> None:
        nonlocal head_started
        head_started = True

    handles = [
        model.get_submodule(layer.name).register_forward_hook(on_output),
        model.get_submodule(layer.head).register_forward_pre_hook(on_head),
    ]
    try:
        with torch.enable_grad():
            # The input asks for a gradient, so the layer's output has one even if the weights are frozen.
            logits = model(images.detach().requires_grad_(True))
            score = logits.float().gather(1, targets.view(-1, 1).to(logits.device)).sum()
            # The gradient for the tensor as it is now: if a later in-place op (DenseNet's ReLU) changed it,
            # values and gradient both belong to the changed version.
            (gradient,) = torch.autograd.grad(score, saved[0])
    finally:
        for handle in handles:
            handle.remove()
    activation = saved[0].detach().float()
    weights = gradient.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False).clamp_(min=0)[:, 0]
    peak = cam.flatten(1).amax(dim=1).view(-1, 1, 1)
    cam = torch.where(peak > 0, cam / peak.clamp(min=torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))
    return cam.clamp_(0, 1).cpu()


def explain(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    layer: CamLayer,
    *,
    batch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> torch.Tensor:
    """Grad-CAM maps (N, S, S) in [0, 1] of uint8 images (N, 3, S, S) on the model's device, in batches,
    normalised with the checkpoint's mean and std as for prediction."""
    maps = []
    for start in range(0, len(images), batch_size):
        batch = standardize(to_unit_float(images[start : start + batch_size]), mean, std)
        maps.append(grad_cam(model, batch, layer, targets[start : start + batch_size]))
    return torch.cat(maps) if maps else torch.empty(0, *images.shape[-2:])


def colorize(cam: np.ndarray) -> np.ndarray:
    """A (H, W) map in [0, 1] as (H, W, 3) uint8 colours of the jet scale: blue (0), green, yellow, red (1)."""
    x = np.clip(cam, 0, 1)[..., None] * 4
    rgb = np.clip(1.5 - np.abs(x - np.array([3.0, 2.0, 1.0])), 0, 1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The map's colours over the (H, W, 3) uint8 image, as uint8."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(cam).astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def heatmap_figure(image: np.ndarray, cam: np.ndarray, title: str) -> Image.Image:
    """The model's input and the heat map over it side by side, under a title (the class and probability)."""
    scale = max(1, math.ceil(PANEL_MIN / image.shape[0]))
    panels = [Image.fromarray(a) for a in (image, overlay(image, cam))]
    if scale > 1:
        panels = [p.resize((p.width * scale, p.height * scale), Image.Resampling.NEAREST) for p in panels]
    font = ImageFont.load_default()
    draw_probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, _top, right, bottom = draw_probe.multiline_textbbox((0, 0), title, font=font, spacing=2)
    gap, margin = 6, 5
    width = max(2 * panels[0].width + gap, right - left + 2 * margin)
    header = bottom + 2 * margin
    figure = Image.new("RGB", (width, header + panels[0].height), "white")
    ImageDraw.Draw(figure).multiline_text((margin, margin), title, fill="black", font=font, spacing=2)
    figure.paste(panels[0], (0, header))
    figure.paste(panels[1], (panels[0].width + gap, header))
    return figure
