from __future__ import annotations

import dataclasses
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, PngImagePlugin

from bcmodels.audit.duplicates import (
    AuditFiles,
    audit_images,
    conflict_sheet,
    disagreement_sheet,
    exact_groups,
    group_rows,
    hamming_distances,
    linked_pairs,
    near_groups,
    run_audit,
    summarize,
)
from bcmodels.audit.leakage import leakage, write_data_metrics
from bcmodels.config.schema import EyeLink
from bcmodels.data.busi import DATASET_DIR
from bcmodels.data.partition import make_split, write_split_file
from bcmodels.errors import DataError
from bcmodels.formats.groups import GroupRow, read_groups, read_pairs, write_groups
from bcmodels.formats.manifest import ManifestEntry, read_manifest, write_manifest
from bcmodels.formats.overlays import OverlayRow, write_overlays
from bcmodels.formats.split import read_split
from bcmodels.io.images import to_square
from tests.conftest import (
    PROJECT_ROOT,
    REAL_ZIP,
    SHARED_WEIGHTS,
    project_params,
    requires_real_zip,
    requires_shared_weights,
)
from tests.synthetic import add_speckle, make_scan, neighbouring_frame, scan_image, shifted_crop, zoomed

THRESHOLD = 6
AUDIT = project_params().audit


@pytest.fixture(scope="module")
def random_backbone(tmp_path_factory) -> Path:
    """MobileNetV2 feature weights of no training: enough to run the feature detector where only phash is tested."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random.pth"
    state = torchvision.models.mobilenet_v2().state_dict()
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, path)
    return path


def phash_only(weights: Path, threshold: int = THRESHOLD, report=(0, 4)):
    """The project's audit settings with a phash threshold of its own, and the feature detector linking only
    identical frames (a similarity of 1), so that these tests see the perceptual hash alone."""
    phash = dataclasses.replace(AUDIT.phash, threshold=threshold, report_thresholds=report)
    features = dataclasses.replace(AUDIT.features, weights=str(weights), image_size=64, threshold=1.0)
    return dataclasses.replace(AUDIT, phash=phash, features=features, linked_by_eye=())


def _frame(seed: int, w: int = 320, h: int = 240) -> Image.Image:
    """An ultrasound-like grey frame: coarse bright and dark regions plus speckle."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8), dtype=np.uint8), "L").resize((w, h), Image.Resampling.BICUBIC)
    speckle = rng.integers(-12, 13, (h, w))
    return Image.fromarray(np.clip(np.asarray(coarse, dtype=int) + speckle, 0, 255).astype(np.uint8)).convert("RGB")


def _crop(image: Image.Image, margin: int) -> Image.Image:
    return image.crop((margin, margin, image.width - margin, image.height - margin))


def _marked(image: Image.Image) -> Image.Image:
    """A small caliper-like mark in the top-left corner, outside the study geometry's centre crop."""
    marked = image.copy()
    ImageDraw.Draw(marked).rectangle((4, 4, 20, 20), fill="white")
    return marked


@pytest.fixture(scope="module")
def copies_tree(tmp_path_factory) -> dict:
    """A frame and its copies of every kind, unrelated frames, and the frame's own file filed as malignant."""
    raw = tmp_path_factory.mktemp("copies") / DATASET_DIR
    for label in ("benign", "malignant", "normal"):
        (raw / label).mkdir(parents=True)
    frame = _frame(0)
    images = {
        "benign/benign (1).png": frame,
        "benign/benign (2).png": frame.resize((224, 168), Image.Resampling.BILINEAR),  # rescaled
        "benign/benign (3).png": _crop(frame, 8),  # cropped a little
        "benign/benign (4).png": _crop(frame, 16),  # cropped more: too far from the frame, close to (3)
        "benign/benign (5).png": Image.fromarray(np.clip(np.asarray(frame, dtype=int) + 25, 0, 255).astype(np.uint8)),
        "benign/benign (6).png": _marked(frame),  # differs only where the store's centre crop cuts it away
        # Unrelated frames, enough of them for a grouped split into three folds.
        **{f"benign/benign ({i}).png": _frame(i) for i in (7, 9, 10)},
        **{f"malignant/malignant ({i}).png": _frame(10 + i) for i in (2, 3, 4)},
        **{f"normal/normal ({i}).png": _frame(20 + i) for i in (1, 2, 3)},
    }
    for name, image in images.items():
        image.save(raw / name)
    # The same pixels twice more: the very same file under another class, and re-encoded with other bytes.
    shutil.copyfile(raw / "benign/benign (1).png", raw / "malignant/malignant (1).png")
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "re-encoded")
    frame.save(raw / "benign/benign (8).png", pnginfo=info, compress_level=1)
    files = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*.png"))
    labels = [f.split("/")[0] for f in files]
    return {"raw": raw, "files": files, "labels": labels, "frame": frame, "marked": images["benign/benign (6).png"]}


