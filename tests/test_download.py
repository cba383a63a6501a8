from __future__ import annotations

import hashlib
import http.server
import threading
from collections import Counter
from pathlib import Path

import pytest

from bcmodels.config import DownloadConfig
from bcmodels.download import (
    DATASET_DIR,
    SOURCE_ENV,
    fetch,
    install_dataset,
    read_manifest,
    resolve_source,
)
from bcmodels.errors import DataError
from tests.conftest import PROJECT_ROOT, REAL_ZIP, requires_real_zip
from tests.synthetic import zip_tree


def _all_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_install_from_zip_copies_images_and_masks_verified(busi, tmp_path):
    target = tmp_path / "out" / DATASET_DIR
    count = install_dataset(busi["zip"], target, busi["entries"])
    expected = _all_files(busi["tree"] / DATASET_DIR)
    assert _all_files(target) == expected
    assert count == len(expected) == 30 * 2 + 3  # images, one mask each, one _mask_1 per class
    assert {e.file for e in busi["entries"]} <= expected


@pytest.mark.parametrize("which", ["parent", "dataset_dir"])
def test_install_from_extracted_folder(busi, tmp_path, which):
    source = busi["tree"] if which == "parent" else busi["tree"] / DATASET_DIR
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(source, target, busi["entries"])
    assert _all_files(target) == _all_files(busi["tree"] / DATASET_DIR)


def test_install_finds_layout_nested_one_level_deeper(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "nested.zip", prefix="BUSI_mirror/")
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(archive, target, busi["entries"])
    assert _all_files(target) == _all_files(busi["tree"] / DATASET_DIR)


def test_altered_and_missing_images_are_named_and_nothing_is_left(busi, tmp_path):
    altered = busi["tree"] / DATASET_DIR / "malignant" / "malignant (3).png"
    altered.write_bytes(altered.read_bytes() + b"\0")
    (busi["tree"] / DATASET_DIR / "normal" / "normal (2).png").unlink()
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        install_dataset(busi["tree"], out / DATASET_DIR, busi["entries"])
    message = str(err.value)
    assert "missing: normal/normal (2).png" in message
    assert "altered (sha256 differs): malignant/malignant (3).png" in message
    assert "1 missing and 1 altered of 30 images" in message
    assert list(out.iterdir()) == []  # neither the target nor a temporary folder remains


def test_failed_install_keeps_previous_output(busi, tmp_path):
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(busi["zip"], target, busi["entries"])
    before = _all_files(target)
    bad = [e.__class__(e.file, e.label, "0" * 64) if i == 0 else e for i, e in enumerate(busi["entries"])]
    with pytest.raises(DataError):
        install_dataset(busi["zip"], target, bad)
    assert _all_files(target) == before


def test_source_that_is_neither_zip_nor_folder(tmp_path, busi):
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    with pytest.raises(DataError, match="junk.zip: neither a zip archive nor a folder"):
        install_dataset(junk, tmp_path / "out" / DATASET_DIR, busi["entries"])
    with pytest.raises(DataError, match="nowhere.zip: not found"):
        install_dataset(tmp_path / "nowhere.zip", tmp_path / "out" / DATASET_DIR, busi["entries"])


def test_manifest_rejects_unknown_class(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("file\tclass\tsha256\ncysts/c (1).png\tcysts\tabc\n")
    with pytest.raises(DataError, match="cysts"):
        read_manifest(path)


def test_committed_manifest_lists_the_780_images():
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    assert Counter(e.label for e in entries) == {"benign": 437, "malignant": 210, "normal": 133}
    assert not any("_mask" in e.file for e in entries)


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on loopback serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_downloads_and_checks_sha256(http_server, busi, tmp_path):
    root, url = http_server
    (root / "busi.zip").write_bytes(busi["zip"].read_bytes())
    digest = hashlib.sha256(busi["zip"].read_bytes()).hexdigest()
    dest = tmp_path / "dl" / "Dataset_BUSI.zip"
    assert fetch(f"{url}/busi.zip", dest, digest, timeout_s=10) == dest
    assert dest.read_bytes() == busi["zip"].read_bytes()


def test_fetch_with_wrong_sha256_keeps_nothing(http_server, busi, tmp_path):
    root, url = http_server
    (root / "busi.zip").write_bytes(busi["zip"].read_bytes())
    dest = tmp_path / "dl" / "Dataset_BUSI.zip"
    with pytest.raises(DataError, match="does not match download.sha256"):
        fetch(f"{url}/busi.zip", dest, "0" * 64, timeout_s=10)
    assert list(dest.parent.iterdir()) == []


def test_unreachable_url_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    config = DownloadConfig(url="http://127.0.0.1:9/Dataset_BUSI.zip", sha256="0" * 64, timeout_s=5)
    with pytest.raises(DataError) as err:
        resolve_source(config)
    assert SOURCE_ENV in str(err.value) and "data/downloads/Dataset_BUSI.zip" in str(err.value)


def test_busi_source_env_overrides_the_url(monkeypatch, busi):
    monkeypatch.setenv(SOURCE_ENV, str(busi["zip"]))
    config = DownloadConfig(url="http://127.0.0.1:9/never-fetched.zip", sha256="0" * 64)
    assert resolve_source(config) == busi["zip"]


@requires_real_zip
def test_real_archive_installs_and_matches_the_manifest(tmp_path):
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv")
    target = tmp_path / DATASET_DIR
    install_dataset(REAL_ZIP, target, entries)
    images = [p for p in target.rglob("*.png") if "_mask" not in p.name]
    assert Counter(p.parent.name for p in images) == {"benign": 437, "malignant": 210, "normal": 133}
    masks = [p for p in target.rglob("*_mask*.png")]
    assert len(masks) == 798  # masks are kept beside the images, as in the official layout
