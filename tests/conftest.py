from __future__ import annotations

import functools
from pathlib import Path

import pytest

from bcmodels.config.load import load_params
from bcmodels.config.schema import Params
from bcmodels.formats.manifest import write_manifest
from tests.synthetic import make_busi_tree, zip_tree

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
REAL_ZIP = SHARED_DATA / "Dataset_BUSI_with_GT.zip"
SHARED_WEIGHTS = PROJECT_ROOT.parent / "shared" / "weights" / "mobilenet_v2_imagenet_backbone.pth"

requires_shared_weights = pytest.mark.skipif(
    not SHARED_WEIGHTS.is_file(), reason=f"no ImageNet backbone at {SHARED_WEIGHTS}"
)
requires_real_zip = pytest.mark.skipif(not REAL_ZIP.is_file(), reason=f"real BUSI archive not at {REAL_ZIP}")


@pytest.fixture
def busi(tmp_path: Path):
    """A synthetic BUSI folder, its manifest file and a zip of it in the official layout."""
    tree = tmp_path / "tree"
    entries = make_busi_tree(tree)
    manifest = tmp_path / "manifest.tsv"
    write_manifest(manifest, entries)
    archive = zip_tree(tree, tmp_path / "busi.zip")
    return {"tree": tree, "entries": entries, "manifest": manifest, "zip": archive}


@functools.cache
def project_params() -> Params:
    """The project's own params.yaml: tests start from the study's settings and replace what they vary."""
    return load_params(PROJECT_ROOT / "params.yaml")
