"""Exceptions of the training API (no torch import here).

Every input problem is a :class:`FitInputError` (a ``ValueError``) whose message names the fix; the CLI
turns it into exit code 2 with a one-line message, the Processing algorithm into a
``QgsProcessingException``.
"""


#: What to do when torch is missing; shown by the CLI and by ``ktextures:fit``.
TORCH_INSTALL_HINT = (
    "PyTorch is needed to fit a model but is not installed in this Python. Install the CPU build into the Python "
    "that runs this (for QGIS on Debian/Ubuntu: '/usr/bin/python3 -m pip install --user torch'; Windows, "
    "OSGeo4W Shell: 'python -m pip install torch'), then restart QGIS or retry. Segmenting does not need it.")


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
