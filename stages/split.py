"""Stage split: data/split.csv (file, class, split) for every image of the manifest."""

from collections import Counter

from bcmodels.cli import run_stage
from bcmodels.config import load_params
from bcmodels.download import read_manifest
from bcmodels.paths import SPLIT_CSV
from bcmodels.split import SPLITS, make_split, write_split


def main() -> None:
    params = load_params()
    manifest = read_manifest(params.download.manifest)
    files, labels = [e.file for e in manifest], [e.label for e in manifest]
    assignment = make_split(files, labels, params.split)
    write_split(SPLIT_CSV, files, labels, assignment)
    counts = Counter(assignment.values())
    print(f"{SPLIT_CSV}: " + " / ".join(f"{s} {counts[s]}" for s in SPLITS))


if __name__ == "__main__":
    run_stage(main)
