from __future__ import annotations

import copy
import time

import pytest
from ruamel.yaml import YAML

from bcmodels.config.load import load_params, parse_params
from bcmodels.errors import ConfigError
from tests.conftest import PROJECT_ROOT
from tests.synthetic import parent_of


@pytest.fixture
def raw():
    return YAML(typ="safe").load((PROJECT_ROOT / "params.yaml").read_text())


def test_project_params_load_with_the_study_recipe():
    params = load_params(PROJECT_ROOT / "params.yaml")
    models = params.train.model_configs
    assert params.train.models == ("simple_cnn", "mobilenet", "resnet101", "mobilenet_v2")  # the study's, then ours
    assert models["resnet101"].weights == "IMAGENET1K_V1"
    assert models["resnet101"].lr == 5e-5
    assert models["simple_cnn"].lr == models["mobilenet"].lr == 1e-3
    assert all(m.weight_decay == 0.0 for m in models.values())
    assert [models[m].imbalance for m in params.train.models] == ["none"] * 4
    assert (params.train.batch_size, params.train.max_epochs) == (8, 20)
    assert (params.train.scheduler.step_size, params.train.scheduler.gamma) == (7, 0.1)
    assert (params.train.early_stopping.patience, params.train.early_stopping.start_epoch) == (2, 5)
    assert (params.split.strategy, params.split.seed, params.split.test_fraction) == ("study", 501, 0.15)
    assert (params.preprocess.geometry, params.preprocess.image_size) == ("study", 224)


