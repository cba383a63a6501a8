"""The looks and shortcuts stages: Grad-CAM shares against hand-made maps, pooled numbers against a hand computation
on the resampled images, paired differences on shared draws, the looks files, and both stages on a tiny synthetic
benchmark."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from bcmodels.config.schema import CLASSES
from bcmodels.errors import DataError
from bcmodels.evaluation.crossval import summary_models
from bcmodels.evaluation.looks import LookFiles, run_looks
from bcmodels.evaluation.regions import background, cam_share, grow
from bcmodels.evaluation.shortcuts import ShortcutFiles, looks_paths, run_shortcuts
from bcmodels.evaluation.shortcuts_summary import Images, Looks, entry, model_samples, pooled, summarize_shortcuts
from bcmodels.evaluation.stats import image_weights, percentile_interval
from bcmodels.formats.checkpoint import Checkpoint, save_checkpoint
from bcmodels.formats.looks import RunLooks, read_looks, write_looks
from bcmodels.formats.masks import MaskRow, write_masks
from bcmodels.formats.overlays import OverlayRow, write_overlays
from bcmodels.formats.split import write_split
from bcmodels.formats.store import IndexRow, write_store
from bcmodels.models.inference import IMAGENET_MEAN, IMAGENET_STD, predict_logits
from bcmodels.models.registry import build_model, find_head
from tests.conftest import project_params


def test_a_map_all_inside_the_mask_gives_one_and_a_uniform_map_gives_the_area_share():
    mask = np.zeros((2, 20, 20), dtype=bool)
    mask[:, 5:10, 5:15] = True  # 50 of 400 pixels
    inside = np.where(mask, 0.7, 0.0)
    uniform = np.full((2, 20, 20), 0.3)
    assert cam_share(inside, mask) == pytest.approx([1.0, 1.0])
    assert cam_share(uniform, mask) == pytest.approx([50 / 400, 50 / 400])
    half = np.zeros((1, 20, 20))
    half[0, 5, 5], half[0, 0, 0] = 1.0, 3.0  # a quarter of the energy inside
    assert cam_share(half, mask[:1]) == pytest.approx([0.25])
    empty_map, no_mask = np.zeros((1, 20, 20)), np.zeros((1, 20, 20), dtype=bool)
    assert np.isnan(cam_share(empty_map, mask[:1])).all() and np.isnan(cam_share(uniform[:1], no_mask)).all()


def test_growing_a_mask_adds_a_ring_of_the_stated_width():
    mask = np.zeros((1, 41, 41), dtype=bool)
    mask[0, 20, 20] = True
    grown = grow(mask, 5)
    assert grown[0, 20, 15] and grown[0, 20, 25] and grown[0, 15, 20] and not grown[0, 20, 14] and not grown[0, 14, 20]
    assert np.array_equal(grow(mask, 0), mask)


def test_background_is_the_flat_black_connected_to_the_border_not_a_dark_cyst_or_dark_speckle():
    rng = np.random.default_rng(0)
    grey = rng.integers(60, 200, (64, 64)).astype(np.uint8)
    grey[:, :10] = rng.integers(0, 4, (64, 10))  # the black beside the sector, at the left border
    grey[25:40, 25:40] = 0  # a black cyst inside the tissue
    grey[50:, 40:] = np.where(rng.random((14, 24)) < 0.3, 40, 2)  # dark tissue with speckle, at the border
    dark = background(np.stack([grey] * 3, axis=-1)[None], max_grey=5)[0]
    assert dark[:, :10].all() and not dark[25:40, 25:40].any()
    assert dark[50:, 40:].mean() < 0.2 and not dark[:, 12:50].any()


def _images(n: int, rng: np.random.Generator) -> Images:
    labels = rng.integers(0, 3, n)
    lesion = labels != 2
    area = np.where(lesion, rng.uniform(0.05, 0.3, n), np.nan)
    return Images(
        files=[f"{i:02d}.png" for i in range(n)],
        classes=CLASSES,
        labels=labels,
        fold=np.arange(n) % 3,
        marked=rng.random(n) < 0.4,
        lesion=lesion,
        lesion_edited=np.ones(n, dtype=bool),
        lesion_area=area,
        grown_area=np.where(lesion, area * 1.5, np.nan),
        background_area=rng.uniform(0, 0.2, n),
    )


def _looks(images: Images, rng: np.random.Generator, skill: float, seeds: int = 1) -> Looks:
    n = len(images.files)

    def calls() -> np.ndarray:
        right = rng.random((n, seeds)) < skill
        return np.where(right, images.labels[:, None], rng.integers(0, 3, (n, seeds)))

    share = np.where(images.lesion[:, None], rng.uniform(0, 1, (n, seeds)), np.nan)
    share[0, 0] = np.nan if images.lesion[0] else share[0, 0]  # an empty map: undefined
    return Looks(calls(), calls(), calls(), share, np.clip(share + 0.1, 0, 1), rng.uniform(0, 0.3, (n, seeds)))


def test_pooled_numbers_equal_the_plain_ones_on_the_resampled_images():
    rng = np.random.default_rng(1)
    images = _images(30, rng)
    looks = _looks(images, rng, 0.7, seeds=2)
    looks.cam_on_background[::4] = np.nan  # images without background: no share
    weights = image_weights(30, 5, seed=3)
    samples = model_samples(images, looks, weights)
    for row in range(6):
        drawn = np.repeat(np.arange(30), weights[row].astype(int))  # the resample's images, with repeats
        shares = looks.cam_in_lesion[drawn].ravel()
        assert samples["cam_in_lesion"][row] == pytest.approx(np.nanmean(shares))
        marked = drawn[images.marked[drawn]]
        right = looks.predicted_mark_free[marked] == images.labels[marked][:, None]
        assert samples["accuracy"][row] == pytest.approx(right.mean())
        kept = drawn[images.lesion[drawn]]
        assert samples["still_lesion"][row] == pytest.approx((looks.predicted_lesion_free[kept] != 2).mean())
        defined = ~np.isnan(looks.cam_in_lesion[drawn])
        areas = np.broadcast_to(images.lesion_area[drawn][:, None], defined.shape)[defined]
        assert samples["lesion_area"][row] == pytest.approx(areas.mean())  # on exactly the entries of the share
        on_background = looks.cam_on_background[drawn]
        ground = np.broadcast_to(images.background_area[drawn][:, None], on_background.shape)
        defined = ~np.isnan(on_background)
        assert samples["background_area"][row] == pytest.approx(ground[defined].mean())
        assert samples["cam_on_background_minus_area"][row] == pytest.approx((on_background - ground)[defined].mean())
    assert np.isnan(pooled(np.full((4, 1), np.nan), np.ones((1, 4))))[0]
    assert entry(np.array([np.nan, 1.0])) == {"value": None, "ci95": None}


def test_paired_differences_between_models_use_the_same_image_draws():
    rng = np.random.default_rng(2)
    images = _images(60, rng)
    a, b = _looks(images, rng, 0.9), _looks(images, rng, 0.4)
    b.cam_in_lesion = np.clip(a.cam_in_lesion - 0.2 + rng.normal(0, 0.02, a.cam_in_lesion.shape), 0, 1)
    weights = image_weights(60, 1000, seed=0)
    summary = summarize_shortcuts(images, {"a": a, "b": b}, weights, {"grown_px": 16})
    pair = summary["paired"]["a_vs_b"]["cam_in_lesion"]
    sa, sb = (model_samples(images, look, weights)["cam_in_lesion"] for look in (a, b))
    assert pair["value"] == pytest.approx(sa[0] - sb[0])
    assert pair["ci95"] == pytest.approx(percentile_interval(sa[1:] - sb[1:]))
    apart = [summary["models"][m]["cam_in_lesion"]["ci95"] for m in ("a", "b")]
    # pairing: the difference is much surer than the two intervals taken apart would say
    assert pair["ci95"]["high"] - pair["ci95"]["low"] < 0.5 * sum(i["high"] - i["low"] for i in apart)
    marks = summary["models"]["a"]["marks_removed"]
    changed = (a.predicted_mark_free != a.predicted)[images.marked]
    assert marks["changed"] == changed.sum() and marks["images"] == images.marked.sum()
    assert marks["changed_share"]["value"] == pytest.approx(changed.mean())
    assert sum(marks["changed_to"].values()) == marks["changed"]


def test_mark_free_runs_are_summarized_beside_their_own_model_under_their_own_name():
    assert summary_models(("a", "b"), ("b",)) == ("a", "b", "b_mark_free")
    assert summary_models(("a",), ()) == ("a",)


SIZE, FOLDS, MODELS = 32, (0, 1, 2), ("simple_cnn", "mobilenet")


def _fold_model(arch: str, fold: int) -> torch.nn.Module:
    """An untrained network that calls every image class `fold`: which fold's model judged an image shows."""
    torch.manual_seed(fold)
    net = build_model(arch, num_classes=3, image_size=SIZE)
    with torch.no_grad():
        net.get_submodule(find_head(net, 3)).bias[fold] += 50.0
    return net.eval()