@pytest.fixture
def copies(copies_tree: dict, tmp_path: Path) -> dict:
    """copies_tree's files in a folder of this test's own, which it may damage."""
    raw = tmp_path / DATASET_DIR
    shutil.copytree(copies_tree["raw"], raw)
    return {**copies_tree, "raw": raw}


@pytest.fixture(scope="module")
def audited(copies_tree: dict, random_backbone: Path):
    """The audit of copies_tree (phash only), computed once: the tests below only read it."""
    audit = audit_images(copies_tree["raw"], copies_tree["files"], copies_tree["labels"], phash_only(random_backbone))
    return audit, group_rows(audit)


FAMILY = {f"benign/benign ({i}).png" for i in range(1, 7)} | {"benign/benign (8).png", "malignant/malignant (1).png"}
PIXEL_TWINS = {"benign/benign (1).png", "benign/benign (8).png", "malignant/malignant (1).png"}


def test_hamming_distances_count_differing_bits():
    rng = np.random.default_rng(0)
    for width in (64, 144):  # one uint64 word, and several with padding
        bits = rng.random((30, width)) > 0.5
        expected = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
        assert np.array_equal(hamming_distances(bits), expected)


def test_near_groups_are_transitive_over_the_links_of_either_detector_and_exact_copies():
    bits = np.full((6, 6), 40)
    np.fill_diagonal(bits, 0)
    bits[0, 1] = bits[1, 0] = 5  # 0 ~ 1 by phash
    cosine = np.eye(6)
    cosine[1, 2] = cosine[2, 1] = 0.97  # 1 ~ 2 by deep features only, so 0 ~ 2 although neither links them
    exact = exact_groups(["a", "b", "c", "x", "y", "x"])  # 3 and 5: same pixels, yet 40 bits apart
    assert exact == [None, None, None, 0, None, 0]
    exact_links = np.array([[e is not None and e == f for f in exact] for e in exact])
    assert near_groups((bits <= 6) | (cosine >= 0.95) | exact_links) == [0, 0, 0, 1, 2, 1]
    assert near_groups((bits <= 6) | exact_links) == [0, 0, 1, 2, 3, 2]


def test_exact_copies_are_the_same_pixels_whatever_the_file_bytes(copies, audited):
    _audit, rows = audited
    raw = copies["raw"]
    assert (raw / "benign/benign (8).png").read_bytes() != (raw / "benign/benign (1).png").read_bytes()
    twins = {f for f, r in rows.items() if r.exact_group is not None}
    assert twins == PIXEL_TWINS and len({rows[f].exact_group for f in twins}) == 1


def test_a_difference_the_store_crop_hides_is_not_an_exact_copy(copies, audited):
    _, rows = audited

    def store(image):
        return np.asarray(to_square(image, "study", 224, 256))

    assert np.array_equal(store(copies["frame"]), store(copies["marked"]))
    assert rows["benign/benign (6).png"].exact_group is None
    assert rows["benign/benign (6).png"].group == rows["benign/benign (1).png"].group


