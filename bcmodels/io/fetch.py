"""Download a file whose sha256 is known: mirrors in order, bounded retries, a resumable `.part` file, a size
cap, and the sha256 checked before the file appears under its name.

Nothing here knows what is downloaded: the caller names it (what), the settings its messages cite (FetchKeys)
and how to do without the network (offline_hint). docs/input-handling.md states the behaviour.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import re
import stat
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bcmodels.errors import DataError, describe_os_error
from bcmodels.io.archives import READ_BYTES, file_type
from bcmodels.io.progress import progress

PART_SUFFIX = ".part"  # the download in progress, beside its destination, kept between runs to be resumed
BACKOFF_S = 2.0  # retry n of a URL waits n * BACKOFF_S seconds
BYTES_PER_MB = 1_000_000  # the *_mb settings count in these


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's content, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(READ_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FetchKeys:
    """The settings of params.yaml that a fetch's messages name."""

    urls: str  # the list of mirrors (or the one URL)
    sha256: str  # the file's expected sha256
    size: str  # the size cap, in MB (max_mb)
    timeout: str  # seconds per connection and per read (timeout_s)


class _Refused(Exception):
    """A mirror's file is larger than allowed: another attempt at the same URL would only repeat it."""


def _check_download_path(path: Path, *, follow: bool) -> None:
    """Refuse a FIFO, device or folder where a download goes: opening a FIFO blocks forever, a device is endless.

    The destination may be a symbolic link to a file (follow); the .part file is the download's own, so not there.
    """
    try:
        mode = (os.stat if follow else os.lstat)(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise DataError(describe_os_error(err)) from None  # it names the path
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: {file_type(mode)}, not a regular file; remove it and run again")


def _range_start(content_range: str) -> int | None:
    """The first byte of a `Content-Range: bytes a-b/n` header, or None if it is not one."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    return int(match.group(1)) if match else None


def _download_to_part(url: str, part: Path, timeout_s: float, max_bytes: float, size_key: str) -> None:
    """One request for url, written to part from its current size on; raises on any failure.

    A server that honours the Range header answers 206 and the part grows; one that ignores it answers 200
    and the part starts over; 416 means the part already holds the whole file (its sha256 then decides).
    The part never grows beyond max_bytes: a file announced larger is not read, one sent larger is cut off.
    """
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return
        raise
    limit = f"more than {size_key} ({max_bytes / BYTES_PER_MB:g} MB)"
    with response:
        if response.status == 206:
            sent = response.headers.get("Content-Range", "")
            if _range_start(sent) != offset:
                part.unlink()  # the next attempt starts from zero rather than append to the wrong place
                raise OSError(f"asked for bytes {offset}- and got Content-Range {sent!r}")
        else:
            offset = 0
        length = response.headers.get("Content-Length")
        expected = int(length) if length else None
        total = offset + expected if expected is not None else None
        if total is not None and total > max_bytes:
            raise _Refused(f"the server announces {total:,} bytes, {limit}")
        received = 0
        with (
            part.open("ab" if offset else "wb") as out,
            progress(
                total=total, initial=offset, unit="B", scale=True, desc=f"download {url.rsplit('/', 1)[-1]}"
            ) as bar,
        ):
            while chunk := response.read1(READ_BYTES):  # what has arrived, so a timeout loses nothing received
                if offset + received + len(chunk) > max_bytes:  # checked before writing: the disk use is bounded
                    raise _Refused(f"the server sent {limit}; stopped after {offset + received:,} bytes")
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns a short body without an error when the connection drops, so count the bytes.
    if expected is not None and received < expected:
        raise OSError(f"connection closed after {offset + received:,} of {total:,} bytes")


def _reason(err: BaseException, timeout: str) -> str:
    """What went wrong, in one line; timeout: the setting and its value, for a timeout."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout}"
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        return _reason(reason, timeout) if isinstance(reason, BaseException) else str(reason)
    return str(err) or type(err).__name__


def _is_permanent(err: BaseException) -> bool:
    """A failure that another attempt at the same URL would only repeat: a client error or a malformed URL."""
    if isinstance(err, urllib.error.HTTPError):
        return 400 <= err.code < 500 and err.code not in (408, 429)  # timeout and rate limit pass
    return isinstance(err, ValueError)


def fetch(
    urls: Sequence[str],
    dest: Path,
    sha256: str,
    *,
    timeout_s: float,
    retries: int,
    backoff_s: float = BACKOFF_S,
    max_mb: float | None = None,
    what: str,
    keys: FetchKeys,
    offline_hint: str = "",
) -> Path:
    """Download the first of urls that serves a file with this sha256 to dest, which appears only verified.

    Each URL gets 1 + retries attempts, retry n after n * backoff_s seconds. The bytes go to dest + ".part",
    which an interrupted attempt (this run or an earlier one) leaves to be resumed: every mirror serves the
    same file, so a part from one mirror is resumed from another. A mirror whose file is larger than max_mb
    (keys.size) is stopped there, its bytes discarded, and not tried again. If every URL fails, the error
    names what is fetched (what) and the settings (keys), and offline_hint says how to do without the network
    (a sentence or two, ending with a space).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + PART_SUFFIX)
    _check_download_path(dest, follow=True)
    _check_download_path(part, follow=False)
    if dest.is_file():
        if sha256_file(dest) == sha256:
            return dest
        print(f"{dest}: sha256 differs from the expected one; downloading it again", file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    max_bytes = max_mb * BYTES_PER_MB if max_mb is not None else math.inf
    last_failure: dict[str, str] = {}
    for url in urls:
        for attempt in range(1, retries + 2):
            if attempt > 1:
                time.sleep(backoff_s * (attempt - 1))
            resumed = part.is_file() and part.stat().st_size > 0
            try:
                _download_to_part(url, part, timeout_s, max_bytes, keys.size)
            except _Refused as err:
                part.unlink(missing_ok=True)  # bytes beyond what is allowed, from a mirror not to be trusted
                failure = f"{err}; not retried, nothing kept (raise {keys.size} in params.yaml if this file is right)"
                permanent = True
            except (OSError, ValueError, http.client.HTTPException) as err:
                failure, permanent = _reason(err, f"{keys.timeout} ({timeout_s:g} s)"), _is_permanent(err)
            else:
                digest = sha256_file(part)
                if digest == sha256:
                    os.replace(part, dest)
                    return dest
                part.unlink()
                failure = f"sha256 {digest} does not match {keys.sha256} {sha256}; the file was discarded"
                # A whole file of wrong bytes will come again; after a resume the old part may be to blame,
                # so that case gets another attempt, from zero.
                permanent = not resumed
            last_failure[url] = f"attempt {attempt} of {retries + 1} failed: {failure}"
            print(f"download {url}: {last_failure[url]}", file=sys.stderr)
            if permanent:
                break
    kept = f" The partial download {part} is kept and will be resumed." if part.is_file() else ""
    raise DataError(
        f"Could not download {what} from any of the {len(urls)} URL(s) in {keys.urls} (params.yaml):\n"
        + "".join(f"  {url}: {failure}\n" for url, failure in last_failure.items())
        + offline_hint
        + f"Or put the file (sha256 {sha256}) at {dest}.{kept}"
    )