@pytest.fixture
def benchmark(tmp_path):
    """A benchmark of 12 images of 32 x 32 in three folds, two untrained models per fold, edits made by hand."""
    rng = np.random.default_rng(0)
    labels = [CLASSES[i % 3] for i in range(12)]
    files = [f"{c}/{c} ({i}).png" for i, c in enumerate(labels)]
    original = rng.integers(30, 200, (12, SIZE, SIZE, 3)).astype(np.uint8)
    original[:, :, :4] = 0  # a black band at the left border: background
    masks = np.zeros((12, SIZE, SIZE), dtype=np.uint8)
    masks[[i for i, c in enumerate(labels) if c != "normal"], 10:20, 12:24] = 1
    mark_free, lesion_free = original.copy(), original.copy()
    marked = [0, 1, 4, 7]
    mark_free[marked, 2:5, 25:28] = 90  # the marks repainted
    lesion_free[masks.astype(bool)] = 120  # the lesions repainted
    lesion_free[[2, 5], 5:9, 5:9] = 120  # sham patches on two normal images
    rows = [IndexRow(f, c, "0" * 64) for f, c in zip(files, labels)]
    for name, images in (("processed", original), ("mark_free", mark_free), ("lesion_free", lesion_free)):
        write_store(tmp_path / name, rows, images)
    write_masks(tmp_path / "masks", [MaskRow(f, c, 1) for f, c in zip(files, labels)], masks)
    write_overlays(
        tmp_path / "overlays.csv",
        {f: OverlayRow(c, i in marked, False, False, False, "unknown", ((25, 2, 3, 3),) if i in marked else (), (),
                       None, None, "") for i, (f, c) in enumerate(zip(files, labels))},
    )  # fmt: skip
    for fold in FOLDS:
        sides = {f: "test" if i % 3 == fold else "train" for i, f in enumerate(files)}
        write_split(tmp_path / "runs" / f"fold{fold}" / "split.csv", files, labels, sides)
        for model in MODELS:
            net = _fold_model(model, fold)
            checkpoint = Checkpoint(
                model, model, CLASSES, "study", SIZE, 36, IMAGENET_MEAN, IMAGENET_STD, {}, {}, 0, 1, net.state_dict()
            )
            save_checkpoint(tmp_path / "runs" / f"fold{fold}" / "seed0" / f"{model}.pt", checkpoint)
    out = tmp_path / "crossval"
    paths = ShortcutFiles(
        tmp_path / "processed", tmp_path / "mark_free", tmp_path / "lesion_free", tmp_path / "masks",
        tmp_path / "overlays.csv", out / "looks", out / "shortcuts.json", out / "shortcuts_images.csv",
        out / "figures" / "shortcuts.png", out / "figures" / "lowest_lesion_share.png",
    )  # fmt: skip
    params = project_params()
    params = dataclasses.replace(
        params,
        preprocess=dataclasses.replace(params.preprocess, image_size=SIZE, resize_short_side=36, geometry="study"),
        crossval=dataclasses.replace(params.crossval, models=MODELS, folds=FOLDS, seeds=(0,)),
        evaluate=dataclasses.replace(params.evaluate, bootstrap_resamples=1000, batch_size=5),
        train=dataclasses.replace(params.train, device="cpu"),
    )
    return {"files": paths, "params": params, "names": files, "original": original, "marked": marked}


