from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import bcmodels.io.files as fileio
from bcmodels.config.schema import DownloadConfig
from bcmodels.data import busi as installer
from bcmodels.data.busi import DATASET_DIR, DOWNLOAD_PATH, SOURCE_ENV, install_dataset, resolve_source, verify
from bcmodels.errors import DataError
from bcmodels.formats.manifest import masks_by_image, read_manifest, write_manifest
from bcmodels.io.fetch import FetchKeys, fetch
from bcmodels.io.files import recover
from tests.conftest import PROJECT_ROOT, REAL_ZIP, project_params, requires_real_zip
from tests.synthetic import make_busi_tree, relative_files, zip_tree


@contextlib.contextmanager
def _no_hang(seconds: int = 10):
    """Fail, rather than hang the test run, if the code under test blocks (opening a FIFO blocks for ever)."""

    def fail(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def config(**changes) -> DownloadConfig:
    """The project's download settings with some replaced."""
    return dataclasses.replace(project_params().download, **changes)


def test_install_from_zip_copies_exactly_the_manifest_images_and_masks_verified(busi, tmp_path):
    target = tmp_path / "out" / DATASET_DIR
    count = install_dataset(busi["zip"], target, busi["entries"], config())
    assert relative_files(target) == {e.file for e in busi["entries"]}  # nothing unlisted
    kinds = Counter(e.kind for e in busi["entries"])
    assert count == len(busi["entries"]) and kinds == {"image": 30, "mask": 33}  # one image per class has two masks


@pytest.mark.parametrize("which", ["parent", "dataset_dir"])
def test_install_from_extracted_folder(busi, tmp_path, which):
    source = busi["tree"] if which == "parent" else busi["tree"] / DATASET_DIR
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(source, target, busi["entries"], config())
    assert relative_files(target) == {e.file for e in busi["entries"]}


def test_install_finds_layout_nested_one_level_deeper(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "nested.zip", prefix="BUSI_mirror/")
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(archive, target, busi["entries"], config())
    assert relative_files(target) == {e.file for e in busi["entries"]}


def test_altered_and_missing_images_are_named_and_nothing_is_left(busi, tmp_path):
    altered = busi["tree"] / DATASET_DIR / "malignant" / "malignant (3).png"
    altered.write_bytes(altered.read_bytes() + b"\0")
    (busi["tree"] / DATASET_DIR / "normal" / "normal (2).png").unlink()
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        install_dataset(busi["tree"], out / DATASET_DIR, busi["entries"], config())
    message = str(err.value)
    assert "missing: normal/normal (2).png" in message
    assert "altered (sha256 differs): malignant/malignant (3).png" in message
    assert message.startswith(
        f"{busi['tree']}: the data does not match the manifest: 1 missing and 1 altered of 63 files"
    )
    assert list(out.iterdir()) == []  # neither the target nor a temporary folder remains


def test_failed_install_keeps_previous_output(busi, tmp_path):
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(busi["zip"], target, busi["entries"], config())
    before = relative_files(target)
    bad = [e.__class__(e.file, e.label, "0" * 64) if i == 0 else e for i, e in enumerate(busi["entries"])]
    with pytest.raises(DataError):
        install_dataset(busi["zip"], target, bad, config())
    assert relative_files(target) == before


def test_manifest_rejects_unknown_class(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("file\tclass\tkind\tsha256\ncysts/c (1).png\tcysts\timage\tabc\n")
    with pytest.raises(DataError, match="cysts"):
        read_manifest(path)


@pytest.mark.parametrize(
    "row, problem",
    [
        ("benign/b (1)_mask.png\tbenign\timage", "a mask's name ends in _mask.png"),
        ("benign/b (1).png\tbenign\tmask", "a mask's name ends in _mask.png"),
        ("benign/b (1).png\tbenign\tlabel", "kind 'label'; kinds are image, mask"),
    ],
)
def test_manifest_rejects_a_mask_named_as_an_image_and_unknown_kinds(tmp_path, row, problem):
    path = tmp_path / "m.tsv"
    path.write_text(f"file\tclass\tkind\tsha256\n{row}\t{'0' * 64}\n")
    with pytest.raises(DataError, match=re.escape(f"{path} line 2: ") + ".*" + re.escape(problem)):
        read_manifest(path)


def test_manifest_rejects_a_mask_without_its_image(tmp_path):
    path = tmp_path / "m.tsv"
    rows = [("benign/b (1).png", "image"), ("benign/b (2)_mask.png", "mask")]
    path.write_text("file\tclass\tkind\tsha256\n" + "".join(f"{f}\tbenign\t{k}\t{'0' * 64}\n" for f, k in rows))
    with pytest.raises(DataError, match=re.escape("the mask 'benign/b (2)_mask.png' belongs to no image")):
        read_manifest(path)


def test_committed_manifest_lists_the_780_images_and_their_798_masks():
    path = PROJECT_ROOT / "data" / "busi_manifest.tsv"
    entries = read_manifest(path)
    assert Counter(e.label for e in entries) == {"benign": 437, "malignant": 210, "normal": 133}
    assert not any("_mask" in e.file for e in entries)
    masks = masks_by_image(read_manifest(path, kinds=("mask",)))
    assert sum(len(m) for m in masks.values()) == 798 and set(masks) == {e.file for e in entries}  # every image has one
    assert Counter(len(m) for m in masks.values()) == {1: 763, 2: 16, 3: 1}


@dataclass
class Route:
    """How the test server answers one path."""

    body: bytes
    fail_first: int = 0  # answer 503 to this many requests first
    cut_at: int | None = None  # the first answer with data drops the connection after this many bytes of it
    stall_at: int | None = None  # the first answer with data stops sending after this many bytes, for STALL_S
    ranges: bool = True  # honour Range with 206; False answers 200 with the whole body, as some servers do
    length: bool = True  # send Content-Length; False: the body ends when the connection closes (HTTP/1.0)
    requests: list[str | None] = field(default_factory=list)  # the Range header of every request, None if absent
    interrupted: bool = False


STALL_S = 2.0  # longer than the tests' timeout_s


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        route.requests.append(asked)
        if len(route.requests) <= route.fail_first:
            self.send_error(503)
            return
        body, start = route.body, 0
        if asked and route.ranges:
            start = int(asked.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        data = body[start:]
        if route.length:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        stop = route.cut_at if route.cut_at is not None else route.stall_at
        if stop is not None and not route.interrupted:
            route.interrupted = True
            self.wfile.write(data[:stop])
            self.wfile.flush()
            if route.stall_at is not None:
                time.sleep(STALL_S)
            return  # HTTP/1.0: the connection closes here, short of Content-Length
        self.wfile.write(data)


@pytest.fixture
def serve():
    """A real HTTP server on loopback: serve(path, Route) returns the route's URL (route None: 404)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.routes = {}
    server.handle_error = lambda *args: None  # a client that hangs up early is part of some tests
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def add(path: str, route: Route | None) -> str:
        server.routes[path] = route
        return f"http://127.0.0.1:{server.server_address[1]}{path}"

    yield add
    server.shutdown()
    server.server_close()


def _dead_url() -> str:
    """A loopback URL on a port nobody listens on: the connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/Dataset_BUSI.zip"


@pytest.fixture
def payload(busi):
    data = busi["zip"].read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def dest(tmp_path):
    """Where fetch puts the archive, in a folder of its own."""
    (tmp_path / "dl").mkdir()
    return tmp_path / "dl" / "Dataset_BUSI.zip"


def _fetch(urls, dest, sha256, **kwargs):
    options = {"timeout_s": 0.5, "retries": 1, "backoff_s": 0.0, "what": "BUSI", "keys": installer.KEYS, **kwargs}
    return fetch(urls, dest, sha256, **options)


def _downloads(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir())


def test_fetch_downloads_and_checks_sha256(serve, payload, dest):
    data, digest = payload
    route = Route(data)
    assert _fetch([serve("/busi.zip", route)], dest, digest) == dest
    assert dest.read_bytes() == data
    assert route.requests == [None]
    assert _downloads(dest) == ["Dataset_BUSI.zip"]  # no .part left


def test_verified_file_is_not_downloaded_again(serve, payload, dest):
    data, digest = payload
    dest.write_bytes(data)
    route = Route(data)
    assert _fetch([serve("/busi.zip", route)], dest, digest) == dest
    assert route.requests == []


def test_fetch_with_wrong_sha256_keeps_nothing(serve, payload, dest, capsys):
    data, _ = payload
    route = Route(data)
    url = serve("/busi.zip", route)
    with pytest.raises(DataError, match=r"does not match download\.sha256"):
        _fetch([url], dest, "0" * 64, retries=3)
    assert _downloads(dest) == []
    assert route.requests == [None]  # the same wrong bytes would come again: not retried
    assert f"download {url}: attempt 1 of 4 failed: sha256 " in capsys.readouterr().err


def test_failing_server_is_retried_until_it_answers(serve, payload, dest, capsys):
    data, digest = payload
    route = Route(data, fail_first=2)
    url = serve("/busi.zip", route)
    assert _fetch([url], dest, digest, retries=2) == dest
    assert dest.read_bytes() == data and len(route.requests) == 3
    err = capsys.readouterr().err
    assert f"download {url}: attempt 1 of 3 failed: HTTP 503" in err
    assert f"download {url}: attempt 2 of 3 failed: HTTP 503" in err


def test_retries_are_bounded_and_one_error_names_every_url(serve, payload, dest):
    data, digest = payload
    route = Route(data, fail_first=10)
    busy, dead, gone = serve("/busy.zip", route), _dead_url(), serve("/gone.zip", None)
    with pytest.raises(DataError) as err:
        _fetch([busy, dead, gone], dest, digest, retries=2)
    message = str(err.value)
    assert "Could not download BUSI from any of the 3 URL(s) in download.urls" in message
    assert f"  {busy}: attempt 3 of 3 failed: HTTP 503" in message
    assert f"  {dead}: attempt 3 of 3 failed: " in message and "refused" in message
    assert f"  {gone}: attempt 1 of 3 failed: HTTP 404" in message  # a client error is not retried
    assert f"Or put the file (sha256 {digest}) at {dest}." in message  # resolve_source adds the BUSI_SOURCE hint
    assert len(route.requests) == 3
    assert not dest.exists()


@pytest.mark.parametrize("interruption", ["cut_at", "stall_at"])
def test_interrupted_download_is_resumed_and_verified(serve, payload, dest, capsys, interruption):
    data, digest = payload
    half = len(data) // 2
    route = Route(data, **{interruption: half})
    url = serve("/busi.zip", route)
    assert _fetch([url], dest, digest) == dest
    assert dest.read_bytes() == data
    assert route.requests == [None, f"bytes={half}-"]  # the second request asked for the rest only
    reason = (
        f"connection closed after {half:,} of {len(data):,} bytes"
        if interruption == "cut_at"
        else ("no answer within download.timeout_s (0.5 s)")
    )
    assert f"download {url}: attempt 1 of 2 failed: {reason}" in capsys.readouterr().err
    assert _downloads(dest) == ["Dataset_BUSI.zip"]


def test_server_that_ignores_range_is_read_from_the_start(serve, payload, dest):
    data, digest = payload
    half = len(data) // 2
    route = Route(data, cut_at=half, ranges=False)
    assert _fetch([serve("/busi.zip", route)], dest, digest) == dest
    assert route.requests == [None, f"bytes={half}-"]  # asked for the rest, got 200 and the whole file
    assert dest.read_bytes() == data


def test_partial_file_of_an_earlier_run_is_resumed(serve, payload, dest):
    data, digest = payload
    (dest.parent / "Dataset_BUSI.zip.part").write_bytes(data[:1000])
    route = Route(data)
    assert _fetch([serve("/busi.zip", route)], dest, digest) == dest
    assert route.requests == ["bytes=1000-"] and dest.read_bytes() == data


def test_complete_partial_file_gets_416_and_is_used(serve, payload, dest):
    data, digest = payload
    (dest.parent / "Dataset_BUSI.zip.part").write_bytes(data)
    route = Route(data)
    assert _fetch([serve("/busi.zip", route)], dest, digest) == dest
    assert route.requests == [f"bytes={len(data)}-"] and dest.read_bytes() == data


def test_stale_partial_file_is_discarded_and_the_download_restarted(serve, payload, dest, capsys):
    data, digest = payload
    (dest.parent / "Dataset_BUSI.zip.part").write_bytes(b"old" + data)  # longer than the file: 416
    route = Route(data)
    url = serve("/busi.zip", route)
    assert _fetch([url], dest, digest) == dest
    assert route.requests == [f"bytes={len(data) + 3}-", None] and dest.read_bytes() == data
    assert f"download {url}: attempt 1 of 2 failed: sha256 " in capsys.readouterr().err


def test_mirror_serving_wrong_bytes_is_skipped_for_the_next(serve, payload, dest, capsys):
    data, digest = payload
    wrong, good = Route(data[:-1] + b"X"), Route(data)
    wrong_url = serve("/wrong.zip", wrong)
    assert _fetch([wrong_url, serve("/good.zip", good)], dest, digest, retries=3) == dest
    assert dest.read_bytes() == data
    assert wrong.requests == [None] and good.requests == [None]
    assert f"download {wrong_url}: attempt 1 of 4 failed: sha256 " in capsys.readouterr().err


def test_dead_first_mirror_then_the_second(serve, payload, dest, capsys):
    data, digest = payload
    dead, good = _dead_url(), Route(data)
    assert _fetch([dead, serve("/good.zip", good)], dest, digest, retries=1) == dest
    assert dest.read_bytes() == data
    err = capsys.readouterr().err
    assert f"download {dead}: attempt 1 of 2 failed: " in err and f"download {dead}: attempt 2 of 2 failed: " in err


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "no content-length"])
def test_mirror_sending_more_than_max_archive_mb_is_cut_off_and_not_retried(serve, payload, dest, capsys, announced):
    data, digest = payload
    big, good = Route(bytes(3_000_000), length=announced), Route(data)
    big_url = serve("/big.zip", big)
    assert _fetch([big_url, serve("/good.zip", good)], dest, digest, retries=3, max_mb=1) == dest
    assert big.requests == [None] and good.requests == [None]  # the big one is not retried, the next one used
    assert dest.read_bytes() == data and _downloads(dest) == ["Dataset_BUSI.zip"]
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith(f"download {big_url}: "))
    if announced:  # refused on the header: nothing read
        reason = "the server announces 3,000,000 bytes, more than download.max_archive_mb (1 MB)"
    else:  # refused as the bytes come: never more than the cap written
        match = re.search(
            r"the server sent more than download.max_archive_mb \(1 MB\); stopped after ([\d,]+) bytes", line
        )
        assert match and int(match.group(1).replace(",", "")) <= 1_000_000
        reason = match.group(0)
    assert line == (
        f"download {big_url}: attempt 1 of 4 failed: {reason}; not retried, nothing kept (raise "
        "download.max_archive_mb in params.yaml if this file is right)"
    )


