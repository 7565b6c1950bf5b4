"""Fitting k-textures models with PyTorch and exporting them to ONNX (docs/method.md §3-§7).

torch is imported lazily: importing this package (or reading the names below) never imports torch, so
the QGIS plugin can list the ``fit`` algorithm and explain a missing torch installation itself.

Public API::

    from ktextures_plugin.training import FitCanceled, FitConfig, FitInputError, fit
    info = fit("image.tif", "3,2,1,4", "model.onnx", FitConfig(k=6, steps=600))

Modules: ``model`` (networks, §3-§4), ``features`` (loss feature extractors, §5), ``data`` (GDAL tile
sampler, §2), ``train`` (the loop and :func:`fit`, §6), ``export`` (ONNX, §7); sections of docs/method.md.
"""
from __future__ import annotations

from .errors import (
    TORCH_INSTALL_HINT,
    AllNodataError,
    BadKError,
    FitCanceled,
    FitInputError,
    RasterTooSmallError,
    TooFewBandsError,
    TorchMissingError,
)

__all__ = ["fit", "FitConfig", "FitCanceled", "FitInputError", "TooFewBandsError", "BadKError", "RasterTooSmallError",
           "AllNodataError", "TorchMissingError", "torch_available"]


def torch_available() -> bool:
    """True when ``import torch`` works (checked without raising)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def __getattr__(name):
    """``FitConfig``, imported from :mod:`.train` (and so torch) only when asked for."""
    if name == "FitConfig":
        if not torch_available():
            raise TorchMissingError(TORCH_INSTALL_HINT)
        from .train import FitConfig
        return FitConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fit(*args, **kwargs):
    """Fit a k-textures model and export it to ONNX; see :func:`ktextures_plugin.training.train.fit`."""
    if not torch_available():
        raise TorchMissingError(TORCH_INSTALL_HINT)
    from .train import fit as _fit
    return _fit(*args, **kwargs)