def _run_looks(benchmark) -> None:
    """The looks stage for every model and fold of the benchmark, as crossval/dvc.yaml runs it."""
    files, params, runs = benchmark["files"], benchmark["params"], benchmark["files"].store.parent / "runs"
    for model in MODELS:
        for fold in FOLDS:
            csv_path, npz_path = looks_paths(files.looks, model, fold, 0)
            run_looks(
                LookFiles(files.store, files.mark_free, files.lesion_free, files.masks, runs / f"fold{fold}" /
                          "split.csv", runs / f"fold{fold}" / "seed0" / f"{model}.pt", csv_path, npz_path),
                params,
            )  # fmt: skip


@pytest.mark.slow  # Grad-CAM of two networks over three folds
def test_the_stages_judge_every_test_image_with_its_own_folds_model_and_write_every_output(benchmark):
    files, params = benchmark["files"], benchmark["params"]
    _run_looks(benchmark)
    for checkpoint in (files.store.parent / "runs").rglob("*.pt"):
        checkpoint.unlink()  # pooling needs the looks files only, not the checkpoints
    summary = run_shortcuts(files, params)
    assert json.loads(files.summary.read_text()) == summary
    assert summary["images"] == 12 and summary["marked_images"] == 4 and summary["lesion_images"] == 8
    assert set(summary["paired"]) == {"simple_cnn_vs_mobilenet"}
    with files.images.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 24 and {r["file"] for r in table} == set(benchmark["names"])
    for model in MODELS:
        rows = [r for r in table if r["model"] == model]
        for fold in FOLDS:  # the fold's own checkpoint called its test images, as a plain prediction would
            mine = [r for r in rows if r["fold"] == str(fold)]
            net = _fold_model(model, fold)  # the fold's checkpoint, made again
            index = [benchmark["names"].index(r["file"]) for r in mine]
            x = torch.from_numpy(benchmark["original"][index]).permute(0, 3, 1, 2).contiguous()
            calls = predict_logits(net, x, batch_size=5).argmax(dim=1).tolist()
            assert [r["predicted"] for r in mine] == [CLASSES[c] for c in calls] == [CLASSES[fold]] * 4
        m = summary["models"][model]
        shares = [float(r["cam_in_lesion"]) for r in rows if r["cam_in_lesion"]]
        assert m["cam_in_lesion"]["value"] == pytest.approx(np.mean(shares), abs=1e-4)
        assert m["lesion_removed"]["images"] == 8 and m["lesion_removed"]["sham"]["images"] == 2
        marked = [r for r in rows if r["marked"] == "1"]
        assert m["marks_removed"]["changed"] == sum(r["predicted"] != r["predicted_mark_free"] for r in marked)
        unmarked = [r for r in rows if r["marked"] == "0"]
        assert all(r["predicted"] == r["predicted_mark_free"] for r in unmarked)  # same input, same call
        normal = [r for r in rows if r["class"] == "normal"]
        assert not any(r["cam_in_lesion"] for r in normal) and all(r["background_area"] == "0.1250" for r in rows)
    for figure in (files.figure, files.sheet):
        assert figure.read_bytes()[:4] == b"\x89PNG"


