"""Exceptions of the training API (no torch import here).

Every input problem is a :class:`FitInputError` (a ``ValueError``) whose message names the fix; the CLI
turns it into exit code 2 with a one-line message, the Processing algorithm into a
``QgsProcessingException``.
"""


class FitInputError(ValueError):
    """The inputs of ``fit`` cannot be used; the message says what to change."""


class TooFewBandsError(FitInputError):
    """The band list does not name exactly the 4 channels red, green, blue, NIR."""


class BadKError(FitInputError):
    """k is not an integer in 2..128."""


class RasterTooSmallError(FitInputError):
    """The raster (or its valid part) is smaller than one training tile."""


class AllNodataError(FitInputError):
    """No training tile free of nodata could be found."""


class TorchMissingError(ImportError):
    """PyTorch is not installed in this Python; the message says how to install it."""


class FitCanceled(Exception):
    """``is_canceled()`` returned True; training stopped and no model file was written."""
