"""Stage audit: exact and near-duplicate groups of the raw images (data/audit/), a contact sheet of label conflicts."""

import os
import time

from bcmodels.audit import audit_images, conflict_sheet, group_rows, summarize, write_groups
from bcmodels.cli import run_stage
from bcmodels.config import load_params
from bcmodels.errors import DataError
from bcmodels.fileio import write_json
from bcmodels.paths import AUDIT_SUMMARY, CONTACT_SHEET, GROUPS_CSV, PROCESSED_DIR, RAW_DIR
from bcmodels.preprocess import INDEX_FILE, read_index


def main() -> None:
    params = load_params()
    index_path = PROCESSED_DIR / INDEX_FILE
    if not index_path.is_file():
        raise DataError(f"{index_path}: not found. Run `dvc repro preprocess` first.")
    # The store's index fixes which images are audited and in which order (the same as the manifest's).
    index = read_index(index_path)
    # A worker process costs about a second to start: one per 100 images, at most one per core.
    workers = min(os.cpu_count() or 1, 1 + len(index) // 100)
    start = time.perf_counter()
    audit = audit_images(RAW_DIR, [r["file"] for r in index], [r["class"] for r in index], params.audit, workers)
    rows = group_rows(audit)
    summary = summarize(audit, rows, params.audit)
    write_groups(GROUPS_CSV, rows)
    write_json(AUDIT_SUMMARY, summary)
    conflict_sheet(RAW_DIR, summary, CONTACT_SHEET)
    exact, near, conflicts = summary["exact_duplicates"], summary["near_duplicates"], summary["label_conflicts"]
    print(f"{GROUPS_CSV}: {len(rows)} images in {time.perf_counter() - start:.1f}s; "
          f"exact copies: {exact['groups']} groups ({exact['images']} images); "
          f"near copies within {params.audit.threshold} bits: {near['groups']} groups ({near['images']} images); "
          f"label conflicts: {conflicts['groups']} groups ({conflicts['images']} images)")  # fmt: skip
    pairs = summary["pairs_within_bits"]
    print("image pairs within " + ", ".join(f"{t} bits: {n}" for t, n in pairs.items()))
    for group in summary["label_conflict_groups"]:
        print("  conflict: " + ", ".join(f"{f} ({label})" for f, label in group["members"].items()))
    print(f"{AUDIT_SUMMARY}, {CONTACT_SHEET}")


if __name__ == "__main__":
    run_stage(main)