def test_looks_files_read_back_what_was_written_and_refuse_a_damaged_or_foreign_map_file(tmp_path):
    looks = RunLooks(
        files=["benign/a.png", "malignant/b.png", "normal/c.png"],
        calls={"predicted": np.array([0, 1, 2]), "predicted_mark_free": np.array([0, 2, 2]),
               "predicted_lesion_free": np.array([2, 1, 2])},
        shares={"cam_in_lesion": np.array([0.25, 0.5, np.nan]), "cam_in_grown": np.array([0.5, 0.75, np.nan]),
                "cam_on_background": np.array([0.0, 0.125, np.nan])},
        empty_map=np.array([False, False, True]),
        lowest_files=["benign/a.png"],
        lowest_maps=np.full((1, 4, 4), 7, dtype=np.uint8),
    )  # fmt: skip
    csv_path, npz_path = tmp_path / "m.csv", tmp_path / "m-lowest.npz"
    write_looks(csv_path, npz_path, looks, CLASSES)
    back = read_looks(csv_path, npz_path, CLASSES, "make it")
    assert back.files == looks.files and back.lowest_files == looks.lowest_files
    assert all(np.array_equal(back.calls[k], v) for k, v in looks.calls.items())
    assert all(np.array_equal(back.shares[k], v, equal_nan=True) for k, v in looks.shares.items())
    assert np.array_equal(back.empty_map, looks.empty_map) and np.array_equal(back.lowest_maps, looks.lowest_maps)
    npz_path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"m-lowest\.npz: unreadable.*make it"):
        read_looks(csv_path, npz_path, CLASSES, "make it")
    write_looks(csv_path, npz_path, dataclasses.replace(looks, lowest_files=["benign/elsewhere.png"]), CLASSES)
    with pytest.raises(DataError, match="does not belong with"):
        read_looks(csv_path, npz_path, CLASSES, "make it")


def test_pooling_names_the_looks_stage_of_a_run_that_is_missing(benchmark, tmp_path):
    files, params = benchmark["files"], benchmark["params"]
    params = dataclasses.replace(params, crossval=dataclasses.replace(params.crossval, models=("simple_cnn",)))
    fold0 = files.store.parent / "runs" / "fold0"
    run_looks(
        LookFiles(files.store, files.mark_free, files.lesion_free, files.masks, fold0 / "split.csv",
                  fold0 / "seed0" / "simple_cnn.pt", *looks_paths(files.looks, "simple_cnn", 0, 0)),
        params,
    )  # fmt: skip
    with pytest.raises(
        DataError, match=r"fold1-seed0/simple_cnn.csv: not found; `dvc repro crossval/dvc.yaml:looks@simple_cnn-1-0`"
    ):
        run_shortcuts(files, params)
    assert not files.summary.exists()
