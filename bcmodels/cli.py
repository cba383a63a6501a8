"""Shared behaviour of the stage entry points: expected failures print one clear message, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bcmodels.errors import ConfigError, DataError, WeightsError

EXPECTED_ERRORS = (ConfigError, DataError, WeightsError)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a known error becomes 'error: ...' on stderr and exit status 1."""
    try:
        main()
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
