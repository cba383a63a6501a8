"""`make study`'s check before anything trains: a model that cannot start is found at once, with what to do."""

from __future__ import annotations

import dataclasses

from bcmodels.study import stage_outputs, weights_problem
from tests.conftest import PROJECT_ROOT, project_params


def _with_weights(name: str, weights: str):
    params = project_params()
    sections = dict(params.train.model_configs)
    sections[name] = dataclasses.replace(sections[name], weights=weights)
    return dataclasses.replace(params, train=dataclasses.replace(params.train, model_configs=sections))


def test_unreachable_imagenet_weights_are_found_before_training_with_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: the weights API must download
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # a closed port stands in for "no internet"
    problem = weights_problem(project_params(), "resnet101", set())
    assert problem.startswith("train.resnet101.weights: Could not get the ImageNet weights")
    assert str(tmp_path / "hub" / "checkpoints" / "resnet101-63fe2227.pth") in problem


def test_models_from_scratch_or_from_a_file_a_stage_makes_can_start():
    made = stage_outputs(PROJECT_ROOT / "dvc.yaml")
    assert "data/weights/mobilenet_v2_imagenet.pth" in made
    params = project_params()
    assert weights_problem(params, "simple_cnn", made) is None
    assert weights_problem(params, "mobilenet_v2", made) is None  # the backbone stage makes its file


def test_a_missing_weights_file_nobody_makes_is_named():
    problem = weights_problem(_with_weights("mobilenet_v2", "weights/mine.pth"), "mobilenet_v2", set())
    assert problem == (
        "train.mobilenet_v2.weights: weights/mine.pth not found; put the state_dict file there or set weights: none"
    )
