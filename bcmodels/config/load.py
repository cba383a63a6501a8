"""params.yaml, read once into typed, frozen config objects and checked before anything uses it.

params.yaml is the only source of settings: every field below is required there (the code has no
defaults to drift from it). A value that is missing, unknown, of the wrong type, not finite or out of
range is a ConfigError naming the dotted key, quoting at most a short prefix of the value.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.events import AliasEvent

from bcmodels.config.schema import (
    CONFLICT_POLICIES,
    DEVICES,
    GEOMETRIES,
    IMBALANCE,
    MAX_SEED,
    NAME,
    SPLIT_STRATEGIES,
    ModelConfig,
    Params,
    TrainConfig,
)
from bcmodels.errors import ConfigError, clip, short

MAX_PARAMS_BYTES = 1_000_000


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"  # a seed's 4294967295, not 4.29497e+09


def _check_range(value: float, bounds: tuple[float, float, bool], key: str) -> None:
    low, high, low_open = bounds
    if not (low < value <= high if low_open else low <= value <= high):
        interval = f"{'(' if low_open else '['}{_bound(low)}, {_bound(high)}]"
        raise ConfigError(f"{key}: must be in {interval}, got {short(value)}")


def _check_type(value: Any, annotation: Any, key: str, bounds: tuple | None = None) -> Any:
    """value if it has the annotated type (an int is accepted as a float), finite and in bounds."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {short(value)}")
        return tuple(_check_type(v, item_type, f"{key}[{i}]", bounds) for i, v in enumerate(value))
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if annotation is str and value is None:
        return "none"  # `weights: null` and `weights: none` mean the same
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {short(value)}")
    if annotation is float and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    if annotation is str and not value.strip():
        raise ConfigError(f"{key}: must not be empty")
    if bounds is not None:
        _check_range(value, bounds, key)
    return value


