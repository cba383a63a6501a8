"""The errors a user can cause and fix; each message names the file or key and says what to do.

Kept free of heavy imports so that any process (preprocessing workers included) can import it cheaply.
"""


class ConfigError(ValueError):
    """A setting in params.yaml or on the command line is missing, unknown or invalid."""


class DataError(RuntimeError):
    """The data set could not be had, or a file between stages is missing or not what it should be."""


class WeightsError(RuntimeError):
    """Pretrained weights or a checkpoint could not be had, or do not fit the model."""


EXPECTED_ERRORS = (ConfigError, DataError, WeightsError)
