"""The overlay detector against the sample labelled by eye: precision and recall per kind of mark, the view's
agreement, and every image where the two disagree (metrics/overlays.json)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from bcmodels.config.schema import CLASSES, OverlayCheckConfig
from bcmodels.errors import DataError
from bcmodels.formats.manifest import ManifestEntry
from bcmodels.formats.overlays import KINDS, VIEWS, LabelRow, OverlayRow


def draw_sample(entries: list[ManifestEntry], config: OverlayCheckConfig) -> list[str]:
    """per_class files of each class, drawn at random with the seed (classes in turn, manifest order within)."""
    rng = np.random.default_rng(config.seed)
    drawn = []
    for c in CLASSES:
        files = [e.file for e in entries if e.label == c]
        if len(files) < config.per_class:
            raise DataError(f"overlays.check.per_class: {config.per_class} is more than the {len(files)} {c} images")
        drawn += sorted(files[i] for i in rng.choice(len(files), config.per_class, replace=False))
    return drawn


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score(found: dict[str, OverlayRow], labels: dict[str, LabelRow]) -> dict:
    """Per kind: counts, precision and recall of the detector on the labelled images; the view's agreement."""
    missing = sorted(set(labels) - set(found))
    if missing:
        raise DataError(f"{missing[0]}: labelled but not in the overlays table; rerun `dvc repro overlays`")
    kinds, wrong = {}, []
    for kind in KINDS:
        pairs = [(labels[f].flag(kind), found[f].flag(kind), f) for f in labels]
        tp = sum(a and b for a, b, _ in pairs)
        fp = sum(b and not a for a, b, _ in pairs)
        fn = sum(a and not b for a, b, _ in pairs)
        kinds[kind] = {
            "labelled": tp + fn,
            "found": tp + fp,
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
        }
        wrong += [{"file": f, "kind": kind, "label": int(a), "found": int(b)} for a, b, f in pairs if a != b]
    views = Counter((labels[f].view, found[f].view) for f in labels)
    wrong += [
        {"file": f, "kind": "view", "label": labels[f].view, "found": found[f].view}
        for f in labels
        if labels[f].view != found[f].view
    ]
    per_class = Counter(r.label for r in labels.values())
    return {
        "sample": {"images": len(labels), **{c: per_class[c] for c in CLASSES}},
        **kinds,
        "view": {
            "agreement": _ratio(sum(n for (a, b), n in views.items() if a == b), len(labels)),
            "labelled_vs_found": {a: {b: views[(a, b)] for b in VIEWS} for a in VIEWS},
        },
        "disagreements": sorted(wrong, key=lambda w: (w["file"], w["kind"])),
    }


def check_sample(labels: dict[str, LabelRow], drawn: list[str]) -> None:
    """The labelled files must be the seeded draw: a sample picked by hand would not measure the detector."""
    extra, absent = sorted(set(labels) - set(drawn)), sorted(set(drawn) - set(labels))
    if extra or absent:
        what = f"{extra[0]} is labelled but not drawn" if extra else f"{absent[0]} is drawn but not labelled"
        raise DataError(
            f"the labelled sample is not the draw of overlays.check ({what}); list the draw with "
            "`python -m stages.overlays_check --draw` and label exactly those images"
        )
