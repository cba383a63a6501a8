"""Progress on long work: a live bar on a terminal, a plain line now and then in a log.

tqdm redraws its bar with carriage returns many times a second; written to a file (`dvc repro > log`, CI)
that becomes hundreds of updates on one line. Off a terminal, a line is printed every LOG_INTERVAL_S
seconds and one at the end instead. Phases: one line saying where a command's wall time went.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import psutil
from tqdm import tqdm

T = TypeVar("T")
LOG_INTERVAL_S = 30.0


def _on_terminal() -> bool:
    return sys.stderr.isatty()


class LineProgress:
    """tqdm's interface where this project uses it (iterate, update, set_postfix), as occasional lines."""

    def __init__(self, iterable: Iterable | None, *, desc: str, total: float | None, unit: str, scale: bool) -> None:
        self.iterable, self.desc, self.unit, self.scale = iterable, desc, unit, scale
        self.total = total if total is not None else _length(iterable)
        self.n = 0
        self.postfix = ""
        self.closed = False
        self.start = self.last = time.monotonic()

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _amount(self, value: float) -> str:
        return f"{value / 1e6:.1f} M{self.unit}" if self.scale else f"{value:g}"

    def _line(self) -> str:
        done = self._amount(self.n)
        of = f" of {self._amount(self.total)} ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        return (
            f"{self.desc}: {done}{of} {'' if self.scale else self.unit} in {time.monotonic() - self.start:.0f}s{extra}"
        )

    def update(self, n: float = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= LOG_INTERVAL_S:
            self.last = time.monotonic()
            print(self._line(), file=sys.stderr, flush=True)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed and time.monotonic() - self.start >= 1.0:  # a second's work needs no line
            print(self._line(), file=sys.stderr, flush=True)
        self.closed = True


def _length(iterable: Iterable | None) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    scale: bool = False,
    initial: float = 0,
) -> Any:
    """A progress display over iterable (or updated by hand): tqdm on a terminal, LineProgress otherwise.

    scale: the unit counts bytes or similar and is shown in millions.
    """
    if _on_terminal():
        return tqdm(iterable, desc=desc, total=total, unit=unit, unit_scale=scale, initial=initial, leave=False)
    bar = LineProgress(iterable, desc=desc, total=total, unit=unit, scale=scale)
    bar.n = initial
    return bar


def say(message: str) -> None:
    """A line of output that does not break a progress bar on the terminal."""
    tqdm.write(message, file=sys.stdout)


class Phases:
    """Where a command's wall time goes: start-up (from the process's creation: interpreter, imports) and each
    named phase, reported as one line. What a stage costs outside its real work, on any device."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.seconds = {"start-up": time.time() - psutil.Process().create_time()}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def line(self, **details: str) -> str:
        """ "<what>: start-up 2.1 s, data 0.4 s, ..." with details (e.g. epochs="first 9.0 s") after their phase."""
        parts = [
            f"{name} {s:.1f} s" + (f" ({details[name]})" if name in details else "") for name, s in self.seconds.items()
        ]
        return f"{self.what} wall time: " + ", ".join(parts)