def test_resolve_source_stops_at_download_max_archive_mb(serve, tmp_path, monkeypatch):
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    url = serve("/busi.zip", Route(bytes(2_000_000), length=False))
    with pytest.raises(DataError) as err:
        resolve_source(config(urls=(url,), timeout_s=5, retries=2, max_archive_mb=0.5), backoff_s=0)
    assert f"  {url}: attempt 1 of 3 failed: the server sent more than download.max_archive_mb (0.5 MB)" in str(
        err.value
    )
    assert list((tmp_path / "data" / "downloads").iterdir()) == []  # no .part kept


def test_fetch_names_the_callers_settings_not_busis(serve, payload, dest):
    """The fetcher knows nothing of BUSI: what it fetches and the settings its messages cite are the caller's."""
    data, digest = payload
    keys = FetchKeys(urls="x.url", sha256="x.sha256", size="x.max_mb", timeout="x.timeout_s")
    wrong, big = serve("/wrong.whl", Route(data[:-1] + b"X")), serve("/big.whl", Route(bytes(3_000_000)))
    with pytest.raises(DataError) as err:
        fetch(
            [wrong, big],
            dest.with_name("x.whl"),
            digest,
            timeout_s=0.5,
            retries=0,
            max_mb=1,
            what="the X wheel",
            keys=keys,
        )
    message = str(err.value)
    assert message.startswith("Could not download the X wheel from any of the 2 URL(s) in x.url (params.yaml):")
    assert f"  {wrong}: attempt 1 of 1 failed: sha256 " in message and f"does not match x.sha256 {digest}" in message
    assert f"  {big}: attempt 1 of 1 failed: the server announces 3,000,000 bytes, more than x.max_mb (1 MB)" in message
    assert "BUSI" not in message and "download." not in message


