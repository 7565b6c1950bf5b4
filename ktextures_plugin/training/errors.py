"""Exceptions of the training API (no torch import here).

Every input problem is a :class:`FitInputError` (a ``core.errors.CoreError`` and a ``ValueError``) whose
message names the fix; the front ends translate it like every core error (the CLI: exit code 2 with a one-line
message; the Processing algorithm: a ``QgsProcessingException``).
"""

from ..core.errors import Canceled, CoreError, RuntimeMissingError

#: What to do when torch is missing; shown by the CLI and by ``ktextures:fit``.
TORCH_INSTALL_HINT = (
    "PyTorch is needed to fit a model but is not installed in this Python. In QGIS: click 'Install' in the "
    "k-textures notice or Plugins > k-textures > Install PyTorch (CPU build, into a folder of your QGIS "
    "profile). Elsewhere, into the Python that runs this: 'python -m pip install torch --extra-index-url "
    "https://download.pytorch.org/whl/cpu' (in a venv on Debian 12, where a plain 'pip install --user' is "
    "refused, PEP 668). Segmenting does not need it.")


class FitInputError(CoreError, ValueError):
    """The inputs of ``fit`` cannot be used; the message says what to change."""


class TooFewBandsError(FitInputError):
    """The band list does not name exactly the 4 channels red, green, blue, NIR."""


class BadKError(FitInputError):
    """k is not an integer in 2..128."""


class RasterTooSmallError(FitInputError):
    """The raster (or its valid part) is smaller than one training tile."""


class AllNodataError(FitInputError):
    """No training tile free of nodata could be found."""


class TorchMissingError(RuntimeMissingError):
    """PyTorch is not installed in this Python; the message says how to install it (CLI exit status 3)."""

    exit_status = 3


class FitCanceled(Canceled):
    """``is_canceled()`` returned True; training stopped and no model file was written.

    A :class:`ktextures_plugin.core.errors.Canceled`, so a front end catches every canceled run alike."""
