"""Stage audit: exact copies and near-copies of the raw images by two detectors, groups and label conflicts."""

import argparse
import os
import time
from pathlib import Path

from bcmodels.audit.duplicates import AuditFiles, run_audit
from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.formats.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="the verified Dataset_BUSI_with_GT folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for groups.csv, pairs.csv and audit.json")
    parser.add_argument("--sheets", type=Path, required=True, help="folder for the contact sheets")
    args = parser.parse_args()
    params = load_params()
    entries = read_manifest(params.download.manifest)
    out = AuditFiles(
        args.out / "groups.csv",
        args.out / "pairs.csv",
        args.out / "audit.json",
        args.sheets / "label_conflicts.png",
        args.sheets / "detector_disagreements.png",
        args.sheets / "linked_by_eye.png",
    )
    start = time.perf_counter()
    # A worker process costs about a second to start: one per 100 images, at most one per core.
    summary = run_audit(args.raw, entries, params.audit, out, workers=min(os.cpu_count() or 1, 1 + len(entries) // 100))
    pairs, near, conflicts = summary["pairs"], summary["near_duplicates"], summary["label_conflicts"]
    print(
        f"audit of {len(entries)} images in {time.perf_counter() - start:.1f}s: pairs by phash only "
        f"{pairs['phash_only']}, deep features only {pairs['features_only']}, both {pairs['both']}, by eye "
        f"{pairs['by_eye']}, exact {pairs['exact']}; {near['groups']} groups of copies ({near['images']} images, "
        f"largest {near['largest']}); {conflicts['groups']} label-conflict groups ({conflicts['images']} images)"
    )
    for group in summary["label_conflict_groups"]:
        print("  conflict: " + ", ".join(f"{f} ({label})" for f, label in group["members"].items()))


if __name__ == "__main__":
    run_stage(main)
