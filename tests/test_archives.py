"""Archives and folders as the download stage reads them: zip, tar, tar.gz, nested layouts, hostile members,
the caps on size and count, and what a failure while extracting says."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import re
import shutil
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from bcmodels.config.schema import DownloadConfig
from bcmodels.data import busi as installer
from bcmodels.data.busi import DATASET_DIR, install_dataset
from bcmodels.errors import DataError
from tests.conftest import project_params
from tests.synthetic import relative_files, tar_tree, zip_tree

FIRST_IMAGE = f"{DATASET_DIR}/benign/benign (1).png"


def config(**changes) -> DownloadConfig:
    """The project's download settings with some replaced."""
    return dataclasses.replace(project_params().download, **changes)


def _snapshot(root: Path) -> list[str]:
    """Every path below root, links and temporary folders included."""
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files)


def _files(busi) -> set[str]:
    """The manifest's files: the images and their masks."""
    return {e.file for e in busi["entries"]}


@pytest.mark.parametrize(
    "name, mode", [("busi.tar", "w"), ("busi.tar.gz", "w:gz"), ("busi.tar.bz2", "w:bz2"), ("busi.tar.xz", "w:xz")]
)
@pytest.mark.parametrize("prefix", ["", "BUSI_mirror/"])
def test_tar_installs_like_the_zip(busi, tmp_path, name, mode, prefix):
    archive = tar_tree(busi["tree"], tmp_path / name, prefix=prefix, mode=mode)
    target = tmp_path / "out" / DATASET_DIR
    count = install_dataset(archive, target, busi["entries"], config())
    assert relative_files(target) == _files(busi) and count == len(busi["entries"]) == 63
    assert sorted(p.name for p in target.parent.iterdir()) == [DATASET_DIR]  # no temporary folder left


def test_only_the_manifest_images_are_installed(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "extra.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(f"{DATASET_DIR}/benign/benign (99).png", b"an image the manifest does not list")
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(archive, target, busi["entries"], config())
    assert relative_files(target) == _files(busi)  # not benign (99), which the manifest does not list


def test_layout_two_levels_down_is_not_searched(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "deep.zip", prefix="a/b/")
    message = (
        f"{archive}: no {DATASET_DIR} folder holding the class folders (benign, malignant, normal) at its top level"
    )
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], config())


def test_two_copies_of_the_data_set_are_refused(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "two.zip", prefix="a/")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.write(busi["tree"] / FIRST_IMAGE, f"b/{FIRST_IMAGE}")
    message = f"{archive}: 2 {DATASET_DIR} folders (a/{DATASET_DIR}, b/{DATASET_DIR}); use a copy with exactly one."
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], config())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["zip", "folder"])
def test_one_copy_packed_twice_has_one_root(busi, tmp_path, source):
    """Dataset_BUSI_with_GT/Dataset_BUSI_with_GT/<class>/...: the outer folder holds no class folder."""
    if source == "zip":
        path = zip_tree(busi["tree"], tmp_path / "twice.zip", prefix=f"{DATASET_DIR}/")
    else:
        path = tmp_path / "outer" / DATASET_DIR
        shutil.copytree(busi["tree"], path)
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(path, target, busi["entries"], config())
    assert relative_files(target) == _files(busi)


def test_macos_copies_and_non_images_are_skipped(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "mac.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(f"__MACOSX/{DATASET_DIR}/benign/._benign (1).png", b"resource fork")
        zf.writestr(f"{DATASET_DIR}/benign/notes.txt", b"not an image")
        zf.writestr(f"{DATASET_DIR}/benign/.hidden.png", b"not an image")
        zf.writestr(f"{DATASET_DIR}/Thumbs.db", b"not an image")
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(archive, target, busi["entries"], config())
    assert relative_files(target) == _files(busi)


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
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], config(max_member_mb=2))
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
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], config())
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("source", ["zip", "folder"])
def test_oversized_member_message_says_what_to_do(busi, tmp_path, source):
    archive = zip_tree(busi["tree"], tmp_path / "busi.zip") if source == "zip" else busi["tree"]
    size = (busi["tree"] / FIRST_IMAGE).stat().st_size  # folders before it have a size too, but hold no data
    message = (
        f"{archive}: {'member' if source == 'zip' else 'file'} {FIRST_IMAGE!r} is {size:,} bytes, more than "
        "download.max_member_mb (0.001 MB); refused, nothing was extracted. Use the official BUSI archive "
        "or another trusted copy, or raise download.max_member_mb in params.yaml if you trust this copy."
    )
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], config(max_member_mb=0.001))
    assert not (tmp_path / "out").exists()


