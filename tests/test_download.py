from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bcmodels.config import DownloadConfig
from bcmodels.download import (
    DATASET_DIR,
    DOWNLOAD_PATH,
    SOURCE_ENV,
    fetch,
    install_dataset,
    read_manifest,
    resolve_source,
)
from bcmodels.errors import DataError
from tests.conftest import PROJECT_ROOT, REAL_ZIP, requires_real_zip
from tests.synthetic import relative_files, zip_tree


def test_install_from_zip_copies_images_and_masks_verified(busi, tmp_path):
    target = tmp_path / "out" / DATASET_DIR
    count = install_dataset(busi["zip"], target, busi["entries"])
    expected = relative_files(busi["tree"] / DATASET_DIR)
    assert relative_files(target) == expected
    assert count == len(expected) == 30 * 2 + 3  # images, one mask each, one _mask_1 per class
    assert {e.file for e in busi["entries"]} <= expected


@pytest.mark.parametrize("which", ["parent", "dataset_dir"])
def test_install_from_extracted_folder(busi, tmp_path, which):
    source = busi["tree"] if which == "parent" else busi["tree"] / DATASET_DIR
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(source, target, busi["entries"])
    assert relative_files(target) == relative_files(busi["tree"] / DATASET_DIR)


def test_install_finds_layout_nested_one_level_deeper(busi, tmp_path):
    archive = zip_tree(busi["tree"], tmp_path / "nested.zip", prefix="BUSI_mirror/")
    target = tmp_path / "out" / DATASET_DIR
    install_dataset(archive, target, busi["entries"])
    assert relative_files(target) == relative_files(busi["tree"] / DATASET_DIR)


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
    before = relative_files(target)
    bad = [e.__class__(e.file, e.label, "0" * 64) if i == 0 else e for i, e in enumerate(busi["entries"])]
    with pytest.raises(DataError):
        install_dataset(busi["zip"], target, bad)
    assert relative_files(target) == before


def test_source_that_is_neither_zip_nor_folder(tmp_path, busi):
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    with pytest.raises(DataError, match="junk.zip: neither a zip or tar archive nor a folder"):
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


@dataclass
class Route:
    """How the test server answers one path."""

    body: bytes
    fail_first: int = 0  # answer 503 to this many requests first
    cut_at: int | None = None  # the first answer with data drops the connection after this many bytes of it
    stall_at: int | None = None  # the first answer with data stops sending after this many bytes, for STALL_S
    ranges: bool = True  # honour Range with 206; False answers 200 with the whole body, as some servers do
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
    options = {"timeout_s": 0.5, "retries": 1, "backoff_s": 0.0, **kwargs}
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
    with pytest.raises(DataError, match="does not match download.sha256"):
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
    assert f"set {SOURCE_ENV} to a local zip, tar or tar.gz" in message and str(dest) in message
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
    reason = f"connection closed after {half:,} of {len(data):,} bytes" if interruption == "cut_at" else (
        "no answer within download.timeout_s (0.5 s)")  # fmt: skip
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


def test_resolve_source_downloads_into_data_downloads(serve, payload, busi, tmp_path, monkeypatch):
    data, digest = payload
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    config = DownloadConfig(urls=(_dead_url(), serve("/busi.zip", Route(data))), sha256=digest, timeout_s=5, retries=0)
    assert resolve_source(config, backoff_s=0) == DOWNLOAD_PATH
    assert sorted(p.name for p in (tmp_path / "data" / "downloads").iterdir()) == ["Dataset_BUSI.zip"]
    install_dataset(DOWNLOAD_PATH, tmp_path / "raw" / DATASET_DIR, busi["entries"])


def test_unreachable_url_says_how_to_use_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    config = DownloadConfig(urls=(_dead_url(),), sha256="0" * 64, timeout_s=5, retries=0)
    with pytest.raises(DataError) as err:
        resolve_source(config)
    assert SOURCE_ENV in str(err.value) and "data/downloads/Dataset_BUSI.zip" in str(err.value)


def test_busi_source_env_overrides_the_url(monkeypatch, busi):
    monkeypatch.setenv(SOURCE_ENV, str(busi["zip"]))
    config = DownloadConfig(urls=("http://127.0.0.1:9/never-fetched.zip",), sha256="0" * 64)
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
