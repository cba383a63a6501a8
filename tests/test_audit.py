from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, PngImagePlugin

from bcmodels.audit import (
    GroupRow,
    audit_images,
    conflict_sheet,
    exact_groups,
    group_rows,
    hamming_distances,
    leakage,
    near_groups,
    read_groups,
    summarize,
    write_groups,
)
from bcmodels.config import AuditConfig, PreprocessConfig, SplitConfig
from bcmodels.download import DATASET_DIR, read_manifest
from bcmodels.errors import DataError
from bcmodels.preprocess import to_square
from bcmodels.split import make_split
from tests.conftest import PROJECT_ROOT, REAL_ZIP, requires_real_zip

THRESHOLD = 6


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


@pytest.fixture
def copies(tmp_path: Path) -> dict:
    """A frame and its copies of every kind, unrelated frames, and the frame's own file filed as malignant."""
    raw = tmp_path / DATASET_DIR
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
def audited(copies: dict):
    audit = audit_images(copies["raw"], copies["files"], copies["labels"], AuditConfig(threshold=THRESHOLD))
    return audit, group_rows(audit)


FAMILY = {f"benign/benign ({i}).png" for i in range(1, 7)} | {"benign/benign (8).png", "malignant/malignant (1).png"}
PIXEL_TWINS = {"benign/benign (1).png", "benign/benign (8).png", "malignant/malignant (1).png"}


def test_hamming_distances_count_differing_bits():
    rng = np.random.default_rng(0)
    for width in (64, 144):  # one uint64 word, and several with padding
        bits = rng.random((30, width)) > 0.5
        expected = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
        assert np.array_equal(hamming_distances(bits), expected)


def test_near_groups_are_transitive_and_link_exact_copies():
    d = np.full((6, 6), 40)
    np.fill_diagonal(d, 0)
    d[0, 1] = d[1, 0] = 5  # 0 ~ 1
    d[1, 2] = d[2, 1] = 6  # 1 ~ 2, so 0 ~ 2 although 12 bits apart
    d[0, 2] = d[2, 0] = 12
    exact = exact_groups(["a", "b", "c", "x", "y", "x"])  # 3 and 5: same pixels, yet 40 bits apart
    assert exact == [None, None, None, 0, None, 0]
    assert near_groups(d, exact, threshold=6) == [0, 0, 0, 1, 2, 1]
    assert near_groups(d, exact, threshold=5) == [0, 0, 1, 2, 3, 2]


def test_exact_copies_are_the_same_pixels_whatever_the_file_bytes(copies, audited):
    audit, rows = audited
    raw = copies["raw"]
    assert (raw / "benign/benign (8).png").read_bytes() != (raw / "benign/benign (1).png").read_bytes()
    twins = {f for f, r in rows.items() if r.exact_group is not None}
    assert twins == PIXEL_TWINS and len({rows[f].exact_group for f in twins}) == 1


def test_a_difference_the_store_crop_hides_is_not_an_exact_copy(copies, audited):
    _, rows = audited
    store = PreprocessConfig()
    assert np.array_equal(np.asarray(to_square(copies["frame"], store)), np.asarray(to_square(copies["marked"], store)))
    assert rows["benign/benign (6).png"].exact_group is None
    assert rows["benign/benign (6).png"].group == rows["benign/benign (1).png"].group


def test_rescaled_cropped_and_brighter_copies_share_a_group_transitively(audited):
    audit, rows = audited
    index = {f: i for i, f in enumerate(audit.files)}
    far_crop, near_crop, frame = (index[f"benign/benign ({i}).png"] for i in (4, 3, 1))
    # The premise of transitivity: the strong crop is beyond the threshold from the frame, not from the mild crop.
    assert audit.distances[far_crop, frame] > THRESHOLD >= audit.distances[far_crop, near_crop]
    assert {f for f, r in rows.items() if r.group == rows["benign/benign (1).png"].group} == FAMILY
    assert all(rows[f].group_size == len(FAMILY) for f in FAMILY)
    loners = set(audit.files) - FAMILY
    assert len({rows[f].group for f in loners}) == len(loners) and all(rows[f].group_size == 1 for f in loners)
    assert min(audit.distances[index[f], frame] for f in loners) > 3 * THRESHOLD


