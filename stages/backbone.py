"""Stage backbone: the ImageNet MobileNetV2 backbone (bcmodels.models.backbone) as a torchvision state_dict at --out."""

import argparse
from pathlib import Path

from bcmodels.config.load import load_params
from bcmodels.errors import run_stage
from bcmodels.models.backbone import make_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="where to write the state_dict")
    args = parser.parse_args()
    params = load_params()
    count = make_backbone(
        params.backbone,
        args.out,
        timeout_s=params.download.timeout_s,
        retries=params.download.retries,
        max_mb=params.download.max_archive_mb,
    )
    print(f"{args.out}: {count} tensors of MobileNetV2's ImageNet feature extractor")


if __name__ == "__main__":
    run_stage(main)
