"""Archives and folders as the download stage reads them: zip, tar, tar.gz, nested layouts, hostile members."""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from bcmodels.download import DATASET_DIR, install_dataset
from bcmodels.errors import DataError
from tests.synthetic import relative_files, tar_tree, zip_tree


def _snapshot(root: Path) -> list[str]:
    """Every path below root, links and temporary folders included."""
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files)


@pytest.mark.parametrize("name, mode", [("busi.tar", "w"), ("busi.tar.gz", "w:gz")])
@pytest.mark.parametrize("prefix", ["", "BUSI_mirror/"])
def test_tar_installs_like_the_zip(busi, tmp_path, name, mode, prefix):
    archive = tar_tree(busi["tree"], tmp_path / name, prefix=prefix, mode=mode)
    target = tmp_path / "out" / DATASET_DIR
    count = install_dataset(archive, target, busi["entries"])
    assert relative_files(target) == relative_files(busi["tree"] / DATASET_DIR) and count == 63
    assert sorted(p.name for p in target.parent.iterdir()) == [DATASET_DIR]  # no temporary folder left


def test_layout_two_levels_down_is_not_searched(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "deep.zip", prefix="a/b/")
    message = f"{archive}: no {DATASET_DIR} folder at its top level or one level below"
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"])


def test_two_copies_of_the_data_set_are_refused(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "two.zip", prefix="a/")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.write(busi["tree"] / DATASET_DIR / "benign" / "benign (1).png", f"b/{DATASET_DIR}/benign/benign (1).png")
    message = f"{archive}: 2 {DATASET_DIR} folders (a/{DATASET_DIR}, b/{DATASET_DIR}); use a copy with exactly one."
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"])


def test_macos_copies_and_non_images_are_skipped(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "mac.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(f"__MACOSX/{DATASET_DIR}/benign/._benign (1).png", b"resource fork")
        zf.writestr(f"{DATASET_DIR}/benign/notes.txt", b"not an image")
        zf.writestr(f"{DATASET_DIR}/benign/.hidden.png", b"not an image")
        zf.writestr(f"{DATASET_DIR}/Thumbs.db", b"not an image")
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(archive, target, busi["entries"])
    assert relative_files(target) == relative_files(busi["tree"] / DATASET_DIR)


# --- hostile members: each is refused before anything is written --------------------------------------------


def _tar_member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"evil", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


def _hostile_archive(tree: Path, path: Path, members: list) -> Path:
    """The valid synthetic data set, then the hostile members (so checking must come before copying)."""
    if path.suffix == ".zip":
        zip_tree(tree, path)
        with zipfile.ZipFile(path, "a") as zf:
            for info, data in members:
                zf.writestr(info, data)
    else:
        tar_tree(tree, path, mode="w")
        with tarfile.open(path, "a") as tf:
            for info, data in members:
                tf.addfile(info, data)
    return path


def _zip_link(name: str, target: str) -> tuple:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def _cases(outside: Path) -> dict[str, tuple[list, list, str, str]]:
    """name: (zip members, tar members, the refused member's name, the reason in the error)."""
    absolute = f"{outside}/evil.png"
    dotdot = "../../evil.png"
    inner = f"{DATASET_DIR}/benign/../../../evil.png"
    link = f"{DATASET_DIR}/benign/evil_link"
    through_link = f"{link}/evil.png"  # written through the link, if it were followed
    big = f"{DATASET_DIR}/benign/evil.png"
    too_big = "is 2,000,001 bytes, more than download.max_member_mb (2 MB)"
    return {
        "absolute": ([(absolute, b"evil")], [_tar_member(absolute)], absolute, "has an absolute path"),
        "dotdot": ([(dotdot, b"evil")], [_tar_member(dotdot)], dotdot, "has a '..' component"),
        "dotdot inside": ([(inner, b"evil")], [_tar_member(inner)], inner, "has a '..' component"),
        "symlink": (
            [_zip_link(link, str(outside)), (through_link, b"evil")],
            [_tar_member(link, tarfile.SYMTYPE, link=str(outside)), _tar_member(through_link)],
            link,
            "is a symbolic link",
        ),
        "oversized": ([(big, bytes(2_000_001))], [_tar_member(big, data=bytes(2_000_001))], big, too_big),
    }


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize("case", ["absolute", "dotdot", "dotdot inside", "symlink", "oversized"])
def test_hostile_member_is_refused_and_nothing_lands_anywhere(busi, tmp_path, fmt, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    zip_members, tar_members, name, reason = _cases(outside)[case]
    archive = _hostile_archive(busi["tree"], tmp_path / f"hostile.{fmt}", zip_members if fmt == "zip" else tar_members)
    before = _snapshot(tmp_path)
    message = re.escape(f"{archive}: member {name!r} {reason}") + ".*; refused, nothing was extracted"
    with pytest.raises(DataError, match=message):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], max_member_mb=2)
    assert _snapshot(tmp_path) == before  # not the target, not a temporary folder, nothing outside
    assert list(tmp_path.rglob("evil*")) == []


