from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bcmodels.config.schema import EarlyStoppingConfig, ModelConfig
from bcmodels.data.subsets import Subset
from bcmodels.errors import ConfigError
from bcmodels.formats.checkpoint import Checkpoint, save_checkpoint
from bcmodels.models.gradcam import colorize, explain, heatmap_figure, target_layer
from bcmodels.models.inference import IMAGENET_MEAN, IMAGENET_STD
from bcmodels.models.registry import build_model
from bcmodels.predict.classify import load_models
from bcmodels.runtime import seed_everything
from bcmodels.training.fit import fit
from tests.conftest import project_params

SIZE = 32  # the synthetic images' side
SQUARE = 8  # the bright square's side


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine more threads make these tiny models many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_tiny(
    images: torch.Tensor, labels: torch.Tensor, *, arch: str = "simple_cnn", epochs: int = 3, seed: int = 0
) -> nn.Module:
    """A small model fitted with the project's recipe (no augmentation, no early stop) on uint8 images."""
    base = project_params().train
    config = dataclasses.replace(
        base,
        seed=seed,
        device="cpu",
        batch_size=16,
        max_epochs=epochs,
        amp=False,
        early_stopping=EarlyStoppingConfig(patience=epochs, start_epoch=epochs),
        augment=dataclasses.replace(base.augment, p=0.0),
    )
    model_config = ModelConfig(arch=arch, weights="none", lr=1e-3, weight_decay=0.0, imbalance="none")
    seed_everything(seed, True)
    model = build_model(arch, num_classes=int(labels.max()) + 1, image_size=images.shape[-1])
    n_val = max(4, len(labels) // 8)
    files = [f"{i}.png" for i in range(len(labels))]
    train = Subset(files[n_val:], images[n_val:], labels[n_val:])
    val = Subset(files[:n_val], images[:n_val], labels[:n_val])
    fit(model, train, val, name=arch, model_config=model_config, config=config, device=torch.device("cpu"))
    return model.eval()


def save_tiny(path: Path, model: nn.Module, *, arch: str, classes: tuple[str, ...], image_size: int, **pre) -> Path:
    """model as a real checkpoint of this project (pre: geometry and resize_short_side, default resize)."""
    save_checkpoint(
        path,
        Checkpoint(
            model=path.stem,
            arch=arch,
            classes=classes,
            geometry=pre.get("geometry", "resize"),
            image_size=image_size,
            resize_short_side=pre.get("resize_short_side", image_size),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            model_config={"arch": arch},
            train_config={"seed": 0},
            best_epoch=0,
            epochs_run=1,
            state_dict=model.state_dict(),
        ),
    )
    return path


def square_image(top: int, left: int, generator: torch.Generator) -> torch.Tensor:
    """(3, SIZE, SIZE) uint8 dim noise with a bright SQUARE x SQUARE square at (top, left)."""
    image = torch.randint(0, 70, (3, SIZE, SIZE), generator=generator, dtype=torch.uint8)
    image[:, top : top + SQUARE, left : left + SQUARE] = torch.randint(
        200, 256, (3, SQUARE, SQUARE), generator=generator, dtype=torch.uint8
    )
    return image


def square_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a bright square anywhere; class 1: noise only."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for i in range(n):
        if i % 2 == 0:
            top, left = torch.randint(0, SIZE - SQUARE + 1, (2,), generator=g).tolist()
            images.append(square_image(top, left, g))
        else:
            images.append(torch.randint(0, 70, (3, SIZE, SIZE), generator=g, dtype=torch.uint8))
        labels.append(i % 2)
    return torch.stack(images), torch.tensor(labels)


def test_the_heat_map_finds_the_square_and_moves_with_it(tmp_path):
    images, labels = square_data(96, seed=1)
    model = train_tiny(images, labels, epochs=3)
    path = save_tiny(tmp_path / "square.pt", model, arch="simple_cnn", classes=("square", "empty"), image_size=SIZE)
    (loaded,) = load_models([], [path], device=torch.device("cpu"), explain_layers=True)
    assert loaded.layer.name == "features"

    g = torch.Generator().manual_seed(99)
    corners = [(2, 3), (21, 20)]  # (top, left): far apart, one near each corner
    test = torch.stack([square_image(top, left, g) for top, left in corners])
    c = loaded.checkpoint
    maps = explain(
        loaded.model, test, torch.zeros(2, dtype=torch.long), loaded.layer, batch_size=2, mean=c.mean, std=c.std
    )

    assert maps.shape == (2, SIZE, SIZE)
    assert float(maps.min()) >= 0 and float(maps.max()) == pytest.approx(1.0)
    for cam, (top, left) in zip(maps.numpy(), corners):
        inside = np.zeros((SIZE, SIZE), bool)
        inside[top : top + SQUARE, left : left + SQUARE] = True
        y, x = np.unravel_index(cam.argmax(), cam.shape)
        assert inside[y, x], f"peak at {(y, x)}, square at {(top, left)}"
        ys, xs = np.indices(cam.shape)
        centre = np.array([(cam * ys).sum(), (cam * xs).sum()]) / cam.sum()
        here = np.array([top, left]) + SQUARE / 2
        other = next(np.array(c) + SQUARE / 2 for c in corners if c != (top, left))
        assert np.linalg.norm(centre - here) < np.linalg.norm(centre - other)
        assert cam[inside].mean() > 2 * cam[~inside].mean()


@pytest.mark.parametrize(
    "arch, layer",
    [
        ("simple_cnn", "features"),
        ("mobilenet", "features"),
        ("resnet18", "layer4"),
        ("resnet50", "layer4"),
        ("mobilenet_v2", "features"),
        ("mobilenet_v3_small", "features"),
        ("efficientnet_b0", "features"),
        ("convnext_tiny", "features"),
        ("densenet121", "features"),
        ("squeezenet1_1", "features"),
    ],
)
def test_the_layer_is_the_last_feature_map_before_pooling(arch, layer):
    with torch.device("meta"):  # shapes only: the rule needs no weights, and meta tensors cost nothing
        model = build_model(arch, num_classes=3, image_size=224)
    assert target_layer(model, num_classes=3, image_size=224, arch=arch).name == layer


@pytest.mark.parametrize("arch", ["mobilenet", "resnet18", "squeezenet1_1"])
def test_maps_have_the_input_size_and_lie_in_0_1(arch):
    size = 64
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3, image_size=size).eval()
    layer = target_layer(model, num_classes=3, image_size=size, arch=arch)
    images = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8)
    maps = explain(model, images, torch.tensor([0, 2, 1]), layer, batch_size=2, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert maps.shape == (3, size, size)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert not model.training


def test_a_model_without_a_feature_map_or_a_transformer_is_refused():
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    with pytest.raises(ConfigError, match="no 4-D feature map"):
        target_layer(flat, num_classes=3, image_size=16)
    with pytest.raises(ConfigError, match="vision transformer"):
        target_layer(flat, num_classes=3, image_size=16, arch="vit_b_16")


def test_the_figure_shows_input_and_overlay_under_a_title():
    image = np.full((32, 32, 3), 100, np.uint8)
    cam = np.zeros((32, 32), np.float32)
    cam[:8, :8] = 1.0
    figure = heatmap_figure(image, cam, "x.png\nm: benign 0.900")
    assert figure.width >= 2 * 160 and figure.height > 160  # small inputs are enlarged to be seen
    assert colorize(np.array([0.0]))[0].tolist() == [0, 0, 128]  # dark blue: no evidence
    assert colorize(np.array([1.0]))[0].tolist() == [128, 0, 0]  # dark red: the most