@pytest.mark.parametrize("name", ["Dataset_BUSI.zip.part", "Dataset_BUSI.zip"])
def test_fifo_at_the_download_path_is_refused(serve, busi, dest, name):
    data = busi["zip"].read_bytes()
    route = Route(data)
    os.mkfifo(dest.parent / name)
    message = f"{dest.parent / name}: a named pipe (FIFO), not a regular file; remove it and run again"
    with _no_hang(), pytest.raises(DataError, match=re.escape(message)):
        _fetch([serve("/busi.zip", route)], dest, hashlib.sha256(data).hexdigest())
    assert route.requests == []  # refused before anything was asked for


def test_part_of_an_interrupted_download_is_kept_for_the_next_run(serve, payload, dest):
    data, digest = payload
    cut = Route(data, cut_at=len(data) // 3)
    url = serve("/cut.zip", cut)
    with pytest.raises(DataError, match=re.escape(f"The partial download {dest}.part is kept and will be resumed.")):
        _fetch([url], dest, digest, retries=0)
    assert (dest.parent / "Dataset_BUSI.zip.part").stat().st_size == len(data) // 3
    assert _fetch([url], dest, digest, retries=0) == dest  # the next run asks for the rest only
    assert cut.requests == [None, f"bytes={len(data) // 3}-"] and dest.read_bytes() == data


def test_resolve_source_downloads_into_data_downloads(serve, payload, busi, tmp_path, monkeypatch):
    data, digest = payload
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = config(urls=(_dead_url(), serve("/busi.zip", Route(data))), sha256=digest, timeout_s=5, retries=0)
    assert resolve_source(settings, backoff_s=0) == DOWNLOAD_PATH
    assert sorted(p.name for p in (tmp_path / "data" / "downloads").iterdir()) == ["Dataset_BUSI.zip"]
    install_dataset(DOWNLOAD_PATH, tmp_path / "raw" / DATASET_DIR, busi["entries"], settings)


def test_unreachable_url_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        resolve_source(config(urls=(_dead_url(),), sha256="0" * 64, timeout_s=5, retries=0))
    assert f"set {SOURCE_ENV} to a local zip, tar or tar.gz" in str(err.value)
    assert "data/downloads/Dataset_BUSI.zip" in str(err.value)


def test_busi_source_env_overrides_the_url(monkeypatch, busi):
    monkeypatch.setenv(SOURCE_ENV, str(busi["zip"]))
    assert resolve_source(config(urls=("http://127.0.0.1:9/never-fetched.zip",), sha256="0" * 64)) == busi["zip"]


# --- crash safety: the complete old or the complete new data set, whatever moment the run dies at --------

# Installs the data set of argv[1] with the manifest argv[3] into argv[2], and SIGKILLs itself right after the
# os.replace named by argv[4]: no finally block, no cleanup, as a kill or a power cut would leave it.
KILLED_INSTALL = """
import os, signal, sys
from pathlib import Path
from bcmodels.config.load import load_params
from bcmodels.data.busi import install_dataset
from bcmodels.formats.manifest import read_manifest

source, target, manifest, moment, params = sys.argv[1:]
real_replace = os.replace

def replace(src, dst):
    real_replace(src, dst)
    if (moment == "old moved aside" and str(dst).endswith(".old")) or (moment == "new moved in" and str(dst) == target):
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
entries = read_manifest(manifest, kinds=("image", "mask"))
install_dataset(Path(source), Path(target), entries, load_params(params).download)
"""


@pytest.fixture
def new_busi(tmp_path):
    """A second synthetic data set (other images), with its manifest: the "new" version of the data."""
    tree = tmp_path / "new_tree"
    entries = make_busi_tree(tree, seed=1)
    manifest = tmp_path / "new_manifest.tsv"
    write_manifest(manifest, entries)
    return {"tree": tree, "entries": entries, "manifest": manifest}


def _complete(folder: Path, entries) -> bool:
    """folder holds exactly these manifest files, each with its sha256."""
    verify(folder, entries)
    return relative_files(folder) == {e.file for e in entries}


def _beside(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir())


@pytest.mark.parametrize("then", ["recover", "next run"])
@pytest.mark.parametrize("moment", ["old moved aside", "new moved in"])
def test_killed_install_leaves_a_complete_data_set_and_the_next_run_cleans_up(busi, new_busi, tmp_path, moment, then):
    target = tmp_path / "raw" / DATASET_DIR
    install_dataset(busi["tree"], target, busi["entries"], config())
    args = [str(new_busi["tree"]), str(target), str(new_busi["manifest"]), moment, str(PROJECT_ROOT / "params.yaml")]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-c", KILLED_INSTALL, *args], env=env, capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    leftovers = [n for n in _beside(target) if n != DATASET_DIR]
    assert leftovers and all(re.fullmatch(rf"\.{DATASET_DIR}\.\w+\.(tmp|old)", n) for n in leftovers)
    if moment == "old moved aside":  # the old one is only renamed, and the verified new one is still there
        assert not target.exists()
        assert _complete(target.parent / next(n for n in leftovers if n.endswith(".old")), busi["entries"])
        assert _complete(target.parent / next(n for n in leftovers if n.endswith(".tmp")), new_busi["entries"])
    else:  # the new one is in place before the old one is deleted
        assert _complete(target, new_busi["entries"])
    if then == "recover":
        recover(target)
        expected = busi["entries"] if moment == "old moved aside" else new_busi["entries"]
    else:
        install_dataset(new_busi["tree"], target, new_busi["entries"], config())
        expected = new_busi["entries"]
    assert _complete(target, expected)
    assert _beside(target) == [DATASET_DIR]  # no .tmp or .old left


def test_interrupt_during_verify_keeps_the_old_data_set(busi, new_busi, tmp_path, monkeypatch):
    target = tmp_path / "raw" / DATASET_DIR
    install_dataset(busi["tree"], target, busi["entries"], config())

    def verify_then_interrupt(folder, manifest, source):  # Ctrl-C with the new copy complete and verified
        verify(folder, manifest, source)
        raise KeyboardInterrupt

    monkeypatch.setattr(installer, "verify", verify_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        install_dataset(new_busi["tree"], target, new_busi["entries"], config())
    assert _complete(target, busi["entries"]) and _beside(target) == [DATASET_DIR]


def test_failed_rename_into_place_is_undone_by_recover(busi, new_busi, tmp_path, monkeypatch):
    target = tmp_path / "raw" / DATASET_DIR
    install_dataset(busi["tree"], target, busi["entries"], config())
    real_replace = os.replace

    def replace(src, dst):  # the second rename of fileio.replace_dir, the new folder onto the target, fails
        if Path(dst) == target:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(DataError, match=re.escape(f"{new_busi['tree']}: installing into {target} failed: ")):
        install_dataset(new_busi["tree"], target, new_busi["entries"], config())
    monkeypatch.undo()
    if not target.exists():  # fileio left the old data set aside for recover(), as after a kill: complete
        old = [n for n in _beside(target) if n.endswith(".old")]
        assert len(old) == 1 and _complete(target.parent / old[0], busi["entries"])
    recover(target)
    assert _complete(target, busi["entries"]) and _beside(target) == [DATASET_DIR]


@pytest.mark.slow
@requires_real_zip
def test_real_archive_installs_and_matches_the_manifest(tmp_path):
    entries = read_manifest(PROJECT_ROOT / "data" / "busi_manifest.tsv", kinds=("image", "mask"))
    target = tmp_path / DATASET_DIR
    assert install_dataset(REAL_ZIP, target, entries, config()) == 780 + 798
    assert relative_files(target) == {e.file for e in entries}  # the 780 images and their 798 masks, nothing else
