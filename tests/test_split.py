from __future__ import annotations

from collections import Counter

import pytest

from bcmodels.config import SplitConfig
from bcmodels.download import read_manifest
from bcmodels.split import make_split, read_split, write_split
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def real_split():
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    files, labels = [e.file for e in entries], [e.label for e in entries]
    return files, labels, make_split(files, labels, SplitConfig())


def test_study_split_sizes_per_class_match_the_study(real_split):
    files, labels, assignment = real_split
    assert Counter(assignment.values()) == {"train": 563, "val": 100, "test": 117}
    per_class = Counter((label, assignment[f]) for f, label in zip(files, labels))
    assert per_class == {
        ("benign", "train"): 315, ("malignant", "train"): 152, ("normal", "train"): 96,
        ("benign", "val"): 56, ("malignant", "val"): 27, ("normal", "val"): 17,
        ("benign", "test"): 66, ("malignant", "test"): 31, ("normal", "test"): 20,
    }  # fmt: skip


def test_study_split_does_not_depend_on_input_order(real_split):
    files, labels, assignment = real_split
    shuffled = list(zip(files, labels))[::-1]
    again = make_split([f for f, _ in shuffled], [c for _, c in shuffled], SplitConfig())
    assert again == assignment


def test_study_split_changes_with_the_seed(real_split):
    files, labels, assignment = real_split
    other = make_split(files, labels, SplitConfig(seed=502))
    assert Counter(other.values()) == Counter(assignment.values()) and other != assignment


def test_split_file_round_trip(real_split, tmp_path):
    files, labels, assignment = real_split
    path = tmp_path / "split.csv"
    write_split(path, files, labels, assignment)
    assert read_split(path) == assignment
    assert path.read_text().splitlines()[0] == "file,class,split"
