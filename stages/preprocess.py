"""Stage preprocess: every image to image_size x image_size RGB in data/processed/ (images.npy, index.csv)."""

import time

from bcmodels.cli import run_stage
from bcmodels.config import load_params
from bcmodels.download import read_manifest
from bcmodels.paths import PROCESSED_DIR, RAW_DIR
from bcmodels.preprocess import preprocess


def main() -> None:
    params = load_params()
    start = time.perf_counter()
    array = preprocess(RAW_DIR, read_manifest(params.download.manifest), params.preprocess, PROCESSED_DIR)
    print(f"{PROCESSED_DIR}: {array.shape} uint8 in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    run_stage(main)