def _build(cls: type, data: Any, prefix: str, given: dict[str, Any] | None = None) -> Any:
    """Build dataclass cls from a mapping: every field required, unknown keys refused.

    `given` holds fields already built by the caller (not read from data).
    """
    given = given or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {short(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in given]
    unknown = sorted(set(map(str, data)) - set(names))
    if unknown:
        raise ConfigError(f"{prefix}.{clip(unknown[0], 40)}: unknown key. Valid keys: {', '.join(names)}")
    kwargs = dict(given)
    for f in dataclasses.fields(cls):
        if f.name in given:
            continue
        key = f"{prefix}.{f.name}"
        if f.name not in data:
            raise ConfigError(f"{key}: missing required key")
        kwargs[f.name] = _check_type(data[f.name], hints[f.name], key, f.metadata.get("range"))
    return cls(**kwargs)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _one_of(value: str, valid: tuple[str, ...], key: str) -> None:
    _require(value in valid, key, f"invalid value {short(value)}. Only {', '.join(valid)} are supported.")


def _build_train(data: Any) -> TrainConfig:
    """train: the recipe's shared keys, and one section per model name (train.<name>.lr, ...)."""
    if not isinstance(data, dict):
        raise ConfigError(f"train: expected a mapping, got {short(data)}")
    shared = {f.name for f in dataclasses.fields(TrainConfig)} - {"model_configs"}
    sections = {}
    for name, section in data.items():
        if name in shared:
            continue
        _require(
            isinstance(name, str) and NAME.fullmatch(name) is not None,
            f"train.{clip(str(name), 40)}",
            "a model section's name must be a letter, then letters, digits or _ (at most 40)",
        )
        _require(
            isinstance(section, dict),
            f"train.{name}",
            f"unknown key. Shared keys are {', '.join(sorted(shared))}; any other key is a model section "
            "(a mapping with arch, weights, lr, weight_decay, imbalance)",
        )
        sections[name] = _build(ModelConfig, section, f"train.{name}")
    return _build(
        TrainConfig, {k: v for k, v in data.items() if k in shared}, "train", given={"model_configs": sections}
    )


def _models_list(names: tuple[str, ...], sections: dict[str, ModelConfig], key: str) -> None:
    _require(len(names) > 0, key, "must name at least one model")
    _require(len(set(names)) == len(names), key, f"names a model twice: {short(list(names))}")
    for name in names:
        _require(
            name in sections,
            key,
            f"{short(name)} has no section train.{clip(str(name), 40)}. Sections: {', '.join(sorted(sections))}",
        )


def _distinct(values: tuple, key: str) -> None:
    _require(len(set(values)) == len(values), key, f"lists a value twice: {short(list(values))}")


def _check_overlays(params: Params) -> None:
    """The overlay audit's pairs and ranges that a type cannot say."""
    overlays = params.overlays
    _require(len(overlays.calipers.scales) > 0, "overlays.calipers.scales", "must list at least one [gap, arm]")
    for i, scale in enumerate(overlays.calipers.scales):
        _require(
            len(scale) == 2 and 0 <= scale[0] < scale[1] <= 30,
            f"overlays.calipers.scales[{i}]",
            f"must be [gap, arm] with 0 <= gap < arm <= 30, got {short(list(scale))}",
        )
    box = overlays.logo.box
    _require(len(box) == 2 and min(box) > 0, "overlays.logo.box", f"must be [width, height], got {short(list(box))}")
    text = overlays.text
    _require(text.min_height <= text.max_height, "overlays.text.max_height", "must be at least min_height")


def validate(params: Params) -> Params:
    """Checks across keys and of names that types and ranges alone cannot make."""
    download, pre, phash, split, train = (
        params.download,
        params.preprocess,
        params.audit.phash,
        params.split,
        params.train,
    )
    _require(len(download.urls) > 0, "download.urls", "must list at least one URL")
    for i, url in enumerate(download.urls):
        _require(
            url.startswith(("https://", "http://")),
            f"download.urls[{i}]",
            f"must be an http(s) URL, got {short(url)}. For a local copy set BUSI_SOURCE instead",
        )
    _require(params.backbone.url.startswith(("https://", "http://")), "backbone.url", "must be an http(s) URL")
    for key, digest in (("download.sha256", download.sha256), ("backbone.sha256", params.backbone.sha256)):
        _require(re.fullmatch(r"[0-9a-f]{64}", digest) is not None, key, "must be 64 lowercase hex digits")
    _one_of(pre.geometry, GEOMETRIES, "preprocess.geometry")
    _require(
        pre.resize_short_side >= pre.image_size,
        "preprocess.resize_short_side",
        f"must be at least preprocess.image_size ({pre.image_size}), got {pre.resize_short_side}",
    )
    bits = phash.hash_size**2
    for i, t in enumerate((phash.threshold, *phash.report_thresholds)):
        key = "audit.phash.threshold" if i == 0 else f"audit.phash.report_thresholds[{i - 1}]"
        _require(0 <= t < bits, key, f"must be a bit count from 0 to {bits - 1}, got {t}")
    for i, t in enumerate(params.audit.features.report_thresholds):
        _check_range(t, (0, 1, True), f"audit.features.report_thresholds[{i}]")
    _check_overlays(params)
    _one_of(split.strategy, SPLIT_STRATEGIES, "split.strategy")
    _one_of(split.conflicts, CONFLICT_POLICIES, "split.conflicts")
    _require(split.fold < split.folds, "split.fold", f"must be from 0 to split.folds - 1, got {split.fold}")
    _one_of(train.device, DEVICES, "train.device")
    _models_list(train.models, train.model_configs, "train.models")
    for name, model in train.model_configs.items():
        _require(
            NAME.fullmatch(model.arch) is not None,
            f"train.{name}.arch",
            f"not an architecture name: {short(model.arch)}",
        )
        _one_of(model.imbalance, IMBALANCE, f"train.{name}.imbalance")
    _models_list(params.repeat.models, train.model_configs, "repeat.models")
    seeds = params.repeat.seeds
    _distinct(seeds, "repeat.seeds")
    _require(
        train.seed not in seeds,
        "repeat.seeds",
        f"must not contain train.seed ({train.seed}): the main run is already that seed",
    )
    for i, seed in enumerate(seeds):
        _check_range(seed, (0, MAX_SEED, False), f"repeat.seeds[{i}]")
    crossval = params.crossval
    _models_list(crossval.models, train.model_configs, "crossval.models")
    _require(len(crossval.folds) > 0 and len(crossval.seeds) > 0, "crossval", "folds and seeds must not be empty")
    _distinct(crossval.folds, "crossval.folds")
    _distinct(crossval.seeds, "crossval.seeds")
    for i, fold in enumerate(crossval.folds):
        _require(0 <= fold < split.folds, f"crossval.folds[{i}]", f"must be from 0 to split.folds - 1, got {fold}")
    for i, seed in enumerate(crossval.seeds):
        _check_range(seed, (0, MAX_SEED, False), f"crossval.seeds[{i}]")
    _distinct(crossval.mark_free_models, "crossval.mark_free_models")
    for i, model in enumerate(crossval.mark_free_models):
        _require(
            model in crossval.models,
            f"crossval.mark_free_models[{i}]",
            f"{short(model)} is not in crossval.models; a mark-free run is reported beside the model's run on the "
            "images as they are",
        )
        _require(
            f"{model}_mark_free" not in crossval.models,
            "crossval.models",
            f"{model}_mark_free is also the name of {model}'s mark-free run; rename its section",
        )
    return params


def parse_params(data: Any) -> Params:
    """Build and validate Params from the mapping read out of params.yaml."""
    if not isinstance(data, dict):
        raise ConfigError("params.yaml: expected a mapping at the top level")
    sections = [f.name for f in dataclasses.fields(Params)]
    unknown = sorted(set(map(str, data)) - set(sections))
    if unknown:
        raise ConfigError(f"{clip(unknown[0], 40)}: unknown section. Valid sections: {', '.join(sections)}")
    missing = [s for s in sections if s not in data]
    if missing:
        raise ConfigError(f"{missing[0]}: missing section")
    hints = typing.get_type_hints(Params)
    built = {name: _build(hints[name], data[name], name) for name in sections if name != "train"}
    return validate(Params(**built, train=_build_train(data["train"])))


def read_yaml(path: Path) -> Any:
    """The YAML 1.2 document at path (as DVC reads it: `1e-4` is a float), refusing what could hurt.

    Aliases are refused before anything is expanded (a 1 KB "billion laughs" alias chain would
    expand to gigabytes), duplicate keys are refused by the loader, and syntax errors name the line.
    """
    if path.stat().st_size > MAX_PARAMS_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_PARAMS_BYTES:,} bytes; this is not the project's params file")
    text = path.read_text(encoding="utf-8", errors="replace")
    yaml = YAML(typ="safe")
    try:
        for event in yaml.parse(text):
            if isinstance(event, AliasEvent):
                line = event.start_mark.line + 1
                raise ConfigError(
                    f"{path} line {line}: YAML aliases (*{clip(str(event.anchor), 20)}) are not "
                    "supported; write the value out"
                )
        return yaml.load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: {clip(str(problem), 120)}. Fix the YAML syntax") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check params.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found. Run from the project root, where params.yaml lives.")
    return parse_params(read_yaml(path))


def to_dict(obj: Any) -> Any:
    """Plain-data copy of a config object, for checkpoints and logs."""
    return dataclasses.asdict(obj)
