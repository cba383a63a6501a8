"""What a source is: read from the file system and the content in a fixed order, never from its name; anything
but a folder or a regular file (a FIFO, a device) is refused before it is opened. (The download path's own
checks are in test_download.py.)"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from bcmodels.config.schema import DownloadConfig
from bcmodels.data.busi import DATASET_DIR, SOURCE_ENV, install_dataset, resolve_source
from bcmodels.errors import DataError
from bcmodels.io.archives import open_regular
from tests.conftest import project_params
from tests.synthetic import make_busi_tree, relative_files, tar_tree, zip_tree
from tests.test_download import _no_hang

HINT = f"{SOURCE_ENV} must name a BUSI zip or tar, or an extracted {DATASET_DIR} folder"


def config(**changes) -> DownloadConfig:
    """The project's download settings with some replaced."""
    return dataclasses.replace(project_params().download, **changes)


def _install(source: Path, tmp_path: Path, busi) -> int:
    return install_dataset(source, tmp_path / "out" / DATASET_DIR, busi["entries"], config())


# --- the format comes from the content ------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, name",
    [("zip", "busi.tar.gz"), ("w:gz", "busi.zip"), ("w:bz2", "busi.tgz"), ("w:xz", "busi.zip"), ("w", "busi.gz")],
)
def test_format_is_read_from_the_content_not_the_name(busi, tmp_path, mode, name):
    path = tmp_path / name
    if mode == "zip":
        zip_tree(busi["tree"], path)
    else:
        tar_tree(busi["tree"], path, mode=mode)
    assert _install(path, tmp_path, busi) == len(busi["entries"])
    assert relative_files(tmp_path / "out" / DATASET_DIR) == {e.file for e in busi["entries"]}


def test_tar_whose_last_member_is_a_zip_is_read_as_a_tar(busi, tmp_path):
    """zipfile.is_zipfile looks for a zip's end record near the end of a file, so it takes such a tar for the
    zip inside; the tar's header ('ustar' at byte 257) decides instead."""
    other = make_busi_tree(tmp_path / "other", seed=1)  # same names, other images: a zip to be fooled by
    inner = zip_tree(tmp_path / "other", tmp_path / "inner.zip")
    archive = tar_tree(busi["tree"], tmp_path / "busi.tar", mode="w")
    with tarfile.open(archive, "a") as tf:
        tf.add(inner, "extras/inner.zip")
    assert zipfile.is_zipfile(archive)  # the trap the content check avoids
    assert [e.file for e in other] == [e.file for e in busi["entries"]]
    assert _install(archive, tmp_path, busi) == len(
        busi["entries"]
    )  # the tar's images, verified against the tar's manifest


def test_empty_zip_is_a_zip_without_the_data_set(busi, tmp_path):
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    assert empty.read_bytes().startswith(b"PK\x05\x06")
    with pytest.raises(DataError, match=re.escape(f"{empty}: no {DATASET_DIR} folder holding the class folders")):
        _install(empty, tmp_path, busi)


@pytest.mark.parametrize(
    "content, found",
    [
        (b"not a zip", "its first bytes are b'not a zip'"),
        (b"", "it is empty"),
        (
            b"\x89PNG\r\n\x1a\n" + bytes(100),
            "its first bytes are b'\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'",
        ),
        (b"P" + bytes(600), "its first bytes are b'P"),  # a zip's magic needs all four bytes
    ],
    ids=["text", "empty", "png", "almost zip"],
)
def test_anything_else_is_refused_quoting_what_was_found(busi, tmp_path, content, found):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(content)
    message = f"{junk}: neither a zip or tar archive nor a folder ({found}"
    with pytest.raises(DataError, match=re.escape(message)) as err:
        _install(junk, tmp_path, busi)
    assert str(err.value).endswith(f"recognised by content: zip, tar, tar.gz, tar.bz2, tar.xz. {HINT}.")
    assert not (tmp_path / "out").exists()


def test_gzip_without_a_tar_inside_is_damaged(busi, tmp_path):
    path = tmp_path / "busi.tar.gz"
    path.write_bytes(gzip.compress(b"just text, no tar header" * 40))
    message = f"{path}: the archive is damaged or truncated (invalid header). Download it again or use another copy."
    with pytest.raises(DataError, match=re.escape(message)):
        _install(path, tmp_path, busi)
    assert not (tmp_path / "out").exists()


def test_missing_source(busi, tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nowhere.zip'}: not found ({HINT})")):
        _install(tmp_path / "nowhere.zip", tmp_path, busi)


# --- neither a folder nor a regular file: refused before it is opened -----------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_busi_source_that_is_a_fifo_or_device_is_refused_without_opening_it(busi, tmp_path, monkeypatch, kind):
    if kind == "fifo":
        path, words = tmp_path / "fifo.zip", "a named pipe (FIFO)"
        os.mkfifo(path)  # opening it would wait for a writer for ever
    else:
        path, words = Path("/dev/zero"), "a character device"  # endless
    monkeypatch.setenv(SOURCE_ENV, str(path))
    source = resolve_source(config())
    message = f"{path}: {words}, neither a file nor a folder; refused ({HINT})"
    with _no_hang(), pytest.raises(DataError, match=re.escape(message)):
        _install(source, tmp_path, busi)
    assert not (tmp_path / "out").exists()


def test_fifo_swapped_in_after_the_check_does_not_block_the_open(tmp_path):
    fifo = tmp_path / "fifo.zip"
    os.mkfifo(fifo)
    with _no_hang(), pytest.raises(DataError, match=re.escape(f"{fifo}: a named pipe (FIFO), not a regular file")):
        open_regular(fifo)


def test_fifo_in_a_folder_source_is_refused(busi, tmp_path):
    fifo = busi["tree"] / DATASET_DIR / "benign" / "benign (1).png"
    fifo.unlink()
    os.mkfifo(fifo)
    message = f"{busi['tree']}: file '{DATASET_DIR}/benign/benign (1).png' is not a regular file (a device or pipe)"
    with _no_hang(), pytest.raises(DataError, match=re.escape(message)):
        _install(busi["tree"], tmp_path, busi)
    assert not (tmp_path / "out").exists()


def test_zip_made_on_windows_installs(busi, tmp_path):
    """A zip made on Windows stores no Unix mode (0): its members are files."""
    archive = tmp_path / "windows.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((busi["tree"] / DATASET_DIR).rglob("*.png")):
            info = zipfile.ZipInfo(path.relative_to(busi["tree"]).as_posix())
            info.create_system = 0  # MS-DOS: external_attr holds no Unix mode
            zf.writestr(info, path.read_bytes())
    assert _install(archive, tmp_path, busi) == len(busi["entries"])


def test_busi_source_may_be_a_link_to_a_folder_or_archive(busi, tmp_path):
    for name, target in (("folder_link", busi["tree"]), ("zip_link", busi["zip"])):
        link = tmp_path / name
        link.symlink_to(target)
        assert _install(link, tmp_path, busi) == len(busi["entries"])