# --- zip members zipfile cannot read: refused by name, before anything is written ---------------------------


def _patch_zip(path: Path, name: str, *, flag: int = 0, method: int | None = None) -> None:
    """Set a general-purpose flag bit and/or the compression method of one member, in its local header and its
    central directory entry. zipfile writes neither encrypted nor Deflate64 members, so the bytes are edited."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        fields = [zf.getinfo(name).header_offset + 6]  # local header: flags at +6, method at +8
    end = data.rfind(b"PK\x05\x06")
    (count,) = struct.unpack_from("<H", data, end + 10)
    (pos,) = struct.unpack_from("<I", data, end + 16)
    for _ in range(count):  # central directory entries: flags at +8, method at +10
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        if data[pos + 46 : pos + 46 + name_len] == name.encode():
            fields.append(pos + 8)
        pos += 46 + name_len + extra_len + comment_len
    assert len(fields) == 2
    for at in fields:
        (flags,) = struct.unpack_from("<H", data, at)
        struct.pack_into("<H", data, at, flags | flag)
        if method is not None:
            struct.pack_into("<H", data, at + 2, method)
    path.write_bytes(data)


@pytest.mark.parametrize(
    "patch, problem, advice",
    [
        (
            {"flag": 0x1},
            "is encrypted",
            "Extract the archive with its password and set BUSI_SOURCE to the extracted Dataset_BUSI_with_GT folder.",
        ),
        (
            {"method": 9},
            "is compressed with Deflate64 (method 9), which Python's zipfile cannot read (it reads stored, deflated, "
            "bzip2 and lzma)",
            "Extract the archive with a tool that reads it (7-Zip, for one) and set BUSI_SOURCE to the extracted "
            "Dataset_BUSI_with_GT folder, or use the official BUSI archive.",
        ),
        (
            {"method": 77},
            "is compressed with an unknown method (method 77), which Python's zipfile cannot read (it reads stored, "
            "deflated, bzip2 and lzma)",
            "or use the official BUSI archive.",
        ),
    ],
    ids=["encrypted", "deflate64", "unknown method"],
)
def test_zip_member_zipfile_cannot_read_is_refused_by_name(busi, tmp_path, patch, problem, advice):
    archive = busi["zip"]
    _patch_zip(archive, FIRST_IMAGE, **patch)
    with zipfile.ZipFile(archive) as zf, pytest.raises((RuntimeError, NotImplementedError)):
        zf.read(FIRST_IMAGE)  # the patch took: zipfile itself fails on this member
    before = _snapshot(tmp_path)
    with pytest.raises(DataError) as err:
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], config())
    message = str(err.value)
    assert message.startswith(f"{archive}: member {FIRST_IMAGE!r} {problem}; refused, nothing was extracted. ")
    assert message.endswith(advice)
    assert _snapshot(tmp_path) == before


# --- the caps on entries and bytes: refused before anything is written --------------------------------------


def _with_junk(busi, path: Path, count: int, size: int) -> Path:
    """The data set, then count small files outside Dataset_BUSI_with_GT (they count towards the caps too)."""
    if path.suffix == ".zip":
        zip_tree(busi["tree"], path)
        with zipfile.ZipFile(path, "a") as zf:
            for i in range(count):
                zf.writestr(f"junk/{i:04}.bin", bytes(size))
    else:
        tar_tree(busi["tree"], path, mode="w:gz")
        with tarfile.open(path, "r:gz") as tf:  # gz cannot be appended to: copy, then add the junk
            members = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf]
        with tarfile.open(path, "w:gz") as tf:
            for m, data in members:
                tf.addfile(m, io.BytesIO(data) if data is not None else None)
            for i in range(count):
                info = tarfile.TarInfo(f"junk/{i:04}.bin")
                info.size = size
                tf.addfile(info, io.BytesIO(bytes(size)))
    return path


@pytest.mark.parametrize("name", ["junk.zip", "junk.tar.gz"])
def test_files_adding_up_beyond_max_total_mb_are_refused(busi, tmp_path, name):
    data_bytes = sum(p.stat().st_size for p in (busi["tree"] / DATASET_DIR).rglob("*") if p.is_file())
    archive = _with_junk(busi, tmp_path / name, count=200, size=1000)
    limit_mb = (data_bytes + 100_000) / 1e6  # room for the data set and 100 of the 200 junk files
    before = _snapshot(tmp_path)
    with pytest.raises(DataError) as err:
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], config(max_total_mb=limit_mb))
    message = str(err.value)
    assert message.startswith(f"{archive}: its files add up to more than download.max_total_mb ({limit_mb:g} MB): ")
    assert f"{data_bytes + 101_000:,} bytes up to member 'junk/0100.bin'" in message  # listing stopped there
    assert message.endswith(
        "; refused, nothing was extracted. Use the official BUSI archive or another trusted copy, or raise "
        "download.max_total_mb in params.yaml if you trust this copy."
    )
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["junk.zip", "junk.tar.gz"])
def test_more_entries_than_max_members_are_refused(busi, tmp_path, name):
    archive = _with_junk(busi, tmp_path / name, count=300, size=0)
    before = _snapshot(tmp_path)
    message = (
        f"{archive}: has more than download.max_members (100) entries, files and folders counted; refused, nothing "
        "was extracted. Use the official BUSI archive or another trusted copy, or raise download.max_members in "
        "params.yaml if you trust this copy."
    )
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], config(max_members=100))
    assert _snapshot(tmp_path) == before


def test_the_caps_count_a_folder_source_too(busi, tmp_path):
    before = _snapshot(tmp_path)
    with pytest.raises(DataError, match=re.escape(f"{busi['tree']}: has more than download.max_members (10) entries")):
        install_dataset(busi["tree"], tmp_path / "out" / DATASET_DIR, busi["entries"], config(max_members=10))
    with pytest.raises(DataError, match=re.escape(f"{busi['tree']}: its files add up to more than download.max_total")):
        install_dataset(busi["tree"], tmp_path / "out" / DATASET_DIR, busi["entries"], config(max_total_mb=0.01))
    assert _snapshot(tmp_path) == before


# --- failures while extracting: a damaged archive, or the machine ------------------------------------------


def test_damaged_tar_gz_is_an_error_naming_it(busi, tmp_path):
    archive = tar_tree(busi["tree"], tmp_path / "busi.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    before = _snapshot(tmp_path)
    message = re.escape(f"{archive}: the archive is damaged or truncated (") + r".*\)\. Download it again or use"
    with pytest.raises(DataError, match=message):
        install_dataset(archive, tmp_path / "out" / DATASET_DIR, busi["entries"], config())
    assert [p for p in _snapshot(tmp_path) if p not in before] in ([], ["out"])  # at most the empty parent


def test_zip_member_with_a_bad_crc_is_damaged_naming_it(busi, tmp_path):
    archive = busi["zip"]  # stored, not compressed: the image's bytes are in the archive as they are
    image = (busi["tree"] / FIRST_IMAGE).read_bytes()
    data = archive.read_bytes()
    at = data.index(image) + len(image) // 2
    archive.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    out = tmp_path / "out"
    message = (
        f"{archive}: the archive is damaged or truncated (Bad CRC-32 for file {FIRST_IMAGE!r}) at member "
        f"{FIRST_IMAGE!r}. Download it again or use another copy."
    )
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(archive, out / DATASET_DIR, busi["entries"], config())
    assert list(out.iterdir()) == []  # the temporary folder is gone


class _FullDisk(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file name


@pytest.mark.parametrize("cause", ["disk full", "permission", "name too long"])
def test_a_machine_failure_says_what_it_is_not_that_the_archive_is_damaged(busi, tmp_path, monkeypatch, cause):
    target = tmp_path / "out" / DATASET_DIR
    locked = busi["tree"] / FIRST_IMAGE
    if cause == "disk full":
        real_open = open
        fake_open = lambda p, mode="r": _FullDisk() if mode == "wb" else real_open(p, mode)  # noqa: E731
        monkeypatch.setattr(installer, "open", fake_open, raising=False)  # the builtin, as busi.py sees it
        source = busi["zip"]
        expected = f"installing into {target} failed at member {FIRST_IMAGE!r}: the disk is full; free some space"
    elif cause == "permission":
        real = installer.open_regular  # root reads a chmod 000 file anyway: refuse it as the kernel would

        def refuse(path):
            if path == locked:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real(path)

        monkeypatch.setattr(installer, "open_regular", refuse)
        source = busi["tree"]
        expected = (
            f"installing into {target} failed at file {FIRST_IMAGE!r}: {locked}: permission denied; check the "
            "owner and mode of that path"
        )
    else:
        target = tmp_path / ("x" * 300) / DATASET_DIR
        source = busi["zip"]
        expected = f"{target.parent}: the name is too long for this file system; use a shorter path"
    with pytest.raises(DataError) as err:
        install_dataset(source, target, busi["entries"], config())
    assert str(err.value).startswith(f"{source}: ") and expected in str(err.value)
    assert "damaged" not in str(err.value)
    assert not os.path.lexists(target) and [p for p in _snapshot(tmp_path) if ".tmp" in p] == []


# --- folder sources ---------------------------------------------------------------------------------------


def test_symlinked_file_in_a_folder_source_is_refused(busi, tmp_path):
    image = busi["tree"] / FIRST_IMAGE
    secret = tmp_path / "secret.png"
    shutil.copy(image, secret)  # same bytes: the link is refused for being a link, not for its content
    image.unlink()
    image.symlink_to(secret)
    message = f"{busi['tree']}: file {FIRST_IMAGE!r} is a symbolic link; refused"
    with pytest.raises(DataError, match=re.escape(message)):
        install_dataset(busi["tree"], tmp_path / "out" / DATASET_DIR, busi["entries"], config())
    assert not (tmp_path / "out").exists()


def test_symlinked_class_folder_is_refused(busi, tmp_path):
    normal = busi["tree"] / DATASET_DIR / "normal"
    moved = shutil.move(normal, tmp_path / "elsewhere")
    normal.symlink_to(moved, target_is_directory=True)
    source = busi["tree"] / DATASET_DIR
    with pytest.raises(DataError, match=re.escape(f"{source}: file '{DATASET_DIR}/normal' is a symbolic link")):
        install_dataset(source, tmp_path / "out" / DATASET_DIR, busi["entries"], config())
    assert not (tmp_path / "out").exists()


def test_links_beside_the_data_set_folder_are_not_its_business(busi, tmp_path):
    (busi["tree"] / "a_link").symlink_to(tmp_path)
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(busi["tree"], target, busi["entries"], config())
    assert relative_files(target) == _files(busi)


def test_unreadable_class_folder_is_an_error_not_a_gap(busi, tmp_path, monkeypatch):
    locked = busi["tree"] / DATASET_DIR / "malignant"
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads it anyway: make listing it fail as it would for a user
            real_scandir = os.scandir

            def scandir(path="."):
                if Path(path) == locked:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return real_scandir(path)

            monkeypatch.setattr(os, "scandir", scandir)
        message = (
            f"{busi['tree']}: a folder in it cannot be read: {locked}: permission denied; check the owner and mode "
            "of that path; nothing was extracted"
        )
        with pytest.raises(DataError, match=re.escape(message)):
            install_dataset(busi["tree"], tmp_path / "out" / DATASET_DIR, busi["entries"], config())
        assert not (tmp_path / "out").exists()
    finally:
        locked.chmod(0o755)