def test_copies_under_two_classes_are_a_label_conflict(audited):
    audit, rows = audited
    assert {f for f, r in rows.items() if r.conflict} == FAMILY
    summary = summarize(audit, rows, AuditConfig(threshold=THRESHOLD, report_thresholds=(0, 4)))
    assert summary["exact_duplicates"] == {"groups": 1, "images": 3}
    assert summary["near_duplicates"] == {"groups": 1, "images": len(FAMILY)}
    assert summary["label_conflicts"] == {"groups": 1, "images": len(FAMILY)}
    [group] = summary["label_conflict_groups"]
    assert group["members"]["malignant/malignant (1).png"] == "malignant" and set(group["members"]) == FAMILY
    assert set(summary["pairs_within_bits"]) == {"0", "4", str(THRESHOLD)}
    assert summary["pairs_within_bits"]["0"] >= 3  # the three pixel twins at least


def test_an_undecodable_image_is_named(copies):
    (copies["raw"] / "normal/normal (2).png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"normal \(2\)\.png: cannot decode image"):
        audit_images(copies["raw"], copies["files"], copies["labels"], AuditConfig())


def test_groups_csv_round_trip_and_missing_file(audited, tmp_path):
    _, rows = audited
    path = tmp_path / "groups.csv"
    write_groups(path, rows)
    assert read_groups(path) == rows
    assert path.read_text().splitlines()[0] == "file,class,group,group_size,exact_group,conflict"
    with pytest.raises(DataError, match=r"absent.csv: not found\. Run `dvc repro audit`"):
        read_groups(tmp_path / "absent.csv")


def test_contact_sheet_has_a_row_per_conflict_group_and_is_deterministic(copies, audited, tmp_path):
    audit, rows = audited
    summary = summarize(audit, rows, AuditConfig(threshold=THRESHOLD))
    first, second, empty = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "none.png"
    conflict_sheet(copies["raw"], summary, first)
    conflict_sheet(copies["raw"], summary, second)
    conflict_sheet(copies["raw"], {**summary, "label_conflict_groups": []}, empty)
    assert first.read_bytes() == second.read_bytes()
    with Image.open(first) as sheet, Image.open(empty) as nothing:
        assert sheet.width >= len(FAMILY) * 160 and sheet.height > nothing.height


def test_leakage_counts_images_with_a_copy_on_another_side():
    rows = {f: GroupRow(label, g, 0, None, False) for f, label, g in [
        ("a", "benign", 0), ("b", "benign", 0), ("c", "malignant", 1), ("d", "malignant", 1),
        ("e", "normal", 2), ("f", "normal", 2), ("g", "benign", 3),
    ]}  # fmt: skip
    split = {"a": "train", "b": "test", "c": "val", "d": "test", "e": "train", "f": "val", "g": "excluded"}
    result = leakage(rows, split)
    assert result["split"] == {"train": 2, "val": 2, "test": 2, "excluded": 1}
    assert result["near_copy_in_train"]["test"] == {"benign": 1, "malignant": 0, "normal": 0, "total": 1}
    assert result["near_copy_in_train"]["val"] == {"benign": 0, "malignant": 0, "normal": 1, "total": 1}
    assert result["test_near_copy_in_train_or_val"] == {"benign": 1, "malignant": 1, "normal": 0, "total": 2}
    with pytest.raises(DataError, match="no group for, e.g. z"):
        leakage(rows, {**split, "z": "train"})


def _stage(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_audit_split_and_leakage_stages_on_synthetic_copies(copies, tmp_path):
    """The three stages as dvc runs them: audit, grouped split (also a repeat's fold), leakage metrics."""
    project = tmp_path / "project"
    (project / "data" / "raw").mkdir(parents=True)
    shutil.move(copies["raw"], project / "data" / "raw" / DATASET_DIR)
    index = "file,class,sha256\n" + "".join(f"{f},{f.split('/')[0]},-\n" for f in copies["files"])
    (project / "data" / "processed").mkdir()
    (project / "data" / "processed" / "index.csv").write_text(index)
    (project / "data" / "busi_manifest.tsv").write_text("file\tclass\tsha256\n" + index[len("file,class,sha256\n"):]
                                                        .replace(",", "\t"))  # fmt: skip
    params = (PROJECT_ROOT / "params.yaml").read_text()
    params = params.replace("strategy: study", "strategy: grouped").replace("folds: 7", "folds: 3")
    (project / "params.yaml").write_text(params)

    audit = _stage(["stages.audit"], project)
    assert audit.returncode == 0, audit.stderr
    assert "label conflicts: 1 groups" in audit.stdout
    assert (project / "plots" / "audit" / "label_conflicts.png").is_file()
    for args in (["stages.split"], ["stages.split", "--seed", "4", "--out", "data/repeats/seed4/split.csv"]):
        split = _stage(args, project)
        assert split.returncode == 0, split.stderr
        assert f"{len(FAMILY)} images of label-conflict groups excluded" in split.stdout
    assert "(fold 1 of 3)" in split.stdout  # 4 mod 3
    leak = _stage(["stages.leakage"], project)
    assert leak.returncode == 0, leak.stderr
    metrics = json.loads((project / "metrics" / "data.json").read_text())
    assert metrics["split"]["excluded"] == len(FAMILY) and metrics["label_conflicts"]["groups"] == 1
    assert metrics["test_near_copy_in_train_or_val"]["total"] == 0


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
    audit = audit_images(raw, files, labels, AuditConfig(), workers=os.cpu_count() or 1)
    rows = group_rows(audit)
    return audit, rows, summarize(audit, rows, AuditConfig())


def _leaked_test_images(rows: dict[str, GroupRow], split: dict[str, str]) -> int:
    """Counted directly, not through bcmodels.audit.leakage: test images sharing a group with train or val."""
    other_sides = {rows[f].group for f, s in split.items() if s in ("train", "val")}
    return sum(1 for f, s in split.items() if s == "test" and rows[f].group in other_sides)


@requires_real_zip
def test_real_exact_copy_under_two_classes_is_a_label_conflict(real_audit):
    _, rows, summary = real_audit
    twins = ("benign/benign (433).png", "malignant/malignant (145).png")
    assert rows[twins[0]].exact_group is not None and rows[twins[0]].exact_group == rows[twins[1]].exact_group
    assert rows[twins[0]].conflict and rows[twins[0]].group == rows[twins[1]].group
    assert {"benign/benign (433).png": "benign", "malignant/malignant (145).png": "malignant"} in [
        g["members"] for g in summary["label_conflict_groups"]
    ]


@requires_real_zip
def test_real_grouped_split_leaks_no_test_image(real_audit):
    audit, rows, _ = real_audit
    groups = {f: r.group for f, r in rows.items()}
    configs = [SplitConfig(strategy="grouped", fold=k) for k in range(SplitConfig().folds)]  # every image tested once
    for config in [*configs, SplitConfig(strategy="grouped", conflicts="keep")]:
        split = make_split(audit.files, audit.labels, config, groups)
        assert _leaked_test_images(rows, split) == 0
        assert leakage(rows, split)["near_copy_in_train"]["val"]["total"] == 0


@requires_real_zip
def test_real_study_split_leaks_test_images_and_the_metric_counts_them(real_audit):
    audit, rows, _ = real_audit
    split = make_split(audit.files, audit.labels, SplitConfig())
    leaked = _leaked_test_images(rows, split)
    assert leaked > 0
    assert leakage(rows, split)["test_near_copy_in_train_or_val"]["total"] == leaked
