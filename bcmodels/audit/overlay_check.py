"""The overlay detector against the samples labelled by eye: per sample (tuning, held_out, and both together)
and kind of mark, the counts, precision and recall with exact 95% intervals, the view's agreement, and every
image where label and detector disagree (metrics/overlays.json)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy import stats

from bcmodels.config.schema import CLASSES, OverlayCheckConfig, SampleDraw
from bcmodels.errors import DataError
from bcmodels.formats.manifest import ManifestEntry
from bcmodels.formats.overlays import KINDS, SAMPLES, VIEWS, LabelRow, OverlayRow

INTERVAL = "95% Clopper-Pearson (exact binomial; scipy.stats.binomtest)"


def _draw(entries: list[ManifestEntry], draw: SampleDraw, exclude: set[str], key: str) -> list[str]:
    """per_class files of each class not in `exclude`, drawn at random with the seed (classes in turn, manifest
    order within)."""
    rng = np.random.default_rng(draw.seed)
    drawn = []
    for c in CLASSES:
        files = [e.file for e in entries if e.label == c and e.file not in exclude]
        if len(files) < draw.per_class:
            raise DataError(f"{key}.per_class: {draw.per_class} is more than the {len(files)} {c} images to draw from")
        drawn += sorted(files[i] for i in rng.choice(len(files), draw.per_class, replace=False))
    return drawn


def draw_samples(entries: list[ManifestEntry], config: OverlayCheckConfig) -> dict[str, list[str]]:
    """sample -> its files: the tuning sample drawn from every image, the held-out one from the rest."""
    tuning = _draw(entries, config.tuning, set(), "overlays.check.tuning")
    held_out = _draw(entries, config.held_out, set(tuning), "overlays.check.held_out")
    return {"tuning": tuning, "held_out": held_out}


def check_samples(labels: dict[str, LabelRow], drawn: dict[str, list[str]]) -> None:
    """Each sample's labelled files must be its seeded draw: a sample picked by hand would not measure the
    detector, and an image moved between samples would blur which one was tuned on."""
    for sample in SAMPLES:
        mine = {f for f, r in labels.items() if r.sample == sample}
        extra, absent = sorted(mine - set(drawn[sample])), sorted(set(drawn[sample]) - mine)
        if extra or absent:
            what = f"{extra[0]} is labelled but not drawn" if extra else f"{absent[0]} is drawn but not labelled"
            raise DataError(
                f"the {sample} sample is not the draw of overlays.check.{sample} ({what}); list the draws with "
                "`python -m stages.overlays_check --draw` and label exactly those images, each in its sample"
            )


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _interval(successes: int, trials: int) -> dict[str, float] | None:
    """The exact (Clopper-Pearson) 95% interval of successes / trials; None without trials."""
    if not trials:
        return None
    interval = stats.binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="exact")
    return {"low": round(float(interval.low), 4), "high": round(float(interval.high), 4)}


def _kind_scores(pairs: list[tuple[bool, bool]]) -> dict:
    """Counts, precision and recall (with intervals) of (label, found) pairs."""
    tp = sum(a and b for a, b in pairs)
    fp = sum(b and not a for a, b in pairs)
    fn = sum(a and not b for a, b in pairs)
    return {
        "labelled": tp + fn,
        "found": tp + fp,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "precision": _ratio(tp, tp + fp),
        "precision_95": _interval(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "recall_95": _interval(tp, tp + fn),
    }


def _sample_scores(found: dict[str, OverlayRow], labels: dict[str, LabelRow]) -> dict:
    """One sample's size per class, its scores per kind and the view's agreement."""
    per_class = Counter(r.label for r in labels.values())
    views = Counter((labels[f].view, found[f].view) for f in labels)
    return {
        "images": len(labels),
        **{c: per_class[c] for c in CLASSES},
        **{kind: _kind_scores([(labels[f].flag(kind), found[f].flag(kind)) for f in labels]) for kind in KINDS},
        "view": {
            "agreement": _ratio(sum(n for (a, b), n in views.items() if a == b), len(labels)),
            "labelled_vs_found": {a: {b: views[(a, b)] for b in VIEWS} for a in VIEWS},
        },
    }


def score(found: dict[str, OverlayRow], labels: dict[str, LabelRow]) -> dict:
    """Per sample (and both together): counts, precision and recall of each kind; every disagreement."""
    missing = sorted(set(labels) - set(found))
    if missing:
        raise DataError(f"{missing[0]}: labelled but not in the overlays table; rerun `dvc repro -s overlays`")
    groups = {s: {f: r for f, r in labels.items() if r.sample == s} for s in SAMPLES}
    groups["both"] = labels
    wrong = []
    for f, r in labels.items():
        row = found[f]
        wrong += [
            {"file": f, "sample": r.sample, "kind": k, "label": int(r.flag(k)), "found": int(row.flag(k))}
            for k in KINDS
            if r.flag(k) != row.flag(k)
        ]
        if r.view != row.view:
            wrong.append({"file": f, "sample": r.sample, "kind": "view", "label": r.view, "found": row.view})
    return {
        "interval": INTERVAL,
        **{name: _sample_scores(found, group) for name, group in groups.items()},
        "disagreements": sorted(wrong, key=lambda w: (w["sample"], w["file"], w["kind"])),
    }


def summary_lines(metrics: dict) -> list[str]:
    """The metrics of score() as lines for the log: per sample and kind, precision and recall with intervals."""

    def ci(interval: dict | None) -> str:
        return f"[{interval['low']:.2f}, {interval['high']:.2f}]" if interval else "[-]"

    lines = [f"precision and recall with their {metrics['interval']}"]
    for sample in (*SAMPLES, "both"):
        lines.append(f"  {sample} ({metrics[sample]['images']} images):")
        for kind in KINDS:
            m = metrics[sample][kind]
            lines.append(
                f"    {kind:8s} precision {m['precision']} {ci(m['precision_95'])}, recall {m['recall']} "
                f"{ci(m['recall_95'])} ({m['labelled']} labelled, {m['found']} found)"
            )
        lines.append(f"    view     agreement {metrics[sample]['view']['agreement']}")
    return lines
