"""Typed, frozen view of params.yaml: every setting of the pipeline, validated once at load time."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from bcmodels.errors import ConfigError

CLASSES = ("benign", "malignant", "normal")
GEOMETRIES = ("study", "resize", "letterbox")
SPLIT_STRATEGIES = ("study", "grouped")
CONFLICT_POLICIES = ("keep", "drop")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adam",)


@dataclass(frozen=True)
class DownloadConfig:
    urls: tuple[str, ...]  # mirrors, tried in order
    sha256: str
    manifest: str = "data/busi_manifest.tsv"
    timeout_s: float = 60.0  # per connection attempt and per read
    retries: int = 3  # further attempts per URL after a failed one (a partial file is resumed)
    max_member_mb: float = 50.0  # an archive member larger than this is refused (no BUSI image is near it)


@dataclass(frozen=True)
class PreprocessConfig:
    geometry: str = "study"  # study: short side to resize_short_side, centre crop; resize; letterbox
    image_size: int = 224
    resize_short_side: int = 256  # used by the study geometry only
    workers: int = 0  # 0 = one process per core


@dataclass(frozen=True)
class AuditConfig:
    hash_size: int = 8  # perceptual hash of hash_size x hash_size bits
    threshold: int = 10  # images whose hashes differ in at most this many bits are near-duplicates
    report_thresholds: tuple[int, ...] = (4, 6, 8, 10, 12, 14)  # pair counts at these go into the metrics


@dataclass(frozen=True)
class SplitConfig:
    strategy: str = "study"  # study | grouped (near-duplicate groups kept whole, stratified)
    test_fraction: float = 0.15  # study strategy
    val_fraction: float = 0.15  # study strategy: of what is left after the test split
    seed: int = 501
    folds: int = 7  # grouped strategy: test is fold `fold`, validation the next fold, train the rest
    fold: int = 0
    conflicts: str = "drop"  # grouped strategy: label-conflict groups are kept or dropped


@dataclass(frozen=True)
class EarlyStoppingConfig:
    patience: int = 2  # epochs without a better validation loss before stopping
    start_epoch: int = 5  # no stop before this epoch index (0-based)


@dataclass(frozen=True)
class SchedulerConfig:
    step_size: int = 7  # StepLR, stepped once per epoch
    gamma: float = 0.1


@dataclass(frozen=True)
class AugmentConfig:
    p: float = 0.5  # probability that the whole block below is applied to an image
    hflip_p: float = 0.9
    rotation_deg: float = 15.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1
    minority_only: bool = False  # the report's claim: augment only images of the minority classes


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    lr: float
    weights: str = "none"  # none | torchvision weights name (IMAGENET1K_V1, DEFAULT) | path to a state_dict
    optimizer: str = "adam"
    weight_decay: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    models: tuple[str, ...]
    model: dict[str, ModelConfig]
    seed: int = 0
    device: str = "auto"
    deterministic: bool = True
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    batch_size: int = 8
    max_epochs: int = 20
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    augment: AugmentConfig = AugmentConfig()
    class_weighted_loss: bool = False  # cross-entropy weighted by inverse class frequency in train
    balanced_sampler: bool = False  # draw training images with equal expected count per class


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = 32
    bootstrap_resamples: int = 2000  # resamples of the test images for the 95% intervals
    bootstrap_seed: int = 0
    calibration_bins: int = 10  # equal-width confidence bins for ECE and the reliability diagram


@dataclass(frozen=True)
class RepeatConfig:
    models: tuple[str, ...] = ("simple_cnn", "mobilenet")  # each needs a section in train
    seeds: tuple[int, ...] = (1, 2, 3, 4)  # extra runs beside the main one (train.seed); see repeats/dvc.yaml


@dataclass(frozen=True)
class Params:
    download: DownloadConfig
    preprocess: PreprocessConfig
    audit: AuditConfig
    split: SplitConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    repeat: RepeatConfig


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Return value if it fits annotation (ints are accepted as floats), else raise naming key."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_check_type(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is str and value is None:
        return "none"  # `weights: null` and `weights: none` mean the same
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str, given: dict[str, Any] | None = None) -> Any:
    """Build dataclass cls from a mapping, rejecting unknown keys and filling defaults.

    `given` holds fields already built by the caller (not read from data).
    """
    given = given or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - set(given)
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key. Valid keys: {', '.join(sorted(names))}")
    kwargs = dict(given)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        if f.name in given:
            continue
        if f.name in data:
            kwargs[f.name] = _check_type(data[f.name], hints[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: missing required key")
    return cls(**kwargs)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _one_of(value: str, valid: tuple[str, ...], key: str) -> None:
    _require(value in valid, key, f"invalid value {value!r}. Only {', '.join(valid)} are supported.")


def _build_train(data: Any) -> TrainConfig:
    """train: shared recipe keys, plus one section per model name (train.<name>.lr, ...)."""
    if not isinstance(data, dict):
        raise ConfigError(f"train: expected a mapping, got {data!r}")
    shared_keys = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    models = {}
    for name, section in data.items():
        if name in shared_keys:
            continue
        if not isinstance(section, dict) or "arch" not in section:
            raise ConfigError(
                f"train.{name}: unknown key. Shared keys are {', '.join(sorted(shared_keys))}; "
                "any other key is a model section with at least `arch` and `lr`."
            )
        models[name] = _build(ModelConfig, section, f"train.{name}")
    shared = {k: v for k, v in data.items() if k in shared_keys}
    return _build(TrainConfig, shared, "train", given={"model": models})


def validate(params: Params) -> Params:
    """Check value ranges and names that types alone cannot; raise ConfigError naming the key."""
    download, pre, audit, split, train = params.download, params.preprocess, params.audit, params.split, params.train
    _require(len(download.urls) > 0, "download.urls", "must list at least one URL")
    _require(download.timeout_s > 0, "download.timeout_s", f"must be positive, got {download.timeout_s}")
    _require(download.retries >= 0, "download.retries", f"must be 0 or more, got {download.retries}")
    _require(download.max_member_mb > 0, "download.max_member_mb", f"must be positive, got {download.max_member_mb}")
    _one_of(pre.geometry, GEOMETRIES, "preprocess.geometry")
    _require(pre.image_size >= 8, "preprocess.image_size", f"must be at least 8, got {pre.image_size}")
    _require(
        pre.resize_short_side >= pre.image_size,
        "preprocess.resize_short_side",
        f"must be at least preprocess.image_size ({pre.image_size}), got {pre.resize_short_side}",
    )
    _require(pre.workers >= 0, "preprocess.workers", "must be 0 (all cores) or a positive count")
    _require(audit.hash_size >= 4, "audit.hash_size", f"must be at least 4, got {audit.hash_size}")
    bits = audit.hash_size**2
    for key, value in (("audit.threshold", audit.threshold), *(
        (f"audit.report_thresholds[{i}]", t) for i, t in enumerate(audit.report_thresholds))):
        _require(0 <= value < bits, key, f"must be a bit count from 0 to {bits - 1}, got {value}")
    _one_of(split.strategy, SPLIT_STRATEGIES, "split.strategy")
    _one_of(split.conflicts, CONFLICT_POLICIES, "split.conflicts")
    _require(split.folds >= 3, "split.folds", f"must be at least 3 (test, validation, train), got {split.folds}")
    _require(0 <= split.fold < split.folds, "split.fold", f"must be from 0 to split.folds - 1, got {split.fold}")
    for key, value in (("split.test_fraction", split.test_fraction), ("split.val_fraction", split.val_fraction)):
        _require(0.0 < value < 1.0, key, f"must be between 0 and 1, got {value}")
    _one_of(train.device, DEVICES, "train.device")
    _require(train.batch_size > 0, "train.batch_size", f"must be positive, got {train.batch_size}")
    _require(train.max_epochs > 0, "train.max_epochs", f"must be positive, got {train.max_epochs}")
    _require(train.early_stopping.patience > 0, "train.early_stopping.patience", "must be positive")
    _require(train.scheduler.step_size > 0, "train.scheduler.step_size", "must be positive")
    _require(0.0 <= train.augment.p <= 1.0, "train.augment.p", "must be a probability in [0, 1]")
    _require(len(train.models) > 0, "train.models", "must name at least one model")
    for name in train.models:
        _require(
            name in train.model,
            "train.models",
            f"{name!r} has no section train.{name}. Sections: {', '.join(sorted(train.model))}",
        )
    for name, model in train.model.items():
        _require(model.lr > 0, f"train.{name}.lr", f"must be positive, got {model.lr}")
        _require(model.weight_decay >= 0, f"train.{name}.weight_decay", "must be zero or positive")
        _one_of(model.optimizer, OPTIMIZERS, f"train.{name}.optimizer")
    evaluate = params.evaluate
    _require(evaluate.batch_size > 0, "evaluate.batch_size", "must be positive")
    _require(evaluate.bootstrap_resamples >= 1000, "evaluate.bootstrap_resamples",
             f"must be at least 1000 for a 95% interval, got {evaluate.bootstrap_resamples}")  # fmt: skip
    _require(evaluate.calibration_bins > 0, "evaluate.calibration_bins", "must be positive")
    seeds = params.repeat.seeds
    for name in params.repeat.models:
        _require(name in train.model, "repeat.models",
                 f"{name!r} has no section train.{name}. Sections: {', '.join(sorted(train.model))}")  # fmt: skip
    _require(len(set(seeds)) == len(seeds), "repeat.seeds", f"must not repeat a seed, got {list(seeds)}")
    _require(train.seed not in seeds, "repeat.seeds",
             f"must not contain train.seed ({train.seed}): the main run is already that seed")  # fmt: skip
    return params


def parse_params(data: Any) -> Params:
    """Build and validate Params from the mapping read out of params.yaml."""
    if not isinstance(data, dict):
        raise ConfigError("params.yaml: expected a mapping at the top level")
    sections = {f.name for f in dataclasses.fields(Params)}
    unknown = sorted(set(data) - sections)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section. Valid sections: {', '.join(sorted(sections))}")
    missing = sorted(sections - set(data))
    if missing:
        raise ConfigError(f"{missing[0]}: missing section")
    params = Params(
        download=_build(DownloadConfig, data["download"], "download"),
        preprocess=_build(PreprocessConfig, data["preprocess"], "preprocess"),
        audit=_build(AuditConfig, data["audit"], "audit"),
        split=_build(SplitConfig, data["split"], "split"),
        train=_build_train(data["train"]),
        evaluate=_build(EvaluateConfig, data["evaluate"], "evaluate"),
        repeat=_build(RepeatConfig, data["repeat"], "repeat"),
    )
    return validate(params)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml with YAML 1.2 rules (as DVC writes it: `1e-4` is a float)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found. Run from the project root, where params.yaml lives.")
    return parse_params(YAML(typ="safe").load(path.read_text()))


def to_dict(obj: Any) -> Any:
    """Plain-data copy of a config object, for checkpoints and logs."""
    return dataclasses.asdict(obj)
