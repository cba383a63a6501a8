from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from bcmodels.data.partition import _majority_class, fold_of_repeat, make_split
from bcmodels.errors import ConfigError, DataError
from bcmodels.formats.groups import GroupRow
from bcmodels.formats.manifest import read_manifest
from bcmodels.formats.split import EXCLUDED, SPLITS, read_split, write_split
from tests.conftest import PROJECT_ROOT, project_params

STUDY = project_params().split
GROUPED = dataclasses.replace(STUDY, strategy="grouped")


def _rows(files: list[str], labels: list[str], groups: dict[str, int]) -> dict[str, GroupRow]:
    """The audit's groups.csv rows for these groups: sizes and label conflicts as the audit computes them."""
    classes, sizes = {}, Counter(groups.values())
    for f, label in zip(files, labels):
        classes.setdefault(groups[f], set()).add(label)
    return {
        f: GroupRow(label, groups[f], sizes[groups[f]], None, len(classes[groups[f]]) > 1)
        for f, label in zip(files, labels)
    }


@pytest.fixture(scope="module")
def real_split():
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    files, labels = [e.file for e in entries], [e.label for e in entries]
    return files, labels, make_split(files, labels, STUDY, None)


def test_study_split_sizes_per_class_match_the_study(real_split):
    files, labels, assignment = real_split
    assert Counter(assignment.values()) == {"train": 563, "val": 100, "test": 117}
    per_class = Counter((label, assignment[f]) for f, label in zip(files, labels))
    assert per_class == {
        ("benign", "train"): 315,
        ("malignant", "train"): 152,
        ("normal", "train"): 96,
        ("benign", "val"): 56,
        ("malignant", "val"): 27,
        ("normal", "val"): 17,
        ("benign", "test"): 66,
        ("malignant", "test"): 31,
        ("normal", "test"): 20,
    }


def test_study_split_does_not_depend_on_input_order(real_split):
    files, labels, assignment = real_split
    shuffled = list(zip(files, labels))[::-1]
    again = make_split([f for f, _ in shuffled], [c for _, c in shuffled], STUDY, None)
    assert again == assignment


def test_study_split_changes_with_the_seed(real_split):
    files, labels, assignment = real_split
    other = make_split(files, labels, dataclasses.replace(STUDY, seed=502), None)
    assert Counter(other.values()) == Counter(assignment.values()) and other != assignment


def test_split_file_round_trip(real_split, tmp_path):
    files, labels, assignment = real_split
    path = tmp_path / "split.csv"
    write_split(path, files, labels, assignment)
    assert read_split(path) == assignment
    assert path.read_text().splitlines()[0] == "file,class,split"


def _synthetic_groups(seed: int = 0) -> tuple[list[str], list[str], dict[str, int]]:
    """About 600 images in groups of one to four images of one class each, classes in BUSI's proportions."""
    rng = np.random.default_rng(seed)
    files, labels, groups = [], [], {}
    for label, n_groups in (("benign", 120), ("malignant", 60), ("normal", 40)):
        for _ in range(n_groups):
            group = len(set(groups.values()))
            for _ in range(int(rng.integers(1, 5))):
                files.append(f"{label}/{label} ({len(files)}).png")
                labels.append(label)
                groups[files[-1]] = group
    return files, labels, groups


def _with_conflict(files, labels, groups):
    """One image of the first benign group filed again as malignant: a label-conflict group."""
    twin = "malignant/malignant (copy).png"
    return [*files, twin], [*labels, "malignant"], {**groups, twin: groups[files[0]]}


def test_grouped_split_keeps_groups_whole_and_stratifies():
    files, labels, groups = _synthetic_groups()
    assignment = make_split(files, labels, GROUPED, _rows(files, labels, groups))
    sides = {}
    for f in files:
        assert sides.setdefault(groups[f], assignment[f]) == assignment[f], f"group of {f} is split"
    per_class = Counter(labels)
    for (label, side), n in Counter((label, assignment[f]) for f, label in zip(files, labels)).items():
        expected = 5 / 7 if side == "train" else 1 / 7
        assert abs(n / per_class[label] - expected) < 0.03, (label, side, n)


def test_grouped_folds_rotate_test_and_validation():
    files, labels, groups = _synthetic_groups()
    rows = _rows(files, labels, groups)
    folds = [make_split(files, labels, dataclasses.replace(GROUPED, fold=k), rows) for k in range(GROUPED.folds)]
    for f in files:
        assert [a[f] for a in folds].count("test") == 1  # the test folds partition the data
    for k, assignment in enumerate(folds):
        following = folds[(k + 1) % GROUPED.folds]
        assert {f for f in files if assignment[f] == "val"} == {f for f in files if following[f] == "test"}


def test_grouped_split_does_not_depend_on_input_order():
    files, labels, groups = _synthetic_groups()
    assignment = make_split(files, labels, GROUPED, _rows(files, labels, groups))
    assert make_split(files[::-1], labels[::-1], GROUPED, _rows(files, labels, groups)) == assignment
    assert make_split(files, labels, dataclasses.replace(GROUPED, seed=1), _rows(files, labels, groups)) != assignment


def test_label_conflict_groups_are_excluded_or_kept_whole(tmp_path):
    files, labels, groups = _with_conflict(*_synthetic_groups())
    conflict = {f for f in files if groups[f] == groups[files[0]]}
    dropped = make_split(files, labels, GROUPED, _rows(files, labels, groups))
    assert {f for f in files if dropped[f] == EXCLUDED} == conflict
    kept = make_split(files, labels, dataclasses.replace(GROUPED, conflicts="keep"), _rows(files, labels, groups))
    assert len({kept[f] for f in conflict}) == 1 and kept[files[0]] in SPLITS
    path = tmp_path / "split.csv"
    write_split(path, files, labels, dropped)
    assert read_split(path) == dropped
    assert "malignant/malignant (copy).png,malignant,excluded" in path.read_text().splitlines()


def test_majority_class_stratifies_a_mixed_group():
    assert _majority_class(["benign", "malignant", "malignant"]) == "malignant"
    assert _majority_class(["malignant", "benign"]) == "benign"  # a tie: the first class of CLASSES


def test_grouped_split_needs_a_group_for_every_image():
    files, labels, groups = _synthetic_groups()
    rows = _rows(files, labels, groups)
    del rows[files[3]]
    with pytest.raises(DataError, match=r"groups have no row for 1 images, e\.g\. .*Run `dvc repro audit`"):
        make_split(files, labels, GROUPED, rows)


def test_too_many_folds_for_the_data_is_a_config_error():
    files, _, groups = _synthetic_groups()
    few = [f for f in files if groups[f] < 4]
    with pytest.raises(ConfigError, match=r"split\.folds: cannot make 7 grouped folds"):
        few_labels = [f.split("/")[0] for f in few]
        make_split(few, few_labels, GROUPED, _rows(few, few_labels, groups))


def test_a_repeat_seed_picks_its_fold_so_repeats_cover_folds():
    assert [fold_of_repeat(seed, 7) for seed in (0, 1, 6, 7, 15)] == [0, 1, 6, 0, 1]


@pytest.mark.parametrize("fraction", [0.001, 0.999])
def test_fractions_that_leave_a_set_empty_are_a_config_error(real_split, fraction):
    files, labels, _ = real_split
    with pytest.raises(ConfigError, match=r"split\.test_fraction, split\.val_fraction: cannot split 780 images"):
        make_split(files, labels, dataclasses.replace(STUDY, test_fraction=fraction), None)