def test_rescaled_cropped_and_brighter_copies_share_a_group_transitively(audited):
    audit, rows = audited
    index = {f: i for i, f in enumerate(audit.files)}
    far_crop, near_crop, frame = (index[f"benign/benign ({i}).png"] for i in (4, 3, 1))
    # The premise of transitivity: the strong crop is beyond the threshold from the frame, not from the mild crop.
    assert audit.phash_bits[far_crop, frame] > THRESHOLD >= audit.phash_bits[far_crop, near_crop]
    assert {f for f, r in rows.items() if r.group == rows["benign/benign (1).png"].group} == FAMILY
    assert all(rows[f].group_size == len(FAMILY) for f in FAMILY)
    loners = set(audit.files) - FAMILY
    assert len({rows[f].group for f in loners}) == len(loners) and all(rows[f].group_size == 1 for f in loners)
    assert min(audit.phash_bits[index[f], frame] for f in loners) > 3 * THRESHOLD


def test_copies_under_two_classes_are_a_label_conflict(audited, random_backbone):
    audit, rows = audited
    assert {f for f, r in rows.items() if r.conflict} == FAMILY
    config = phash_only(random_backbone)
    summary = summarize(audit, rows, linked_pairs(audit, config), config)
    assert summary["exact_duplicates"] == {"groups": 1, "images": 3, "largest": 3}
    assert summary["near_duplicates"] == {"groups": 1, "images": len(FAMILY), "largest": len(FAMILY)}
    assert summary["label_conflicts"] == {"groups": 1, "images": len(FAMILY)}
    [group] = summary["label_conflict_groups"]
    assert group["members"]["malignant/malignant (1).png"] == "malignant" and set(group["members"]) == FAMILY
    assert set(summary["phash_pairs_within_bits"]) == {"0", "4", str(THRESHOLD)}
    assert summary["phash_pairs_within_bits"]["0"] >= 3  # the three pixel twins at least
    # every pair inside the family is linked (by phash or as exact copies), none outside it
    pairs = linked_pairs(audit, config)
    assert summary["pairs"]["total"] == len(pairs) and {p.file_a for p in pairs} | {p.file_b for p in pairs} == FAMILY
    assert {p.found_by for p in pairs} <= {"phash", "exact", "both"}


def test_pairs_linked_by_eye_merge_their_groups_and_are_named_so(copies, random_backbone):
    config = phash_only(random_backbone)
    plain = audit_images(copies["raw"], copies["files"], copies["labels"], config)
    loners = [f for f, g in zip(plain.files, plain.group) if plain.group.count(g) == 1]
    a, b = loners[:2]
    assert plain.group[plain.files.index(a)] != plain.group[plain.files.index(b)]
    linked = dataclasses.replace(config, linked_by_eye=(EyeLink(a, b, "one lesion"),))
    audit = audit_images(copies["raw"], copies["files"], copies["labels"], linked)
    assert audit.group[audit.files.index(a)] == audit.group[audit.files.index(b)]
    untouched = [f for f in plain.files if f not in (a, b)]
    assert len({audit.group[audit.files.index(f)] for f in untouched}) == len(
        {plain.group[plain.files.index(f)] for f in untouched}
    )
    eye = [p for p in linked_pairs(audit, linked) if p.found_by == "eye"]
    assert [(p.file_a, p.file_b) for p in eye] in ([(a, b)], [(b, a)])
    rows = group_rows(audit)
    assert summarize(audit, rows, linked_pairs(audit, linked), linked)["pairs"]["by_eye"] == 1


def test_a_pair_linked_by_eye_must_name_images_of_the_manifest(copies, random_backbone):
    config = dataclasses.replace(
        phash_only(random_backbone), linked_by_eye=(EyeLink(copies["files"][0], "benign/nowhere (1).png", "?"),)
    )
    with pytest.raises(DataError, match=r"audit\.linked_by_eye\[0\]\.b: 'benign/nowhere \(1\)\.png' is not an image"):
        audit_images(copies["raw"], copies["files"], copies["labels"], config)


