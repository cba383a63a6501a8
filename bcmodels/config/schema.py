"""The settings of params.yaml as typed, frozen dataclasses, and the names they may take.

Every field is required in params.yaml (the code has no defaults to drift from it); a field made with
`_range` carries the interval its value must lie in, which bcmodels.config.load checks. This module imports
nothing of the project, so any module can depend on the settings' shapes without loading YAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

CLASSES = ("benign", "malignant", "normal")
GEOMETRIES = ("study", "resize", "letterbox")
SPLIT_STRATEGIES = ("study", "grouped")
CONFLICT_POLICIES = ("keep", "drop")
DEVICES = ("auto", "cpu", "cuda")
# How a model meets the class imbalance (the study did nothing): loss weighted by inverse class
# frequency, a sampler drawing every class equally often, or augmentation of the minority classes only.
IMBALANCE = ("none", "class_weighted_loss", "balanced_sampler", "minority_augment")
MAX_SEED = 2**32 - 1  # NumPy and scikit-learn take seeds up to this
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")  # model names become file names and DVC stage names


def _range(low: float, high: float, *, low_open: bool = False) -> Any:
    """A dataclass field whose value must lie in [low, high] (or (low, high] with low_open)."""
    return field(metadata={"range": (low, high, low_open)})


@dataclass(frozen=True)
class DownloadConfig:
    urls: tuple[str, ...]  # mirrors, tried in order
    sha256: str
    manifest: str
    timeout_s: float = _range(0, 600, low_open=True)
    retries: int = _range(0, 10)
    max_archive_mb: float = _range(0, 100_000, low_open=True)  # a download stops once it is larger
    max_member_mb: float = _range(0, 100_000, low_open=True)
    max_total_mb: float = _range(0, 100_000, low_open=True)  # all members of an archive together
    max_members: int = _range(1, 1_000_000)


@dataclass(frozen=True)
class BackboneConfig:
    url: str
    sha256: str  # of the file at url
    member: str  # the state_dict inside it


@dataclass(frozen=True)
class PreprocessConfig:
    geometry: str
    image_size: int = _range(8, 1024)
    resize_short_side: int = _range(8, 2048)
    workers: int = _range(0, 256)  # 0 = one process per core


@dataclass(frozen=True)
class PhashConfig:
    hash_size: int = _range(4, 16)
    threshold: int = _range(0, 255)  # bits
    report_thresholds: tuple[int, ...]


@dataclass(frozen=True)
class FeatureConfig:
    weights: str  # MobileNetV2 ImageNet state_dict
    image_size: int = _range(32, 1024)
    mid_block: int = _range(1, 18)  # the mid-level features are the output of features[:mid_block]
    threshold: float = _range(0, 1, low_open=True)  # cosine similarity
    report_thresholds: tuple[float, ...]


@dataclass(frozen=True)
class EyeLink:
    """Two images of one lesion that neither detector links at its threshold, confirmed by eye."""

    a: str  # file names as in the manifest: <class>/<name>.png
    b: str
    why: str


@dataclass(frozen=True)
class AuditConfig:
    phash: PhashConfig
    features: FeatureConfig
    linked_by_eye: tuple[EyeLink, ...]


@dataclass(frozen=True)
class CaliperConfig:
    scales: tuple[tuple[int, ...], ...]  # [gap, arm] pairs in pixels: a cross's arm runs from gap to arm
    flank: int = _range(1, 10)  # pixels beside an arm where the background is sampled
    min_contrast: float = _range(0, 255, low_open=True)  # grey levels: every arm above its flanks
    max_off_arm: float = _range(0, 1)  # fraction of bright pixels between the arms
    min_run: int = _range(1, 20)  # pixels every arm is bright from its start
    min_ends: int = _range(0, 4)  # arms that stop short (darker past the arm's end)
    flat_spread: float = _range(0, 255)  # grey levels: a '+' drawn flat varies less than this along and across arms
    flat_contrast: float = _range(0, 255, low_open=True)  # grey levels above its flanks' mean, for a flat '+'


@dataclass(frozen=True)
class TextConfig:
    tophat_size: int = _range(3, 31)  # pixels: strokes narrower than this stand out of the background
    min_contrast: float = _range(0, 255, low_open=True)  # grey levels above the opened background
    min_height: int = _range(2, 100)  # a glyph's height in pixels
    max_height: int = _range(2, 100)
    max_width: int = _range(2, 200)
    max_gap: float = _range(0, 10)  # glyphs of one line are at most this many glyph heights apart
    min_glyphs: int = _range(1, 20)  # glyphs of a line worth reading (a lone glyph: only as a caliper number)
    number_radius: float = _range(0, 10)  # caliper numbers lie within this many half cross sizes of its centre
    number_tolerance: float = _range(0, 255)  # grey levels: a caliper number's ink is its cross's grey, flat
    ocr_scale: int = _range(1, 8)
    ink_margins: tuple[int, ...]  # pixels of the frame kept around the strokes, one reading each
    whitelist: str
    min_confidence: float = _range(0, 100)
    min_chars: int = _range(1, 20)  # letters or digits of a word read that counts
    flat_spread: float = _range(0, 255)  # grey levels: a line whose strokes' cores vary less is drawn text
    saturated: float = _range(0, 255)  # grey levels: grey strokes this bright are saturated tissue, not text
    streak_length: int = _range(3, 101)  # pixels: straight bright runs this long are tissue, not a glyph's stroke
    streak_angle: int = _range(0, 90)  # degrees from horizontal that such streaks run at
    label_stem: int = _range(1, 20)  # letters: a reading holding this many of a label word's first counts


@dataclass(frozen=True)
class ColourConfig:
    min_chroma: int = _range(1, 255)  # max - min of a pixel's R, G, B
    min_pixels: int = _range(1, 1_000_000)


@dataclass(frozen=True)
class LogoConfig:
    box: tuple[int, ...]  # [width, height] of the top-left corner where the scanner's logo sits
    min_value: int = _range(0, 255)  # the logo's white glyphs...
    max_outline: int = _range(0, 255)  # ...inside a black outline
    outline_px: int = _range(1, 10)  # how far the outline lies from a glyph pixel, on both sides
    min_pixels: int = _range(1, 100_000)


@dataclass(frozen=True)
class ViewConfig:
    axilla_words: tuple[str, ...]
    breast_words: tuple[str, ...]


@dataclass(frozen=True)
class SampleDraw:
    per_class: int = _range(1, 1000)  # images of each class
    seed: int = _range(0, MAX_SEED)


@dataclass(frozen=True)
class OverlayCheckConfig:
    tuning: SampleDraw  # the sample the detector was tuned on
    held_out: SampleDraw  # drawn from the other images; labelled before the detector was run on it


@dataclass(frozen=True)
class OverlaysConfig:
    calipers: CaliperConfig
    text: TextConfig
    colour: ColourConfig
    logo: LogoConfig
    view: ViewConfig
    check: OverlayCheckConfig
    workers: int = _range(0, 256)  # 0 = one process per core


@dataclass(frozen=True)
class EditsConfig:
    """data/mark_free and data/lesion_free: the raw images with their marks, or their lesion, inpainted."""

    marks: tuple[str, ...]  # kinds of the overlay audit removed for data/mark_free (calipers, text, colour, logo)
    mark_margin_px: int = _range(0, 50)  # raw pixels each mark's box (and coloured pixel) grows by
    min_chroma: int = _range(1, 255)  # in an image with colour: the pixels repainted (max - min of R, G, B)
    line_contrast: float = _range(0, 255, low_open=True)  # grey levels of a measuring line's dots above the tissue
    line_share: float = _range(0, 1, low_open=True)  # of the way between two calipers: dotted, it is a line
    lesion_margin_px: int = _range(0, 100)  # raw pixels the joined lesion mask grows by
    radius: int = _range(1, 50)  # cv2.inpaint's inpaintRadius, raw pixels
    examples: int = _range(1, 50)  # images in the figure plots/audit/edits.png
    workers: int = _range(0, 256)  # 0 = one process per core


@dataclass(frozen=True)
class SplitConfig:
    strategy: str
    test_fraction: float = _range(0, 1, low_open=True)
    val_fraction: float = _range(0, 1, low_open=True)
    seed: int = _range(0, MAX_SEED)
    folds: int = _range(3, 50)
    fold: int = _range(0, 49)
    conflicts: str


@dataclass(frozen=True)
class EarlyStoppingConfig:
    patience: int = _range(1, 1000)
    start_epoch: int = _range(0, 1000)


@dataclass(frozen=True)
class SchedulerConfig:
    step_size: int = _range(1, 1000)
    gamma: float = _range(0, 1, low_open=True)


@dataclass(frozen=True)
class AugmentConfig:
    p: float = _range(0, 1)
    hflip_p: float = _range(0, 1)
    rotation_deg: float = _range(0, 180)
    brightness: float = _range(0, 1)
    contrast: float = _range(0, 1)
    saturation: float = _range(0, 1)
    hue: float = _range(0, 0.5)


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # simple_cnn, mobilenet (the study's own networks) or a torchvision classifier
    weights: str  # none | a torchvision weights name | a path to a state_dict file
    lr: float = _range(0, 1, low_open=True)
    weight_decay: float = _range(0, 1)
    imbalance: str


@dataclass(frozen=True)
class TrainConfig:
    models: tuple[str, ...]  # the sections that `dvc repro` trains
    seed: int = _range(0, MAX_SEED)
    device: str
    deterministic: bool
    amp: bool
    cuda_graph: bool
    compile_augmentation: bool
    batch_size: int = _range(1, 4096)
    max_epochs: int = _range(1, 1000)
    early_stopping: EarlyStoppingConfig
    scheduler: SchedulerConfig
    augment: AugmentConfig
    model_configs: dict[str, ModelConfig]  # every other key of train: one section per model name


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = _range(1, 4096)
    bootstrap_resamples: int = _range(1000, 1_000_000)
    bootstrap_seed: int = _range(0, MAX_SEED)
    calibration_bins: int = _range(1, 100)


@dataclass(frozen=True)
class RepeatConfig:
    models: tuple[str, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class ShortcutsConfig:
    """The shortcuts stage of the benchmark: where the models look, and what the edits change."""

    grown_px: int = _range(0, 112)  # image-store pixels the lesion mask grows by for the grown share
    background_max: int = _range(0, 255)  # grey level: darker pixels connected to the border are background
    sheet_per_model: int = _range(1, 50)  # images with the lowest lesion share per model in the contact sheet


@dataclass(frozen=True)
class CrossvalConfig:
    models: tuple[str, ...]
    folds: tuple[int, ...]  # test folds of the grouped split to run
    seeds: tuple[int, ...]  # training seeds per fold
    mark_free_models: tuple[str, ...]  # also trained and tested on data/mark_free, as <model>_mark_free
    shortcuts: ShortcutsConfig


@dataclass(frozen=True)
class Params:
    download: DownloadConfig
    backbone: BackboneConfig
    preprocess: PreprocessConfig
    audit: AuditConfig
    overlays: OverlaysConfig
    edits: EditsConfig
    split: SplitConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    repeat: RepeatConfig
    crossval: CrossvalConfig
