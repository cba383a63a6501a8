from __future__ import annotations

import copy

import pytest
from ruamel.yaml import YAML

from bcmodels.config import load_params, parse_params
from bcmodels.errors import ConfigError
from tests.conftest import PROJECT_ROOT
from tests.synthetic import parent_of


@pytest.fixture
def raw():
    return YAML(typ="safe").load((PROJECT_ROOT / "params.yaml").read_text())


def test_project_params_load_with_the_study_recipe():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.train.models == ("simple_cnn", "mobilenet", "resnet101")
    assert params.train.model["resnet101"].weights == "IMAGENET1K_V1"
    assert params.train.model["resnet101"].lr == 5e-5
    assert params.train.model["simple_cnn"].lr == params.train.model["mobilenet"].lr == 1e-3
    assert (params.train.batch_size, params.train.max_epochs) == (8, 20)
    assert (params.train.scheduler.step_size, params.train.scheduler.gamma) == (7, 0.1)
    assert (params.train.early_stopping.patience, params.train.early_stopping.start_epoch) == (2, 5)
    assert (params.split.strategy, params.split.seed, params.split.test_fraction) == ("study", 501, 0.15)
    assert (params.preprocess.geometry, params.preprocess.image_size) == ("study", 224)


def test_yaml_1_2_floats_as_dvc_writes_them(tmp_path, raw):
    text = (PROJECT_ROOT / "params.yaml").read_text().replace("lr: 5.0e-5", "lr: 1e-4")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert load_params(path).train.model["resnet101"].lr == 1e-4


def _mutated(raw, dotted: str, value):
    data = copy.deepcopy(raw)
    node, last = parent_of(data, dotted)
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("preprocess.geometri", "study", r"preprocess\.geometri: unknown key"),
        ("train.batchsize", 8, r"train\.batchsize: unknown key"),
        ("train.resnet101.learning_rate", 0.1, r"train\.resnet101\.learning_rate: unknown key"),
        ("train.batch_size", "8", r"train\.batch_size: expected int"),
        ("train.batch_size", 0, r"train\.batch_size: must be positive"),
        ("train.max_epochs", -1, r"train\.max_epochs: must be positive"),
        ("train.simple_cnn.lr", 0, r"train\.simple_cnn\.lr: must be positive"),
        ("train.simple_cnn.lr", KeyError, r"train\.simple_cnn\.lr: missing required key"),
        ("train.models", ["simple_cnn", "vgg"], r"train\.models: 'vgg' has no section train\.vgg"),
        ("train.device", "tpu", r"train\.device: invalid value 'tpu'\. Only auto, cpu, cuda are supported"),
        ("split.strategy", "random", r"split\.strategy: invalid value 'random'\. Only study, grouped are supported"),
        ("split.conflicts", "merge", r"split\.conflicts: invalid value 'merge'\. Only keep, drop are supported"),
        ("split.fold", 7, r"split\.fold: must be from 0 to split\.folds - 1, got 7"),
        ("split.folds", 2, r"split\.folds: must be at least 3"),
        ("audit.threshold", 64, r"audit\.threshold: must be a bit count from 0 to 63, got 64"),
        ("download.urls", [], r"download\.urls: must list at least one URL"),
        ("download.retries", -1, r"download\.retries: must be 0 or more"),
        ("train.max_epochs", 0, r"train\.max_epochs: must be positive, got 0"),
        ("train.resnet101.lr", -1e-4, r"train\.resnet101\.lr: must be positive, got -0\.0001"),
        ("evaluate.bootstrap_resamples", 200, r"evaluate\.bootstrap_resamples: must be at least 1000"),
        ("repeat.seeds", [0, 1], r"repeat\.seeds: must not contain train\.seed \(0\)"),
        ("repeat.seeds", [1, 1], r"repeat\.seeds: must not repeat a seed"),
        ("repeat.models", ["vgg"], r"repeat\.models: 'vgg' has no section train\.vgg"),
        ("preprocess.geometry", "crop", r"preprocess\.geometry: invalid value 'crop'"),
        ("split.test_fraction", 1.5, r"split\.test_fraction: must be between 0 and 1"),
        ("train.augment.p", 2.0, r"train\.augment\.p: must be a probability"),
        ("evaluate", KeyError, r"evaluate: missing section"),
    ],
)
def test_bad_settings_name_the_key(raw, dotted, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_params(_mutated(raw, dotted, value))


def test_unknown_section_is_named(raw):
    with pytest.raises(ConfigError, match="report: unknown section"):
        parse_params({**raw, "report": {}})


def test_missing_params_file_says_where_to_run(tmp_path):
    with pytest.raises(ConfigError, match="not found. Run from the project root"):
        load_params(tmp_path / "params.yaml")
