"""Stage download: the BUSI images and their lesion masks into --out, verified against the manifest.

Set BUSI_SOURCE to a local zip, tar or extracted folder to skip the network.
"""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.data.busi import install_dataset, resolve_source
from bcmodels.errors import run_stage
from bcmodels.formats.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the Dataset_BUSI_with_GT folder to (re)place")
    args = parser.parse_args()
    params = load_params()
    manifest = read_manifest(params.download.manifest, kinds=("image", "mask"))
    source = resolve_source(params.download)
    install_dataset(source, args.out, manifest, params.download)
    images = sum(1 for e in manifest if e.kind == "image")
    print(f"{args.out}: {images} images and {len(manifest) - images} masks from {source}, all matching the manifest")


if __name__ == "__main__":
    run_stage(main)
