"""Stage preprocess: every image of the manifest to image_size x image_size RGB in the image store at --out, and
its lesion masks, aligned with it, in the mask store at --masks."""

import argparse
import time
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.data.preprocess import preprocess
from bcmodels.errors import run_stage
from bcmodels.formats.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="the verified Dataset_BUSI_with_GT folder")
    parser.add_argument("--out", type=Path, required=True, help="the image store folder to (re)place")
    parser.add_argument("--masks", type=Path, required=True, help="the mask store folder to (re)place")
    args = parser.parse_args()
    params = load_params()
    start = time.perf_counter()
    entries = read_manifest(params.download.manifest, kinds=("image", "mask"))
    array = preprocess(args.raw, entries, params.preprocess, args.out, args.masks)
    print(f"{args.out}: {array.shape} uint8 in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    run_stage(main)