def test_an_undecodable_image_is_named(copies, random_backbone):
    (copies["raw"] / "normal/normal (2).png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"normal \(2\)\.png: cannot decode image"):
        audit_images(copies["raw"], copies["files"], copies["labels"], phash_only(random_backbone))


def test_groups_csv_round_trip_and_missing_file(audited, tmp_path):
    _, rows = audited
    path = tmp_path / "groups.csv"
    write_groups(path, rows)
    assert read_groups(path) == rows
    assert path.read_text().splitlines()[0] == "file,class,group,group_size,exact_group,conflict"
    with pytest.raises(DataError, match=r"absent\.csv: not found; `dvc repro audit` makes it"):
        read_groups(tmp_path / "absent.csv")


def test_contact_sheet_has_a_row_per_conflict_group_and_is_deterministic(copies, audited, tmp_path, random_backbone):
    audit, rows = audited
    config = phash_only(random_backbone)
    summary = summarize(audit, rows, linked_pairs(audit, config), config)
    first, second, empty = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "none.png"
    conflict_sheet(copies["raw"], summary, first)
    conflict_sheet(copies["raw"], summary, second)
    conflict_sheet(copies["raw"], {**summary, "label_conflict_groups": []}, empty)
    assert first.read_bytes() == second.read_bytes()
    with Image.open(first) as sheet, Image.open(empty) as nothing:
        assert sheet.width >= len(FAMILY) * 160 and sheet.height > nothing.height


def test_leakage_counts_images_with_a_copy_on_another_side():
    rows = {
        f: GroupRow(label, g, 0, None, False)
        for f, label, g in [
            ("a", "benign", 0),
            ("b", "benign", 0),
            ("c", "malignant", 1),
            ("d", "malignant", 1),
            ("e", "normal", 2),
            ("f", "normal", 2),
            ("g", "benign", 3),
        ]
    }
    split = {"a": "train", "b": "test", "c": "val", "d": "test", "e": "train", "f": "val", "g": "excluded"}
    result = leakage(rows, split)
    assert result["split"] == {"train": 2, "val": 2, "test": 2, "excluded": 1}
    assert result["near_copy_in_train"]["test"] == {"benign": 1, "malignant": 0, "normal": 0, "total": 1}
    assert result["near_copy_in_train"]["val"] == {"benign": 0, "malignant": 0, "normal": 1, "total": 1}
    assert result["test_near_copy_in_train_or_val"] == {"benign": 1, "malignant": 1, "normal": 0, "total": 2}
    with pytest.raises(DataError, match=r"no group for, e\.g\. z"):
        leakage(rows, {**split, "z": "train"})


def test_audit_split_and_leakage_on_synthetic_copies(copies, tmp_path, random_backbone):
    """What the audit, split (grouped, and a repeat seed's fold) and leakage stages run, file to file."""
    manifest = tmp_path / "manifest.tsv"
    write_manifest(manifest, [ManifestEntry(f, f.split("/")[0], "0" * 64) for f in copies["files"]])
    audit_dir, sheets = tmp_path / "audit", tmp_path / "sheets"
    out = AuditFiles(
        audit_dir / "groups.csv",
        audit_dir / "pairs.csv",
        audit_dir / "audit.json",
        sheets / "conflicts.png",
        sheets / "disagreements.png",
        sheets / "by_eye.png",
    )
    config = phash_only(random_backbone)
    summary = run_audit(copies["raw"], read_manifest(manifest), config, out, workers=1)
    assert summary["label_conflicts"] == {"groups": 1, "images": len(FAMILY)}
    sheets_made = (out.conflicts_sheet, out.disagreements_sheet, out.eye_sheet)
    assert all(path.is_file() for path in (out.groups, out.pairs, *sheets_made))
    assert len(read_pairs(out.pairs)) == summary["pairs"]["total"]
    params = project_params()
    grouped = dataclasses.replace(params.split, strategy="grouped", folds=3, fold=0)
    params = dataclasses.replace(
        params, split=grouped, download=dataclasses.replace(params.download, manifest=str(manifest))
    )
    line = write_split_file(params, out.groups, tmp_path / "split.csv")
    assert f"{len(FAMILY)} images of label-conflict groups excluded" in line and "(fold 0 of 3)" in line
    assert "(fold 1 of 3)" in write_split_file(params, out.groups, tmp_path / "seed4.csv", seed=4)  # 4 mod 3
    marked = {f for f in copies["files"] if f.startswith("malignant/")}  # text on every malignant image
    write_overlays(audit_dir / "overlays.csv", {f: _overlay_row(f, text=f in marked) for f in copies["files"]})
    metrics = write_data_metrics(audit_dir, tmp_path / "split.csv", tmp_path / "data.json", grouped)
    assert metrics["split"]["excluded"] == len(FAMILY) and metrics["label_conflicts"]["groups"] == 1
    assert metrics["test_near_copy_in_train_or_val"]["total"] == 0
    split = read_split(tmp_path / "split.csv")
    malignant = [f for f in copies["files"] if f.startswith("malignant/")]
    assert metrics["marks"]["all"]["text"] == {
        "benign": 0,
        "malignant": len(malignant),
        "normal": 0,
        "total": len(malignant),
    }
    tested = sum(1 for f in malignant if split[f] == "test")
    assert (
        metrics["marks"]["test"]["text"]["malignant"] == tested and metrics["marks"]["test"]["calipers"]["total"] == 0
    )


def _overlay_row(file: str, text: bool) -> OverlayRow:
    label = file.split("/")[0]
    return OverlayRow(label, False, text, False, False, "unknown", (), ((1, 1, 5, 5),) if text else (), None, None, "")


# --- The deep-feature detector, with the real ImageNet backbone ---------------------------------------


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict:
    """Per seed a scan and three near-copies of it (shifted crop, zoom, neighbouring frame), and four more
    scans of other seeds, written as raw files in the BUSI layout."""
    raw = tmp_path_factory.mktemp("scans") / DATASET_DIR
    (raw / "benign").mkdir(parents=True)
    images = {}
    for seed in range(4):
        clean = make_scan(seed)
        frame = add_speckle(clean, 1000 + seed)
        images[f"scan{seed}"] = frame
        images[f"scan{seed} crop"] = shifted_crop(frame)
        images[f"scan{seed} zoom"] = zoomed(frame)
        images[f"scan{seed} next"] = add_speckle(neighbouring_frame(clean, 2000 + seed), 3000 + seed)
        images[f"other{seed}"] = add_speckle(make_scan(500 + seed), 4000 + seed)
    files = []
    for name, image in images.items():
        scan_image(image).save(raw / "benign" / f"{name}.png")
        files.append(f"benign/{name}.png")
    return {"raw": raw, "files": files}


def _scan_config():
    """The project's audit settings with the real backbone; no pairs by eye (they name BUSI's files)."""
    features = dataclasses.replace(AUDIT.features, weights=str(SHARED_WEIGHTS))
    return dataclasses.replace(AUDIT, features=features, linked_by_eye=())


@pytest.fixture(scope="module")
def scan_audit(scans):
    config = _scan_config()
    audit = audit_images(scans["raw"], scans["files"], ["benign"] * len(scans["files"]), config)
    return audit, {f: i for i, f in enumerate(audit.files)}


@pytest.mark.slow
@requires_shared_weights
@pytest.mark.parametrize("kind", ["crop", "zoom", "next"])
def test_a_shifted_crop_a_zoom_and_the_next_frame_are_near_copies_by_deep_features(scan_audit, kind):
    audit, index = scan_audit
    threshold = AUDIT.features.threshold
    for seed in range(4):
        similarity = audit.cosine[index[f"benign/scan{seed}.png"], index[f"benign/scan{seed} {kind}.png"]]
        assert similarity >= threshold + 0.002, (seed, kind, similarity)  # zooms come closest: 0.953


@pytest.mark.slow
@requires_shared_weights
def test_different_scans_stay_apart_and_each_scan_forms_its_own_group(scan_audit):
    audit, index = scan_audit
    originals = [index[f"benign/scan{s}.png"] for s in range(4)] + [index[f"benign/other{s}.png"] for s in range(4)]
    apart = audit.cosine[np.ix_(originals, originals)][np.triu_indices(len(originals), k=1)]
    assert apart.max() <= AUDIT.features.threshold - 0.02
    for seed in range(4):
        family = {audit.group[index[f"benign/scan{seed}{kind}.png"]] for kind in ("", " crop", " zoom", " next")}
        assert len(family) == 1
    assert len(set(audit.group)) == 8  # four families and four loners


@pytest.mark.slow
@requires_shared_weights
def test_pairs_only_one_detector_links_are_labelled_and_drawn(scan_audit, scans, tmp_path):
    audit, _ = scan_audit
    config = _scan_config()
    pairs = linked_pairs(audit, config)
    only_features = [p for p in pairs if p.found_by == "features"]
    assert only_features and all(p.phash_bits > AUDIT.phash.threshold for p in only_features)
    assert all(p.cosine >= AUDIT.features.threshold for p in pairs if p.found_by in ("features", "both"))
    disagreement_sheet(scans["raw"], pairs, tmp_path / "sheet.png")
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.height > 150 * (len([p for p in pairs if p.found_by in ("features", "phash")]) // 3)


@pytest.fixture(scope="module")
def real_audit(tmp_path_factory):
    """The real images (no masks) straight from the archive, fingerprinted once for this module."""
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    raw = tmp_path_factory.mktemp("busi") / DATASET_DIR
    with zipfile.ZipFile(REAL_ZIP) as archive:
        for e in entries:
            (raw / e.file).parent.mkdir(parents=True, exist_ok=True)
            (raw / e.file).write_bytes(archive.read(f"{DATASET_DIR}/{e.file}"))
    files, labels = [e.file for e in entries], [e.label for e in entries]
    config = dataclasses.replace(AUDIT, features=dataclasses.replace(AUDIT.features, weights=str(SHARED_WEIGHTS)))
    audit = audit_images(raw, files, labels, config, workers=os.cpu_count() or 1)
    rows = group_rows(audit)
    return audit, rows, summarize(audit, rows, linked_pairs(audit, config), config)


def _leaked_test_images(rows: dict[str, GroupRow], split: dict[str, str]) -> int:
    """Counted directly, not through bcmodels.audit.leakage: test images sharing a group with train or val."""
    other_sides = {rows[f].group for f, s in split.items() if s in ("train", "val")}
    return sum(1 for f, s in split.items() if s == "test" and rows[f].group in other_sides)


@pytest.mark.slow
@requires_real_zip
@requires_shared_weights
def test_real_exact_copy_under_two_classes_is_a_label_conflict(real_audit):
    _, rows, summary = real_audit
    twins = ("benign/benign (433).png", "malignant/malignant (145).png")
    assert rows[twins[0]].exact_group is not None and rows[twins[0]].exact_group == rows[twins[1]].exact_group
    assert rows[twins[0]].conflict and rows[twins[0]].group == rows[twins[1]].group
    # benign 435 is the same lesion without calipers, linked by eye (audit.linked_by_eye)
    assert {
        "benign/benign (433).png": "benign",
        "benign/benign (435).png": "benign",
        "malignant/malignant (145).png": "malignant",
    } in [g["members"] for g in summary["label_conflict_groups"]]


@pytest.mark.slow
@requires_real_zip
@requires_shared_weights
def test_real_pairs_linked_by_eye_join_their_lesions_groups(real_audit):
    _, rows, summary = real_audit
    group = {f: r.group for f, r in rows.items()}
    frames = [f"malignant/malignant ({k}).png" for k in range(3, 10)]
    assert len({group[f] for f in frames}) == 1  # malignant 3 with the neighbouring frames 4-9
    assert group["malignant/malignant (39).png"] == group["malignant/malignant (40).png"]
    assert summary["pairs"]["by_eye"] == len(AUDIT.linked_by_eye)


@pytest.mark.slow
@requires_real_zip
@requires_shared_weights
def test_real_grouped_split_leaks_no_test_image(real_audit):
    audit, rows, _ = real_audit
    grouped = dataclasses.replace(project_params().split, strategy="grouped")
    configs = [dataclasses.replace(grouped, fold=k) for k in range(grouped.folds)]  # every image tested once
    for config in [*configs, dataclasses.replace(grouped, conflicts="keep")]:
        split = make_split(audit.files, audit.labels, config, rows)
        assert _leaked_test_images(rows, split) == 0
        assert leakage(rows, split)["near_copy_in_train"]["val"]["total"] == 0


@pytest.mark.slow
@requires_real_zip
@requires_shared_weights
def test_real_study_split_leaks_test_images_and_the_metric_counts_them(real_audit):
    audit, rows, _ = real_audit
    split = make_split(audit.files, audit.labels, project_params().split, None)
    leaked = _leaked_test_images(rows, split)
    assert leaked > 0
    assert leakage(rows, split)["test_near_copy_in_train_or_val"]["total"] == leaked
