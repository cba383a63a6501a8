"""The batched on-device augmentation against torchvision's per-sample definition of the study's."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from bcmodels.config.schema import AugmentConfig
from bcmodels.training import augment
from tests.conftest import project_params

STUDY = project_params().train.augment
OFF = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}


def _image(size: int = 32, seed: int = 0) -> torch.Tensor:
    """A colourful float image in [0, 1] with an asymmetric bright block (so flips and turns show)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, size, size, generator=g) * 0.6 + 0.2
    image[:, 0, 2:8, size // 2 :] = 1.0
    return image


def _reference(config: AugmentConfig) -> v2.Transform:
    """The study's per-sample pipeline, as it was written with torchvision."""
    return v2.RandomApply(
        [
            v2.RandomHorizontalFlip(config.hflip_p),
            v2.RandomRotation(config.rotation_deg),
            v2.ColorJitter(config.brightness, config.contrast, config.saturation, config.hue),
        ],
        p=config.p,
    )


def _batched(config: AugmentConfig, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    draws = augment.draw(config, len(images), torch.Generator().manual_seed(seed))
    return augment.apply(images, draws)


def test_draws_follow_the_configured_distributions():
    n = 20000
    draws = augment.draw(STUDY, n, torch.Generator().manual_seed(1))
    assert draws.applied.float().mean().item() == pytest.approx(STUDY.p, abs=0.015)
    flip_rate_when_applied = draws.flip[draws.applied].float().mean().item()
    assert flip_rate_when_applied == pytest.approx(STUDY.hflip_p, abs=0.015)
    assert not draws.flip[~draws.applied].any()
    assert draws.angle_deg.abs().max().item() <= STUDY.rotation_deg
    assert draws.angle_deg.std().item() == pytest.approx(STUDY.rotation_deg / 3**0.5, rel=0.03)  # uniform
    low = torch.tensor([0.8, 0.8, 0.8, -0.1])
    high = torch.tensor([1.2, 1.2, 1.2, 0.1])
    assert bool(((draws.factors >= low) & (draws.factors <= high)).all())
    assert torch.allclose(draws.factors.min(0).values, low, atol=0.01)
    assert torch.allclose(draws.factors.max(0).values, high, atol=0.01)
    # every one of the 24 jitter orders about equally often (ColorJitter draws a permutation per call)
    counts = {tuple(row): 0 for row in itertools.permutations(range(4))}
    for row in draws.order.tolist():
        counts[tuple(row)] += 1
    assert min(counts.values()) > n / 24 * 0.8 and max(counts.values()) < n / 24 * 1.2


def test_eligible_limits_augmentation_to_those_images():
    eligible = torch.tensor([True, False] * 500)
    draws = augment.draw(STUDY, 1000, torch.Generator().manual_seed(2), eligible)
    assert not draws.applied[~eligible].any()
    assert draws.applied[eligible].float().mean().item() == pytest.approx(STUDY.p, abs=0.07)


@pytest.mark.parametrize("angle", [-15.0, -7.5, 3.0, 15.0, 90.0])
def test_rotation_matches_torchvision_pixel_for_pixel(angle):
    image = _image()
    assert torch.equal(augment.rotate(image, torch.tensor([angle])), TF.rotate(image, angle))


@pytest.mark.parametrize(
    "op_index, reference",
    [
        (0, TF.adjust_brightness),
        (1, TF.adjust_contrast),
        (2, TF.adjust_saturation),
        (3, TF.adjust_hue),
    ],
)
@pytest.mark.parametrize("factor_pick", [0, 1])
def test_each_jitter_operation_matches_torchvision(op_index, reference, factor_pick):
    factor = [(0.8, 1.2), (0.8, 1.2), (0.8, 1.2), (-0.1, 0.07)][op_index][factor_pick]
    image = _image(seed=3)
    ours = augment._JITTER[op_index](image, torch.tensor([factor]))
    assert torch.allclose(ours, reference(image, factor), atol=1e-5)


def test_flip_only_mirrors_and_off_is_bit_identical():
    images = torch.cat([_image(seed=s) for s in range(6)])
    flip_only = dataclasses.replace(STUDY, p=1.0, hflip_p=1.0, rotation_deg=0, **OFF)
    assert torch.equal(_batched(flip_only, images), images.flip(-1))
    assert torch.equal(_batched(dataclasses.replace(STUDY, p=0.0), images), images)


def test_every_image_gets_its_own_draw_and_a_seed_repeats_them():
    images = _image().repeat(64, 1, 1, 1)
    out = _batched(STUDY, images, seed=5)
    unchanged = sum(torch.equal(o, images[0]) for o in out)
    assert 16 <= unchanged <= 48  # p = 0.5 per image, not one draw for the whole batch
    changed = [o for o in out if not torch.equal(o, images[0])]
    assert len({round(float(o.sum()), 3) for o in changed}) == len(changed)  # all different
    assert torch.equal(out, _batched(STUDY, images, seed=5))


@pytest.mark.slow
def test_batched_and_per_sample_pipelines_have_the_same_output_distribution():
    """Summary statistics of 2000 augmentations of one image, ours against torchvision's per-sample loop."""
    n = 2000
    image = _image(size=24, seed=4)
    torch.manual_seed(0)
    reference = _reference(STUDY)
    theirs = torch.cat([reference(image) for _ in range(n)])
    ours = _batched(STUDY, image.repeat(n, 1, 1, 1), seed=0)

    def unchanged(batch):
        return (batch == image).flatten(1).all(1).float().mean().item()

    def mirrored_block(batch):
        # the bright block sits in the right half; after a flip it is in the left half
        return (batch[:, 0, :, :12].mean((1, 2)) > batch[:, 0, :, 12:].mean((1, 2))).float().mean().item()

    assert unchanged(ours) == pytest.approx(unchanged(theirs), abs=0.05)
    assert mirrored_block(ours) == pytest.approx(mirrored_block(theirs), abs=0.05)
    means_ours, means_theirs = ours.mean((1, 2, 3)), theirs.mean((1, 2, 3))
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert torch.quantile(means_ours, q).item() == pytest.approx(torch.quantile(means_theirs, q).item(), abs=0.02)
