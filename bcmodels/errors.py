"""The errors a user can cause and fix, and how every command ends when one happens.

Each message names the file or key and says what to do. A command ends with one `error:` line and exit
status 1, no traceback: a traceback is left only for a bug in the project. What the user or the machine
causes ends here: the project's own errors, a file system that refuses a write (full disk, no permission,
a name too long), too little memory, and Ctrl-C.

Kept free of heavy imports so that any process (preprocessing workers included) can import it cheaply.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A setting in params.yaml or on the command line is missing, unknown or invalid."""


class DataError(RuntimeError):
    """The data set could not be had, or a file between stages is missing or not what it should be."""


class WeightsError(RuntimeError):
    """Pretrained weights or a checkpoint could not be had, or do not fit the model."""


EXPECTED_ERRORS = (ConfigError, DataError, WeightsError)

# What to do about an operating-system error, by errno; anything else gets the system's own words.
OS_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space and run again",
    errno.EDQUOT: "the disk quota is used up; free some space and run again",
    errno.EACCES: "permission denied; check the owner and mode of that path",
    errno.EPERM: "operation not permitted; check the owner and mode of that path",
    errno.EROFS: "the file system is read-only; run from a writable copy of the project",
    errno.ENAMETOOLONG: "the name is too long for this file system; use a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) and run again",
}


def clip(text: str, limit: int = 60) -> str:
    """text cut to limit characters: errors never print a whole (possibly huge) value."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short(value: Any, limit: int = 60) -> str:
    """repr of a value, clipped."""
    return clip(repr(value), limit)


def describe_os_error(err: OSError) -> str:
    """One line: the path the error is about, and what to do."""
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{OS_ADVICE.get(err.errno, err.strerror or str(err))}"


def run_stage(main: Callable[[], None]) -> None:
    """Run a command's main(); a failure the user can act on becomes one line on stderr."""
    try:
        main()
    except EXPECTED_ERRORS as err:
        _fail(str(err))
    except MemoryError:
        _fail("out of memory; lower preprocess.image_size, train.batch_size or evaluate.batch_size")
    except KeyboardInterrupt:
        _fail("interrupted; the outputs of the last complete run are untouched", status=130)
    except OSError as err:
        if err.errno not in OS_ADVICE:
            raise  # not something the user can fix: a bug, keep the traceback
        _fail(describe_os_error(err))


def _fail(message: str, status: int = 1) -> None:
    # One line, whatever the message: a log, a terminal and `make study`'s summary all read it whole.
    print("error: " + " ".join(line.strip() for line in message.splitlines() if line.strip()), file=sys.stderr)
    sys.exit(status)
