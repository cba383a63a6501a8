"""Stage download: the BUSI images and masks into data/raw/Dataset_BUSI_with_GT/, verified.

Set BUSI_SOURCE to a local zip, tar or extracted folder to skip the network.
"""

from bcmodels.cli import run_stage
from bcmodels.config import load_params
from bcmodels.download import install_dataset, read_manifest, resolve_source
from bcmodels.paths import RAW_DIR


def main() -> None:
    params = load_params()
    manifest = read_manifest(params.download.manifest)
    source = resolve_source(params.download)
    count = install_dataset(source, RAW_DIR, manifest, params.download.max_member_mb)
    print(f"{RAW_DIR}: {count} files from {source}; all {len(manifest)} images match the manifest")


if __name__ == "__main__":
    run_stage(main)