def test_yaml_1_2_floats_as_dvc_writes_them(tmp_path):
    text = (PROJECT_ROOT / "params.yaml").read_text().replace("lr: 5.0e-5", "lr: 1e-4")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert load_params(path).train.model_configs["resnet101"].lr == 1e-4


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
        ("train.batch_size", 0, r"train\.batch_size: must be in \[1, 4096\], got 0"),
        ("train.max_epochs", -1, r"train\.max_epochs: must be in \[1, 1000\]"),
        ("train.simple_cnn.lr", 0, r"train\.simple_cnn\.lr: must be in \(0, 1\], got 0"),
        ("train.simple_cnn.lr", KeyError, r"train\.simple_cnn\.lr: missing required key"),
        ("train.simple_cnn.weight_decay", KeyError, r"train\.simple_cnn\.weight_decay: missing required key"),
        ("train.simple_cnn.imbalance", "oversample", r"train\.simple_cnn\.imbalance: invalid value 'oversample'"),
        ("train.models", ["simple_cnn", "vgg"], r"train\.models: 'vgg' has no section train\.vgg"),
        ("train.device", "tpu", r"train\.device: invalid value 'tpu'\. Only auto, cpu, cuda are supported"),
        ("split.strategy", "random", r"split\.strategy: invalid value 'random'\. Only study, grouped are supported"),
        ("split.conflicts", "merge", r"split\.conflicts: invalid value 'merge'\. Only keep, drop are supported"),
        ("split.fold", 7, r"split\.fold: must be from 0 to split\.folds - 1, got 7"),
        ("split.folds", 2, r"split\.folds: must be in \[3, 50\]"),
        ("audit.phash.threshold", 64, r"audit\.phash\.threshold: must be a bit count from 0 to 63, got 64"),
        ("audit.features.threshold", 1.5, r"audit\.features\.threshold: must be in \(0, 1\]"),
        ("download.urls", [], r"download\.urls: must list at least one URL"),
        ("download.urls", ["/tmp/busi.zip"], r"download\.urls\[0\]: must be an http\(s\) URL.*BUSI_SOURCE"),
        ("download.retries", -1, r"download\.retries: must be in \[0, 10\]"),
        ("download.sha256", "abc", r"download\.sha256: must be 64 lowercase hex digits"),
        ("evaluate.bootstrap_resamples", 200, r"evaluate\.bootstrap_resamples: must be in \[1000, "),
        ("repeat.seeds", [0, 1], r"repeat\.seeds: must not contain train\.seed \(0\)"),
        ("repeat.seeds", [1, 1], r"repeat\.seeds: lists a value twice"),
        ("repeat.models", ["vgg"], r"repeat\.models: 'vgg' has no section train\.vgg"),
        ("crossval.folds", [0, 7], r"crossval\.folds\[1\]: must be from 0 to split\.folds - 1, got 7"),
        ("crossval.models", ["simple_cnn", "simple_cnn"], r"crossval\.models: names a model twice"),
        (
            "crossval.mark_free_models",
            ["resnet101"],
            r"mark_free_models\[0\]: 'resnet101' is not in crossval",
        ),
        ("crossval.mark_free_models", ["mobilenet", "mobilenet"], r"crossval\.mark_free_models: lists a value twice"),
        ("preprocess.geometry", "crop", r"preprocess\.geometry: invalid value 'crop'"),
        ("preprocess.image_size", 100_000, r"preprocess\.image_size: must be in \[8, 1024\]"),
        ("split.test_fraction", 1.5, r"split\.test_fraction: must be in \(0, 1\]"),
        ("train.augment.p", 2.0, r"train\.augment\.p: must be in \[0, 1\]"),
        ("evaluate", KeyError, r"evaluate: missing section"),
        # Not finite, out of range, or names that would become paths.
        ("train.simple_cnn.lr", float("inf"), r"train\.simple_cnn\.lr: must be a finite number, got inf"),
        ("train.augment.rotation_deg", float("nan"), r"train\.augment\.rotation_deg: must be a finite number"),
        ("download.timeout_s", float("inf"), r"download\.timeout_s: must be a finite number"),
        ("train.seed", 2**32, r"train\.seed: must be in \[0, 4294967295\], got 4294967296"),
        ("repeat.seeds", [1, 2**32], r"repeat\.seeds\[1\]: must be in \[0, 4294967295\], got 4294967296"),
        ("download.max_members", 0, r"download\.max_members: must be in \[1, 1000000\], got 0"),
        ("train.simple_cnn.lr", 1.5, r"train\.simple_cnn\.lr: must be in \(0, 1\], got 1\.5"),
        ("train.augment.hue", 0.7, r"train\.augment\.hue: must be in \[0, 0\.5\], got 0\.7"),
        ("split.seed", -1, r"split\.seed: must be in \[0, "),
        ("train.models", ["simple_cnn", "mobilenet", "simple_cnn"], r"train\.models: names a model twice"),
        ("train.models", ["../../x"], r"train\.models: '\.\./\.\./x' has no section"),
        ("train.simple_cnn.arch", "../x", r"train\.simple_cnn\.arch: not an architecture name"),
    ],
)
def test_bad_settings_name_the_key(raw, dotted, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_params(_mutated(raw, dotted, value))


def test_a_model_section_with_a_path_for_a_name_is_refused(raw):
    data = copy.deepcopy(raw)
    data["train"]["../../x"] = dict(data["train"]["simple_cnn"])
    with pytest.raises(ConfigError, match=r"train\.\.\./\.\./x: a model section's name must be a letter"):
        parse_params(data)


def test_unknown_section_is_named(raw):
    with pytest.raises(ConfigError, match="report: unknown section"):
        parse_params({**raw, "report": {}})


def test_missing_params_file_says_where_to_run(tmp_path):
    with pytest.raises(ConfigError, match=r"not found\. Run from the project root"):
        load_params(tmp_path / "params.yaml")


def test_a_long_bad_value_is_quoted_by_a_short_prefix_only(raw):
    with pytest.raises(ConfigError) as err:
        parse_params(_mutated(raw, "train.device", "x" * 10_000))
    assert len(str(err.value)) < 200 and "xxx..." in str(err.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((PROJECT_ROOT / "params.yaml").read_text().replace("batch_size: 8", "batch_size: [8"))
    with pytest.raises(ConfigError, match=rf"{path} line \d+: .*Fix the YAML syntax"):
        load_params(path)


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        (PROJECT_ROOT / "params.yaml").read_text().replace("  batch_size: 8\n", "  batch_size: 8\n  batch_size: 9\n")
    )
    with pytest.raises(ConfigError, match=r'line \d+: found duplicate key "batch_size"'):
        load_params(path)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    """Nine levels of nine aliases each: 387 million strings if expanded; refused in milliseconds."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    path = tmp_path / "params.yaml"
    text = (PROJECT_ROOT / "params.yaml").read_text()
    path.write_text(text.replace("  device: auto", "  device: auto\n  bomb:\n    " + "\n    ".join(levels)))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"line \d+: YAML aliases \(\*a0\) are not supported"):
        load_params(path)
    assert time.perf_counter() - start < 2