@pytest.mark.parametrize(
    "kind", [tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE], ids=["hardlink", "device", "fifo"]
)
def test_tar_hard_links_and_devices_are_refused(busi, tmp_path, kind):
    name = f"{DATASET_DIR}/benign/evil_member"
    archive = _hostile_archive(busi["tree"], tmp_path / "hostile.tar", [_tar_member(name, kind, link="/etc/passwd")])
    before = _snapshot(tmp_path)
    reason = "is a hard link" if kind == tarfile.LNKTYPE else "is not a regular file (a device or pipe)"
    message = f"{archive}: member {name!r} {reason}; refused, nothing was extracted"
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"])
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("source", ["zip", "folder"])
def test_oversized_member_message_says_what_to_do(busi, tmp_path, source):
    archive = zip_tree(busi["tree"], tmp_path / "busi.zip") if source == "zip" else busi["tree"]
    first_image = f"{DATASET_DIR}/benign/benign (1).png"  # folders before it have a size too, but hold no data
    size = (busi["tree"] / first_image).stat().st_size
    message = (f"{archive}: {'member' if source == 'zip' else 'file'} {first_image!r} is {size:,} bytes, more than "
               "download.max_member_mb (0.001 MB); refused, nothing was extracted. Use the official BUSI archive "
               "or another trusted copy, or raise download.max_member_mb in params.yaml if you trust this copy.")
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], max_member_mb=0.001)
    assert not (tmp_path / "out").exists()


def test_damaged_tar_gz_is_an_error_naming_it(busi, tmp_path):
    archive = tar_tree(busi["tree"], tmp_path / "busi.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    before = _snapshot(tmp_path)
    with pytest.raises(DataError, match=re.escape(f"{archive}: extracting into ") + ".* failed"):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"])
    assert [p for p in _snapshot(tmp_path) if p not in before] in ([], ["out"])  # at most the empty parent


# --- folder sources ---------------------------------------------------------------------------------------


def test_symlinked_file_in_a_folder_source_is_refused(busi, tmp_path):
    image = busi["tree"] / DATASET_DIR / "benign" / "benign (1).png"
    secret = tmp_path / "secret.png"
    shutil.copy(image, secret)  # same bytes: the link is refused for being a link, not for its content
    image.unlink()
    image.symlink_to(secret)
    with pytest.raises(DataError, match=re.escape(
            f"{busi['tree']}: file '{DATASET_DIR}/benign/benign (1).png' is a symbolic link; refused")):  # fmt: skip
        install_dataset(busi["tree"], tmp_path / "out" / DATASET_DIR, busi["entries"])
    assert not (tmp_path / "out").exists()


def test_symlinked_class_folder_is_refused(busi, tmp_path):
    normal = busi["tree"] / DATASET_DIR / "normal"
    moved = shutil.move(normal, tmp_path / "elsewhere")
    normal.symlink_to(moved, target_is_directory=True)
    source = busi["tree"] / DATASET_DIR
    with pytest.raises(DataError, match=re.escape(f"{source}: file '{DATASET_DIR}/normal' is a symbolic link")):
        install_dataset(source, tmp_path / "out" / DATASET_DIR, busi["entries"])
    assert not (tmp_path / "out").exists()


def test_links_beside_the_data_set_folder_are_not_its_business(busi, tmp_path):
    (busi["tree"] / "a_link").symlink_to(tmp_path)
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(busi["tree"], target, busi["entries"])
    assert relative_files(target) == relative_files(busi["tree"] / DATASET_DIR)

