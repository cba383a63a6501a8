from __future__ import annotations

import pytest
import torch
import torchvision

from bcmodels.errors import ConfigError, WeightsError
from bcmodels.models.registry import (
    build_model,
    count_parameters,
    drop_auxiliary_heads,
    find_head,
    replace_head,
    torchvision_archs,
)
from tests.conftest import SHARED_WEIGHTS


@pytest.mark.parametrize(
    "arch, size",
    [
        ("simple_cnn", 32),
        ("mobilenet", 32),
        ("mobilenet", 37),
        pytest.param("resnet101", 32, marks=pytest.mark.slow),  # 42M parameters: seconds on two cores
        ("mobilenet_v2", 32),
    ],
)
def test_forward_and_backward_reach_every_parameter(arch, size):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3, image_size=size)
    logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_study_models_have_the_studys_parameter_counts():
    with torch.device("meta"):  # shapes only: no memory for the 206M-parameter head
        assert count_parameters(build_model("simple_cnn", num_classes=3, image_size=224)) == 51_451_875
        assert count_parameters(build_model("mobilenet", num_classes=3, image_size=224)) == 205_590_595


def test_unknown_arch_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"Invalid arch 'resnet42'\. Only simple_cnn, mobilenet, .*resnet101"):
        build_model("resnet42", num_classes=3, image_size=32)


def test_unknown_weights_name_lists_the_valid_ones():
    with pytest.raises(WeightsError, match=r"Invalid weights 'IMAGENET' for resnet101\. Only none, IMAGENET1K_V1"):
        build_model("resnet101", num_classes=3, image_size=32, weights="IMAGENET")


def test_study_models_have_no_published_weights():
    with pytest.raises(WeightsError, match="simple_cnn has no published weights"):
        build_model("simple_cnn", num_classes=3, image_size=32, weights="IMAGENET1K_V1")


def test_unreachable_imagenet_weights_fail_and_say_where_to_put_the_file(tmp_path, monkeypatch):
    # A closed local port stands in for "no internet": the real torch.hub download path runs and fails.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    with pytest.raises(WeightsError) as err:
        build_model("resnet101", num_classes=3, image_size=32, weights="IMAGENET1K_V1")
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet101-63fe2227.pth") in message
    assert "https://download.pytorch.org/models/resnet101-63fe2227.pth" in message
    assert "none to train from scratch" in message


def test_local_state_dict_loads_and_wrong_shaped_head_is_dropped(tmp_path, capsys):
    torch.manual_seed(1)
    source = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet18_imagenet_like.pth"
    torch.save(source.state_dict(), path)
    model = build_model("resnet18", num_classes=3, image_size=32, weights=str(path))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_mean, source.layer4[1].bn2.running_mean)
    assert model.fc.out_features == 3
    assert "dropped 2 head tensors of another shape: fc.weight, fc.bias" in capsys.readouterr().out


def test_state_dict_of_another_architecture_is_rejected(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit MobileNetV2"):
        build_model("mobilenet_v2", num_classes=3, image_size=32, weights=str(path))


def test_missing_or_non_state_dict_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match=r"nope\.pth: weights file not found"):
        build_model("resnet18", num_classes=3, image_size=32, weights=str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match=r"junk\.pth: not a loadable state_dict"):
        build_model("resnet18", num_classes=3, image_size=32, weights=str(junk))


@pytest.mark.skipif(not SHARED_WEIGHTS.is_file(), reason=f"no ImageNet backbone at {SHARED_WEIGHTS}")
def test_real_imagenet_mobilenet_v2_backbone_loads_from_a_local_file():
    model = build_model("mobilenet_v2", num_classes=3, image_size=224, weights=str(SHARED_WEIGHTS))
    state = torch.load(SHARED_WEIGHTS, weights_only=True)
    assert len(state) == 312 and all(k.startswith("features.") for k in state)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert model.classifier[1].out_features == 3
    # ImageNet features are not random: BatchNorm running statistics were learned.
    assert not torch.allclose(own["features.1.conv.0.1.running_var"], torch.ones(32))


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, size, head",
    [
        ("squeezenet1_0", 64, "classifier.1"),  # a 1x1 convolution, not a Linear
        ("googlenet", 64, "fc"),  # auxiliary classifiers in training mode
        ("inception_v3", 96, "fc"),  # the same, and a larger minimum input
        ("vit_b_16", 224, "heads.head"),
        ("efficientnet_b0", 64, "classifier.1"),
    ],
)
def test_torchvision_classifiers_of_every_shape_train_with_plain_logits(arch, size, head):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3, image_size=size)
    assert find_head(model, 3) == head
    model.train()
    logits = model(torch.randn(2, 3, size, size))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 3)  # no tuple of auxiliary outputs
    logits.sum().backward()
    assert all(p.grad is not None for p in model.get_submodule(head).parameters())
    model.eval()
    assert model(torch.randn(1, 3, size, size)).shape == (1, 3)


@pytest.mark.slow
def test_every_torchvision_classifier_has_exactly_one_head_to_replace():
    """The rule on all of them, on shapes alone (the meta device: no memory). RegNet computes its widths from
    tensor values at construction, which the meta device cannot, so its two smallest are built for real."""
    for arch in torchvision_archs():
        if arch.startswith("regnet") and not arch.endswith("400mf"):
            continue
        with torch.device("cpu" if arch.startswith("regnet") else "meta"):
            model = torchvision.models.get_model(arch)
        drop_auxiliary_heads(model)
        name = replace_head(model, 3)  # raises unless exactly one layer has 1000 outputs
        head = model.get_submodule(name)
        assert (head.out_features if isinstance(head, torch.nn.Linear) else head.out_channels) == 3, arch


def test_a_state_dict_with_a_value_that_is_no_tensor_is_refused(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({**torchvision.models.resnet18().state_dict(), "fc.weight": [1, 2, 3]}, path)
    with pytest.raises(WeightsError, match=r"odd\.pth: expected a state_dict \(a mapping of names to tensors\)"):
        build_model("resnet18", num_classes=3, image_size=32, weights=str(path))
